package trace

import (
	"context"
	"fmt"
	"net/netip"
)

// MaxPaths bounds an evaluation: kube-proxy's layouts yield one path per endpoint, so more than
// this means a pathological ruleset, and the walk stops rather than exhaust memory.
const MaxPaths = 1 << 17

// MaxWork bounds the rules one evaluation looks at, over all its branches: a real packet passes a
// few dozen per endpoint (and big chains are indexed), so a ruleset that needs more, such as a
// loop that splits on every turn, stops the walk in well under a second instead of running for
// minutes and writing a tree of hundreds of megabytes.
const MaxWork = 1_000_000

// ErrTooMuchWork is returned when an evaluation passes MaxWork rules.
var ErrTooMuchWork = fmt.Errorf("evaluating this packet takes more than %d rule steps (the rules loop or split without end); refusing to go on", MaxWork)

// Fate is the state every dataplane walker tracks for one branch of a packet: where it is
// addressed now, its mark, its share of traffic, the steps it took and how it ended.
type Fate struct {
	Src, Dst   netip.Addr
	DPort      uint16
	Mark       uint32
	DNAT       bool
	Prob       float64
	Steps      []Step
	Verdict    *Verdict
	Masq       bool
	MasqReason string
	// MarkedBy names the rule that set the masquerade mark, the reason a person wants.
	MarkedBy string
	Affinity int
}

// CopySteps gives a cloned branch its own step list.
//
// The copy has room for stepRoom more steps: a branch split off in a Service's chain takes a
// dozen more before it ends, and growing the slice step by step was most of what check -A
// allocated.
func (f *Fate) CopySteps() {
	if f.Steps == nil { // a walk without steps (WithoutSteps)
		return
	}
	steps := make([]Step, len(f.Steps), len(f.Steps)+stepRoom)
	copy(steps, f.Steps)
	f.Steps = steps
}

// stepRoom is the room a walk's first branch, and each copy of one, has for more steps.
const stepRoom = 24

// NewSteps is the step list of a walk's first branch.
func NewSteps() []Step { return make([]Step, 0, stepRoom) }

// Path turns an ended branch into a path: its verdict (an explicit one, the DNAT it received, or
// ACCEPT with where the packet goes) and why its source is or is not masqueraded.
func (f *Fate) Path(node *NodeContext) Path {
	p := Path{Steps: f.Steps, Probability: f.Prob, Masquerade: f.Masq, MasqueradeReason: f.MasqReason, AffinitySeconds: f.Affinity}
	switch {
	case f.Verdict != nil:
		p.Verdict = *f.Verdict
	case f.DNAT:
		p.Verdict = Verdict{Kind: DNAT, Backend: netip.AddrPortFrom(f.Dst, f.DPort)}
	default:
		reason := "no Service rule matched: forwarded as addressed"
		if node.IsLocal(f.Dst) {
			reason = "no Service rule matched: delivered to the node itself"
		}
		p.Verdict = Verdict{Kind: Accept, Reason: reason}
	}
	if !p.Masquerade && p.Verdict.Kind == DNAT {
		p.MasqueradeReason = "no rule marked the packet for masquerade: the source address is kept"
		if f.MarkedBy != "" {
			p.MasqueradeReason = "marked by " + f.MarkedBy + ", but no masquerade rule matched"
		}
	}
	return p
}

// Notes collects what an evaluation assumed, once each, in order.
type Notes struct {
	seen map[string]bool
	List []string
}

// Add records a note; empty and repeated notes are ignored.
func (n *Notes) Add(s string) {
	if s == "" || n.seen[s] {
		return
	}
	if n.seen == nil {
		n.seen = map[string]bool{}
	}
	n.seen[s] = true
	n.List = append(n.List, s)
}

// Budget is the work one evaluation may do: MaxWork rule steps over all its branches, and no more
// once its context is cancelled (Ctrl-C, a deadline). Walkers call Spend for every rule they
// look at and Charge for the steps a fork copies.
type Budget struct {
	ctx  context.Context
	work int
}

// NewBudget returns a budget that ends with ctx.
func NewBudget(ctx context.Context) *Budget { return &Budget{ctx: ctx} }

// Charge adds n units of work without checking; the next Spend reports an overrun.
func (b *Budget) Charge(n int) { b.work += n }

// Spend counts one rule step. It returns ErrTooMuchWork past MaxWork and the context's error once
// it is cancelled (looked at every 1,024 steps, well under a millisecond of walking).
func (b *Budget) Spend() error {
	b.work++
	if b.work > MaxWork {
		return ErrTooMuchWork
	}
	if b.work&1023 == 0 {
		return b.ctx.Err()
	}
	return nil
}

// Explore runs branches to their ends: run advances one branch and returns the branches it split
// off on the way; ended reports how many paths have ended so far. It stops when ctx is cancelled.
func Explore[B any](ctx context.Context, start B, run func(B) ([]B, error), ended func() int) error {
	work := []B{start}
	for len(work) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := work[len(work)-1]
		work = work[:len(work)-1]
		forks, err := run(b)
		if err != nil {
			return err
		}
		work = append(work, forks...)
		if ended()+len(work) > MaxPaths {
			return fmt.Errorf("the ruleset splits this packet into more than %d paths; refusing to go on", MaxPaths)
		}
	}
	return nil
}
