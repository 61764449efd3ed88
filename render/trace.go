package render

import (
	"fmt"
	"io"
	"strings"

	"github.com/charmbracelet/lipgloss/tree"

	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/kubeproxy/naming"
)

// Trace prints a trace result.
func Trace(w io.Writer, res *trace.Result, o Options) error {
	if o.Format == JSON {
		return traceJSON(w, res)
	}
	if o.Format == Mermaid || o.Format == Dot {
		return Graph(w, res, o.Format, o.Details)
	}
	if o.Format.Machine() {
		return Machine(w, res, o.Format)
	}
	s := newStyles(w, o)
	var b strings.Builder
	head := fmt.Sprintf("%s %s → %s:%d", res.Packet.Protocol, res.Packet.Src, res.Packet.Dst, res.Packet.Port)
	what := "not a known Service address"
	if res.Service != nil {
		what = fmt.Sprintf("%s (%s)", res.Service, res.Service.Type)
	}
	from := res.Packet.From
	if from != "" {
		from = "from " + from + ", "
	}
	fmt.Fprintf(&b, "%s  %s\n", s.title.Render(head), s.dim.Render(fmt.Sprintf("%s%s, node %s, %s mode", from, what, res.Node, res.Mode)))

	root := tree.Root(s.dim.Render(hookLabel(res))).Enumerator(tree.RoundedEnumerator).EnumeratorStyle(s.dim)
	for _, h := range res.Hops {
		addHop(root, h, 1, s, o.Details)
	}
	b.WriteString(fit(root.String(), s.width))
	b.WriteString("\n")

	if len(res.Backends) > 0 {
		b.WriteString("\n")
		t := newTable(s, "BACKEND", "SHARE", "POD", "READY", "NODE", "SOURCE")
		for _, be := range res.Backends {
			pod, ready, node := "-", "-", be.Node
			if be.Pod != nil {
				pod = be.Pod.Namespace + "/" + be.Pod.Name
			}
			if be.Ready != nil {
				ready = map[bool]string{true: "yes", false: "NO"}[*be.Ready]
			}
			if node == "" {
				node = "-"
			}
			src := "kept"
			if be.Masquerade {
				src = "masqueraded"
			}
			t.Row(fmt.Sprintf("%s:%d", be.IP, be.Port), percent(be.Probability), pod, ready, node, src)
		}
		b.WriteString(strings.TrimRight(tableText(s, t), "\n"))
		b.WriteString("\n")
	}
	if len(res.Verdicts) > 0 {
		b.WriteString("\n")
		for _, v := range res.Verdicts {
			line := fmt.Sprintf("%-7s %6s", v.Verdict, percent(v.Probability))
			if v.Reason != "" {
				line += "  " + v.Reason
			} else if v.Verdict == trace.DNAT {
				line += fmt.Sprintf("  to %d backend(s)", len(res.Backends))
			}
			st := s.ok
			if v.Verdict == trace.Reject || v.Verdict == trace.Drop {
				st = s.bad
			} else if v.Verdict == trace.Accept {
				st = s.warn
			}
			b.WriteString(st.Render(line) + "\n")
		}
	}
	if res.AffinitySeconds > 0 {
		fmt.Fprintf(&b, "\nsession affinity: a client's first connection is split as above; its later connections within %ds go to the same backend\n", res.AffinitySeconds)
	}
	writeFindings(&b, res.Findings, s)
	var notes []string
	for _, n := range res.Notes {
		if !findingSays(res.Findings, n) {
			notes = append(notes, n)
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n" + s.dim.Render("notes:") + "\n")
		for _, n := range notes {
			b.WriteString(s.dim.Render("  - "+n) + "\n")
		}
	}
	_, err := io.WriteString(w, wrapProse(b.String(), s.width))
	return err
}

func hookLabel(res *trace.Result) string {
	for _, h := range res.Hops {
		// iptables' OUTPUT chains, nftables' output-hook chains (nat-output, filter-output-…)
		if strings.Contains(strings.ToLower(h.Chain), "output") {
			return "OUTPUT (a process on the node)"
		}
	}
	return "PREROUTING (arriving on the node)"
}

func writeFindings(b *strings.Builder, fs []trace.Finding, s *styles) {
	if len(fs) == 0 {
		return
	}
	b.WriteString("\n")
	for _, f := range fs {
		st := s.dim
		switch f.Severity {
		case trace.SeverityError:
			st = s.bad
		case trace.SeverityWarning:
			st = s.warn
		}
		fmt.Fprintf(b, "%s %s\n", st.Render(fmt.Sprintf("%-7s %s:", f.Severity, f.Kind)), f.Message)
	}
}

// addHop adds a hop and its children; hidden detail hops pass their children up. A hop that
// carries less traffic than its parent shows its share.
func addHop(parent *tree.Tree, h *trace.Hop, parentP float64, s *styles, details bool) {
	if h.Detail && !details {
		for _, c := range h.Children {
			addHop(parent, c, parentP, s, details)
		}
		return
	}
	label := hopLabel(h, h.Probability < parentP-1e-9, s)
	if len(h.Children) == 0 {
		parent.Child(label)
		return
	}
	node := tree.Root(label)
	for _, c := range h.Children {
		addHop(node, c, h.Probability, s, details)
	}
	parent.Child(node)
}

func hopLabel(h *trace.Hop, showShare bool, s *styles) string {
	share := ""
	if showShare {
		share = s.pct.Render(percent(h.Probability)) + " "
	}
	if h.Verdict != nil {
		return share + verdictLabel(h, s)
	}
	loc := h.Chain
	if h.Table != "" && h.Table != "nat" && !strings.HasSuffix(h.Table, " kube-proxy") {
		loc = h.Table + " " + h.Chain
	}
	if h.Line > 0 {
		loc += fmt.Sprintf(":%d", h.Line)
	}
	label := share + s.rule.Render(loc) + " " + h.Action
	if c := naming.RuleComment(h.Rule); c != "" {
		label += s.dim.Render(fmt.Sprintf("  %q", c))
	} else if h.Line == 0 && h.Rule != "" {
		// nftables rules carry no comments; their own text says what they match.
		label += s.dim.Render("  [" + h.Rule + "]")
	}
	if h.Note != "" {
		label += s.warn.Render("  (" + h.Note + ")")
	}
	return label
}

func verdictLabel(h *trace.Hop, s *styles) string {
	v := h.Verdict
	switch v.Verdict {
	case trace.DNAT:
		be := h.Backend
		if be == nil {
			return s.ok.Render("→ backend")
		}
		label := s.ok.Render(fmt.Sprintf("→ %s:%d", be.IP, be.Port))
		if be.Pod != nil {
			state := ""
			if be.Ready != nil && !*be.Ready {
				state = ", NOT READY"
			}
			node := be.Node
			if node == "" {
				node = "?"
			}
			label += fmt.Sprintf(" pod %s/%s (%s%s)", be.Pod.Namespace, be.Pod.Name, node, state)
		} else {
			label += s.warn.Render(" (no pod known for this address)")
		}
		if be.Masquerade {
			label += s.dim.Render(" · source masqueraded: " + be.MasqueradeReason)
		} else {
			label += s.dim.Render(" · source kept")
		}
		return label
	case trace.Reject, trace.Drop:
		return s.bad.Render(fmt.Sprintf("✗ %s: %s", v.Verdict, v.Reason))
	}
	return s.warn.Render("○ " + v.Reason)
}

func findingSays(fs []trace.Finding, msg string) bool {
	for _, f := range fs {
		if f.Message == msg {
			return true
		}
	}
	return false
}
