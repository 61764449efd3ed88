package ipvsadm_test

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/dataplane/ipvsadm"
	"github.com/svctrace/svctrace/test/recorded"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/iptables"
	"github.com/svctrace/svctrace/trace/ipvs"
)

// partial copies sets as ReadIPSetHeaders lists them: names and types, no members.
func partial(sets ipvs.Sets) ipvs.Sets {
	out := ipvs.Sets{}
	for name, s := range sets {
		out[name] = &ipvs.Set{Name: s.Name, Type: s.Type, Family: s.Family, Members: map[string]bool{}, Partial: true, Tested: map[string]bool{}}
	}
	return out
}

// scoped is full read as trace reads it live, each read answered from full and counted: its
// virtual servers asked one by one, its sets' members one lookup at a time, and every virtual
// server address bound to kube-ipvs0 (as kube-proxy binds them).
func scoped(full *iptables.Dataplane) (*ipvsadm.Scoped, *[]*ipvs.VirtualServer) {
	var read []*ipvs.VirtualServer
	return ipvsadm.NewScoped(&iptables.Dataplane{V4: full.V4, Sets: partial(full.Sets)}, full.IPVS.Addresses(), ipvsadm.ScopedReads{
		Service: fromTable(full.IPVS, &read),
		Member: func(set *ipvs.Set, values []string) (bool, error) {
			return full.Sets[set.Name].Contains(values), nil
		},
		AllSets: func() (ipvs.Sets, error) { return nil, errors.New("not expected") },
	}), &read
}

// fromTable answers a Scoped dataplane's question for a virtual server from tab, as the kernel
// would, adding each one found to read.
func fromTable(tab *ipvs.Table, read *[]*ipvs.VirtualServer) func(string, netip.AddrPort) (*ipvs.VirtualServer, error) {
	return func(proto string, addr netip.AddrPort) (*ipvs.VirtualServer, error) {
		vs := tab.Find(proto, addr)
		if vs == nil {
			return nil, nil
		}
		c := *vs
		*read = append(*read, &c)
		return &c, nil
	}
}

// TestScopedWalksAsTheWholeTable: on the recorded IPVS node (demo-ipvs, recorded in the IPVS
// guest), a walk that reads only its packet's virtual server is the walk of the whole table, for
// a packet to every virtual server, to other ports of their addresses and to addresses without
// one, from a pod, the node, outside clients and a backend (hairpin); it asks for one virtual
// server, its own, and reads it if it is there.
func TestScopedWalksAsTheWholeTable(t *testing.T) {
	full, cl := recorded.IPVS(t, "ipvsadm-Ln.txt")
	node := cl.NodeContextFor("vm1", nil)
	packets := tracetest.PacketsTo(full.Entries())
	for _, e := range full.Entries() {
		other := trace.Packet{Src: netip.MustParseAddr("10.244.3.99"), Dst: e.Addr.Addr(), DstPort: 1, Protocol: e.Protocol}
		packets = append(packets, other)
		for _, src := range []string{"10.244.3.99", "10.0.2.15", "198.51.100.10", "10.244.3.11"} {
			p := trace.Packet{Src: netip.MustParseAddr(src), Dst: e.Addr.Addr(), DstPort: e.Addr.Port(), Protocol: e.Protocol}
			if src == "10.0.2.15" {
				p.Origin = trace.FromLocalProcess
			}
			packets = append(packets, p)
		}
	}
	reached, tests := 0, 0
	for _, p := range packets {
		sc, reads := scoped(full)
		tracetest.SameWalk(t, full, sc, p, node)
		read := *reads
		own := full.IPVS.Find(p.Protocol.String(), netip.AddrPortFrom(p.Dst, p.DstPort))
		switch {
		case own == nil && len(read) > 0:
			t.Errorf("%s: no virtual server of its own, yet %s was read", p, read[0].Addr)
		case sc.Services != 1:
			t.Errorf("%s: asked for %d virtual servers, want its own", p, sc.Services)
		case own != nil && (len(read) != 1 || read[0].Addr != own.Addr):
			t.Errorf("%s: read %d virtual servers, want its own, %s", p, len(read), own.Addr)
		case own != nil:
			reached++
		}
		// Every lookup is asked once, and a walk asks a handful, not the sets.
		asked := 0
		for _, set := range sc.Sets {
			asked += len(set.Tested)
		}
		if sc.Tests != asked || sc.Tests == 0 || sc.Tests > 20 || sc.Fallback != "" {
			t.Errorf("%s: %d ipset tests for %d distinct lookups (fallback %q)", p, sc.Tests, asked, sc.Fallback)
		}
		tests += sc.Tests
	}
	if reached < len(full.IPVS.Services) {
		t.Errorf("only %d packets reached a virtual server of %d", reached, len(full.IPVS.Services))
	}
	t.Logf("%d packets, %d ipset tests", len(packets), tests)
}

