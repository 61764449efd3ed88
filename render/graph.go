package render

import (
	"fmt"
	"io"
	"strings"

	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/kubeproxy/naming"
)

// Picture formats of trace: the path as a graph people paste into incident tickets.
const (
	Mermaid Format = "mermaid"
	Dot     Format = "dot"
)

// graphNode is one box of the picture: a hop or a verdict, with what it is.
type graphNode struct {
	id, label string
	// kind styles it: hop, dnat, drop (drop and reject), accept (left to the host).
	kind string
}

type graphEdge struct {
	from, to, label string
}

// tracePicture lays a trace out as boxes and arrows: the packet, each hop (detail hops folded
// into their parent unless details), and each verdict; an arrow carries the share of new
// connections when it is less than all of its parent's.
func tracePicture(res *trace.Result, details bool) ([]graphNode, []graphEdge) {
	head := fmt.Sprintf("%s %s → %s:%d", res.Packet.Protocol, res.Packet.Src, res.Packet.Dst, res.Packet.Port)
	if res.Service != nil {
		head += "\n" + res.Service.String()
	}
	head += fmt.Sprintf("\nnode %s, %s mode, %s", res.Node, res.Mode, hookLabel(res))
	nodes := []graphNode{{id: "n0", label: head, kind: "packet"}}
	var edges []graphEdge
	var add func(parent string, parentP float64, h *trace.Hop)
	add = func(parent string, parentP float64, h *trace.Hop) {
		if h.Detail && !details {
			for _, c := range h.Children {
				add(parent, parentP, c)
			}
			return
		}
		id := fmt.Sprintf("n%d", len(nodes))
		n := graphNode{id: id, kind: "hop", label: graphHopLabel(h)}
		if h.Verdict != nil {
			n.kind = strings.ToLower(string(h.Verdict.Verdict))
			if n.kind == "reject" {
				n.kind = "drop"
			}
		}
		nodes = append(nodes, n)
		e := graphEdge{from: parent, to: id}
		if h.Probability < parentP-1e-9 {
			e.label = percent(h.Probability)
		}
		edges = append(edges, e)
		for _, c := range h.Children {
			add(id, h.Probability, c)
		}
	}
	for _, h := range res.Hops {
		add("n0", 1, h)
	}
	return nodes, edges
}

func graphHopLabel(h *trace.Hop) string {
	if v := h.Verdict; v != nil {
		if v.Verdict == trace.DNAT && h.Backend != nil {
			be := h.Backend
			label := fmt.Sprintf("DNAT → %s:%d", be.IP, be.Port)
			if be.Pod != nil {
				label += fmt.Sprintf("\npod %s/%s", be.Pod.Namespace, be.Pod.Name)
				if be.Node != "" {
					label += " (" + be.Node + ")"
				}
				if be.Ready != nil && !*be.Ready {
					label += ", NOT READY"
				}
			}
			if be.Masquerade {
				label += "\nsource masqueraded"
			} else {
				label += "\nsource kept"
			}
			return label
		}
		label := string(v.Verdict)
		if v.Reason != "" {
			label += "\n" + v.Reason
		}
		return label
	}
	loc := h.Chain
	if h.Table != "" && h.Table != "nat" && !strings.HasSuffix(h.Table, " kube-proxy") {
		loc = h.Table + " " + h.Chain
	}
	if h.Line > 0 {
		loc += fmt.Sprintf(":%d", h.Line)
	}
	label := loc + "\n" + h.Action
	if c := naming.RuleComment(h.Rule); c != "" {
		label += "\n" + c
	}
	if h.Note != "" {
		label += "\n(" + h.Note + ")"
	}
	return label
}

// Graph draws a trace as Mermaid (a flowchart GitHub, GitLab and most ticket systems render) or
// Graphviz DOT.
func Graph(w io.Writer, res *trace.Result, f Format, details bool) error {
	nodes, edges := tracePicture(res, details)
	var b strings.Builder
	if f == Mermaid {
		b.WriteString("flowchart LR\n")
		for _, n := range nodes {
			fmt.Fprintf(&b, "  %s[\"%s\"]:::%s\n", n.id, mermaidText(n.label), n.kind)
		}
		for _, e := range edges {
			if e.label != "" {
				fmt.Fprintf(&b, "  %s -- \"%s\" --> %s\n", e.from, mermaidText(e.label), e.to)
			} else {
				fmt.Fprintf(&b, "  %s --> %s\n", e.from, e.to)
			}
		}
		b.WriteString("  classDef packet fill:#eef,stroke:#447\n  classDef hop fill:#fff,stroke:#888\n  classDef dnat fill:#efe,stroke:#393\n  classDef drop fill:#fee,stroke:#c33\n  classDef accept fill:#ffe,stroke:#aa3\n")
	} else {
		b.WriteString("digraph trace {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n")
		colors := map[string]string{"packet": "#eeeeff", "hop": "#ffffff", "dnat": "#eeffee", "drop": "#ffeeee", "accept": "#ffffee"}
		for _, n := range nodes {
			fmt.Fprintf(&b, "  %s [label=\"%s\", style=filled, fillcolor=\"%s\"];\n", n.id, dotText(n.label), colors[n.kind])
		}
		for _, e := range edges {
			if e.label != "" {
				fmt.Fprintf(&b, "  %s -> %s [label=\"%s\"];\n", e.from, e.to, dotText(e.label))
			} else {
				fmt.Fprintf(&b, "  %s -> %s;\n", e.from, e.to)
			}
		}
		b.WriteString("}\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// mermaidText escapes a label for a quoted Mermaid node: quotes and angle brackets as entities,
// lines as <br/>.
func mermaidText(s string) string {
	r := strings.NewReplacer(`"`, "#quot;", "<", "#lt;", ">", "#gt;", "\n", "<br/>")
	return r.Replace(s)
}

// dotText escapes a label for a quoted DOT string; lines end left-aligned.
func dotText(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\l`)
	return r.Replace(s) + `\l`
}
