// Package tracetest holds the packet-flow test runner every dataplane mode's tests share, in the
// shape of kube-proxy's own runPacketFlowTests.
package tracetest

import (
	"context"
	"math"
	"net/netip"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/trace"
)

// FlowTest is one packet and what must become of it.
type FlowTest struct {
	Name     string
	SourceIP string
	Origin   trace.Origin
	DestIP   string
	DestPort uint16
	Proto    trace.Protocol
	// Output lists the DNAT destinations (sorted, comma-separated), or REJECT / DROP / ACCEPT.
	Output string
	Masq   bool
	// Hairpin names the one backend that is masqueraded when Masq is false (the source itself).
	Hairpin string
	// Equal asks that every backend gets the same share.
	Equal bool
	// Affinity is the session affinity timeout the trace must report, if any.
	Affinity int
}

// Addresses of the standard scenario (test/e2e/harness).
const (
	NodeIP      = "172.31.250.2"
	NodeExtIP   = "198.51.100.1"
	ClientPodIP = "10.244.1.99"
	ExternalIP  = "198.51.100.10"
	LBIP        = "203.0.113.100"
)

// LoadObjects reads a recorded objects.yaml.
func LoadObjects(t testing.TB, path string) *trace.Cluster {
	t.Helper()
	objs, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := trace.DecodeObjects(objs)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// ClusterIP returns a scenario Service's cluster IP.
func ClusterIP(t testing.TB, cl *trace.Cluster, name string) string {
	t.Helper()
	s := cl.Service("default", name)
	if s == nil {
		t.Fatalf("fixture has no service default/%s", name)
		return ""
	}
	return s.Spec.ClusterIP
}

// Run traces every flow on node1 and checks backends, shares, masquerade and verdicts.
func Run(t *testing.T, dp trace.Dataplane, cl *trace.Cluster, tests []FlowTest) {
	RunOnNode(t, dp, cl, "node1", tests)
}

// RunOnNode is Run on the named node.
func RunOnNode(t *testing.T, dp trace.Dataplane, cl *trace.Cluster, nodeName string, tests []FlowTest) {
	node := cl.NodeContextFor(nodeName, nil)
	for _, tc := range tests {
		t.Run(tc.Name, func(t *testing.T) {
			proto := tc.Proto
			if proto == 0 {
				proto = trace.TCP
			}
			pkt := trace.Packet{Src: netip.MustParseAddr(tc.SourceIP), Dst: netip.MustParseAddr(tc.DestIP),
				DstPort: tc.DestPort, Protocol: proto, Origin: tc.Origin}
			res, err := trace.Run(context.Background(), dp, cl, trace.Query{Packet: pkt, Node: node})
			if err != nil {
				t.Fatal(err)
			}
			total := 0.0
			for _, v := range res.Verdicts {
				total += v.Probability
			}
			if math.Abs(total-1) > 1e-9 {
				t.Errorf("verdict probabilities sum to %v, want 1", total)
			}
			var got []string
			for _, b := range res.Backends {
				got = append(got, netip.AddrPortFrom(netip.MustParseAddr(b.IP), b.Port).String())
				want := tc.Masq || tc.Hairpin == b.IP
				if b.Masquerade != want {
					t.Errorf("backend %s:%d masquerade = %v (%s), want %v", b.IP, b.Port, b.Masquerade, b.MasqueradeReason, want)
				}
				if tc.Equal && math.Abs(b.Probability-1/float64(len(res.Backends))) > 1e-6 {
					t.Errorf("backend %s share %v, want 1/%d", b.IP, b.Probability, len(res.Backends))
				}
			}
			sort.Strings(got)
			out := strings.Join(got, ", ")
			if len(got) == 0 {
				out = string(res.Verdicts[0].Verdict)
			} else if len(res.Verdicts) > 1 {
				t.Errorf("mixed verdicts %+v", res.Verdicts)
			}
			if out != tc.Output {
				t.Errorf("output %q, want %q (verdicts %+v)", out, tc.Output, res.Verdicts)
			}
			if res.AffinitySeconds != tc.Affinity {
				t.Errorf("affinity %ds, want %ds", res.AffinitySeconds, tc.Affinity)
			}
		})
	}
}

// FindingKinds lists a check's findings at or above min as "Kind service", sorted.
func FindingKinds(res *trace.CheckResult, min trace.Severity) []string {
	var out []string
	for _, f := range res.Findings {
		if f.Severity.Rank() >= min.Rank() {
			out = append(out, f.Kind+" "+f.Service)
		}
	}
	sort.Strings(out)
	return out
}
