// Package iptables models an iptables ruleset (as iptables-save prints it) and evaluates it for a
// concrete packet: it follows jumps, gotos and returns, and splits traffic at every
// `-m statistic --mode random` match into weighted branches, so the shares it reports are exact.
package iptables

import (
	"net/netip"
	"sort"
	"sync"
)

// Ruleset is one address family's tables, e.g. the output of iptables-save.
type Ruleset struct {
	// IPv6 is true for an ip6tables ruleset.
	IPv6   bool
	Tables map[string]*Table
	// Variant is "legacy" or "nf_tables" when the dump's header says so, else empty.
	Variant string
	// Counters is true when the dump carried packet/byte counters (iptables-save -c).
	Counters bool
	// Blocks hold every rule of every table in dump order, in blocks that never move once
	// allocated (chains point into them; a parse that streams cannot size one slab up front).
	Blocks [][]Rule
}

// RuleCount is the number of rules in the ruleset.
func (rs *Ruleset) RuleCount() int {
	n := 0
	for _, b := range rs.Blocks {
		n += len(b)
	}
	return n
}

// RuleAt returns the rule on a dump line, if one is there.
func (rs *Ruleset) RuleAt(line int) (*Rule, bool) {
	// Lines ascend through the blocks and within each: binary search twice.
	i := sort.Search(len(rs.Blocks), func(i int) bool {
		b := rs.Blocks[i]
		return len(b) > 0 && int(b[len(b)-1].Line) >= line
	})
	if i == len(rs.Blocks) {
		return nil, false
	}
	b := rs.Blocks[i]
	j := sort.Search(len(b), func(j int) bool { return int(b[j].Line) >= line })
	if j < len(b) && int(b[j].Line) == line {
		return &b[j], true
	}
	return nil, false
}

// Table is one iptables table (nat, filter, mangle, raw, security).
type Table struct {
	Name   string
	Chains map[string]*Chain
	// Order lists the chains in the order the dump declared them.
	Order []*Chain
}

// Chain is a builtin or user-defined chain.
type Chain struct {
	Name string
	// Policy is the builtin chain's policy (ACCEPT or DROP); "-" for user chains.
	Policy string
	// Line is where the chain was declared.
	Line  int
	Rules []*Rule

	// byDst indexes a big chain's rules by exact destination address; wild holds the rules
	// without one. Built on first use (KUBE-SERVICES has a rule per Service port), once: walks
	// run on several goroutines.
	indexed sync.Once
	byDst   map[netip.Addr][]*Rule
	wild    []*Rule
}

// indexThreshold is the chain size from which evaluation uses the destination index.
const indexThreshold = 64

// candidates returns the rules a packet to dst can match, in chain order: every rule of a small
// chain; for a big one, the rules for exactly dst merged with those without an exact destination.
func (c *Chain) candidates(dst netip.Addr) []*Rule {
	if len(c.Rules) < indexThreshold {
		return c.Rules
	}
	c.indexed.Do(func() {
		c.byDst = map[netip.Addr][]*Rule{}
		for _, r := range c.Rules {
			if r.Dst.Set && !r.Dst.Neg && r.Dst.Prefix.IsSingleIP() {
				a := r.Dst.Prefix.Addr()
				c.byDst[a] = append(c.byDst[a], r)
			} else {
				c.wild = append(c.wild, r)
			}
		}
	})
	exact := c.byDst[dst]
	if len(exact) == 0 {
		return c.wild
	}
	out := make([]*Rule, 0, len(exact)+len(c.wild))
	i, j := 0, 0
	for i < len(exact) || j < len(c.wild) {
		if j >= len(c.wild) || i < len(exact) && exact[i].Line < c.wild[j].Line {
			out = append(out, exact[i])
			i++
		} else {
			out = append(out, c.wild[j])
			j++
		}
	}
	return out
}

// Builtin reports whether the chain is one of the kernel's hook chains.
func (c *Chain) Builtin() bool { return c.Policy != "-" && c.Policy != "" }

// Counters are a rule's packet and byte counters from `iptables-save -c`.
type Counters struct {
	Packets, Bytes uint64
}

