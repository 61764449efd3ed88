package render

import (
	"encoding/xml"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"github.com/svctrace/svctrace/trace"
)

// JUnit is the extra format `check` accepts, for CI systems.
const JUnit Format = "junit"

// CheckReport is `check`'s machine-readable output.
type CheckReport struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Nodes      []CheckNode     `json:"nodes"`
	Findings   []trace.Finding `json:"findings"`
	Summary    map[string]int  `json:"summary"`
	results    []*trace.CheckResult
}

// CheckNode summarises one node.
type CheckNode struct {
	Node    string `json:"node"`
	Mode    string `json:"mode"`
	Checked int    `json:"checked"`
	// ReportedBy is "agent" for a node not read because its svctrace agent reports it healthy.
	ReportedBy string `json:"reportedBy,omitempty"`
}

// NewCheckReport merges the nodes' results.
func NewCheckReport(results []*trace.CheckResult) *CheckReport {
	r := &CheckReport{APIVersion: trace.APIVersion, Kind: "Check", Nodes: []CheckNode{}, Findings: []trace.Finding{}, Summary: map[string]int{}, results: results}
	for _, res := range results {
		r.Nodes = append(r.Nodes, CheckNode{Node: res.Node, Mode: res.Mode, Checked: res.Checked, ReportedBy: res.ReportedBy})
		r.Findings = append(r.Findings, res.Findings...)
		for _, f := range res.Findings {
			r.Summary[string(f.Severity)]++
		}
	}
	sort.SliceStable(r.Findings, func(i, j int) bool {
		a, b := r.Findings[i], r.Findings[j]
		if a.Severity.Rank() != b.Severity.Rank() {
			return a.Severity.Rank() > b.Severity.Rank()
		}
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		return a.Kind < b.Kind
	})
	return r
}

// Check prints a check report.
func Check(w io.Writer, r *CheckReport, o Options) error {
	switch {
	case o.Format.Machine():
		return Machine(w, r, o.Format)
	case o.Format == JUnit:
		return junit(w, r, o.FailRank)
	}
	s := newStyles(w, o)
	var b strings.Builder
	for _, n := range r.Nodes {
		line := fmt.Sprintf("node %s (%s mode): %d Service ports checked", n.Node, n.Mode, n.Checked)
		if n.ReportedBy == "agent" {
			line = fmt.Sprintf("node %s: healthy, as its svctrace agent reports (not read)", n.Node)
		}
		fmt.Fprintf(&b, "%s\n", s.dim.Render(line))
	}
	if len(r.Findings) == 0 {
		b.WriteString(s.ok.Render("no findings: the dataplane does what the API says") + "\n")
		_, err := io.WriteString(w, wrapProse(b.String(), s.width))
		return err
	}
	t := newTable(s, "SEVERITY", "KIND", "SERVICE", "NODE", "MESSAGE")
	for _, g := range groupFindings(r) {
		f := g.finding
		sev := string(f.Severity)
		switch f.Severity {
		case trace.SeverityError:
			sev = s.bad.Render(sev)
		case trace.SeverityWarning:
			sev = s.warn.Render(sev)
		}
		svc := f.Service
		if svc == "" {
			svc = "-"
		}
		node := f.Node
		if len(g.nodes) > 1 {
			node = fmt.Sprintf("%d of %d nodes", len(g.nodes), len(r.Nodes))
			if o.Format == Wide {
				node += " (" + strings.Join(g.nodes, ",") + ")"
			}
		}
		t.Row(sev, f.Kind, svc, node, g.message)
	}
	b.WriteString(tableText(s, t))
	fmt.Fprintf(&b, "\n%d error(s), %d warning(s), %d info\n", r.Summary["error"], r.Summary["warning"], r.Summary["info"])
	_, err := io.WriteString(w, wrapProse(b.String(), s.width))
	return err
}

// findingGroup is one finding as several nodes report it: the table shows it once, "on 400 of
// 400 nodes", where each node's own name in the message reads "<node>".
type findingGroup struct {
	finding trace.Finding
	message string
	nodes   []string
}

// groupFindings merges the findings that differ only by node (a fleet run), in report order.
func groupFindings(r *CheckReport) []findingGroup {
	var out []findingGroup
	index := map[string]int{}
	names := map[string]*regexp.Regexp{}
	for _, f := range r.Findings {
		msg := f.Message
		if len(r.Nodes) > 1 && f.Node != "" {
			re := names[f.Node]
			if re == nil {
				re = nodeName(f.Node)
				names[f.Node] = re
			}
			msg = re.ReplaceAllString(msg, "${1}<node>${2}")
		}
		key := strings.Join([]string{string(f.Severity), f.Kind, f.Service, msg}, "\x00")
		if i, ok := index[key]; ok && len(r.Nodes) > 1 {
			out[i].nodes = append(out[i].nodes, f.Node)
			continue
		}
		index[key] = len(out)
		out = append(out, findingGroup{finding: f, message: msg, nodes: []string{f.Node}})
	}
	for i := range out {
		if len(out[i].nodes) == 1 {
			out[i].message = out[i].finding.Message
		}
	}
	return out
}

// nodeName matches a node's name as a word of a message.
func nodeName(n string) *regexp.Regexp {
	return regexp.MustCompile(`(^|[^A-Za-z0-9.-])` + regexp.QuoteMeta(n) + `($|[^A-Za-z0-9-])`)
}

type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Name    string       `xml:"name,attr"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Class   string         `xml:"classname,attr"`
	Name    string         `xml:"name,attr"`
	Failure []junitFailure `xml:"failure,omitempty"`
	Out     string         `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Type    string `xml:"type,attr"`
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

// junit writes one suite with one test case per Service port that has findings, on any node
// (node-level findings are the case "(node)"): a finding at or above --fail-on (failRank) is a
// failure, naming the nodes; the others are the case's output, not failures. One passing case
// stands for the Service ports that agree with the API.
func junit(w io.Writer, r *CheckReport, failRank int) error {
	suite := junitSuite{Name: "svctrace check"}
	cases := map[string]*junitCase{}
	var order []string
	for _, g := range groupFindings(r) {
		f := g.finding
		name := f.Service
		if name == "" {
			name = "(node)"
		}
		c := cases[name]
		if c == nil {
			c = &junitCase{Class: "svctrace", Name: name}
			cases[name] = c
			order = append(order, name)
		}
		where := "node " + strings.Join(g.nodes, ", ")
		if len(g.nodes) > 1 {
			where = fmt.Sprintf("%d of %d nodes: %s", len(g.nodes), len(r.Nodes), strings.Join(g.nodes, ", "))
		}
		if f.Severity.Rank() >= failRank {
			c.Failure = append(c.Failure, junitFailure{Type: f.Kind, Message: g.message, Text: strings.Join(append([]string{where}, f.Evidence...), "\n")})
			continue
		}
		c.Out += fmt.Sprintf("%s %s (%s): %s\n", f.Severity, f.Kind, where, g.message)
	}
	checked := 0
	for _, res := range r.results {
		checked += res.Checked
	}
	for _, name := range order {
		suite.Cases = append(suite.Cases, *cases[name])
		if len(cases[name].Failure) > 0 {
			suite.Failures++
		}
	}
	suite.Cases = append(suite.Cases, junitCase{Class: "svctrace", Name: fmt.Sprintf("the other Service ports agree with the API (%d checked on %d node(s))", checked, len(r.Nodes))})
	suite.Tests = len(suite.Cases)
	out := junitSuites{Name: "svctrace check", Suites: []junitSuite{suite}}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
