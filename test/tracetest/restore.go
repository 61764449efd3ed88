package tracetest

import (
	"fmt"
	"strings"
)

// ApplyRestore applies `iptables-restore --noflush` input to an iptables-save dump, in memory, with
// the checks the real command makes that matter to a plan: a chain line creates or flushes the
// chain, -A needs the chain and its jump target to exist, -X refuses a chain still referenced. It
// returns the new dump (without counters). Unit tests use it; the e2e tests use the real command.
func ApplyRestore(dump []byte, input string) ([]byte, error) {
	type table struct {
		name   string
		order  []string
		decl   map[string]string
		rules  map[string][]string
		exists map[string]bool
	}
	var tables []*table
	byName := map[string]*table{}
	var cur *table
	builtin := map[string]bool{"PREROUTING": true, "INPUT": true, "FORWARD": true, "OUTPUT": true, "POSTROUTING": true}
	targets := map[string]bool{"ACCEPT": true, "DROP": true, "REJECT": true, "RETURN": true, "DNAT": true, "SNAT": true, "MASQUERADE": true, "MARK": true, "CONNMARK": true, "LOG": true, "NOTRACK": true, "CT": true}
	for _, l := range strings.Split(string(dump), "\n") {
		if strings.HasPrefix(l, "[") {
			if i := strings.Index(l, "] "); i > 0 {
				l = l[i+2:]
			}
		}
		switch {
		case strings.HasPrefix(l, "*"):
			cur = &table{name: l[1:], decl: map[string]string{}, rules: map[string][]string{}, exists: map[string]bool{}}
			tables = append(tables, cur)
			byName[cur.name] = cur
		case strings.HasPrefix(l, ":"):
			name := strings.Fields(l[1:])[0]
			cur.order = append(cur.order, name)
			cur.decl[name] = l
			cur.exists[name] = true
		case strings.HasPrefix(l, "-A "):
			name := strings.Fields(l)[1]
			cur.rules[name] = append(cur.rules[name], l)
		}
	}
	jumpTarget := func(rule string) string {
		f := strings.Fields(rule)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "-j" || f[i] == "-g" {
				return f[i+1]
			}
		}
		return ""
	}
	cur = nil
	for n, l := range strings.Split(input, "\n") {
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "*"):
			cur = byName[l[1:]]
			if cur == nil {
				return nil, fmt.Errorf("line %d: no table %s", n+1, l[1:])
			}
		case l == "COMMIT":
			cur = nil
		case cur == nil:
			return nil, fmt.Errorf("line %d: outside a table", n+1)
		case strings.HasPrefix(l, ":"):
			name := strings.Fields(l[1:])[0]
			if !cur.exists[name] {
				cur.exists[name] = true
				cur.order = append(cur.order, name)
				cur.decl[name] = ":" + name + " - [0:0]"
			}
			cur.rules[name] = nil
		case strings.HasPrefix(l, "-A "):
			name := strings.Fields(l)[1]
			if !cur.exists[name] {
				return nil, fmt.Errorf("line %d: chain %s does not exist", n+1, name)
			}
			if t := jumpTarget(l); t != "" && !targets[t] && !cur.exists[t] {
				return nil, fmt.Errorf("line %d: jump to missing chain %s", n+1, t)
			}
			cur.rules[name] = append(cur.rules[name], l)
		case strings.HasPrefix(l, "-X "):
			name := strings.TrimSpace(l[3:])
			if !cur.exists[name] || builtin[name] {
				return nil, fmt.Errorf("line %d: cannot delete chain %s", n+1, name)
			}
			for c, rs := range cur.rules {
				for _, r := range rs {
					if jumpTarget(r) == name {
						return nil, fmt.Errorf("line %d: chain %s is still referenced from %s", n+1, name, c)
					}
				}
				_ = c
			}
			if len(cur.rules[name]) > 0 {
				return nil, fmt.Errorf("line %d: chain %s is not empty", n+1, name)
			}
			delete(cur.exists, name)
			delete(cur.rules, name)
		default:
			return nil, fmt.Errorf("line %d: unsupported %q", n+1, l)
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("input ends without COMMIT")
	}
	var b strings.Builder
	for _, t := range tables {
		fmt.Fprintf(&b, "*%s\n", t.name)
		for _, c := range t.order {
			if t.exists[c] {
				b.WriteString(t.decl[c] + "\n")
			}
		}
		for _, c := range t.order {
			if t.exists[c] {
				for _, r := range t.rules[c] {
					b.WriteString(r + "\n")
				}
			}
		}
		b.WriteString("COMMIT\n")
	}
	return []byte(b.String()), nil
}