// Rule is one parsed `-A CHAIN ...` line. The matches kube-proxy writes on almost every rule are
// fields here; the rest live in Extra, which most rules do not need: a node with 10,000 Services
// has 430,000 rules, and every byte of Rule counts (see the README's benchmark).
type Rule struct {
	// Text is the rule as it appeared in the dump (without counters).
	Text        string
	Chain       string
	Line        int32
	Proto       uint8 // 0 = any
	ProtoNeg    bool
	HasCounters bool
	// Goto is true for `-g CHAIN` (no return to this chain).
	Goto bool
	Counters

	Src, Dst  AddrMatch
	DPort     PortMatch
	Statistic *StatisticMatch
	Comment   string

	// Target is the `-j`/`-g` target: a chain name or ACCEPT, DROP, REJECT, RETURN, DNAT, SNAT,
	// MASQUERADE, MARK, ... Empty when the rule has no target (it only counts packets).
	Target string
	// ToDestination is DNAT's address[:port].
	ToDestination string
	// JumpChain is the resolved user chain for jumps and gotos (nil for builtin targets).
	JumpChain *Chain
	// Extra holds the matches and target options kube-proxy uses on few rules; nil when none.
	Extra *RuleExtra
}

// RuleExtra holds a rule's less common matches and target options.
type RuleExtra struct {
	InIface, OutIface IfaceMatch
	SPort             PortMatch
	// MultiDPorts / MultiSPorts come from `-m multiport`.
	MultiDPorts, MultiSPorts []PortRange
	MultiNeg                 bool
	SrcType, DstType         AddrTypeMatch
	Mark                     *MarkMatch
	Recent                   *RecentMatch
	CtState                  *StateMatch
	Sets                     []SetMatch
	// NFAcct is the nfacct counter name; the match always succeeds.
	NFAcct string
	// Unknown lists match modules the evaluator has no semantics for.
	Unknown []string

	// ToSource is SNAT's address; RejectWith is REJECT's --reject-with.
	ToSource   string
	RejectWith string
	// MarkOp is MARK's operation: set-xmark, set-mark, or-mark, and-mark, xor-mark.
	MarkOp          string
	MarkVal, MarkMk uint32
}

// AddrMatch is `[!] -s/-d ADDR[/MASK]`.
type AddrMatch struct {
	Set    bool
	Neg    bool
	Prefix netip.Prefix
}

// Matches reports whether a satisfies the match.
func (m *AddrMatch) Matches(a netip.Addr) bool {
	if !m.Set {
		return true
	}
	return m.Prefix.Contains(a) != m.Neg
}

// IfaceMatch is `[!] -i/-o NAME`, where a trailing + is a wildcard.
type IfaceMatch struct {
	Set  bool
	Neg  bool
	Name string
}

// PortRange is an inclusive port range; a single port has Lo == Hi.
type PortRange struct{ Lo, Hi uint16 }

// PortMatch is `[!] --dport/--sport PORT[:PORT]`.
type PortMatch struct {
	Set bool
	Neg bool
	PortRange
}

// Matches reports whether p satisfies the match.
func (m *PortMatch) Matches(p uint16) bool {
	if !m.Set {
		return true
	}
	return (p >= m.Lo && p <= m.Hi) != m.Neg
}

// AddrTypeMatch is `-m addrtype [!] --src-type/--dst-type TYPE`.
type AddrTypeMatch struct {
	Set  bool
	Neg  bool
	Type string
	// LimitIfaceIn is --limit-iface-in (only addresses on the incoming interface count).
	LimitIfaceIn bool
}

// StatisticMatch is `-m statistic --mode random --probability P` or `--mode nth --every N --packet K`.
type StatisticMatch struct {
	Neg         bool
	Mode        string
	Probability float64
	Every       int
	Packet      int
}

// MarkMatch is `-m mark [!] --mark VALUE[/MASK]`.
type MarkMatch struct {
	Neg         bool
	Value, Mask uint32
}

// RecentMatch is `-m recent` (kube-proxy's session affinity).
type RecentMatch struct {
	Name string
	// Op is set, rcheck, update or remove.
	Op      string
	Seconds int
	Reap    bool
	// Dest is true for --rdest (the default is the source address).
	Dest bool
	Neg  bool
}

// StateMatch is `-m conntrack [!] --ctstate A,B` (or the older `-m state --state`).
type StateMatch struct {
	Neg    bool
	States []string
}

// SetMatch is `-m set [!] --match-set NAME src|dst[,...]`.
type SetMatch struct {
	Neg   bool
	Name  string
	Flags []string
}

// ClusterCIDR returns the cluster CIDR kube-proxy's local-traffic detector uses, read from the
// rules themselves (`! -s CIDR -j KUBE-MARK-MASQ` in a service chain), when there is one.
func (d *Dataplane) ClusterCIDR() (netip.Prefix, bool) {
	for _, rs := range []*Ruleset{d.V4, d.V6} {
		if rs == nil || rs.Tables["nat"] == nil {
			continue
		}
		for _, c := range rs.Tables["nat"].Order {
			for _, r := range c.Rules {
				if r.Src.Set && r.Src.Neg && r.Target == "KUBE-MARK-MASQ" {
					return r.Src.Prefix, true
				}
			}
		}
	}
	return netip.Prefix{}, false
}
