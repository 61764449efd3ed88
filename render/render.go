// Package render prints results: lipgloss trees and tables for people, JSON and YAML (the
// versioned contract) for machines. It writes to the io.Writer it is given and decides colour
// from that writer and the environment, never from global state.
package render

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/lipgloss/table"
	"github.com/charmbracelet/x/ansi"
	"github.com/muesli/termenv"
	"golang.org/x/term"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/yaml"
)

// Format is an output format.
type Format string

// Formats every command accepts; commands add their own (junit).
const (
	Human Format = "tree"
	JSON  Format = "json"
	YAML  Format = "yaml"
	// Wide is the human format in full: lines as long as they are (on a terminal the others are
	// cut to its width), every node of a grouped finding named.
	Wide Format = "wide"
)

// templatePrefixes are kubectl's template formats, printed with cli-runtime's printers.
var templatePrefixes = []string{"jsonpath=", "jsonpath-as-json=", "jsonpath-file=", "go-template=", "go-template-file=", "template=", "templatefile="}

// ParseFormat reads -o: json, yaml, kubectl's jsonpath=…, jsonpath-as-json=…, jsonpath-file=…,
// go-template=… and go-template-file=… (the template is checked here), or the command's own
// human format (human: tree for trace, table for the others; empty means it too). Anything else
// is refused, not taken for the human format (kubectl's wide or name are not formats here).
func ParseFormat(s, human string) (Format, error) {
	switch s {
	case "json":
		return JSON, nil
	case "yaml":
		return YAML, nil
	case "", human:
		return Human, nil
	case "wide":
		return Wide, nil
	}
	for _, p := range templatePrefixes {
		if strings.HasPrefix(s, p) {
			f := Format(s)
			if _, err := f.printer(); err != nil {
				return "", err
			}
			return f, nil
		}
	}
	return "", fmt.Errorf("unknown format %q: use %s, wide, json, yaml, jsonpath=TEMPLATE or go-template=TEMPLATE", s, human)
}

// Machine reports whether the format is for programs: json, yaml or a template.
func (f Format) Machine() bool { return f == JSON || f == YAML || f.template() }

func (f Format) template() bool {
	for _, p := range templatePrefixes {
		if strings.HasPrefix(string(f), p) {
			return true
		}
	}
	return false
}

// printer is cli-runtime's printer for a template format (kubectl's own -o handling).
func (f Format) printer() (printers.ResourcePrinter, error) {
	pf := genericclioptions.NewPrintFlags("")
	out := string(f)
	pf.OutputFormat = &out
	p, err := pf.ToPrinter()
	if err != nil {
		return nil, fmt.Errorf("-o %s: %v", f, err)
	}
	return p, nil
}

// Options control human output.
type Options struct {
	Format  Format
	Details bool
	Color   bool
	// NoHeaders leaves tables without their header row (--no-headers, as kubectl).
	NoHeaders bool
	// Width cuts human output's lines to this many columns (0: as long as they are).
	Width int
	// FailRank is --fail-on's severity rank: JUnit fails a test case only for findings at or
	// above it.
	FailRank int
}

// WidthFor is the width human output to w is cut to: the terminal's, unless the format is Wide
// or w is not a terminal (then 0: lines stay whole, as kubectl leaves them in a pipe).
func WidthFor(w io.Writer, f Format) int {
	fd, ok := w.(interface{ Fd() uintptr })
	if f == Wide || !ok || !term.IsTerminal(int(fd.Fd())) {
		return 0
	}
	width, _, err := term.GetSize(int(fd.Fd()))
	if err != nil || width < 20 {
		return 0
	}
	return width
}

// wrapProse wraps the lines of text still wider than width (sentences: headers, notes, findings
// outside tables) at spaces, so that nothing is lost; tables and trees were cut by fit already.
func wrapProse(text string, width int) string {
	if width <= 0 {
		return text
	}
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if ansi.StringWidth(l) > width {
			lines[i] = strings.TrimRight(strings.ReplaceAll(ansi.Wrap(l, width, " "), " \n", "\n"), " ")
		}
	}
	return strings.Join(lines, "\n")
}

