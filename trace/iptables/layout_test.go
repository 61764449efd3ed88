package iptables_test

import (
	"context"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/dataplane/xtables"
	"github.com/svctrace/svctrace/test/recorded"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/iptables"
)

func walkOld(t *testing.T, pkt trace.Packet, local ...string) *trace.Walk {
	t.Helper()
	rs := recorded.OldLayout(t)
	node := &trace.NodeContext{Name: "old"}
	for _, l := range local {
		node.Local = append(node.Local, netip.MustParseAddr(l))
	}
	w, err := (&iptables.Dataplane{V4: rs}).Walk(context.Background(), pkt, node)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func shares(w *trace.Walk) map[string]float64 {
	out := map[string]float64{}
	for _, p := range w.Paths {
		k := string(p.Verdict.Kind)
		if p.Verdict.Kind == trace.DNAT {
			k = p.Verdict.Backend.String()
		}
		out[k] += p.Probability
	}
	return out
}

func TestOldLayoutElevenDigitProbabilitiesGiveThirds(t *testing.T) {
	w := walkOld(t, trace.Packet{Src: netip.MustParseAddr("10.244.1.9"), Dst: netip.MustParseAddr("10.96.0.50"), DstPort: 80, Protocol: trace.TCP})
	got := shares(w)
	if len(got) != 3 {
		t.Fatalf("want 3 backends, got %v", got)
	}
	for b, p := range got {
		if math.Abs(p-1.0/3) > 1e-4 {
			t.Errorf("%s share %v, want about 1/3", b, p)
		}
	}
	if got["10.244.1.5:8080"] != 0.33332999982 {
		t.Errorf("first backend's share is exactly the rule's probability, got %v", got["10.244.1.5:8080"])
	}
}

func TestOldLayoutLoadBalancerSourceRangesDropThroughMarkDrop(t *testing.T) {
	// A VIP-like load balancer: its address is local on the node, so the packet reaches INPUT,
	// where the kubelet's KUBE-FIREWALL drops what KUBE-MARK-DROP marked.
	lb := netip.MustParseAddr("198.51.100.50")
	denied := walkOld(t, trace.Packet{Src: netip.MustParseAddr("192.0.2.1"), Dst: lb, DstPort: 80, Protocol: trace.TCP}, "198.51.100.50")
	if s := shares(denied); s["DROP"] != 1 {
		t.Fatalf("source outside the ranges: %v, want all DROP", s)
	}
	allowed := walkOld(t, trace.Packet{Src: netip.MustParseAddr("203.0.113.7"), Dst: lb, DstPort: 80, Protocol: trace.TCP}, "198.51.100.50")
	s := shares(allowed)
	if s["10.244.1.5:8080"] != 1 {
		t.Fatalf("allowed source through KUBE-XLB: %v, want the local endpoint only", s)
	}
	for _, p := range allowed.Paths {
		if p.Masquerade {
			t.Errorf("Local policy keeps the source, but the path was masqueraded: %s", p.MasqueradeReason)
		}
	}
}

func TestUnknownMatchModulesAreReportedNotAssumedToMatch(t *testing.T) {
	// The fixture's KUBE-XLB chain has a -m physdev rule (jumping to KUBE-MARK-DROP) before its
	// balancing rule: it must be named in the notes and treated as not matching.
	w := walkOld(t, trace.Packet{Src: netip.MustParseAddr("203.0.113.7"), Dst: netip.MustParseAddr("198.51.100.50"), DstPort: 30001, Protocol: trace.TCP}, "198.51.100.50")
	if s := shares(w); s["10.244.1.5:8080"] != 1 {
		t.Fatalf("node port through KUBE-XLB: %v", s)
	}
	found := false
	for _, n := range w.Notes {
		found = found || strings.Contains(n, "physdev") && strings.Contains(n, "assumed not to match")
	}
	if !found {
		t.Fatalf("no note names the physdev match: %v", w.Notes)
	}
	inHop := false
	for _, st := range w.Paths[0].Steps {
		inHop = inHop || st.Action == "not evaluated, assumed not to match" && strings.Contains(st.Rule, "physdev")
	}
	if !inHop {
		t.Errorf("the path has no hop for the unevaluated rule: %+v", w.Paths[0].Steps)
	}
}

func TestNoEndpointsRejectInFilterTable(t *testing.T) {
	w := walkOld(t, trace.Packet{Src: netip.MustParseAddr("10.244.1.9"), Dst: netip.MustParseAddr("10.96.0.60"), DstPort: 80, Protocol: trace.TCP})
	if len(w.Paths) != 1 || w.Paths[0].Verdict.Kind != trace.Reject || w.Paths[0].Verdict.Reason != "ns1/gone:p has no endpoints" {
		t.Fatalf("got %+v", w.Paths)
	}
}

func TestOutputHookFromTheNodeIsMasqueradedForClusterIP(t *testing.T) {
	w := walkOld(t, trace.Packet{Src: netip.MustParseAddr("192.168.0.1"), Dst: netip.MustParseAddr("10.96.0.50"), DstPort: 80, Protocol: trace.TCP, Origin: trace.FromLocalProcess}, "192.168.0.1")
	for _, p := range w.Paths {
		if !p.Masquerade || !strings.Contains(p.MasqueradeReason, "cluster IP") {
			t.Errorf("path to %s: masquerade %v (%q), want true because of the cluster IP rule", p.Verdict.Backend, p.Masquerade, p.MasqueradeReason)
		}
	}
}

func TestLoopingRulesStopWithANote(t *testing.T) {
	dump := "*nat\n:PREROUTING ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n-A PREROUTING -j A\n-A A -j B\n-A B -g A\nCOMMIT\n"
	rs, err := xtables.Parse([]byte(dump))
	if err != nil {
		t.Fatal(err)
	}
	w, err := (&iptables.Dataplane{V4: rs}).Walk(context.Background(), trace.Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), DstPort: 80, Protocol: trace.TCP}, &trace.NodeContext{})
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Paths) != 1 || w.Paths[0].Verdict.Reason != "the rules loop" || len(w.Notes) == 0 {
		t.Fatalf("paths %+v notes %v", w.Paths, w.Notes)
	}
}

