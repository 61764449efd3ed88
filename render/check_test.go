package render

import (
	"strings"
	"testing"

	"github.com/svctrace/svctrace/trace"
)

// TestCheckTableNoTrailingSpaces: the table pads cells to their column, but no line ends in
// spaces, though one message is far longer than the others (issue 18: a 120-column terminal
// showed blank wrapped lines).
func TestCheckTableNoTrailingSpaces(t *testing.T) {
	res := &trace.CheckResult{Node: "node1", Mode: "iptables", Checked: 2, Findings: []trace.Finding{
		{Kind: trace.StaleFlow, Severity: trace.SeverityError, Service: "flows/dns:dns", Node: "node1", Message: strings.Repeat("a long message ", 20)},
		{Kind: trace.NoEndpoints, Severity: trace.SeverityInfo, Service: "default/x:http", Node: "node1", Message: "short"},
	}}
	var b strings.Builder
	if err := Check(&b, NewCheckReport([]*trace.CheckResult{res}), Options{}); err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(b.String(), "\n") {
		if strings.HasSuffix(l, " ") {
			t.Errorf("line %d ends in spaces: %q", i+1, l)
		}
	}
	if !strings.Contains(b.String(), "StaleFlow") || !strings.Contains(b.String(), "short") {
		t.Errorf("table:\n%s", b.String())
	}
}
