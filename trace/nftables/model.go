// Package nftables models an nftables ruleset (as `nft -j list ruleset` describes it) and
// evaluates it for a concrete packet: base chains by hook and priority, jumps and gotos, verdict
// maps, named and anonymous sets, and `numgen random mod N` splits into exact 1/N shares.
package nftables

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Ruleset is a node's nftables ruleset.
type Ruleset struct {
	Tables []*Table
}

// Table is one nftables table.
type Table struct {
	Family, Name string
	Chains       map[string]*Chain
	Sets         map[string]*Set
	// Partial says only some of the table's chains and sets were read (a read scoped to one
	// packet): a jump to a chain, or a lookup in a set, that is not here is then a missing
	// object the walk reports (MissingError), not one the node lacks.
	Partial bool
}

// Object names a chain or a named set or map of a table, or one key of a set.
type Object struct {
	Family, Table string
	// Kind is "chain", "set" (a map is read as a set) or "element" (Name's element with Key).
	Kind, Name string
	// Key is an element's key, written canonically ("10.96.0.1 . tcp . 443").
	Key string
}

// MissingError is a walk of a partially read table that needed objects which were not read. The
// walk has no result; reading the objects and walking again does.
type MissingError struct {
	Objects []Object
	// Values are the packet's values of the element objects' keys (netip.Addr, uint64, string,
	// []any for concatenations), for a reader to look them up.
	Values map[Object]any
}

func (e *MissingError) Error() string {
	var names []string
	for _, o := range e.Objects {
		n := fmt.Sprintf("%s %s %s %s", o.Kind, o.Family, o.Table, o.Name)
		if o.Kind == "element" {
			n += " { " + o.Key + " }"
		}
		names = append(names, n)
	}
	return "the walk needs nftables objects that were not read: " + strings.Join(names, ", ")
}

// missingError returns the objects as a MissingError, sorted, or nil when there are none.
func missingError(objs map[Object]bool, values map[Object]any) error {
	if len(objs) == 0 {
		return nil
	}
	e := &MissingError{Values: values}
	for o := range objs {
		e.Objects = append(e.Objects, o)
	}
	sort.Slice(e.Objects, func(i, j int) bool {
		a, b := e.Objects[i], e.Objects[j]
		return a.Family+a.Table+a.Kind+a.Name+a.Key < b.Family+b.Table+b.Kind+b.Name+b.Key
	})
	return e
}

// Chain is a base chain (with a hook) or a regular chain.
type Chain struct {
	Name  string
	Table *Table
	// Hook, Type and Prio are set for base chains.
	Hook, Type string
	Prio       int
	// Policy is a base chain's policy: accept or drop.
	Policy string
	Rules  []*Rule
}

// Base reports whether the chain is attached to a hook.
func (c *Chain) Base() bool { return c.Hook != "" }

// Rule is one rule: its statements, in nft's JSON form.
type Rule struct {
	Chain  string
	Handle int
	// Exprs are the rule's statements as decoded JSON objects.
	Exprs []map[string]any
	// Text is the rule as nft would print it (close to `nft list ruleset`).
	Text string
	// Comment is the rule's comment (also at the end of Text).
	Comment string
	// shown is Text with the handle, as steps show it: made once and shared by every branch
	// that passes the rule (a numgen map of 10,000 endpoints is a rule of a megabyte, and
	// 10,000 branches pass it).
	shown atomic.Pointer[string]
}

// NewRule returns a rule of a chain with its text made: the statements as nft prints them, and
// the comment.
func NewRule(chain string, handle int, exprs []map[string]any, comment string) *Rule {
	r := &Rule{Chain: chain, Handle: handle, Exprs: exprs, Comment: comment}
	r.Text = FormatRule(r)
	if comment != "" {
		r.Text += fmt.Sprintf(" comment %q", comment)
	}
	return r
}