// TestInterfaceNamePrefixDetectorDecidesBySource: with kube-proxy's detectLocalMode
// InterfaceNamePrefix the masquerade rule reads `! -i veth+` instead of `! -s CLUSTER-CIDR`. With
// no --in-interface, a packet from a pod on this node is taken to arrive on a pod interface
// (source kept) and any other not (masqueraded), as real connections are; the walk once assumed
// the match failed for every source and predicted "source kept" for outside clients.
func TestInterfaceNamePrefixDetectorDecidesBySource(t *testing.T) {
	dump, err := os.ReadFile(filepath.Join(recorded.Root(), "dataplane/snapshot/demo/iptables-save.txt"))
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(dump), "-A KUBE-SVC-ODX2UBAZM7RQWOIU ! -s 10.244.0.0/16 -d 10.96.10.10/32", "-A KUBE-SVC-ODX2UBAZM7RQWOIU ! -i veth+ -d 10.96.10.10/32", 1)
	if edited == string(dump) {
		t.Fatal("the recorded node has no cluster-CIDR masquerade rule for hostnames")
	}
	rs, err := xtables.Parse([]byte(edited))
	if err != nil {
		t.Fatal(err)
	}
	_, cl := recorded.IPTables(t, filepath.Join(recorded.Root(), "dataplane/snapshot/demo"))
	node := cl.NodeContextFor("node1", nil)
	for src, wantMasq := range map[string]bool{"10.244.1.99": false, "10.244.2.7": true, "192.0.2.10": true} {
		w, err := (&iptables.Dataplane{V4: rs}).Walk(context.Background(), trace.Packet{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr("10.96.10.10"), DstPort: 80, Protocol: trace.TCP}, node)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range w.Paths {
			if p.Masquerade != wantMasq {
				t.Errorf("from %s: masquerade %v, want %v (%s)", src, p.Masquerade, wantMasq, p.MasqueradeReason)
			}
		}
	}
	// A process on the node sends with no input interface: `! -i veth+` matches (masquerade);
	// and without the node's pod ranges a packet is taken not to come from a pod interface.
	for name, tc := range map[string]struct {
		pkt  trace.Packet
		node *trace.NodeContext
	}{
		"from the node":        {trace.Packet{Src: netip.MustParseAddr("172.31.250.2"), Origin: trace.FromLocalProcess}, node},
		"pod ranges not known": {trace.Packet{Src: netip.MustParseAddr("10.244.1.99")}, cl.NodeContextFor("node1", nil)},
	} {
		if name == "pod ranges not known" {
			tc.node.PodCIDRs = nil
		}
		tc.pkt.Dst, tc.pkt.DstPort, tc.pkt.Protocol = netip.MustParseAddr("10.96.10.10"), 80, trace.TCP
		w, err := (&iptables.Dataplane{V4: rs}).Walk(context.Background(), tc.pkt, tc.node)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range w.Paths {
			if !p.Masquerade {
				t.Errorf("%s: not masqueraded (%s)", name, p.MasqueradeReason)
			}
		}
	}
}
