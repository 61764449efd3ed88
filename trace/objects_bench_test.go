package trace_test

import (
	"testing"

	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
)

// BenchmarkDecodeObjects: the API objects of the recorded 10,000 x 10 cluster (make bench-dump
// MODES=iptables: `kubectl get -o json` of its Services, EndpointSlices, Pods and Nodes), as check
// --objects reads them.
func BenchmarkDecodeObjects(b *testing.B) {
	data := tracetest.BenchFile(b, "iptables-10000x10/objects.json")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := trace.DecodeObjects(data); err != nil {
			b.Fatal(err)
		}
	}
}
