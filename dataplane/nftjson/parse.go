// Package nftjson reads `nft -j list ruleset` output into a trace/nftables Ruleset.
package nftjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/nftables"
)

type document struct {
	Nftables []json.RawMessage `json:"nftables"`
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
// skipped. The document's top level is only scanned, to find its objects: each object is then
// decoded, and so checked, on all cores (see add), and anything else is checked on its own.
func Parse(data []byte) (*nftables.Ruleset, error) {
	return parse(data, nil)
}

// parse is Parse, with the objects ParseReader decoded while data arrived: ahead(i, raw)
// returns the i-th object's decoding when it decoded that object's text.
func parse(data []byte, ahead func(i int, raw []byte) ([]decodedObject, bool)) (*nftables.Ruleset, error) {
	objs, err := documentObjects(data)
	if err != nil {
		// The scan says only that it is malformed; encoding/json says where and how.
		var doc document
		if uerr := json.Unmarshal(data, &doc); uerr != nil {
			var syn *json.SyntaxError
			if errors.As(uerr, &syn) {
				return nil, fmt.Errorf("nft JSON, byte %d: %w", syn.Offset, uerr)
			}
			return nil, fmt.Errorf("nft JSON: %w", uerr)
		}
		return nil, fmt.Errorf("nft JSON: %w", err)
	}
	if objs == nil {
		return nil, fmt.Errorf("nft JSON: no \"nftables\" array: this is not `nft -j list ruleset` output")
	}
	rs := &nftables.Ruleset{}
	if err := addDecoded(rs, objs, ahead); err != nil {
		return nil, err
	}
	// Every jump's target is checked, on all cores; the error named is the first rule's in
	// table, chain-name and rule order.
	type tableRule struct {
		t *nftables.Table
		r *nftables.Rule
	}
	var rules []tableRule
	for _, t := range rs.Tables {
		for _, name := range chainNames(t) {
			for _, r := range t.Chains[name].Rules {
				rules = append(rules, tableRule{t, r})
			}
		}
	}
	errs := make([]error, len(rules))
	trace.InParallel(len(rules), 256, func(i int) bool {
		errs[i] = checkTargets(rules[i].t, rules[i].r)
		return errs[i] != nil
	})
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	sort.SliceStable(rs.Tables, func(i, j int) bool { return rs.Tables[i].Name == "kube-proxy" && rs.Tables[j].Name != "kube-proxy" })
	return rs, nil
}

// documentObjects finds the objects of nft's JSON document data (its "nftables" array; nil when
// it has none) by scanning it, as encoding/json would decode it into a document: the key matched
// without regard to case, the last one winning. The objects themselves are not checked here (add
// decodes them); everything else is.
func documentObjects(data []byte) ([]json.RawMessage, error) {
	var list []byte
	err := trace.EachJSONField(data, func(key []byte, from, to int) error {
		val := data[from:to]
		if !bytes.EqualFold(key, []byte("nftables")) {
			if !json.Valid(val) {
				return errMalformed
			}
			return nil
		}
		if list != nil && !json.Valid(list) { // decoded, and so checked, by encoding/json too
			return errMalformed
		}
		switch {
		case string(val) == "null":
			list = nil
		case val[0] == '[':
			list = val
		default:
			return errors.New(`"nftables" is not an array`)
		}
		return nil
	})
	if err != nil || list == nil {
		return nil, err
	}
	objs := []json.RawMessage{}
	err = trace.EachJSONElement(list, func(el []byte) error {
		objs = append(objs, el)
		return nil
	})
	return objs, err
}

var errMalformed = errors.New("malformed JSON")

// add adds a document's objects to rs: to its tables when rs already has them. The objects are
// decoded on all cores (a 10,000-Service node has 120,000 of them), then added in their order;
// the decoding stops after a broken one, whose error is the first in order.
func add(rs *nftables.Ruleset, objs []json.RawMessage) error {
	return addDecoded(rs, objs, nil)
}

// addDecoded is add, taking the objects ahead decoded already (nil: none) from it.
func addDecoded(rs *nftables.Ruleset, objs []json.RawMessage, ahead func(i int, raw []byte) ([]decodedObject, bool)) error {
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
	decoded := make([][]decodedObject, len(objs))
	trace.InParallel(len(objs), 256, func(i int) bool {
		if ahead != nil {
			if d, ok := ahead(i, objs[i]); ok {
				decoded[i] = d
				return slices.ContainsFunc(d, func(d decodedObject) bool { return d.err != nil })
			}
		}
		decoded[i] = decodeObject(i, objs[i])
		return slices.ContainsFunc(decoded[i], func(d decodedObject) bool { return d.err != nil })
	})
	for _, ds := range decoded {
		for _, d := range ds {
			switch {
			case d.err != nil:
				return d.err
			case d.chain != nil:
				ch := chain(table(d.chain.Family, d.chain.Table), d.chain.Name)
				ch.Hook, ch.Type, ch.Prio, ch.Policy = d.chain.Hook, d.chain.Type, d.chain.Prio, d.chain.Policy
			case d.rule != nil:
				ch := chain(table(d.family, d.table), d.rule.Chain)
				ch.Rules = append(ch.Rules, d.rule)
			case d.set != nil:
				table(d.family, d.table).Sets[d.set.Name] = d.set
			case d.isTable:
				table(d.family, d.table)
			}
		}
	}
	return nil
}

// decodedObject is one object of nft's JSON, decoded: a table (family and table alone), a chain,
// a rule or a set of the table named; or why it could not be.
type decodedObject struct {
	isTable       bool
	family, table string
	chain         *jsonChain
	rule          *nftables.Rule
	set           *nftables.Set
	err           error
}

// decodeObject decodes the i-th object of a document (each kind it holds; nft writes one) into
// what add needs, skipping kinds that are not needed.
func decodeObject(i int, raw json.RawMessage) []decodedObject {
	// The object's members are found by a scan, as encoding/json would read them into a map
	// (the last of a name winning); each is then decoded, or checked when it is not needed.
	type member struct {
		kind string
		raw  json.RawMessage
	}
	var members []member
	if string(bytes.TrimSpace(raw)) == "null" {
		return nil
	}
	err := trace.EachJSONField(raw, func(key []byte, from, to int) error {
		members = slices.DeleteFunc(members, func(m member) bool { return m.kind == string(key) })
		members = append(members, member{string(key), raw[from:to]})
		return nil
	})
	if err != nil {
		var obj map[string]json.RawMessage
		if uerr := json.Unmarshal(raw, &obj); uerr != nil {
			err = uerr
		}
		return []decodedObject{{err: fmt.Errorf("nft JSON object %d: %w", i+1, err)}}
	}
	var out []decodedObject
	for _, m := range members {
		kind, raw := m.kind, m.raw
		where := func(err error) decodedObject {
			return decodedObject{err: fmt.Errorf("nft JSON object %d (%s): %w", i+1, kind, err)}
		}
		switch kind {
		case "table":
			var t struct{ Family, Name string }
			if err := json.Unmarshal(raw, &t); err != nil {
				return append(out, where(err))
			}
			out = append(out, decodedObject{isTable: true, family: t.Family, table: t.Name})
		case "chain":
			var c jsonChain
			if err := json.Unmarshal(raw, &c); err != nil {
				return append(out, where(err))
			}
			out = append(out, decodedObject{chain: &c})
		case "rule":
			var r jsonRule
			if err := json.Unmarshal(raw, &r); err != nil {
				return append(out, where(err))
			}
			out = append(out, decodedObject{family: r.Family, table: r.Table, rule: nftables.NewRule(r.Chain, r.Handle, r.Expr, r.Comment)})
		case "set", "map":
			var s jsonSet
			if err := json.Unmarshal(raw, &s); err != nil {
				return append(out, where(err))
			}
			set := &nftables.Set{Name: s.Name, Timeout: s.Timeout}
			if m, ok := s.Map.(string); ok {
				set.Map = m
			}
			for _, e := range s.Elem {
				set.Elems = append(set.Elems, element(e, set.Map != ""))
			}
			out = append(out, decodedObject{family: s.Family, table: s.Table, set: set})
		default:
			if !json.Valid(raw) {
				return append(out, where(errMalformed))
			}
		}
	}
	return out
}

// chainNames are a table's chain names, sorted.
func chainNames(t *nftables.Table) []string {
	names := make([]string, 0, len(t.Chains))
	for name := range t.Chains {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
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
