// Package nftables models an nftables ruleset (as `nft -j list ruleset` describes it) and
// evaluates it for a concrete packet: base chains by hook and priority, jumps and gotos, verdict
// maps, named and anonymous sets, and `numgen random mod N` splits into exact 1/N shares.
package nftables

import (
	"fmt"
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

	// index maps an exact element's canonical key to its position; ranged holds the positions
	// of elements with prefixes or ranges, which are matched one by one. Built on first lookup.
	index  map[string]int
	ranged []int
}

// Elem is one set element or map entry.
type Elem struct {
	// Key is the element's value (a string, number, {"prefix":...}, {"concat":[...]}, ...).
	Key any
	// Data is a map entry's value (a verdict object for verdict maps).
	Data    any
	Comment string
}

// Dataplane evaluates a node's nftables ruleset. Walks index named sets on first use, so one
// Dataplane must not be walked from several goroutines at once.
type Dataplane struct {
	Rules *Ruleset
}

// Mode implements trace.Dataplane.
func (d *Dataplane) Mode() string { return "nftables" }
