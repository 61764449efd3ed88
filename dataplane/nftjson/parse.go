// Package nftjson reads `nft -j list ruleset` output into a trace/nftables Ruleset.
package nftjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/svctrace/svctrace/trace/nftables"
)

type document struct {
	Nftables []map[string]json.RawMessage `json:"nftables"`
}

type jsonChain struct {
	Family, Table, Name, Hook, Type, Policy string
	Prio                                    int
}

type jsonRule struct {
	Family, Table, Chain string
	Handle               int
	Expr                 []map[string]any
	Comment              string
}

type jsonSet struct {
	Family, Table, Name string
	Map                 any
	Timeout             int
	Elem                []any
}

// Parse reads nft's JSON. Objects of kinds it does not need (flowtables, counters, quotas) are
// skipped.
func Parse(data []byte) (*nftables.Ruleset, error) {
	var doc document
	if err := json.Unmarshal(data, &doc); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return nil, fmt.Errorf("nft JSON, byte %d: %w", syn.Offset, err)
		}
		return nil, fmt.Errorf("nft JSON: %w", err)
	}
	if doc.Nftables == nil {
		return nil, fmt.Errorf("nft JSON: no \"nftables\" array: this is not `nft -j list ruleset` output")
	}
	rs := &nftables.Ruleset{}
	if err := add(rs, doc.Nftables); err != nil {
		return nil, err
	}
	for _, t := range rs.Tables {
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				if err := checkTargets(t, r); err != nil {
					return nil, err
				}
			}
		}
	}
	sort.SliceStable(rs.Tables, func(i, j int) bool { return rs.Tables[i].Name == "kube-proxy" && rs.Tables[j].Name != "kube-proxy" })
	return rs, nil
}

// add adds a document's objects to rs: to its tables when rs already has them.
func add(rs *nftables.Ruleset, objs []map[string]json.RawMessage) error {
	tables := map[string]*nftables.Table{}
	for _, t := range rs.Tables {
		tables[t.Family+" "+t.Name] = t
	}
	table := func(family, name string) *nftables.Table {
		k := family + " " + name
		t := tables[k]
		if t == nil {
			t = &nftables.Table{Family: family, Name: name, Chains: map[string]*nftables.Chain{}, Sets: map[string]*nftables.Set{}}
			tables[k] = t
			rs.Tables = append(rs.Tables, t)
		}
		return t
	}
	for i, obj := range objs {
		for kind, raw := range obj {
			where := fmt.Sprintf("nft JSON object %d (%s)", i+1, kind)
			switch kind {
			case "table":
				var t struct{ Family, Name string }
				if err := json.Unmarshal(raw, &t); err != nil {
					return fmt.Errorf("%s: %w", where, err)
				}
				table(t.Family, t.Name)
			case "chain":
				var c jsonChain
				if err := json.Unmarshal(raw, &c); err != nil {
					return fmt.Errorf("%s: %w", where, err)
				}
				t := table(c.Family, c.Table)
				ch := chain(t, c.Name)
				ch.Hook, ch.Type, ch.Prio, ch.Policy = c.Hook, c.Type, c.Prio, c.Policy
			case "rule":
				var r jsonRule
				if err := json.Unmarshal(raw, &r); err != nil {
					return fmt.Errorf("%s: %w", where, err)
				}
				t := table(r.Family, r.Table)
				ch := chain(t, r.Chain)
				ch.Rules = append(ch.Rules, nftables.NewRule(r.Chain, r.Handle, r.Expr, r.Comment))
			case "set", "map":
				var s jsonSet
				if err := json.Unmarshal(raw, &s); err != nil {
					return fmt.Errorf("%s: %w", where, err)
				}
				set := &nftables.Set{Name: s.Name, Timeout: s.Timeout}
				if m, ok := s.Map.(string); ok {
					set.Map = m
				}
				for _, e := range s.Elem {
					set.Elems = append(set.Elems, element(e, set.Map != ""))
				}
				table(s.Family, s.Table).Sets[s.Name] = set
			}
		}
	}
	return nil
}

func chain(t *nftables.Table, name string) *nftables.Chain {
	c := t.Chains[name]
	if c == nil {
		c = &nftables.Chain{Name: name, Table: t}
		t.Chains[name] = c
	}
	return c
}

// element unwraps {"elem": {"val": V, "comment": C}} and map pairs [key, data].
func element(e any, isMap bool) nftables.Elem {
	var out nftables.Elem
	if isMap {
		if pair, ok := e.([]any); ok && len(pair) == 2 {
			e, out.Data = pair[0], pair[1]
		}
	}
	if m, ok := e.(map[string]any); ok {
		if inner, ok := m["elem"].(map[string]any); ok {
			out.Key = inner["val"]
			out.Comment, _ = inner["comment"].(string)
			return out
		}
	}
	out.Key = e
	return out
}

// checkTargets makes sure every jump and goto names a chain of the table.
func checkTargets(t *nftables.Table, r *nftables.Rule) error {
	var missing string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, sub := range x {
				if k == "jump" || k == "goto" {
					if m, ok := sub.(map[string]any); ok {
						if name, ok := m["target"].(string); ok && t.Chains[name] == nil && missing == "" {
							missing = name
						}
					}
				}
				walk(sub)
			}
		case []any:
			for _, sub := range x {
				walk(sub)
			}
		}
	}
	for _, e := range r.Exprs {
		walk(e)
	}
	if missing != "" {
		return fmt.Errorf("nft JSON: rule %d in %s %s chain %s jumps to chain %s, which the table does not have",
			r.Handle, t.Family, t.Name, r.Chain, strings.TrimSpace(missing))
	}
	return nil
}
