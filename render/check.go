package render

import (
	"encoding/xml"
	"fmt"
	"io"
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
		return junit(w, r)
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
		_, err := io.WriteString(w, b.String())
		return err
	}
	t := newTable(s, "SEVERITY", "KIND", "SERVICE", "NODE", "MESSAGE")
	for _, f := range r.Findings {
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
		t.Row(sev, f.Kind, svc, f.Node, f.Message)
	}
	b.WriteString(tableText(s, t))
	fmt.Fprintf(&b, "\n%d error(s), %d warning(s), %d info\n", r.Summary["error"], r.Summary["warning"], r.Summary["info"])
	_, err := io.WriteString(w, b.String())
	return err
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
}

type junitFailure struct {
	Type    string `xml:"type,attr"`
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

// junit writes one suite per node and one test case per Service with findings (warnings and
// errors fail it; infos are left out), plus one passing case for the rest.
func junit(w io.Writer, r *CheckReport) error {
	out := junitSuites{Name: "svctrace check"}
	for _, res := range r.results {
		suite := junitSuite{Name: "node " + res.Node}
		cases := map[string]*junitCase{}
		var order []string
		for _, f := range res.Findings {
			if f.Severity == trace.SeverityInfo {
				continue
			}
			name := f.Service
			if name == "" {
				name = "(node)"
			}
			c := cases[name]
			if c == nil {
				c = &junitCase{Class: "svctrace." + res.Node, Name: name}
				cases[name] = c
				order = append(order, name)
			}
			c.Failure = append(c.Failure, junitFailure{Type: f.Kind, Message: f.Message, Text: strings.Join(f.Evidence, "\n")})
		}
		for _, name := range order {
			suite.Cases = append(suite.Cases, *cases[name])
			suite.Failures++
		}
		rest := fmt.Sprintf("the other Service ports of the %d checked agree with the API", res.Checked)
		if res.ReportedBy == "agent" {
			rest = "its svctrace agent reports the dataplane agrees with the API"
		}
		suite.Cases = append(suite.Cases, junitCase{Class: "svctrace." + res.Node, Name: rest})
		suite.Tests = len(suite.Cases)
		out.Suites = append(out.Suites, suite)
	}
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
