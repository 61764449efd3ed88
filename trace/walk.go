package trace

import (
	"context"
	"fmt"
	"net/netip"
)

// VerdictKind is the fate of a packet at the end of one path.
type VerdictKind string

// Verdicts, as the output contract spells them.
const (
	// DNAT: the destination was rewritten to a backend and the packet passes on.
	DNAT VerdictKind = "DNAT"
	// Reject: the packet is refused with an ICMP error or a TCP reset.
	Reject VerdictKind = "REJECT"
	// Drop: the packet is silently discarded.
	Drop VerdictKind = "DROP"
	// Accept: the packet passes unchanged; no Service rule rewrote it.
	Accept VerdictKind = "ACCEPT"
)

// Verdict is where one path ends.
type Verdict struct {
	Kind VerdictKind
	// Backend is the DNAT destination (valid only for DNAT).
	Backend netip.AddrPort
	// Reason explains the verdict in words, e.g. the REJECT rule's comment.
	Reason string
}

// Step is one rule or chain boundary a packet passed on its way, in dataplane terms.
type Step struct {
	// Table and Chain locate the rule ("nat", "KUBE-SERVICES"); for nftables the chain is the nft chain.
	Table, Chain string
	// Line is the line of the rule in the dump it was read from, 0 when not known.
	Line int
	// Rule is the rule as the dataplane prints it.
	Rule string
	// Action is what the step did to the packet, in words ("jump KUBE-SVC-…", "DNAT to 10.244.1.5:80").
	Action string
	// Branch is the probability that the packet took this step, given that it reached the rule
	// (1 unless the rule splits traffic at random).
	Branch float64
	// Note adds what the reader should know about the step (affinity, an unevaluated match).
	Note string
	// Detail marks bookkeeping steps (filter-table passes, mark handling) that a person reading
	// the path can skip; machines get them all.
	Detail bool
}

// Key identifies a step for merging paths that share a prefix into a tree.
func (s Step) Key() string {
	return fmt.Sprintf("%s\x00%s\x00%d\x00%s\x00%g", s.Table, s.Chain, s.Line, s.Action, s.Branch)
}

// Path is one way a packet can go through the dataplane, with its probability.
type Path struct {
	Steps       []Step
	Probability float64
	Verdict     Verdict
	// Masquerade is true when the node rewrites the source address (SNAT/MASQUERADE).
	Masquerade bool
	// MasqueradeReason names the rule that asked for it, or why the source is kept.
	MasqueradeReason string
	// AffinitySeconds is non-zero when later connections from the same client stick to this
	// path's backend for that long (session affinity).
	AffinitySeconds int
}

// Walk is everything one evaluation of a packet produced.
type Walk struct {
	Paths []Path
	// Notes are things the evaluation could not decide exactly (unknown match modules,
	// history-dependent matches) and assumed, in words.
	Notes []string
}

// Dataplane is a node's packet-processing state (iptables, nftables or IPVS) that can be walked.
type Dataplane interface {
	// Mode names the kube-proxy mode the state belongs to: "iptables", "nftables" or "ipvs".
	Mode() string
	// Walk evaluates the packet on the node and returns every path it can take. It stops, with
	// ctx's error, soon after ctx is cancelled. It may be called from several goroutines at once
	// (check walks every Service on all cores).
	Walk(ctx context.Context, p Packet, node *NodeContext) (*Walk, error)
}

// Entry is a Service address:port a node's dataplane handles, as `check` compares it with the API.
type Entry struct {
	Addr     netip.AddrPort
	Protocol Protocol
	// Where says where it was found ("nat KUBE-SERVICES line 160", "map service-ips", "IPVS").
	Where string
	// Name is the Service port the dataplane names it by, "ns/name:port", when it does.
	Name string
}

// Lister is a dataplane that can list the Service addresses it programs.
type Lister interface {
	Entries() []Entry
}

// HopCounter is a dataplane that counts the packets its rules matched: iptables-save -c counters,
// nft counter statements. On a DNAT rule that count is the new connections it sent to its backend,
// as only a connection's first packet traverses nat.
type HopCounter interface {
	// HopPackets returns the packet count of the rule a hop passed, false when it has none.
	HopPackets(h *Hop) (uint64, bool)
}

type stepsKey struct{}

// WithoutSteps marks ctx for walks that need only each path's verdict and share: a walk under it
// may leave its paths' Steps empty (and with them what is read off the steps, such as which rule
// marked a packet for masquerade). check walks every Service port of a node this way and walks
// again, with steps, only to show a finding's evidence.
func WithoutSteps(ctx context.Context) context.Context {
	return context.WithValue(ctx, stepsKey{}, true)
}

// StepsWanted reports whether a walk under ctx records its steps.
func StepsWanted(ctx context.Context) bool { return ctx.Value(stepsKey{}) == nil }