// fit cuts each line of text to width columns (ANSI colours kept), marking a cut with "…".
func fit(text string, width int) string {
	if width <= 0 {
		return text
	}
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if ansi.StringWidth(l) > width {
			lines[i] = ansi.Truncate(l, width, "…")
		}
	}
	return strings.Join(lines, "\n")
}

// ColorFor reports whether output to w may use colour: only on a terminal, never with NO_COLOR
// set or TERM=dumb.
func ColorFor(w io.Writer) bool {
	if os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// IsTerminal reports whether w is a terminal (progress lines may then rewrite themselves).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// Machine writes v as indented JSON or as YAML.
func Machine(w io.Writer, v any, f Format) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if f.template() {
		// The document as an unstructured object: it has apiVersion and kind, as kubectl's
		// printers expect.
		var obj map[string]any
		if err := json.Unmarshal(data, &obj); err != nil {
			return err
		}
		p, err := f.printer()
		if err != nil {
			return err
		}
		if err := p.PrintObj(&unstructured.Unstructured{Object: obj}, w); err != nil {
			return fmt.Errorf("-o %s: %v", f, err)
		}
		return nil
	}
	if f == YAML {
		if data, err = yaml.JSONToYAML(data); err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}

// styles holds the palette; without colour every style renders plain text.
type styles struct {
	r                                    *lipgloss.Renderer
	title, dim, ok, bad, warn, rule, pct lipgloss.Style
	noHeaders                            bool
	width                                int
}

func newStyles(w io.Writer, o Options) *styles {
	s := newColorStyles(w, o.Color)
	s.noHeaders = o.NoHeaders
	s.width = o.Width
	return s
}

func newColorStyles(w io.Writer, color bool) *styles {
	r := lipgloss.NewRenderer(w)
	if color {
		r.SetColorProfile(termenv.ANSI256)
	} else {
		r.SetColorProfile(termenv.Ascii)
	}
	return &styles{r: r,
		title: r.NewStyle().Bold(true),
		dim:   r.NewStyle().Foreground(lipgloss.Color("245")),
		ok:    r.NewStyle().Foreground(lipgloss.Color("2")),
		bad:   r.NewStyle().Foreground(lipgloss.Color("1")).Bold(true),
		warn:  r.NewStyle().Foreground(lipgloss.Color("3")),
		rule:  r.NewStyle().Foreground(lipgloss.Color("6")),
		pct:   r.NewStyle().Foreground(lipgloss.Color("5")).Bold(true),
	}
}

func percent(p float64) string {
	switch {
	case p == 0:
		return "0%"
	case p >= 0.9995 && p <= 1.0005:
		return "100%"
	case p < 0.0005:
		return fmt.Sprintf("%.3f%%", 100*p)
	}
	return fmt.Sprintf("%.1f%%", 100*p)
}

// tableText renders a table with no spaces at the ends of its lines (lipgloss pads every cell to
// its column's width, the last one too), ending in one newline; with --no-headers, without its
// header row (cut from the text: lipgloss v1.1 drops a row of a table that has no headers).
func tableText(s *styles, t *table.Table) string {
	lines := strings.Split(strings.TrimRight(t.String(), "\n"), "\n")
	if s.noHeaders && len(lines) > 0 {
		lines = lines[1:]
	}
	for i, l := range lines {
		lines[i] = fit(strings.TrimRight(l, " "), s.width)
	}
	return strings.Join(lines, "\n") + "\n"
}

// newTable is the borderless table every command prints, with a bold header row.
func newTable(s *styles, headers ...string) *table.Table {
	return table.New().Border(lipgloss.HiddenBorder()).BorderTop(false).BorderBottom(false).
		BorderLeft(false).BorderRight(false).BorderColumn(false).BorderHeader(false).
		Headers(headers...).
		StyleFunc(func(row, col int) lipgloss.Style {
			st := s.r.NewStyle().PaddingRight(1)
			if row == table.HeaderRow {
				return st.Bold(true)
			}
			return st
		})
}
