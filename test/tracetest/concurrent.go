package tracetest

import (
	"context"
	"encoding/json"
	"runtime"
	"testing"

	"github.com/svctrace/svctrace/trace"
)

// SameCheckConcurrently runs check on dp one Service port at a time (GOMAXPROCS 1) and then on
// four goroutines, three times each on a fresh dataplane from load (whose lazy indexes are built
// by whichever walk comes first), and fails unless every result is the same. Run under -race
// (make test does), it also fails on a data race in the walk.
func SameCheckConcurrently(t *testing.T, load func() trace.Dataplane, cl *trace.Cluster, node string, scope trace.CheckScope) *trace.CheckResult {
	t.Helper()
	run := func(procs int) (*trace.CheckResult, string) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		res, err := trace.Check(context.Background(), load(), cl, cl.NodeContextFor(node, nil), scope)
		if err != nil {
			t.Fatal(err)
		}
		out, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		return res, string(out)
	}
	res, want := run(1)
	for range 3 {
		if _, got := run(4); got != want {
			t.Fatalf("check on four goroutines differs from check on one:\n got %s\nwant %s", got, want)
		}
	}
	return res
}
