package iptables_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/svctrace/svctrace/dataplane/xtables"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/iptables"
)

// TestASplittingLoopIsBounded: three rules that goto each other, one of them splitting on every
// turn, once ran for ten minutes and wrote 150 MB of tree. The walk now stops at trace.MaxWork
// rule steps with an error that says so.
func TestASplittingLoopIsBounded(t *testing.T) {
	rs, err := xtables.Parse([]byte(tracetest.GotoLoop))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = (&iptables.Dataplane{V4: rs}).Walk(context.Background(), trace.Packet{Src: netip.MustParseAddr("10.244.1.5"), Dst: netip.MustParseAddr("10.96.0.1"), DstPort: 80, Protocol: trace.TCP},
		&trace.NodeContext{Name: "n"})
	if !errors.Is(err, trace.ErrTooMuchWork) {
		t.Fatalf("walk: %v", err)
	}
	t.Logf("stopped after %s", time.Since(start))
}

// TestACancelledWalkStops: Ctrl-C cancels the context, and the walk returns its error instead of
// running to the end of its budget.
func TestACancelledWalkStops(t *testing.T) {
	pkt, node := bigPacket("10.96.10.10", 80)
	dp := bigIptablesService(t, 10000)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := dp.Walk(ctx, pkt, node); !errors.Is(err, context.Canceled) {
		t.Fatalf("walk with a cancelled context: %v", err)
	}
	if _, err := trace.Check(ctx, dp, tracetest.LoadObjects(t, "../../dataplane/snapshot/demo/objects.yaml"), node, trace.CheckScope{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("check with a cancelled context: %v", err)
	}
}
