package iptables

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/ipvs"
	"github.com/svctrace/svctrace/trace/kubeproxy/naming"
)

// Dataplane evaluates a node's iptables rulesets (IPv4 and, if present, IPv6). In IPVS mode it
// also holds the ipsets the rules match and the IPVS table that takes packets for virtual
// servers after the INPUT hook.
type Dataplane struct {
	V4, V6 *Ruleset
	Sets   ipvs.Sets
	IPVS   *ipvs.Table

	// ipvsNode is the last node context given to Walk in IPVS mode with the virtual server
	// addresses added: check walks 20,000 ports with the same node.
	mu       sync.Mutex
	ipvsFor  *trace.NodeContext
	ipvsNode *trace.NodeContext
}

// withIPVSAddresses returns node with every virtual server address local: kube-proxy binds them
// to kube-ipvs0.
func (d *Dataplane) withIPVSAddresses(node *trace.NodeContext) *trace.NodeContext {
	addrs := d.IPVS.Addresses()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ipvsFor != node || len(d.ipvsNode.Local) != len(node.Local)+len(addrs) {
		local := *node
		local.Local = append(append([]netip.Addr(nil), node.Local...), addrs...)
		d.ipvsFor, d.ipvsNode = node, &local
	}
	return d.ipvsNode
}

// Mode implements trace.Dataplane.
func (d *Dataplane) Mode() string {
	if d.IPVS != nil {
		return "ipvs"
	}
	return "iptables"
}

// HasFamily says whether the dataplane was read for a family (IPv6's when v6): a dump of IPv4's
// rules alone says nothing of IPv6, so check leaves IPv6 cluster IPs out then.
func (d *Dataplane) HasFamily(v6 bool) bool {
	if d.IPVS != nil {
		return true
	}
	if v6 {
		return d.V6 != nil
	}
	return d.V4 != nil
}

// maxDepth and maxSteps stop a path that loops: the kernel allows 64 nested jumps, and no real
// path passes anywhere near 10,000 rules that act on it.
const (
	maxDepth = 64
	maxSteps = 10000
)

type hook uint8

const (
	prerouting hook = iota
	input
	forward
	output
	postrouting
	done
)

var hookNames = [...]string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

// hookTables lists the tables each hook traverses, in the kernel's priority order.
var hookTables = [...][]string{
	prerouting:  {"raw", "mangle", "nat"},
	input:       {"mangle", "filter", "nat"},
	forward:     {"mangle", "filter"},
	output:      {"raw", "mangle", "nat", "filter"},
	postrouting: {"mangle", "nat"},
}

type frame struct {
	chain *Chain
	next  int
	// rules are the rules of chain this packet can match, in order: all of them, or, for a big
	// chain, those for its destination address plus those without one (see Chain.candidates).
	rules []*Rule
}

// push enters a chain for the branch's current destination.
func push(c *Chain, dst netip.Addr) frame { return frame{chain: c, rules: c.candidates(dst)} }

type branch struct {
	trace.Fate
	hook     hook
	tableIdx int
	stack    []frame
	// steps counts the steps taken, recorded in Steps or not (trace.WithoutSteps).
	steps int
}

// fork clones a branch for a split, charging the steps it copies to the work budget: a walk that
// splits on every turn of a loop copies ever longer histories.
func (w *walker) fork(b *branch) *branch {
	w.budget.Charge(b.steps + len(b.stack))
	return b.clone()
}

func (b *branch) clone() *branch {
	c := *b
	c.stack = append([]frame(nil), b.stack...)
	c.CopySteps()
	return &c
}

type walker struct {
	sets  ipvs.Sets
	ipvs  *ipvs.Table
	forks []*branch
	rs    *Ruleset
	pkt   trace.Packet
	node  *trace.NodeContext
	paths []trace.Path
	notes trace.Notes
	// budget counts the rules looked at, over all branches (trace.MaxWork).
	budget *trace.Budget
	// stepless leaves the paths' steps out (trace.WithoutSteps).
	stepless bool
	// err ends the walk: IPVS could not decide (its real servers were not read).
	err error
	// missing are the set lookups a Partial set could not answer: the walk goes on as if
	// they did not match, and ends in a MissingError.
	missing []SetQuery
}

