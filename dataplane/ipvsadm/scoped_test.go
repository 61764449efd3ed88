package ipvsadm_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/dataplane/ipvsadm"
	"github.com/svctrace/svctrace/test/recorded"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/iptables"
	"github.com/svctrace/svctrace/trace/ipvs"
)

// unread copies tab as ReadServices lists it: every virtual server, no real servers.
func unread(tab *ipvs.Table) *ipvs.Table {
	out := &ipvs.Table{}
	for _, vs := range tab.Services {
		c := *vs
		c.Reals, c.Unread = nil, true
		out.Services = append(out.Services, &c)
	}
	return out
}

// TestScopedWalksAsTheWholeTable: on the recorded IPVS node (demo-ipvs, recorded in the IPVS
// guest), a walk that reads only its packet's virtual server's real servers is the walk of the
// whole table, for a packet to every virtual server and to addresses without one, from a pod, the
// node, outside clients and a backend (hairpin); it reads one virtual server at most, its own.
func TestScopedWalksAsTheWholeTable(t *testing.T) {
	full, cl := recorded.IPVS(t, "ipvsadm-Ln.txt")
	node := cl.NodeContextFor("vm1", nil)
	packets := tracetest.PacketsTo(full.Entries())
	for _, e := range full.Entries() {
		for _, src := range []string{"10.244.3.99", "10.0.2.15", "198.51.100.10", "10.244.3.11"} {
			p := trace.Packet{Src: netip.MustParseAddr(src), Dst: e.Addr.Addr(), DstPort: e.Addr.Port(), Protocol: e.Protocol}
			if src == "10.0.2.15" {
				p.Origin = trace.FromLocalProcess
			}
			packets = append(packets, p)
		}
	}
	reached := 0
	for _, p := range packets {
		var read []*ipvs.VirtualServer
		sc := ipvsadm.NewScoped(&iptables.Dataplane{V4: full.V4, Sets: full.Sets, IPVS: unread(full.IPVS)}, func(vs *ipvs.VirtualServer) error {
			vs.Reals, vs.Unread = full.IPVS.Find(vs.Protocol, vs.Addr).Reals, false
			read = append(read, vs)
			return nil
		})
		tracetest.SameWalk(t, full, sc, p, node)
		own := full.IPVS.Find(p.Protocol.String(), netip.AddrPortFrom(p.Dst, p.DstPort))
		switch {
		case own == nil && len(read) > 0:
			t.Errorf("%s: no virtual server of its own, yet %s was read", p, read[0].Addr)
		case own != nil && (len(read) != 1 || read[0].Addr != own.Addr || sc.Reads != 1):
			t.Errorf("%s: read %d virtual servers (%d reads), want its own, %s", p, len(read), sc.Reads, own.Addr)
		case own != nil:
			reached++
		}
	}
	if reached < len(full.IPVS.Services) {
		t.Errorf("only %d packets reached a virtual server of %d", reached, len(full.IPVS.Services))
	}
}

// TestScopedDoesNotGuess: a walk that reaches a virtual server whose real servers were not read
// fails, and a failed read of them is the walk's error; neither says "no real servers".
func TestScopedDoesNotGuess(t *testing.T) {
	full, cl := recorded.IPVS(t, "ipvsadm-Ln.txt")
	node := cl.NodeContextFor("vm1", nil)
	p := trace.Packet{Src: netip.MustParseAddr("10.244.3.99"), Dst: netip.MustParseAddr("10.96.30.10"), DstPort: 80, Protocol: trace.TCP}
	bare := &iptables.Dataplane{V4: full.V4, Sets: full.Sets, IPVS: unread(full.IPVS)}
	if w, err := bare.Walk(context.Background(), p, node); err == nil || !strings.Contains(err.Error(), "TCP 10.96.30.10:80: its real servers were not read") {
		t.Errorf("walk over an unread virtual server: %v, %+v", err, w)
	}
	failed := errors.New("netlink: no such file or directory")
	sc := ipvsadm.NewScoped(&iptables.Dataplane{V4: full.V4, Sets: full.Sets, IPVS: unread(full.IPVS)}, func(*ipvs.VirtualServer) error { return failed })
	if _, err := sc.Walk(context.Background(), p, node); !errors.Is(err, failed) {
		t.Errorf("failed read: %v", err)
	}
}
