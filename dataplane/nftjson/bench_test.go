package nftjson

import (
	"context"
	"net/netip"
	"testing"

	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/nftables"
)

// benchRuleset is `nft -j list ruleset` of 10,000 Services x 10 endpoints programmed by the real
// kube-proxy v1.36.3 in nftables mode (hack/bench-dump.sh).
func benchRuleset(b *testing.B) []byte {
	return tracetest.BenchFile(b, "nftables-10000x10/nft.json")
}

func BenchmarkParseNft(b *testing.B) {
	data := benchRuleset(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseReaderNft is BenchmarkParseNft read in 64 KB reads, as from a pipe: what
// parsing while the text arrives costs when it all arrives at once.
func BenchmarkParseReaderNft(b *testing.B) {
	data := benchRuleset(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseReader(&chunks{data: data, sizes: []int{64 << 10}}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTraceWarmNft(b *testing.B) {
	rs, err := Parse(benchRuleset(b))
	if err != nil {
		b.Fatal(err)
	}
	dp := &nftables.Dataplane{Rules: rs}
	node := &trace.NodeContext{Name: "node1", Local: []netip.Addr{netip.MustParseAddr("172.31.250.2")}}
	// A service in the middle of the map: svc-05000 is the 5001st cluster IP allocated... any
	// member of service-ips will do; take one from the map.
	var vip netip.Addr
	for _, t := range rs.Tables {
		if s := t.Sets["cluster-ips"]; s != nil && len(s.Elems) > 0 {
			vip, _ = netip.ParseAddr(s.Elems[len(s.Elems)/2].Key.(string))
		}
	}
	pkt := trace.Packet{Src: netip.MustParseAddr("10.244.1.254"), Dst: vip, DstPort: 80, Protocol: trace.TCP}
	b.ReportAllocs()
	for b.Loop() {
		w, err := dp.Walk(context.Background(), pkt, node)
		if err != nil {
			b.Fatal(err)
		}
		if len(w.Paths) != 10 {
			b.Fatalf("%d paths, want 10", len(w.Paths))
		}
	}
}