// TestScopedSetsFallBack: when the kernel cannot be asked about a lookup, every set is read
// whole and the walk is the whole table's; when that read fails too, the walk fails with both
// reasons.
func TestScopedSetsFallBack(t *testing.T) {
	full, cl := recorded.IPVS(t, "ipvsadm-Ln.txt")
	node := cl.NodeContextFor("vm1", nil)
	p := trace.Packet{Src: netip.MustParseAddr("10.244.3.11"), Dst: netip.MustParseAddr("10.96.30.10"), DstPort: 80, Protocol: trace.TCP}
	gone := errors.New("ipset: the set with the given name does not exist")
	for _, whole := range []error{nil, errors.New("ipset save: exit status 1")} {
		sc, _ := scoped(full)
		reads := 0
		sc2 := ipvsadm.NewScoped(sc.Dataplane, full.IPVS.Addresses(), ipvsadm.ScopedReads{
			Service: fromTable(full.IPVS, new([]*ipvs.VirtualServer)),
			Member:  func(*ipvs.Set, []string) (bool, error) { return false, gone },
			AllSets: func() (ipvs.Sets, error) {
				reads++
				return full.Sets, whole
			},
		})
		if whole == nil {
			tracetest.SameWalk(t, full, sc2, p, node)
			if reads != 1 || !strings.Contains(sc2.Fallback, gone.Error()) {
				t.Errorf("fallback: %d reads of every set, reason %q", reads, sc2.Fallback)
			}
			continue
		}
		if _, err := sc2.Walk(context.Background(), p, node); err == nil || !strings.Contains(err.Error(), gone.Error()) || !errors.Is(err, whole) {
			t.Errorf("both reads failed: %v", err)
		}
	}
}

// TestScopedDoesNotGuess: a walk that reaches a virtual server not asked for fails, rather than
// take it for none, and a failed read of the packet's is the walk's error; neither says "no real
// servers" or "no virtual server".
func TestScopedDoesNotGuess(t *testing.T) {
	full, cl := recorded.IPVS(t, "ipvsadm-Ln.txt")
	node := cl.NodeContextFor("vm1", nil)
	p := trace.Packet{Src: netip.MustParseAddr("10.244.3.99"), Dst: netip.MustParseAddr("10.96.30.10"), DstPort: 80, Protocol: trace.TCP}
	bare := &iptables.Dataplane{V4: full.V4, Sets: full.Sets, IPVS: &ipvs.Table{Partial: true, Bound: full.IPVS.Addresses()}}
	if w, err := bare.Walk(context.Background(), p, node); err == nil || !strings.Contains(err.Error(), "TCP 10.96.30.10:80 was not read") {
		t.Errorf("walk over a virtual server not asked for: %v, %+v", err, w)
	}
	failed := errors.New("netlink: no such file or directory")
	sc := ipvsadm.NewScoped(&iptables.Dataplane{V4: full.V4, Sets: full.Sets}, full.IPVS.Addresses(), ipvsadm.ScopedReads{
		Service: func(string, netip.AddrPort) (*ipvs.VirtualServer, error) { return nil, failed }})
	if _, err := sc.Walk(context.Background(), p, node); !errors.Is(err, failed) {
		t.Errorf("failed read: %v", err)
	}
}

// TestScopedLocalityIsKubeIPVS0s: without the addresses bound to kube-ipvs0, a packet to another
// port of a virtual server's address is not taken for the node's own; with them it is, as the
// whole table has it, though no virtual server of that port was found.
func TestScopedLocalityIsKubeIPVS0s(t *testing.T) {
	full, cl := recorded.IPVS(t, "ipvsadm-Ln.txt")
	node := cl.NodeContextFor("vm1", nil)
	p := trace.Packet{Src: netip.MustParseAddr("10.244.3.99"), Dst: netip.MustParseAddr("10.96.30.10"), DstPort: 1, Protocol: trace.TCP}
	want, err := full.Walk(context.Background(), p, node)
	if err != nil {
		t.Fatal(err)
	}
	for _, bound := range [][]netip.Addr{nil, full.IPVS.Addresses()} {
		sc := ipvsadm.NewScoped(&iptables.Dataplane{V4: full.V4, Sets: full.Sets}, bound, ipvsadm.ScopedReads{Service: fromTable(full.IPVS, new([]*ipvs.VirtualServer))})
		got, err := sc.Walk(context.Background(), p, node)
		if err != nil {
			t.Fatal(err)
		}
		if same := reflect.DeepEqual(got, want); same != (bound != nil) {
			t.Errorf("bound %d addresses: the walk is the whole table's: %v", len(bound), same)
		}
	}
}
