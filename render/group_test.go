package render

import (
	"strings"
	"testing"

	"github.com/svctrace/svctrace/trace"
)

// TestFleetFindingsAreGrouped: the same finding on several nodes is one row, "on N of M nodes",
// each node's name in the message read as <node>; -o wide names the nodes; JSON keeps every node's.
func TestFleetFindingsAreGrouped(t *testing.T) {
	var results []*trace.CheckResult
	for _, n := range []string{"node-a", "node-b", "node-c"} {
		res := &trace.CheckResult{Node: n, Mode: "iptables", Checked: 10, Findings: []trace.Finding{
			{Kind: trace.StaleService, Severity: trace.SeverityError, Service: "default/sticky:http", Node: n, Message: "on " + n + " the rules still send default/sticky to 10.244.1.9"},
		}}
		if n == "node-b" {
			res.Findings = append(res.Findings, trace.Finding{Kind: trace.NoEndpoints, Severity: trace.SeverityWarning, Service: "default/web:http", Node: n, Message: "node-b alone"})
		}
		results = append(results, res)
	}
	r := NewCheckReport(results)
	var b strings.Builder
	if err := Check(&b, r, Options{Format: Human}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.Count(out, "StaleService") != 1 || !strings.Contains(out, "3 of 3 nodes") || !strings.Contains(out, "on <node> the rules still send") || !strings.Contains(out, "node-b alone") {
		t.Errorf("grouped table:\n%s", out)
	}
	b.Reset()
	if err := Check(&b, r, Options{Format: Wide}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "3 of 3 nodes (node-a,node-b,node-c)") {
		t.Errorf("wide table:\n%s", b.String())
	}
	b.Reset()
	if err := Check(&b, r, Options{Format: JSON}); err != nil {
		t.Fatal(err)
	}
	if strings.Count(b.String(), `"kind": "StaleService"`) != 3 {
		t.Errorf("JSON should keep each node's finding:\n%s", b.String())
	}
}

// TestJUnitFollowsFailOn: one test case per Service port across the nodes; a warning is a
// failure only when --fail-on says so, else the case's output.
func TestJUnitFollowsFailOn(t *testing.T) {
	var results []*trace.CheckResult
	for _, n := range []string{"node-a", "node-b"} {
		results = append(results, &trace.CheckResult{Node: n, Mode: "nftables", Checked: 5, Findings: []trace.Finding{
			{Kind: trace.StaleEndpoint, Severity: trace.SeverityError, Service: "default/web:http", Node: n, Message: "stale on " + n},
			{Kind: trace.NotReadyEndpoint, Severity: trace.SeverityWarning, Service: "default/api:http", Node: n, Message: "not ready"},
		}})
	}
	r := NewCheckReport(results)
	for _, tc := range []struct {
		rank     int
		failures string
	}{
		{trace.SeverityError.Rank(), `failures="1"`},
		{trace.SeverityWarning.Rank(), `failures="2"`},
	} {
		var b strings.Builder
		if err := Check(&b, r, Options{Format: JUnit, FailRank: tc.rank}); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if strings.Count(out, "<testsuite ") != 1 || !strings.Contains(out, tc.failures) || strings.Count(out, `name="default/web:http"`) != 1 ||
			!strings.Contains(out, "2 of 2 nodes: node-a, node-b") || !strings.Contains(out, `tests="3"`) {
			t.Errorf("rank %d:\n%s", tc.rank, out)
		}
		if tc.rank == trace.SeverityError.Rank() && !strings.Contains(out, "<system-out>warning NotReadyEndpoint (2 of 2 nodes: node-a, node-b): not ready") {
			t.Errorf("the warning below --fail-on is not the case's output:\n%s", out)
		}
	}
}
