package render

import (
	"strings"
	"testing"

	"github.com/svctrace/svctrace/trace"
)

func TestBalanceNodesTable(t *testing.T) {
	r := &trace.BalanceAcrossNodes{
		Overall: &trace.BalanceResult{Node: "all nodes", Service: &trace.ServiceRef{Namespace: "default", Name: "api"}, Diagnosis: trace.ConnectionStickiness, Message: "m",
			Backends: []trace.BalanceBackend{{Backend: "10.0.0.1:80", Expected: 0.5, ByteShare: 0.9}, {Backend: "10.0.0.2:80", Expected: 0.5, ByteShare: 0.1}}},
		Nodes: []trace.NodeBalance{{Node: "node-a", Diagnosis: trace.Balanced, Connections: 12, Bytes: 3400, MaxOverMean: 1.1}, {Node: "node-b", Diagnosis: trace.ConnectionStickiness, Connections: 3, MaxOverMean: 1.9}},
	}
	var b strings.Builder
	if err := BalanceNodes(&b, r, Options{}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"default/api", "on node all nodes", "ConnectionStickiness: m", "NODE", "node-a", "3400", "1.90", "node-b"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("colour without a terminal:\n%s", out)
	}
	b.Reset()
	if err := BalanceNodes(&b, r, Options{Format: JSON}); err != nil || !strings.Contains(b.String(), `"node": "node-b"`) {
		t.Errorf("json: %v\n%s", err, b.String())
	}
}
