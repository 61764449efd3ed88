package render

import (
	"fmt"
	"io"
	"strings"

	"github.com/svctrace/svctrace/trace"
)

// Balance prints a balance result: per-backend shares as bars, the statistics and the diagnosis.
func Balance(w io.Writer, r *trace.BalanceResult, o Options) error {
	if o.Format.Machine() {
		return Machine(w, r, o.Format)
	}
	s := newStyles(w, o)
	var b strings.Builder
	name := "?"
	if r.Service != nil {
		name = r.Service.String()
	}
	fmt.Fprintf(&b, "%s  %s\n", s.title.Render(name), s.dim.Render("on node "+r.Node))
	t := newTable(s, "BACKEND", "POD", "EXPECTED", "CONNS", "TRAFFIC", "")
	for _, be := range r.Backends {
		pod := "-"
		if be.Pod != nil {
			pod = be.Pod.Namespace + "/" + be.Pod.Name
		}
		t.Row(be.Backend, pod, percent(be.Expected), fmt.Sprintf("%d (%s)", be.Connections, percent(be.ConnectionShare)), percent(be.ByteShare), bar(s, be.ByteShare, be.Expected))
	}
	b.WriteString(tableText(s, t) + "\n")
	fmt.Fprintf(&b, "%s\n", s.dim.Render(fmt.Sprintf("traffic: max/mean %.2f, min/mean %.2f, coefficient of variation %.2f; connections vs the dataplane's shares: chi-square %.1f, p=%.3g",
		r.MaxOverMean, r.MinOverMean, r.CV, r.ChiSquare, r.ChiSquareP)))
	st := s.ok
	if r.Diagnosis == trace.ConnectionStickiness || r.Diagnosis == trace.SkewedRules {
		st = s.bad
	} else if r.Diagnosis == trace.TooLittleTraffic {
		st = s.warn
	}
	fmt.Fprintf(&b, "\n%s %s\n", st.Render(r.Diagnosis+":"), r.Message)
	for _, rec := range r.Recommendations {
		fmt.Fprintf(&b, "  - %s\n", rec)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "%s\n", s.dim.Render("note: "+n))
	}
	_, err := io.WriteString(w, wrapProse(b.String(), s.width))
	return err
}

// bar draws a share as a bar 40 cells wide at 100%, red past 1.5x the expected share.
func bar(s *styles, share, expected float64) string {
	n := int(share*40 + 0.5)
	text := strings.Repeat("█", n)
	if expected > 0 && share > 1.5*expected {
		return s.bad.Render(text)
	}
	return s.pct.Render(text)
}

// BalanceNodes prints `balance --all-nodes`: the Service's traffic over all nodes, then each
// node's part and diagnosis.
func BalanceNodes(w io.Writer, r *trace.BalanceAcrossNodes, o Options) error {
	if o.Format.Machine() {
		return Machine(w, r, o.Format)
	}
	if err := Balance(w, r.Overall, o); err != nil {
		return err
	}
	s := newStyles(w, o)
	t := newTable(s, "NODE", "CONNS", "BYTES", "MAX/MEAN", "DIAGNOSIS")
	for _, n := range r.Nodes {
		d := s.ok.Render(n.Diagnosis)
		switch n.Diagnosis {
		case trace.ConnectionStickiness, trace.SkewedRules:
			d = s.bad.Render(n.Diagnosis)
		case trace.TooLittleTraffic:
			d = s.warn.Render(n.Diagnosis)
		}
		t.Row(n.Node, fmt.Sprint(n.Connections), fmt.Sprint(n.Bytes), fmt.Sprintf("%.2f", n.MaxOverMean), d)
	}
	_, err := io.WriteString(w, "\n"+tableText(s, t))
	return err
}