// Shown is the rule as a step shows it: its text and handle.
func (r *Rule) Shown() string {
	if p := r.shown.Load(); p != nil {
		return *p
	}
	s := fmt.Sprintf("%s # handle %d", r.Text, r.Handle)
	r.shown.Store(&s)
	return s
}

// Set is a named set or map.
type Set struct {
	Name string
	// Map is the map's data type ("verdict" for verdict maps); empty for sets.
	Map string
	// Timeout is the default element timeout in seconds (affinity sets have one).
	Timeout int
	Elems   []Elem
	// Partial says only the keys in probed were looked up (a read scoped to one packet): Elems
	// are the ones of those that exist.
	Partial bool
	probed  map[string]bool

	// index maps an exact element's canonical key to its position; ranged holds the positions
	// of elements with prefixes or ranges, which are matched one by one. Built on first lookup,
	// under mu: walks run on several goroutines.
	mu     sync.Mutex
	index  map[string]int
	ranged []int
}

// lookupIndex returns the set's index, building it if needed.
func (s *Set) lookupIndex() (map[string]int, []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.index == nil {
		s.index = map[string]int{}
		for i, e := range s.Elems {
			if k, ok := canonical(e.Key); ok {
				s.index[k] = i
			} else {
				s.ranged = append(s.ranged, i)
			}
		}
	}
	return s.index, s.ranged
}

// AddProbed records that a partial set was asked for key: e is its element, or nil when the set
// has none with that key.
func (s *Set) AddProbed(key string, e *Elem) {
	if s.probed == nil {
		s.probed = map[string]bool{}
	}
	if s.probed[key] {
		return
	}
	s.probed[key] = true
	if e != nil {
		s.Elems = append(s.Elems, *e)
		s.mu.Lock()
		s.index, s.ranged = nil, nil
		s.mu.Unlock()
	}
}

// Probed reports whether a partial set was asked for key.
func (s *Set) Probed(key string) bool { return s.probed[key] }

// ProbedKeys are the keys a partial set was asked for, in order.
func (s *Set) ProbedKeys() []string {
	out := make([]string, 0, len(s.probed))
	for k := range s.probed {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// MergeProbes adds another partial read of the same set: its keys and elements.
func (s *Set) MergeProbes(o *Set) {
	for k := range o.probed {
		var e *Elem
		for i := range o.Elems {
			if ck, ok := canonical(o.Elems[i].Key); ok && ck == k {
				e = &o.Elems[i]
			}
		}
		s.AddProbed(k, e)
	}
}

// CanonicalKey writes a packet value or an element key as partial sets key their probes.
func CanonicalKey(v any) (string, bool) { return canonical(v) }

// ParseKey reads a canonical key ("10.96.0.1 . tcp . 443") back into the values a walk looks it
// up with: addresses, numbers and protocol names, a concatenation as a list. It reports false for
// anything else (a prefix, a range, an empty part).
func ParseKey(key string) (any, bool) {
	parts := strings.Split(key, " . ")
	out := make([]any, len(parts))
	for i, p := range parts {
		if a, err := netip.ParseAddr(p); err == nil {
			out[i] = a
		} else if n, err := strconv.ParseUint(p, 10, 64); err == nil {
			out[i] = n
		} else if p == "tcp" || p == "udp" || p == "sctp" {
			out[i] = p
		} else {
			return nil, false
		}
	}
	if len(out) == 1 {
		return out[0], true
	}
	return out, true
}

// Elem is one set element or map entry.
type Elem struct {
	// Key is the element's value (a string, number, {"prefix":...}, {"concat":[...]}, ...).
	Key any
	// Data is a map entry's value (a verdict object for verdict maps).
	Data    any
	Comment string
}

// Dataplane evaluates a node's nftables ruleset. Walks index named sets on first use, safely
// from several goroutines at once.
type Dataplane struct {
	Rules *Ruleset
}

// Mode implements trace.Dataplane.
func (d *Dataplane) Mode() string { return "nftables" }