// SetQuery is one lookup of values in an ipset (values as ipset prints a member's dimensions).
type SetQuery struct {
	Set    string
	Values []string
}

// MissingError says the walk looked values up in ipsets read in part (ipvs.Set.Partial) that
// they do not say: the read tests those and walks again.
type MissingError struct {
	Queries []SetQuery
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("the walk needs %d ipset lookups that were not read (the first: %s %s)", len(e.Queries), e.Queries[0].Set, strings.Join(e.Queries[0].Values, ","))
}

// addStep records a step of the branch.
func (w *walker) addStep(b *branch, st trace.Step) {
	b.steps++
	if !w.stepless {
		b.Steps = append(b.Steps, st)
	}
}

// Walk implements trace.Dataplane: it returns every path the packet can take and its probability.
func (d *Dataplane) Walk(ctx context.Context, p trace.Packet, node *trace.NodeContext) (*trace.Walk, error) {
	rs := d.V4
	if p.Dst.Is6() && !p.Dst.Is4In6() {
		rs = d.V6
	}
	if rs == nil {
		fam := "IPv4"
		if p.Dst.Is6() {
			fam = "IPv6"
		}
		return nil, fmt.Errorf("no %s iptables rules were given for %s", fam, p.Dst)
	}
	w := &walker{rs: rs, pkt: p, node: node, sets: d.Sets, ipvs: d.IPVS, budget: trace.NewBudget(ctx), stepless: !trace.StepsWanted(ctx)}
	if d.IPVS != nil {
		w.node = d.withIPVSAddresses(node)
	}
	start := &branch{Fate: trace.Fate{Src: p.Src, Dst: p.Dst, DPort: p.DstPort, Mark: p.Mark, Prob: 1}, hook: prerouting}
	if !w.stepless {
		start.Steps = trace.NewSteps()
	}
	if p.Origin == trace.FromLocalProcess {
		start.hook = output
	}
	if err := trace.Explore(ctx, start, w.run, func() int { return len(w.paths) }); err != nil {
		return nil, err
	}
	if len(w.missing) > 0 {
		return nil, &MissingError{Queries: w.missing}
	}
	return &trace.Walk{Paths: w.paths, Notes: w.notes.List}, nil
}

func (w *walker) note(s string) { w.notes.Add(s) }

// run advances one branch until it ends, returning the branches it split off on the way.
func (w *walker) run(b *branch) ([]*branch, error) {
	var forks []*branch
	for b.Verdict == nil && b.hook != done {
		if err := w.budget.Spend(); err != nil {
			return nil, err
		}
		if len(b.stack) > maxDepth || b.steps > maxSteps {
			// The kernel refuses rulesets that loop; a dump edited by hand may still have one.
			w.note("the rules loop (jumps or gotos that never end); evaluation of that path stopped")
			b.Verdict = &trace.Verdict{Kind: trace.Drop, Reason: "the rules loop"}
			break
		}
		if len(b.stack) == 0 {
			if !w.enterTable(b) {
				if w.err != nil {
					return nil, w.err
				}
				continue
			}
		}
		f := &b.stack[len(b.stack)-1]
		if f.next >= len(f.rules) {
			w.fallOff(b)
			continue
		}
		r := f.rules[f.next]
		f.next++
		m, p, note := w.match(r, b)
		if note != "" {
			w.note(note)
		}
		if note != "" && m == noMatch {
			// Say it where it happened too: the reader sees which rule was passed over.
			w.addStep(b, trace.Step{Table: w.tableName(b), Chain: r.Chain, Line: int(r.Line), Rule: r.Text,
				Branch: 1, Action: "not evaluated, assumed not to match", Note: note})
		}
		switch m {
		case noMatch:
			continue
		case split:
			if p <= 0 {
				continue
			}
			if p < 1 {
				taken := w.fork(b)
				taken.Prob *= p
				w.apply(taken, r, p)
				forks = append(forks, taken)
				b.Prob *= 1 - p
				continue
			}
		}
		w.apply(b, r, 1)
	}
	w.finish(b)
	forks = append(forks, w.forks...)
	w.forks = nil
	return forks, nil
}

