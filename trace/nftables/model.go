// Package nftables models an nftables ruleset (as `nft -j list ruleset` describes it) and
// evaluates it for a concrete packet: base chains by hook and priority, jumps and gotos, verdict
// maps, named and anonymous sets, and `numgen random mod N` splits into exact 1/N shares.
package nftables

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
