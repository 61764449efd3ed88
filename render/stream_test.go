package render

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/svctrace/svctrace/trace"
)

// TestTraceJSONIsMarshalIndent: the hop-by-hop writer prints exactly what json.MarshalIndent
// prints, for no hops, an empty list, leaves, nesting, and text JSON escapes (<, >, &, quotes).
func TestTraceJSONIsMarshalIndent(t *testing.T) {
	leaf := func(a string) *trace.Hop {
		return &trace.Hop{Table: "nat", Chain: "KUBE-SEP-X", Line: 7, Rule: `-A X -m comment --comment "a -> b & <c>"`, Action: a, Probability: 0.5, Branch: 0.5,
			Verdict: &trace.VerdictInfo{Verdict: trace.DNAT, Probability: 0.5}, Backend: &trace.Backend{IP: "10.0.0.1", Port: 80}}
	}
	tree := []*trace.Hop{{Table: "nat", Chain: "PREROUTING", Action: "jump KUBE-SERVICES", Probability: 1, Branch: 1, Children: []*trace.Hop{
		{Chain: "KUBE-SVC-Y", Action: "jump", Probability: 1, Branch: 1, Note: "x", Children: []*trace.Hop{leaf("DNAT to 10.0.0.1:80"), leaf("DNAT to 10.0.0.2:80")}},
		leaf("DROP"),
	}}}
	for name, hops := range map[string][]*trace.Hop{"nil": nil, "empty": {}, "one leaf": {leaf("DNAT")}, "tree": tree} {
		res := &trace.Result{APIVersion: "svctrace/v1", Kind: "Trace", Node: "n", Hops: hops, Findings: []trace.Finding{{Kind: "K", Message: "m <&>"}}}
		want, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := traceJSON(&got, res); err != nil {
			t.Fatal(err)
		}
		if got.String() != string(want)+"\n" {
			t.Errorf("%s: the streamed JSON differs:\n%s\nwant:\n%s", name, got.String(), want)
		}
	}
}