// enterTable pushes the next table's builtin chain for the branch's hook, moving through hooks as
// the kernel would. It reports whether a chain is now on the stack.
func (w *walker) enterTable(b *branch) bool {
	tables := hookTables[b.hook]
	for b.tableIdx < len(tables) {
		name := tables[b.tableIdx]
		b.tableIdx++
		if t := w.rs.Tables[name]; t != nil {
			if c := t.Chains[hookNames[b.hook]]; c != nil {
				b.stack = append(b.stack, push(c, b.Dst))
				return true
			}
		}
	}
	w.nextHook(b)
	return false
}

// nextHook moves the branch to the hook the kernel runs next, after routing.
func (w *walker) nextHook(b *branch) {
	b.tableIdx = 0
	switch b.hook {
	case prerouting:
		if w.node.IsLocal(b.Dst) {
			b.hook = input
		} else {
			b.hook = forward
		}
	case output:
		b.hook = postrouting
		if w.ipvs != nil && !b.DNAT && w.node.IsLocal(b.Dst) {
			// A node-local connection to a virtual server loops back through INPUT, where
			// IPVS takes it.
			b.hook = input
		}
	case forward:
		b.hook = postrouting
	case input:
		b.hook = done
		if w.ipvs != nil && !b.DNAT {
			w.toIPVS(b)
		}
	default:
		b.hook = done
	}
}

func (w *walker) tableName(b *branch) string {
	return hookTables[b.hook][b.tableIdx-1]
}

// fallOff handles reaching the end of a chain: return to the caller, or apply a builtin policy.
func (w *walker) fallOff(b *branch) {
	top := b.stack[len(b.stack)-1]
	b.stack = b.stack[:len(b.stack)-1]
	if len(b.stack) > 0 {
		return
	}
	if top.chain.Policy == "DROP" {
		w.addStep(b, trace.Step{Table: w.tableName(b), Chain: top.chain.Name, Branch: 1,
			Action: "policy DROP", Rule: ":" + top.chain.Name + " DROP"})
		b.Verdict = &trace.Verdict{Kind: trace.Drop, Reason: fmt.Sprintf("policy DROP of %s %s", w.tableName(b), top.chain.Name)}
	}
}

// noExtra stands in, read-only, for a rule without extras.
var noExtra RuleExtra

type matchResult uint8

const (
	noMatch matchResult = iota
	yes
	split
)

// match evaluates the rule's matches for the branch's packet. A random split returns split with
// the probability of matching.
func (w *walker) match(r *Rule, b *branch) (matchResult, float64, string) {
	pkt := &w.pkt
	if r.Proto != 0 && (r.Proto == uint8(pkt.Protocol)) == r.ProtoNeg {
		return noMatch, 0, ""
	}
	if !r.Src.Matches(b.Src) || !r.Dst.Matches(b.Dst) {
		return noMatch, 0, ""
	}
	if !r.DPort.Matches(b.DPort) {
		return noMatch, 0, ""
	}
	if x := r.Extra; x != nil {
		if ok, note := w.matchExtra(r, x, b); !ok {
			return noMatch, 0, note
		}
	}
	if st := r.Statistic; st != nil {
		p := st.Probability
		if st.Mode == "nth" {
			p = 1 / float64(st.Every)
			w.note(fmt.Sprintf("line %d picks every %dth packet; shown as a share of 1/%d", r.Line, st.Every, st.Every))
		} else if st.Mode != "random" {
			return noMatch, 0, fmt.Sprintf("line %d: statistic mode %q is not evaluated; assumed not to match", r.Line, st.Mode)
		}
		if st.Neg {
			p = 1 - p
		}
		return split, p, ""
	}
	return yes, 1, ""
}

