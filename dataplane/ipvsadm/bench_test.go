package ipvsadm

import (
	"testing"

	"github.com/svctrace/svctrace/test/tracetest"
)

// benchTable is `ipvsadm -Ln` of 10,000 Services x 10 endpoints programmed by the real kube-proxy
// v1.36.3 in IPVS mode in the QEMU guest (hack/bench-dump.sh).
func benchTable(b *testing.B, name string) []byte {
	return tracetest.BenchFile(b, "ipvs-10000x10/"+name)
}

func BenchmarkParseIPVSList(b *testing.B) {
	data := benchTable(b, "ipvsadm-Ln.txt")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseList(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseIPVSSave(b *testing.B) {
	data := benchTable(b, "ipvsadm-Sn.txt")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseSave(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseIPSet(b *testing.B) {
	data := benchTable(b, "ipset-save.txt")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseIPSet(data); err != nil {
			b.Fatal(err)
		}
	}
}
