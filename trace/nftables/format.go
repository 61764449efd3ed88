package nftables

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// FormatRule renders a rule's statements close to how `nft list ruleset` prints them.
func FormatRule(r *Rule) string {
	parts := make([]string, 0, len(r.Exprs))
	for _, e := range r.Exprs {
		parts = append(parts, formatStmt(e))
	}
	return strings.Join(parts, " ")
}

func formatStmt(s map[string]any) string {
	for k, v := range s {
		switch k {
		case "match":
			m, _ := v.(map[string]any)
			op, _ := m["op"].(string)
			left, right := FormatExpr(m["left"]), FormatExpr(m["right"])
			if op == "==" || op == "in" || op == "" {
				return left + " " + right
			}
			return left + " " + op + " " + right
		case "jump", "goto":
			m, _ := v.(map[string]any)
			return fmt.Sprintf("%s %v", k, m["target"])
		case "accept", "drop", "return", "continue":
			return k
		case "reject":
			return "reject"
		case "counter":
			return "counter"
		case "masquerade":
			if m, ok := v.(map[string]any); ok && m["flags"] != nil {
				return "masquerade " + FormatExpr(m["flags"])
			}
			return "masquerade"
		case "dnat", "snat":
			m, _ := v.(map[string]any)
			out := k
			if fam, ok := m["family"].(string); ok {
				out += " " + fam
			}
			out += " to " + FormatExpr(m["addr"])
			if p, ok := m["port"]; ok {
				out += ":" + FormatExpr(p)
			}
			return out
		case "vmap":
			m, _ := v.(map[string]any)
			return FormatExpr(m["key"]) + " vmap " + FormatExpr(m["data"])
		case "mangle":
			m, _ := v.(map[string]any)
			return FormatExpr(m["key"]) + " set " + FormatExpr(m["value"])
		case "set":
			m, _ := v.(map[string]any)
			return fmt.Sprintf("%v %v { %s }", m["op"], m["set"], FormatExpr(m["elem"]))
		}
		return k
	}
	return ""
}

// FormatExpr renders an expression as nft prints it.
func FormatExpr(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = FormatExpr(e)
		}
		return strings.Join(parts, ",")
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		// An nft JSON expression is an object with one key: its kind.
		if len(keys) > 0 {
			k := keys[0]
			a := x[k]
			m, _ := a.(map[string]any)
			switch k {
			case "payload":
				return fmt.Sprintf("%v %v", m["protocol"], m["field"])
			case "meta":
				return fmt.Sprintf("meta %v", m["key"])
			case "ct":
				return fmt.Sprintf("ct %v", m["key"])
			case "fib":
				return fmt.Sprintf("fib %s %v", FormatExpr(m["flags"]), m["result"])
			case "numgen":
				return fmt.Sprintf("numgen %v mod %v", m["mode"], m["mod"])
			case "prefix":
				return fmt.Sprintf("%v/%v", m["addr"], m["len"])
			case "range":
				r, _ := a.([]any)
				if len(r) == 2 {
					return FormatExpr(r[0]) + "-" + FormatExpr(r[1])
				}
			case "concat":
				c, _ := a.([]any)
				parts := make([]string, len(c))
				for i, e := range c {
					parts[i] = FormatExpr(e)
				}
				return strings.Join(parts, " . ")
			case "&", "|", "^":
				ops, _ := a.([]any)
				if len(ops) == 2 {
					return FormatExpr(ops[0]) + " " + k + " " + FormatExpr(ops[1])
				}
			case "set":
				return formatSet(a)
			case "map":
				return FormatExpr(m["key"]) + " map " + FormatExpr(m["data"])
			case "elem":
				return FormatExpr(m["val"])
			case "goto", "jump":
				return fmt.Sprintf("%s %v", k, m["target"])
			case "drop", "accept", "return":
				return k
			}
			return k
		}
	}
	return fmt.Sprint(v)
}

// shownElements is how many elements of an anonymous set or map a rule's text shows: a Service
// with 10,000 endpoints is one numgen map of 10,000, and every one of its paths shows the rule.
const shownElements = 8

func formatSet(a any) string {
	items, _ := a.([]any)
	parts := make([]string, 0, min(len(items), shownElements)+1)
	for i, it := range items {
		if i == shownElements {
			parts = append(parts, fmt.Sprintf("… (%d elements in all)", len(items)))
			break
		}
		if pair, ok := it.([]any); ok && len(pair) == 2 {
			parts = append(parts, FormatExpr(pair[0])+" : "+FormatExpr(pair[1]))
			continue
		}
		parts = append(parts, FormatExpr(it))
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}