// matchExtra evaluates the matches kept in RuleExtra. It reports whether they all match and, when
// one could not be decided, a note saying what was assumed.
func (w *walker) matchExtra(r *Rule, x *RuleExtra, b *branch) (bool, string) {
	pkt := &w.pkt
	if x.SPort.Set {
		return false, fmt.Sprintf("line %d matches a source port; the packet's source port is unknown, so it was assumed not to match", r.Line)
	}
	if len(x.MultiDPorts) > 0 {
		in := false
		for _, pr := range x.MultiDPorts {
			in = in || b.DPort >= pr.Lo && b.DPort <= pr.Hi
		}
		if in == x.MultiNeg {
			return false, ""
		}
	}
	if x.InIface.Set {
		if b.hook == output || b.hook == postrouting && pkt.Origin == trace.FromLocalProcess {
			// A packet a process on the node sends has no input interface: `-i X` fails and
			// `! -i X` matches (kube-proxy's interface detectors count the node as not a pod).
			if !x.InIface.Neg {
				return false, ""
			}
		} else if pkt.InInterface == "" {
			// kube-proxy matches input interfaces to tell pod traffic (detectLocalMode
			// InterfaceNamePrefix or BridgeInterface): a packet from a pod on this node arrives
			// on a pod interface, any other does not. Without the node's pod ranges, assume no.
			fromPod, known := w.node.FromLocalPod(b.Src)
			note := fmt.Sprintf("line %d matches the input interface (%s): a packet from a pod on this node was taken to arrive on a pod interface, any other not (--in-interface says which)", r.Line, x.InIface.Name)
			if !known {
				note = fmt.Sprintf("line %d matches the input interface (%s); none was given (--in-interface) and the node's pod ranges are unknown, so the packet was taken not to come from a pod interface", r.Line, x.InIface.Name)
			}
			if fromPod == x.InIface.Neg {
				return false, note
			}
			w.note(note)
		} else if ifaceMatches(x.InIface.Name, pkt.InInterface) == x.InIface.Neg {
			return false, ""
		}
	}
	if x.OutIface.Set {
		return false, fmt.Sprintf("line %d matches the output interface (%s), which depends on routing; it was assumed not to match", r.Line, x.OutIface.Name)
	}
	for _, at := range []struct {
		m *AddrTypeMatch
		a netip.Addr
	}{{&x.SrcType, b.Src}, {&x.DstType, b.Dst}} {
		if !at.m.Set {
			continue
		}
		ok, known := w.addrType(at.m.Type, at.a)
		if !known {
			return false, fmt.Sprintf("line %d: address type %s is not evaluated; assumed not to match", r.Line, at.m.Type)
		}
		if ok == at.m.Neg {
			return false, ""
		}
	}
	if x.Mark != nil && ((b.Mark&x.Mark.Mask) == x.Mark.Value) == x.Mark.Neg {
		return false, ""
	}
	if x.CtState != nil {
		in := false
		for _, s := range x.CtState.States {
			in = in || s == "NEW" || s == "DNAT" && b.DNAT
		}
		if in == x.CtState.Neg {
			return false, ""
		}
	}
	for _, sm := range x.Sets {
		if w.sets == nil {
			return false, fmt.Sprintf("line %d matches ipset %s; ipset contents were not given (ipset save), so it was assumed not to match", r.Line, sm.Name)
		}
		in, note := w.inSet(sm, b)
		if note != "" {
			return false, fmt.Sprintf("line %d: %s; assumed not to match", r.Line, note)
		}
		if in == sm.Neg {
			return false, ""
		}
	}
	if len(x.Unknown) > 0 {
		return false, fmt.Sprintf("line %d uses %s, which svctrace does not evaluate; it was assumed not to match", r.Line, strings.Join(x.Unknown, ", "))
	}
	if rc := x.Recent; rc != nil && rc.Op != "set" {
		// History-dependent: a first connection has no entry in the recent list.
		if rc.Seconds > 0 && b.Affinity == 0 {
			b.Affinity = rc.Seconds
		}
		if !rc.Neg {
			return false, ""
		}
	}
	return true, ""
}

func ifaceMatches(pattern, name string) bool {
	if strings.HasSuffix(pattern, "+") {
		return strings.HasPrefix(name, pattern[:len(pattern)-1])
	}
	return pattern == name
}

func (w *walker) addrType(t string, a netip.Addr) (match, known bool) {
	switch t {
	case "LOCAL":
		return w.node.IsLocal(a), true
	case "UNICAST":
		return !a.IsMulticast(), true
	case "MULTICAST":
		return a.IsMulticast(), true
	}
	return false, false
}

