package tracetest

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/svctrace/svctrace/trace"
)

// GotoLoop is three chains that goto each other, one of them splitting on every turn: a walk of
// it once ran for ten minutes and wrote 150 MB of tree. The work budget now stops it.
const GotoLoop = `*nat
:PREROUTING ACCEPT [0:0]
:KUBE-A - [0:0]
:KUBE-B - [0:0]
:KUBE-C - [0:0]
-A PREROUTING -j KUBE-A
-A KUBE-A -m statistic --mode random --probability 0.5 -g KUBE-B
-A KUBE-A -g KUBE-C
-A KUBE-B -g KUBE-C
-A KUBE-C -g KUBE-A
COMMIT
`

// MeasuredWalk walks the packet and returns the walk, the time it took and the MiB it allocated.
func MeasuredWalk(t testing.TB, dp trace.Dataplane, pkt trace.Packet, node *trace.NodeContext) (*trace.Walk, time.Duration, uint64) {
	t.Helper()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	w, err := dp.Walk(context.Background(), pkt, node)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	return w, took, (after.TotalAlloc - before.TotalAlloc) >> 20
}

// ReadFixture reads a file of a recorded fixture directory.
func ReadFixture(t testing.TB, dir, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(dir + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
