package xtables

import (
	"testing"

	"github.com/svctrace/svctrace/test/tracetest"
)

// benchDump is the large dump recorded by hack/bench-dump.sh: 10,000 Services x 10 endpoints as
// the real kube-proxy v1.36.3 programmed them (rule comments dropped, as above 1000 endpoints).
func benchDump(b *testing.B) []byte {
	return tracetest.BenchFile(b, "iptables-10000x10/iptables-save.txt")
}

// BenchmarkParse measures parse+index (every rule parsed, every jump resolved) on one core.
func BenchmarkParse(b *testing.B) {
	data := benchDump(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