// apply runs the rule's target on the branch. branchP is the probability of this rule having
// matched given that the packet reached it.
func (w *walker) apply(b *branch, r *Rule, branchP float64) {
	table := w.tableName(b)
	step := trace.Step{Table: table, Chain: r.Chain, Line: int(r.Line), Rule: r.Text, Branch: branchP}
	detail := table != "nat" || b.hook == postrouting
	t := r.Target
	x := r.Extra
	if x == nil {
		x = &noExtra
	}
	switch {
	case r.JumpChain != nil:
		// (The action's text is made only for steps that are kept: check walks 20,000 ports.)
		if r.Goto {
			if !w.stepless {
				step.Action = "goto " + t
			}
			b.stack[len(b.stack)-1] = push(r.JumpChain, b.Dst)
		} else {
			if !w.stepless {
				step.Action = "jump " + t
			}
			b.stack = append(b.stack, push(r.JumpChain, b.Dst))
		}
		if x.Recent != nil && x.Recent.Op == "set" && b.Affinity > 0 {
			step.Note = fmt.Sprintf("session affinity: this client's later connections stick to this endpoint for %ds", b.Affinity)
		}
	case t == "":
		return
	case t == "RETURN":
		step.Action, detail = "return", true
		// Returning from a builtin chain applies its policy, exactly like falling off its end.
		w.fallOff(b)
	case t == "ACCEPT":
		step.Action = "accept"
		b.stack = b.stack[:0]
	case t == "DROP":
		step.Action, detail = "drop", false
		b.Verdict = &trace.Verdict{Kind: trace.Drop, Reason: reason(r, "dropped by "+table+" "+r.Chain)}
	case t == "REJECT":
		step.Action, detail = "reject", false
		if x.RejectWith != "" {
			step.Action += " with " + x.RejectWith
		}
		b.Verdict = &trace.Verdict{Kind: trace.Reject, Reason: reason(r, "rejected by "+table+" "+r.Chain)}
	case t == "DNAT":
		dst, port, err := parseNATTarget(r.ToDestination, b.DPort)
		if err != nil {
			w.note(fmt.Sprintf("line %d: %v; the rule was skipped", r.Line, err))
			return
		}
		b.Dst, b.DPort, b.DNAT = dst, port, true
		detail = false
		if !w.stepless {
			step.Action = "DNAT to " + netip.AddrPortFrom(dst, port).String()
		}
		b.stack = b.stack[:0]
	case t == "MASQUERADE" || t == "SNAT":
		step.Action, detail = strings.ToLower(t), false
		if t == "SNAT" {
			step.Action += " to " + x.ToSource
		}
		b.Masq = true
		b.MasqReason = b.MarkedBy
		if b.MasqReason == "" {
			b.MasqReason = fmt.Sprintf("%s rule at line %d", r.Chain, r.Line)
		}
		b.stack = b.stack[:0]
	case t == "MARK":
		before := b.Mark
		switch x.MarkOp {
		case "set-xmark":
			b.Mark = (b.Mark &^ x.MarkMk) ^ x.MarkVal
		case "set-mark":
			b.Mark = (b.Mark &^ x.MarkMk) | x.MarkVal
		case "or-mark":
			b.Mark |= x.MarkVal
		case "and-mark":
			b.Mark &= x.MarkVal
		case "xor-mark":
			b.Mark ^= x.MarkVal
		}
		detail = true
		if !w.stepless {
			step.Action = fmt.Sprintf("mark 0x%x", b.Mark)
		}
		if b.Mark&^before != 0 && len(b.Steps) > 0 {
			// Name the rule that sent the packet here: that is the reason a person wants.
			prev := b.Steps[len(b.Steps)-1]
			b.MarkedBy = fmt.Sprintf("%s (%s line %d)", describe(prev), prev.Chain, prev.Line)
		}
	case t == "LOG" || t == "NFLOG":
		step.Action, detail = "log", true
	default:
		w.note(fmt.Sprintf("line %d: target %s is not evaluated; the packet was assumed to continue", r.Line, t))
		step.Action, detail = "unevaluated target "+t, true
	}
	step.Detail = detail
	w.addStep(b, step)
}

// reason prefers the rule's own comment, which kube-proxy writes for people.
func reason(r *Rule, fallback string) string {
	if r.Comment != "" {
		return r.Comment
	}
	return fallback
}

