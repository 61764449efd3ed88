package nftables

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// This file writes rules and elements in full, in the syntax `nft -f` reads, for the statements
// kube-proxy writes: the form repair compares the node's rules in (with kube-proxy's rules
// generated in the same form) and writes them back in. It differs from FormatRule, which is for
// people (it shortens long anonymous sets), and from `nft list`, which prints a concatenated
// NAT map as `dnat ip to …`, which nft does not read back.

// CanonRule is the rule in nft's input syntax with its comment, and whether every statement in
// it is one this renderer knows: a rule it does not know is never written back.
func CanonRule(r *Rule) (string, bool) {
	c := canon{ok: true}
	parts := make([]string, 0, len(r.Exprs)+1)
	for _, s := range r.Exprs {
		parts = append(parts, c.stmt(s))
	}
	if r.Comment != "" {
		parts = append(parts, "comment "+strconv.Quote(r.Comment))
	}
	return strings.Join(parts, " "), c.ok
}

// CanonElem is a set element's key, and a map element's value ("" for sets), in nft's input
// syntax, and whether both were understood.
func CanonElem(e Elem) (key, value string, ok bool) {
	c := canon{ok: true}
	key = c.expr(e.Key, "")
	if e.Data != nil {
		value = c.expr(e.Data, "")
	}
	return key, value, c.ok
}

type canon struct{ ok bool }

func (c *canon) unknown(v any) string {
	c.ok = false
	b, _ := json.Marshal(v)
	return "<" + string(b) + ">"
}

func (c *canon) stmt(s map[string]any) string {
	if len(s) != 1 {
		return c.unknown(s)
	}
	for k, v := range s {
		m, _ := v.(map[string]any)
		switch k {
		case "match":
			op, _ := m["op"].(string)
			left := c.expr(m["left"], "")
			right := c.expr(m["right"], valueContext(m["left"]))
			if op == "==" || op == "in" {
				return left + " " + right
			}
			if op == "!=" {
				return left + " != " + right
			}
			return c.unknown(s)
		case "jump", "goto":
			t, ok := m["target"].(string)
			if !ok {
				return c.unknown(s)
			}
			return k + " " + t
		case "accept", "drop", "return", "continue":
			return k
		case "reject":
			if m == nil || m["expr"] == "port-unreachable" && (m["type"] == "icmp" || m["type"] == "icmpv6" || m["type"] == "icmpx") {
				return "reject"
			}
			return c.unknown(s)
		case "masquerade":
			if m == nil {
				return "masquerade"
			}
			if len(m) == 1 && m["flags"] != nil {
				return "masquerade " + c.flags(m["flags"])
			}
			return c.unknown(s)
		case "dnat", "snat":
			return c.nat(k, m, s)
		case "vmap":
			return c.expr(m["key"], "") + " vmap " + c.expr(m["data"], "")
		case "mangle":
			return c.expr(m["key"], "") + " set " + c.expr(m["value"], valueContext(m["key"]))
		case "set":
			op, _ := m["op"].(string)
			name, _ := m["set"].(string)
			if op != "update" && op != "add" || !strings.HasPrefix(name, "@") {
				return c.unknown(s)
			}
			return op + " " + name + " { " + c.expr(m["elem"], "") + " }"
		}
		return c.unknown(s)
	}
	return ""
}

// str is a field that must be a word.
func (c *canon) str(v any) string {
	s, ok := v.(string)
	if !ok || s == "" {
		return c.unknown(v)
	}
	return s
}

func (c *canon) flags(v any) string {
	switch f := v.(type) {
	case string:
		return f
	case []any:
		parts := make([]string, len(f))
		for i, x := range f {
			s, ok := x.(string)
			if !ok {
				return c.unknown(v)
			}
			parts[i] = s
		}
		return strings.Join(parts, ",")
	}
	return c.unknown(v)
}

// nat renders dnat/snat: `dnat ip addr . port to <map>` for a map to address . port (as
// kube-proxy writes it), `dnat to ADDR:PORT` otherwise.
func (c *canon) nat(k string, m map[string]any, s map[string]any) string {
	out := k
	if fam, ok := m["family"].(string); ok {
		out += " " + fam
	}
	for key := range m {
		if key != "family" && key != "addr" && key != "port" {
			return c.unknown(s)
		}
	}
	addrObj, _ := m["addr"].(map[string]any)
	if mp, ok := addrObj["map"].(map[string]any); ok && m["port"] == nil {
		if data, _ := mp["data"].(map[string]any); data != nil && concatData(data["set"]) {
			return out + " addr . port to " + c.expr(m["addr"], "")
		}
	}
	addr := c.expr(m["addr"], "")
	if p, ok := m["port"]; ok {
		if a, err := netip.ParseAddr(addr); err == nil && a.Is6() {
			addr = "[" + addr + "]"
		}
		addr += ":" + c.expr(p, "")
	}
	return out + " to " + addr
}

