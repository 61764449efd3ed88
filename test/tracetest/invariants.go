package tracetest

import (
	"context"
	"errors"
	"math"
	"net/netip"
	"reflect"
	"testing"

	"github.com/svctrace/svctrace/trace"
)

// FuzzPackets are the packets the fuzz targets walk through whatever they parsed: a pod to a
// cluster IP, the node to itself, and the outside to a node port.
var FuzzPackets = []trace.Packet{
	{Src: netip.MustParseAddr("10.244.1.9"), Dst: netip.MustParseAddr("10.96.10.10"), DstPort: 80, Protocol: trace.TCP},
	{Src: netip.MustParseAddr("172.31.250.2"), Dst: netip.MustParseAddr("10.96.30.10"), DstPort: 80, Protocol: trace.TCP, Origin: trace.FromLocalProcess},
	{Src: netip.MustParseAddr("192.0.2.10"), Dst: netip.MustParseAddr("172.31.250.2"), DstPort: 30080, Protocol: trace.TCP},
}

// WalkInvariants walks the fuzz packets through dp and fails on a walk that breaks what every
// walk must keep: the shares of its paths are probabilities that sum to 1, every step names the
// table and chain of the rule it passed, and a DNAT names its backend. A walk that refuses (too
// much work, too many paths) is fine; a panic is not.
func WalkInvariants(t *testing.T, dp trace.Dataplane) {
	t.Helper()
	node := &trace.NodeContext{Name: "n", Local: []netip.Addr{netip.MustParseAddr("172.31.250.2")}}
	for _, p := range FuzzPackets {
		w, err := dp.Walk(context.Background(), p, node)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				t.Fatalf("walk cancelled without a cancellation: %v", err)
			}
			continue
		}
		sum := 0.0
		for _, path := range w.Paths {
			if math.IsNaN(path.Probability) || path.Probability < 0 || path.Probability > 1+1e-9 {
				t.Fatalf("%s: a path with share %v", p.Dst, path.Probability)
			}
			sum += path.Probability
			for _, s := range path.Steps {
				if s.Table == "" || s.Chain == "" {
					t.Fatalf("%s: a step without its table or chain: %+v", p.Dst, s)
				}
			}
			if path.Verdict.Kind == trace.DNAT && !path.Verdict.Backend.IsValid() {
				t.Fatalf("%s: a DNAT without a backend", p.Dst)
			}
		}
		if len(w.Paths) > 0 && math.Abs(sum-1) > 1e-6 {
			t.Fatalf("%s: the paths' shares sum to %v, not 1", p.Dst, sum)
		}
	}
}

// SameWalk walks p on two dataplanes and fails the test when the second walks it otherwise than
// the first (or either fails): a scoped read against the whole ruleset.
func SameWalk(t *testing.T, want, got trace.Dataplane, p trace.Packet, node *trace.NodeContext) {
	t.Helper()
	ctx := context.Background()
	w, err := want.Walk(ctx, p, node)
	if err != nil {
		t.Fatal(err)
	}
	g, err := got.Walk(ctx, p, node)
	if err != nil {
		t.Fatalf("%v: %v", p, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%v: the walks differ:\n got %+v\nwant %+v", p, g.Paths, w.Paths)
	}
}

// SameWithoutSteps walks every entry of dp (a pod's packet to each Service address) with and
// without steps (trace.WithoutSteps) and fails unless both give the same paths apart from the
// steps, and the walk without steps has none.
func SameWithoutSteps(t *testing.T, dp trace.Dataplane, node *trace.NodeContext) {
	t.Helper()
	l, ok := dp.(trace.Lister)
	if !ok {
		t.Fatalf("%T lists no entries", dp)
	}
	packets := PacketsTo(l.Entries())
	if len(packets) == 0 {
		t.Fatal("no entries to walk")
	}
	for _, p := range packets {
		full, err := dp.Walk(context.Background(), p, node)
		if err != nil {
			t.Fatal(err)
		}
		bare, err := dp.Walk(trace.WithoutSteps(context.Background()), p, node)
		if err != nil {
			t.Fatal(err)
		}
		if len(full.Paths) != len(bare.Paths) {
			t.Fatalf("%s: %d paths with steps, %d without", p, len(full.Paths), len(bare.Paths))
		}
		for i := range full.Paths {
			a, b := full.Paths[i], bare.Paths[i]
			if len(b.Steps) != 0 || len(a.Steps) == 0 {
				t.Fatalf("%s: path %d has %d steps with them and %d without", p, i, len(a.Steps), len(b.Steps))
			}
			a.Steps, a.MasqueradeReason, b.MasqueradeReason = nil, "", ""
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("%s: path %d differs without steps:\n%+v\n%+v", p, i, a, b)
			}
		}
	}
}