func describe(s trace.Step) string {
	if s.Rule == "" {
		return s.Chain
	}
	if c := naming.RuleComment(s.Rule); c != "" {
		return fmt.Sprintf("%q", c)
	}
	return s.Chain
}

// finish turns an ended branch into a path.
func (w *walker) finish(b *branch) { w.paths = append(w.paths, b.Path(w.node)) }

// parseNATTarget reads DNAT's --to-destination: ADDR, ADDR:PORT, [V6]:PORT, or a range whose
// first element is taken.
func parseNATTarget(s string, port uint16) (netip.Addr, uint16, error) {
	if s == "" {
		return netip.Addr{}, 0, fmt.Errorf("DNAT without --to-destination")
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr(), ap.Port(), nil
	}
	host, p := s, ""
	if i := strings.LastIndexByte(s, ':'); i > 0 && strings.Count(s, ":") == 1 {
		host, p = s[:i], s[i+1:]
	}
	host, _, _ = strings.Cut(host, "-")
	host = strings.Trim(host, "[]")
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("bad DNAT destination %q", s)
	}
	if p != "" {
		p, _, _ = strings.Cut(p, "-")
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return netip.Addr{}, 0, fmt.Errorf("bad DNAT port in %q", s)
		}
		port = uint16(n)
	}
	return a, port, nil
}

// inSet evaluates `-m set --match-set NAME src,dst,...` for the packet.
func (w *walker) inSet(sm SetMatch, b *branch) (bool, string) {
	set := w.sets[sm.Name]
	if set == nil {
		return false, fmt.Sprintf("ipset %s is not in the ipset dump", sm.Name)
	}
	dims := set.Dimensions()
	bitmap := strings.HasPrefix(set.Type, "bitmap:")
	if len(sm.Flags) < len(dims) {
		return false, fmt.Sprintf("ipset %s has %d dimensions but the rule names %d", sm.Name, len(dims), len(sm.Flags))
	}
	vals := make([]string, len(dims))
	for i, d := range dims {
		src := sm.Flags[i] == "src"
		switch {
		case d == "port" && src:
			return false, fmt.Sprintf("ipset %s is matched on the source port, which is not known", sm.Name)
		case d == "port":
			vals[i] = ipvs.Value(d, netip.Addr{}, w.pkt.Protocol.String(), b.DPort, bitmap)
		case src:
			vals[i] = b.Src.String()
		default:
			vals[i] = b.Dst.String()
		}
	}
	in, known := set.Lookup(vals)
	if !known {
		w.missing = append(w.missing, SetQuery{Set: sm.Name, Values: vals})
	}
	return in, ""
}

// toIPVS hands a packet that reached INPUT to IPVS (trace/ipvs decides: a virtual server for its
// destination picks a real server by the scheduler's shares); each pick is a branch, which leaves
// through POSTROUTING.
func (w *walker) toIPVS(b *branch) {
	c, err := w.ipvs.Choose(w.pkt.Protocol.String(), netip.AddrPortFrom(b.Dst, b.DPort))
	if c == nil {
		w.err = err
		return
	}
	if c.Persistent > 0 && b.Affinity == 0 {
		b.Affinity = c.Persistent
	}
	w.note(c.Note)
	if len(c.Picks) == 0 {
		w.addStep(b, trace.Step{Table: "ipvs", Chain: c.Where, Branch: 1, Action: "no real server to choose"})
		b.Verdict = &trace.Verdict{Kind: trace.Reject, Reason: fmt.Sprintf("IPVS virtual server %s has no real servers (or only draining ones, weight 0)", c.Addr)}
		return
	}
	total := b.Prob
	// Clone before changing anything: the clones must not inherit the first real server's step.
	targets := []*branch{b}
	for range c.Picks[1:] {
		f := w.fork(b)
		w.forks = append(w.forks, f)
		targets = append(targets, f)
	}
	for n, p := range c.Picks {
		target := targets[n]
		target.Prob = total * p.Share
		target.Dst, target.DPort, target.DNAT = p.Real.Addr.Addr(), p.Real.Addr.Port(), true
		w.addStep(target, trace.Step{Table: "ipvs", Chain: c.Where, Branch: p.Share, Action: p.Action, Note: p.Note})
		target.hook = postrouting
	}
}