// concatData reports whether an anonymous map's values are concatenations.
func concatData(v any) bool {
	items, _ := v.([]any)
	for _, it := range items {
		pair, ok := it.([]any)
		if !ok || len(pair) != 2 {
			return false
		}
		if m, ok := pair[1].(map[string]any); !ok || m["concat"] == nil {
			return false
		}
	}
	return len(items) > 0
}

// valueContext names what a value is compared with or assigned to, where that changes how nft
// prints it: marks in hex, interface names quoted.
func valueContext(left any) string {
	m, _ := left.(map[string]any)
	if meta, ok := m["meta"].(map[string]any); ok {
		switch meta["key"] {
		case "mark":
			return "mark"
		case "iifname", "oifname":
			return "ifname"
		}
	}
	for _, op := range []string{"&", "|", "^"} {
		if ops, ok := m[op].([]any); ok && len(ops) == 2 {
			return valueContext(ops[0])
		}
	}
	return ""
}

func (c *canon) expr(v any, ctx string) string {
	switch x := v.(type) {
	case string:
		if ctx == "ifname" {
			return strconv.Quote(x)
		}
		return x
	case float64:
		if x != float64(int64(x)) || x < 0 {
			return c.unknown(v)
		}
		if ctx == "mark" {
			return fmt.Sprintf("0x%08x", int64(x))
		}
		return strconv.FormatInt(int64(x), 10)
	case []any:
		return c.unknown(v)
	case map[string]any:
		if len(x) != 1 {
			return c.unknown(v)
		}
		for k, a := range x {
			m, _ := a.(map[string]any)
			switch k {
			case "payload":
				return c.str(m["protocol"]) + " " + c.str(m["field"])
			case "meta":
				key := c.str(m["key"])
				if key == "iifname" || key == "oifname" {
					return key
				}
				return "meta " + key
			case "ct":
				return "ct " + c.str(m["key"])
			case "fib":
				return "fib " + strings.ReplaceAll(c.flags(m["flags"]), ",", " . ") + " " + c.str(m["result"])
			case "numgen":
				out := "numgen " + c.str(m["mode"]) + " mod " + c.expr(m["mod"], "")
				if off, ok := m["offset"].(float64); ok && off != 0 {
					out += " offset " + c.expr(off, "")
				}
				return out
			case "prefix":
				return c.str(m["addr"]) + "/" + c.expr(m["len"], "")
			case "range":
				r, _ := a.([]any)
				if len(r) == 2 {
					return c.expr(r[0], ctx) + "-" + c.expr(r[1], ctx)
				}
			case "concat":
				parts, _ := a.([]any)
				out := make([]string, len(parts))
				for i, p := range parts {
					out[i] = c.expr(p, "")
				}
				return strings.Join(out, " . ")
			case "&", "|", "^":
				ops, _ := a.([]any)
				if len(ops) == 2 {
					return c.expr(ops[0], "") + " " + k + " " + c.expr(ops[1], valueContext(ops[0]))
				}
			case "set":
				return c.set(a, ctx)
			case "map":
				return c.expr(m["key"], "") + " map " + c.expr(m["data"], "")
			case "elem":
				out := c.expr(m["val"], ctx)
				if cm, ok := m["comment"].(string); ok {
					out += " comment " + strconv.Quote(cm)
				}
				return out
			case "goto", "jump":
				if t, ok := m["target"].(string); ok {
					return k + " " + t
				}
			case "drop", "accept", "return", "continue":
				return k
			}
		}
	}
	return c.unknown(v)
}

// set renders an anonymous set or map in full, in nft's order (as listed).
func (c *canon) set(a any, ctx string) string {
	items, ok := a.([]any)
	if !ok {
		// A one-element set nft printed as the element itself.
		return c.expr(a, ctx)
	}
	parts := make([]string, len(items))
	for i, it := range items {
		if pair, ok := it.([]any); ok && len(pair) == 2 {
			parts[i] = c.expr(pair[0], ctx) + " : " + c.expr(pair[1], "")
			continue
		}
		parts[i] = c.expr(it, ctx)
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

// SortedElems lists a set's elements as canonical key → value, and the keys it could not
// render (never compared equal, never written).
func SortedElems(s *Set) (map[string]string, []string) {
	out := make(map[string]string, len(s.Elems))
	var bad []string
	for _, e := range s.Elems {
		k, v, ok := CanonElem(e)
		if !ok {
			bad = append(bad, k)
			continue
		}
		out[k] = v
	}
	sort.Strings(bad)
	return out, bad
}
