package nftables_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/dataplane/nftjson"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/nftables"
)

// bigService is the recorded nftables node with the dns Service's numgen map (the rule that
// DNATs to one of its endpoints) grown to n endpoints: the shape kube-proxy writes for a Service
// with n endpoints.
func bigService(t testing.TB, n int) *nftables.Dataplane {
	t.Helper()
	doc := tracetest.ReadNftDump(t, fixture+"/nft.json")
	grown := false
	for _, it := range doc.Nftables {
		r, ok := it["rule"].(map[string]any)
		if !ok || !strings.HasPrefix(r["chain"].(string), "service-") || !strings.Contains(r["chain"].(string), "default/dns/udp") {
			continue
		}
		for _, e := range r["expr"].([]any) {
			d, ok := e.(map[string]any)["dnat"].(map[string]any)
			if !ok {
				continue
			}
			m := d["addr"].(map[string]any)["map"].(map[string]any)
			m["key"].(map[string]any)["numgen"].(map[string]any)["mod"] = n
			var elems []any
			for i := 0; i < n; i++ {
				elems = append(elems, []any{i, map[string]any{"concat": []any{fmt.Sprintf("10.%d.%d.%d", 100+i/65536, i/256%256, i%256), 5353}}})
			}
			m["data"] = map[string]any{"set": elems}
			grown = true
		}
	}
	if !grown {
		t.Fatal("the recorded node has no numgen DNAT rule for default/dns")
	}
	rs, err := nftjson.Parse(doc.Encode(t))
	if err != nil {
		t.Fatal(err)
	}
	return &nftables.Dataplane{Rules: rs}
}

func dnsPacket() (trace.Packet, *trace.NodeContext) {
	return trace.Packet{Src: netip.MustParseAddr("10.244.1.99"), Dst: netip.MustParseAddr("10.96.10.53"), DstPort: 53, Protocol: trace.UDP},
		&trace.NodeContext{Name: "node1", Local: []netip.Addr{netip.MustParseAddr("172.31.250.2")}}
}

// TestTenThousandEndpointsNftables: a Service with 10,000 endpoints traces to exact 1/10,000
// shares, in memory linear in the endpoints (each branch once copied the map's whole text:
// 5,000 endpoints took 4.97 GB).
func TestTenThousandEndpointsNftables(t *testing.T) {
	dp := bigService(t, 10000)
	pkt, node := dnsPacket()
	w, took, alloc := tracetest.MeasuredWalk(t, dp, pkt, node)
	// Each path shows the DNAT rule; its text names a few elements and the count, not 10,000
	// (a whole trace once printed gigabytes).
	for _, st := range w.Paths[0].Steps {
		if len(st.Rule) > 2000 {
			t.Fatalf("a step's rule text is %d bytes: %.200s", len(st.Rule), st.Rule)
		}
	}
	if last := w.Paths[0].Steps[len(w.Paths[0].Steps)-1]; !strings.Contains(fmt.Sprint(w.Paths[0].Steps), "(10000 elements in all)") {
		t.Errorf("no step shows the map's size; the last: %s", last.Rule)
	}
	if len(w.Paths) != 10000 {
		t.Fatalf("%d paths, want 10000", len(w.Paths))
	}
	for _, p := range w.Paths {
		if p.Probability != 1.0/10000 {
			t.Fatalf("a path with share %v", p.Probability)
		}
	}
	t.Logf("10,000 endpoints: walked in %s, %d MiB allocated", took, alloc)
	if alloc > 300 {
		t.Errorf("the walk allocated %d MiB for 10,000 endpoints", alloc)
	}
}

// BenchmarkTraceTenThousandEndpointsNft times the walk of a Service with 10,000 endpoints.
func BenchmarkTraceTenThousandEndpointsNft(b *testing.B) {
	dp := bigService(b, 10000)
	pkt, node := dnsPacket()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dp.Walk(context.Background(), pkt, node); err != nil {
			b.Fatal(err)
		}
	}
}
