package iptables_test

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/dataplane/ipvsadm"
	"github.com/svctrace/svctrace/dataplane/xtables"
	"github.com/svctrace/svctrace/test/recorded"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/iptables"
	"github.com/svctrace/svctrace/trace/kubeproxy"
)

// bigIptablesService is the recorded iptables node (dataplane/snapshot/demo, kube-proxy v1.36.3)
// with default/hostnames' service chain grown to n endpoints, written as kube-proxy writes them:
// one statistic rule per endpoint with probability 1/(n-i), the last without, each jumping to
// an endpoint chain that marks hairpin traffic and DNATs.
func bigIptablesService(t testing.TB, n int) *iptables.Dataplane {
	t.Helper()
	data, err := os.ReadFile("../../dataplane/snapshot/demo/iptables-save.txt")
	if err != nil {
		t.Fatal(err)
	}
	const svc = "KUBE-SVC-ODX2UBAZM7RQWOIU"
	var out strings.Builder
	grown := false
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if strings.Contains(line, "-A "+svc+" ") && strings.Contains(line, "-j KUBE-SEP-") {
			if grown {
				continue
			}
			grown = true
			for i := 0; i < n; i++ {
				ep := fmt.Sprintf("10.%d.%d.%d:9376", 100+i/65536, i/256%256, i%256)
				stat := ""
				if i < n-1 {
					stat = " -m statistic --mode random --probability " + kubeproxy.Probability(n-i)
				}
				fmt.Fprintf(&out, "[0:0] -A %s -m comment --comment \"default/hostnames:default -> %s\"%s -j KUBE-SEP-BIG%06d\n", svc, ep, stat, i)
			}
			continue
		}
		if line == "COMMIT\n" && grown && !strings.Contains(out.String(), ":KUBE-SEP-BIG") {
			for i := 0; i < n; i++ {
				ep := fmt.Sprintf("10.%d.%d.%d", 100+i/65536, i/256%256, i%256)
				fmt.Fprintf(&out, ":KUBE-SEP-BIG%06d - [0:0]\n", i)
				fmt.Fprintf(&out, "[0:0] -A KUBE-SEP-BIG%06d -s %s/32 -m comment --comment \"default/hostnames:default\" -j KUBE-MARK-MASQ\n", i, ep)
				fmt.Fprintf(&out, "[0:0] -A KUBE-SEP-BIG%06d -p tcp -m comment --comment \"default/hostnames:default\" -m tcp -j DNAT --to-destination %s:9376\n", i, ep)
			}
		}
		out.WriteString(line)
	}
	if !grown {
		t.Fatal("the recorded node has no endpoint rules for default/hostnames")
	}
	rs, err := xtables.Parse([]byte(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	return &iptables.Dataplane{V4: rs}
}

// bigIPVSService is the recorded IPVS node (dataplane/snapshot/demo-ipvs) with the virtual
// server 10.96.30.10:80 given n real servers in `ipvsadm -Ln` form.
func bigIPVSService(t testing.TB, n int) *iptables.Dataplane {
	t.Helper()
	var out strings.Builder
	in := false
	for _, line := range strings.SplitAfter(string(tracetest.ReadFixture(t, recorded.IPVSDir(), "ipvsadm-Ln.txt")), "\n") {
		if in && strings.HasPrefix(line, "  ->") {
			continue
		}
		in = false
		out.WriteString(line)
		if strings.HasPrefix(line, "TCP  10.96.30.10:80 ") {
			in = true
			for i := 0; i < n; i++ {
				fmt.Fprintf(&out, "  -> 10.%d.%d.%d:8080             Masq    1      0          0\n", 100+i/65536, i/256%256, i%256)
			}
		}
	}
	tab, err := ipvsadm.ParseList([]byte(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	return recorded.IPVSNode(t, tab)
}

func bigPacket(dst string, port uint16) (trace.Packet, *trace.NodeContext) {
	return trace.Packet{Src: netip.MustParseAddr("10.244.1.99"), Dst: netip.MustParseAddr(dst), DstPort: port, Protocol: trace.TCP},
		&trace.NodeContext{Name: "node1", Local: []netip.Addr{netip.MustParseAddr("172.31.250.2")}}
}

// TestTenThousandEndpointsIptables: a Service with 10,000 endpoints (one statistic rule each)
// splits into 10,000 DNAT paths whose shares are 1/10,000 each, as far as iptables' 31-bit
// probabilities allow, and sum to 1, in bounded memory.
func TestTenThousandEndpointsIptables(t *testing.T) {
	pkt, node := bigPacket("10.96.10.10", 80)
	w, took, alloc := tracetest.MeasuredWalk(t, bigIptablesService(t, 10000), pkt, node)
	seen := map[netip.AddrPort]bool{}
	sum := 0.0
	for _, p := range w.Paths {
		if p.Verdict.Kind != trace.DNAT {
			t.Fatalf("a path ends in %s (%s)", p.Verdict.Kind, p.Verdict.Reason)
		}
		seen[p.Verdict.Backend] = true
		sum += p.Probability
		if math.Abs(p.Probability*10000-1) > 0.01 {
			t.Fatalf("backend %s has share %v, want 1/10,000", p.Verdict.Backend, p.Probability)
		}
	}
	if len(seen) != 10000 || math.Abs(sum-1) > 1e-9 {
		t.Fatalf("%d backends, shares sum to %v; want 10,000 summing to 1", len(seen), sum)
	}
	t.Logf("10,000 endpoints (iptables): walked in %s, %d MiB allocated", took, alloc)
	if alloc > 300 {
		t.Errorf("the walk allocated %d MiB for 10,000 endpoints", alloc)
	}
}

// TestTenThousandEndpointsIPVS: a virtual server with 10,000 real servers of equal weight.
func TestTenThousandEndpointsIPVS(t *testing.T) {
	pkt, node := bigPacket("10.96.30.10", 80)
	w, took, alloc := tracetest.MeasuredWalk(t, bigIPVSService(t, 10000), pkt, node)
	seen := map[netip.AddrPort]bool{}
	for _, p := range w.Paths {
		if p.Verdict.Kind != trace.DNAT || p.Probability != 1.0/10000 {
			t.Fatalf("a path ends in %s to %s with share %v", p.Verdict.Kind, p.Verdict.Backend, p.Probability)
		}
		seen[p.Verdict.Backend] = true
	}
	if len(seen) != 10000 {
		t.Fatalf("%d backends, want 10,000", len(seen))
	}
	t.Logf("10,000 endpoints (IPVS): walked in %s, %d MiB allocated", took, alloc)
	if alloc > 300 {
		t.Errorf("the walk allocated %d MiB for 10,000 endpoints", alloc)
	}
}

// BenchmarkTraceTenThousandEndpoints times the walk of a Service with 10,000 endpoints in
// iptables and IPVS mode (the nftables one is in trace/nftables).
func BenchmarkTraceTenThousandEndpoints(b *testing.B) {
	for _, c := range []struct {
		name string
		dp   func(testing.TB, int) *iptables.Dataplane
		dst  string
	}{{"iptables", bigIptablesService, "10.96.10.10"}, {"ipvs", bigIPVSService, "10.96.30.10"}} {
		b.Run(c.name, func(b *testing.B) {
			dp := c.dp(b, 10000)
			pkt, node := bigPacket(c.dst, 80)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := dp.Walk(context.Background(), pkt, node); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
