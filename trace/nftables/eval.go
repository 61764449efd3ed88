package nftables

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/svctrace/svctrace/trace"
)

// maxDepth and maxSteps stop a path that loops: the kernel allows 64 nested jumps, and no real
// path passes anywhere near 10,000 rules that act on it.
const (
	maxDepth = 64
	maxSteps = 10000
)

type frame struct {
	chain *Chain
	next  int
}

type branch struct {
	trace.Fate
	hook    string
	baseIdx int
	stack   []frame
	// reason is what a map element's comment said about the service the packet is for.
	reason string
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
	rs     *Ruleset
	family string
	pkt    trace.Packet
	node   *trace.NodeContext
	bases  map[string][]*Chain
	paths  []trace.Path
	notes  trace.Notes
	forks  []*branch
	// budget counts the rules looked at, over all branches (trace.MaxWork); err is why it ran out.
	budget *trace.Budget
	err    error
	// missing are the objects a partially read table lacked (see Table.Partial); values the
	// packet's values of the element keys among them.
	missing map[Object]bool
	values  map[Object]any
	// stepless leaves the paths' steps out (trace.WithoutSteps); scratch takes the step then.
	stepless bool
	scratch  trace.Step
}

// Walk implements trace.Dataplane.
func (d *Dataplane) Walk(ctx context.Context, p trace.Packet, node *trace.NodeContext) (*trace.Walk, error) {
	family := "ip"
	if p.Dst.Is6() && !p.Dst.Is4In6() {
		family = "ip6"
	}
	w := &walker{rs: d.Rules, family: family, pkt: p, node: node, bases: map[string][]*Chain{}, budget: trace.NewBudget(ctx), stepless: !trace.StepsWanted(ctx)}
	for _, t := range d.Rules.Tables {
		if t.Family != family && t.Family != "inet" {
			continue
		}
		for _, c := range t.Chains {
			if c.Base() {
				w.bases[c.Hook] = append(w.bases[c.Hook], c)
			}
		}
	}
	for h := range w.bases {
		cs := w.bases[h]
		sort.SliceStable(cs, func(i, j int) bool {
			if cs[i].Prio != cs[j].Prio {
				return cs[i].Prio < cs[j].Prio
			}
			return cs[i].Table.Name+cs[i].Name < cs[j].Table.Name+cs[j].Name
		})
	}
	start := &branch{Fate: trace.Fate{Src: p.Src, Dst: p.Dst, DPort: p.DstPort, Mark: p.Mark, Prob: 1}, hook: "prerouting"}
	if !w.stepless {
		start.Steps = trace.NewSteps()
	}
	if p.Origin == trace.FromLocalProcess {
		start.hook = "output"
	}
	err := trace.Explore(ctx, start, func(b *branch) ([]*branch, error) {
		w.forks = nil
		w.run(b)
		if w.err != nil {
			return nil, w.err
		}
		return w.forks, nil
	}, func() int { return len(w.paths) })
	if err != nil {
		return nil, err
	}
	if err := missingError(w.missing, w.values); err != nil {
		return nil, err
	}
	return &trace.Walk{Paths: w.paths, Notes: w.notes.List}, nil
}

// absent records that t lacks a chain or set the walk needs; it reports whether t was read only
// in part, so that the branch cannot go on (the object exists, but was not read).
func (w *walker) absent(b *branch, t *Table, kind, name string) bool {
	if !t.Partial {
		return false
	}
	if w.missing == nil {
		w.missing = map[Object]bool{}
	}
	w.missing[Object{Family: t.Family, Table: t.Name, Kind: kind, Name: name}] = true
	// The branch ends here; its path is not reported (the walk returns the MissingError).
	b.Verdict = &trace.Verdict{Kind: trace.Drop, Reason: "not read"}
	return true
}

// unprobed records that a partial set was not asked for the packet's key v (canonically k).
func (w *walker) unprobed(b *branch, t *Table, name, k string, v any) {
	if w.missing == nil {
		w.missing = map[Object]bool{}
	}
	if w.values == nil {
		w.values = map[Object]any{}
	}
	o := Object{Family: t.Family, Table: t.Name, Kind: "element", Name: name, Key: k}
	w.missing[o], w.values[o] = true, v
	b.Verdict = &trace.Verdict{Kind: trace.Drop, Reason: "not read"}
}

func (w *walker) note(s string) { w.notes.Add(s) }

func (w *walker) run(b *branch) {
	for b.Verdict == nil && b.hook != "" {
		if w.err = w.budget.Spend(); w.err != nil {
			return
		}
		if len(b.stack) > maxDepth || b.steps > maxSteps {
			// The kernel refuses rulesets that loop; a dump edited by hand may still have one.
			w.note("the rules loop (jumps or gotos that never end); evaluation of that path stopped")
			b.Verdict = &trace.Verdict{Kind: trace.Drop, Reason: "the rules loop"}
			break
		}
		if len(b.stack) == 0 {
			bases := w.bases[b.hook]
			if b.baseIdx >= len(bases) {
				w.nextHook(b)
				continue
			}
			b.stack = append(b.stack, frame{chain: bases[b.baseIdx]})
			b.baseIdx++
		}
		f := &b.stack[len(b.stack)-1]
		if f.next >= len(f.chain.Rules) {
			w.fallOff(b)
			continue
		}
		r := f.chain.Rules[f.next]
		f.next++
		w.execRule(b, r)
	}
	w.finish(b)
}

func (w *walker) nextHook(b *branch) {
	b.baseIdx = 0
	switch b.hook {
	case "prerouting":
		if w.node.IsLocal(b.Dst) {
			b.hook = "input"
		} else {
			b.hook = "forward"
		}
	case "forward", "output":
		b.hook = "postrouting"
	default:
		b.hook = ""
	}
}

// fallOff returns from a regular chain, or applies a base chain's policy.
func (w *walker) fallOff(b *branch) {
	top := b.stack[len(b.stack)-1]
	b.stack = b.stack[:len(b.stack)-1]
	if len(b.stack) == 0 && top.chain.Policy == "drop" {
		w.addStep(b, trace.Step{Table: tableName(top.chain), Chain: top.chain.Name, Branch: 1, Action: "policy drop"})
		b.Verdict = &trace.Verdict{Kind: trace.Drop, Reason: "policy drop of chain " + top.chain.Name}
	}
}

func tableName(c *Chain) string { return c.Table.Family + " " + c.Table.Name }

// step records a rule the packet passed. Filter-chain and postrouting passes are detail: the
// service decision happens in the nat chains; callers clear Detail for verdicts.
func (w *walker) step(b *branch, r *Rule, action string, p float64) *trace.Step {
	base := b.stack[0].chain
	return w.addStep(b, trace.Step{Table: tableName(base), Chain: r.Chain, Rule: r.Shown(),
		Action: action, Branch: p, Detail: base.Type != "nat" || b.hook == "postrouting"})
}

// addStep records a step of the branch and returns it for the caller to complete; in a walk
// without steps it returns a scratch step, not kept.
func (w *walker) addStep(b *branch, st trace.Step) *trace.Step {
	b.steps++
	if w.stepless {
		w.scratch = st
		return &w.scratch
	}
	b.Steps = append(b.Steps, st)
	return &b.Steps[len(b.Steps)-1]
}

// execRule runs a rule's statements in order until one does not match or a verdict ends it.
func (w *walker) execRule(b *branch, r *Rule) {
	for _, s := range r.Exprs {
		if b.Verdict != nil { // a missing object ended the branch (absent)
			return
		}
		for k, v := range s {
			switch k {
			case "match":
				ok, note := w.match(b, r, v)
				if note != "" {
					w.note(note)
					w.step(b, r, "not evaluated, assumed not to match", 1).Note = note
				}
				if !ok {
					return
				}
			case "counter", "comment", "log", "limit", "notrack":
			case "mangle":
				w.mangle(b, r, v)
			case "set":
				// "update @affinity-… { ip saddr }": remembers the client for session affinity.
			case "masquerade", "snat":
				b.Masq, b.MasqReason = true, b.MarkedBy
				if strings.Contains(r.Text, "@hairpin-connections") {
					b.MasqReason = "hairpin: the pod reaches itself through its Service (set hairpin-connections)"
				} else if b.MasqReason == "" {
					b.MasqReason = fmt.Sprintf("%s rule handle %d", r.Chain, r.Handle)
				}
				w.step(b, r, "masquerade", 1).Detail = false
				b.stack = b.stack[:0]
				return
			case "dnat":
				w.dnat(b, r, v)
				return
			case "vmap":
				// A key the map lacks ends the rule too: evaluation goes on with the next rule.
				w.vmap(b, r, v)
				return
			default:
				if w.verdict(b, r, k, v, 1) {
					return
				}
				w.note(fmt.Sprintf("chain %s rule handle %d: statement %q is not evaluated; the rule was skipped", r.Chain, r.Handle, k))
				return
			}
		}
	}
}

// verdict applies a verdict statement; it reports whether k was one.
func (w *walker) verdict(b *branch, r *Rule, k string, v any, p float64) bool {
	target := ""
	if m, ok := v.(map[string]any); ok {
		target, _ = m["target"].(string)
	}
	switch k {
	case "jump", "goto":
		t := b.stack[len(b.stack)-1].chain.Table
		c := t.Chains[target]
		if c == nil { // Parse checked every target; a map's data may still name none
			w.absent(b, t, "chain", target)
			return true
		}
		w.step(b, r, k+" "+target, p)
		if k == "goto" {
			b.stack[len(b.stack)-1] = frame{chain: c}
		} else {
			b.stack = append(b.stack, frame{chain: c})
		}
	case "return":
		w.step(b, r, "return", p).Detail = true
		w.fallOff(b)
	case "accept":
		w.step(b, r, "accept", p)
		b.stack = b.stack[:0]
	case "drop":
		w.step(b, r, "drop", p).Detail = false
		reason := "dropped by chain " + r.Chain
		if b.reason != "" {
			reason = b.reason + " has no local endpoints"
			if strings.HasPrefix(r.Chain, "firewall-") {
				reason = b.reason + ": source not in loadBalancerSourceRanges"
			}
		} else if ref := trace.ServiceFromNftChain(r.Chain); ref != nil && strings.HasPrefix(r.Chain, "firewall-") {
			reason = ref.String() + ": source not in loadBalancerSourceRanges"
		}
		b.Verdict = &trace.Verdict{Kind: trace.Drop, Reason: reason}
	case "reject":
		w.step(b, r, "reject", p).Detail = false
		reason := "rejected by chain " + r.Chain
		if b.reason != "" {
			reason = b.reason + " has no endpoints"
		}
		b.Verdict = &trace.Verdict{Kind: trace.Reject, Reason: reason}
	case "continue":
	default:
		return false
	}
	return true
}

func (w *walker) mangle(b *branch, r *Rule, v any) {
	m, _ := v.(map[string]any)
	if FormatExpr(m["key"]) != "meta mark" {
		w.note(fmt.Sprintf("chain %s rule handle %d sets %s, which is not evaluated", r.Chain, r.Handle, FormatExpr(m["key"])))
		return
	}
	val, ok := w.value(b, m["value"])
	n, isNum := val.(uint64)
	if !ok || !isNum {
		w.note(fmt.Sprintf("chain %s rule handle %d: mark value %s is not evaluated", r.Chain, r.Handle, FormatExpr(m["value"])))
		return
	}
	before := b.Mark
	b.Mark = uint32(n)
	st := w.step(b, r, fmt.Sprintf("mark 0x%x", b.Mark), 1)
	if b.hook == "postrouting" {
		st.Detail = true
	}
	if b.Mark&^before != 0 {
		b.MarkedBy = fmt.Sprintf("%q (chain %s)", r.Text, r.Chain)
	}
}

// numgen returns the modulus of a `numgen random mod N` expression.
func numgen(e any) (int, bool) {
	m, _ := e.(map[string]any)
	ng, ok := m["numgen"].(map[string]any)
	if !ok {
		return 0, false
	}
	mod, _ := ng["mod"].(float64)
	off, _ := ng["offset"].(float64)
	if mod < 1 || mod > math.MaxUint32 || off != 0 {
		return 0, false
	}
	return int(mod), true
}

// lookup finds a map's entries: a named map ("@name") or an anonymous one ({"set": [...]}).
func (w *walker) lookup(b *branch, data any) ([]Elem, string) {
	if name, ok := data.(string); ok && strings.HasPrefix(name, "@") {
		t := b.stack[len(b.stack)-1].chain.Table
		if s := t.Sets[name[1:]]; s != nil && !s.Partial {
			return s.Elems, s.Name
		}
		w.absent(b, t, "set", name[1:])
		return nil, name[1:]
	}
	m, _ := data.(map[string]any)
	items, _ := m["set"].([]any)
	var out []Elem
	for _, it := range items {
		if pair, ok := it.([]any); ok && len(pair) == 2 {
			out = append(out, Elem{Key: pair[0], Data: pair[1]})
		} else {
			out = append(out, Elem{Key: it})
		}
	}
	return out, ""
}

// vmap applies a verdict map: split by numgen, or look the packet's key up.
func (w *walker) vmap(b *branch, r *Rule, v any) bool {
	m, _ := v.(map[string]any)
	if n, ok := numgen(m["key"]); ok {
		elems, _ := w.lookup(b, m["data"])
		w.splitN(b, n, elems, func(br *branch, e Elem, p float64) {
			for k, vv := range asMap(e.Data) {
				w.verdict(br, r, k, vv, p)
			}
		})
		return true
	}
	key, known := w.value(b, m["key"])
	if !known {
		w.note(fmt.Sprintf("chain %s rule handle %d: key %s is not evaluated; the map was not consulted", r.Chain, r.Handle, FormatExpr(m["key"])))
		return false
	}
	var elems []Elem
	if name, ok := m["data"].(string); ok && strings.HasPrefix(name, "@") {
		// A named map is looked up by key (a partially read one asks for just that key).
		if e, found := w.find(b, name[1:], key); found {
			elems = []Elem{e}
		}
	} else {
		elems, _ = w.lookup(b, m["data"])
	}
	for _, e := range elems {
		if eq(key, e.Key) {
			if e.Comment != "" {
				b.reason = e.Comment
			}
			for k, vv := range asMap(e.Data) {
				w.verdict(b, r, k, vv, 1)
			}
			return true
		}
	}
	return false
}

func asMap(v any) map[string]any {
	switch x := v.(type) {
	case map[string]any:
		return x
	case string:
		return map[string]any{x: nil}
	}
	return nil
}

// splitN forks the branch into n equal shares, one per numgen value; values the map lacks fall
// through to the next rule.
func (w *walker) splitN(b *branch, n int, elems []Elem, apply func(*branch, Elem, float64)) {
	// Only the values the map has are visited, in order: the modulus can be anything a file says
	// (a numgen mod 10^12 once spun here value by value).
	byIndex := map[int]Elem{}
	for _, e := range elems {
		if f, ok := e.Key.(float64); ok && f >= 0 && f < float64(n) && f == float64(int(f)) {
			byIndex[int(f)] = e
		}
	}
	indexes := make([]int, 0, len(byIndex))
	for i := range byIndex {
		indexes = append(indexes, i)
	}
	sort.Ints(indexes)
	total := b.Prob
	p := 1 / float64(n)
	missing := n - len(indexes)
	// Clone before applying anything: applying changes the branch the clones copy.
	var targets []*branch
	var chosen []Elem
	for _, i := range indexes {
		target := b
		if len(targets) > 0 {
			target = w.fork(b)
			w.forks = append(w.forks, target)
		}
		targets = append(targets, target)
		chosen = append(chosen, byIndex[i])
	}
	if missing > 0 {
		// The values the map lacks fall through to the next rule, on a branch of their own.
		rest := w.fork(b)
		rest.Prob = total * float64(missing) / float64(n)
		w.forks = append(w.forks, rest)
		if len(targets) == 0 {
			b.Prob = 0 // every value falls through: the fork carries the traffic
			b.Verdict = &trace.Verdict{Kind: trace.Accept}
		}
	}
	for i, t := range targets {
		t.Prob = total * p
		apply(t, chosen[i], p)
	}
	if missing > 0 {
		w.note(fmt.Sprintf("a numgen map has %d of %d values missing; those packets fall through", missing, n))
	}
}

func (w *walker) dnat(b *branch, r *Rule, v any) {
	m, _ := v.(map[string]any)
	port := b.DPort
	if p, ok := m["port"].(float64); ok {
		port = uint16(p)
	}
	apply := func(br *branch, addr any, p float64) {
		var a netip.Addr
		pt := port
		switch x := addr.(type) {
		case string:
			a, _ = netip.ParseAddr(x)
		case map[string]any:
			if c, ok := x["concat"].([]any); ok && len(c) == 2 {
				s, _ := c[0].(string)
				a, _ = netip.ParseAddr(s)
				if f, ok := c[1].(float64); ok {
					pt = uint16(f)
				}
			}
		}
		if !a.IsValid() {
			w.note(fmt.Sprintf("chain %s rule handle %d: DNAT target %s is not understood", r.Chain, r.Handle, FormatExpr(addr)))
			return
		}
		br.Dst, br.DPort, br.DNAT = a, pt, true
		w.step(br, r, "DNAT to "+netip.AddrPortFrom(a, pt).String(), p)
		br.stack = br.stack[:0]
	}
	if mp, ok := asMap(m["addr"])["map"].(map[string]any); ok {
		if n, ok := numgen(mp["key"]); ok {
			elems, _ := w.lookup(b, mp["data"])
			w.splitN(b, n, elems, func(br *branch, e Elem, p float64) { apply(br, e.Data, p) })
			return
		}
		w.note(fmt.Sprintf("chain %s rule handle %d: a DNAT map keyed by %s is not evaluated", r.Chain, r.Handle, FormatExpr(mp["key"])))
		return
	}
	apply(b, m["addr"], 1)
}

// match evaluates {"op", "left", "right"}; a note says what could not be decided.
func (w *walker) match(b *branch, r *Rule, v any) (bool, string) {
	m, _ := v.(map[string]any)
	op, _ := m["op"].(string)
	right := m["right"]
	// A set with a timeout is filled at run time (session affinity): a first connection is in
	// none of them.
	if name, ok := right.(string); ok && strings.HasPrefix(name, "@") {
		if s := b.stack[len(b.stack)-1].chain.Table.Sets[name[1:]]; s != nil && s.Timeout > 0 {
			if b.Affinity == 0 {
				b.Affinity = s.Timeout
			}
			return op == "!=", ""
		}
	}
	left, known := w.value(b, m["left"])
	if !known {
		return false, fmt.Sprintf("chain %s rule handle %d matches %s, which svctrace does not evaluate; it was assumed not to match", r.Chain, r.Handle, FormatExpr(m["left"]))
	}
	var in bool
	if name, ok := right.(string); ok && strings.HasPrefix(name, "@") {
		_, in = w.find(b, name[1:], left)
	} else if set, ok := asMap(right)["set"].([]any); ok {
		for _, e := range set {
			in = in || eq(left, e)
		}
	} else if list, ok := right.([]any); ok {
		for _, e := range list {
			in = in || eq(left, e)
		}
	} else {
		in = eq(left, right)
	}
	if op == "!=" {
		return !in, ""
	}
	return in, ""
}

// value evaluates a left-hand expression for the packet.
func (w *walker) value(b *branch, e any) (any, bool) {
	switch x := e.(type) {
	case float64:
		return uint64(x), true
	case string:
		return x, true
	case map[string]any:
		if p, ok := x["payload"].(map[string]any); ok {
			switch p["field"] {
			case "saddr":
				return b.Src, true
			case "daddr":
				return b.Dst, true
			case "dport":
				return uint64(b.DPort), true
			case "protocol", "nexthdr":
				return w.pkt.Protocol.String(), true
			}
			return nil, false
		}
		if mt, ok := x["meta"].(map[string]any); ok {
			switch mt["key"] {
			case "l4proto":
				return w.pkt.Protocol.String(), true
			case "mark":
				return uint64(b.Mark), true
			case "iifname":
				if b.hook == "output" || b.hook == "postrouting" && w.pkt.Origin == trace.FromLocalProcess {
					// A packet a process on the node sends has no input interface.
					return "", true
				}
				if w.pkt.InInterface != "" {
					return w.pkt.InInterface, true
				}
				// kube-proxy matches input interfaces to tell pod traffic (detectLocalMode
				// InterfaceNamePrefix or BridgeInterface): a packet from a pod on this node
				// arrives on a pod interface, any other does not.
				fromPod, known := w.node.FromLocalPod(b.Src)
				if known {
					w.note("a rule matches the input interface: a packet from a pod on this node was taken to arrive on a pod interface, any other not (--in-interface says which)")
				} else {
					w.note("a rule matches the input interface; none was given (--in-interface) and the node's pod ranges are unknown, so the packet was taken not to come from a pod interface")
				}
				return podInterface(fromPod), true
			case "nfproto":
				return map[bool]string{true: "ipv6", false: "ipv4"}[w.family == "ip6"], true
			}
			return nil, false
		}
		if ct, ok := x["ct"].(map[string]any); ok {
			switch ct["key"] {
			case "state":
				return "new", true
			case "status":
				if b.DNAT {
					return "dnat", true
				}
				return "none", true
			}
			return nil, false
		}
		if fib, ok := x["fib"].(map[string]any); ok && fib["result"] == "type" {
			flags := FormatExpr(fib["flags"])
			addr := b.Dst
			if strings.Contains(flags, "saddr") {
				addr = b.Src
			}
			if w.node.IsLocal(addr) {
				return "local", true
			}
			return "unicast", true
		}
		if c, ok := x["concat"].([]any); ok {
			out := make([]any, len(c))
			for i, sub := range c {
				v, ok := w.value(b, sub)
				if !ok {
					return nil, false
				}
				out[i] = v
			}
			return out, true
		}
		for _, op := range []string{"&", "|", "^"} {
			if args, ok := x[op].([]any); ok && len(args) == 2 {
				a, ok1 := w.value(b, args[0])
				c, ok2 := w.value(b, args[1])
				an, isA := a.(uint64)
				cn, isC := c.(uint64)
				if !ok1 || !ok2 || !isA || !isC {
					return nil, false
				}
				switch op {
				case "&":
					return an & cn, true
				case "|":
					return an | cn, true
				}
				return an ^ cn, true
			}
		}
	}
	return nil, false
}

// eq compares a packet value with a set element or literal from the ruleset.
func eq(v any, e any) bool {
	if m, ok := e.(map[string]any); ok {
		if inner, ok := m["elem"].(map[string]any); ok {
			return eq(v, inner["val"])
		}
	}
	switch x := v.(type) {
	case netip.Addr:
		switch y := e.(type) {
		case string:
			a, err := netip.ParseAddr(y)
			return err == nil && a == x
		case map[string]any:
			if p, ok := y["prefix"].(map[string]any); ok {
				a, err := netip.ParseAddr(fmt.Sprint(p["addr"]))
				l, _ := p["len"].(float64)
				return err == nil && netip.PrefixFrom(a, int(l)).Contains(x)
			}
			if r, ok := y["range"].([]any); ok && len(r) == 2 {
				lo, err1 := netip.ParseAddr(fmt.Sprint(r[0]))
				hi, err2 := netip.ParseAddr(fmt.Sprint(r[1]))
				return err1 == nil && err2 == nil && x.Compare(lo) >= 0 && x.Compare(hi) <= 0
			}
		}
	case uint64:
		switch y := e.(type) {
		case float64:
			return uint64(y) == x
		case string:
			n, err := strconv.ParseUint(y, 0, 64)
			return err == nil && n == x
		case map[string]any:
			if r, ok := y["range"].([]any); ok && len(r) == 2 {
				lo, _ := r[0].(float64)
				hi, _ := r[1].(float64)
				return float64(x) >= lo && float64(x) <= hi
			}
		}
	case podInterface:
		// Whatever the pattern, it is taken to name the pod interfaces.
		_, ok := e.(string)
		return ok && bool(x)
	case string:
		y, ok := e.(string)
		if pre, wild := strings.CutSuffix(y, "*"); ok && wild && !strings.HasSuffix(pre, `\`) {
			return strings.HasPrefix(x, pre)
		}
		return ok && strings.EqualFold(x, y)
	case []any:
		m, _ := e.(map[string]any)
		c, ok := m["concat"].([]any)
		if !ok || len(c) != len(x) {
			return false
		}
		for i := range x {
			if !eq(x[i], c[i]) {
				return false
			}
		}
		return true
	}
	return false
}

// podInterface is an unknown input interface, taken to be a pod interface or not.
type podInterface bool

func (w *walker) finish(b *branch) { w.paths = append(w.paths, b.Path(w.node)) }

// find looks a packet value up in a named set or map of the current table: by its canonical key
// for exact elements (a 10,000-service map is one map lookup, not 10,000 comparisons), one by
// one for elements with prefixes or ranges.
func (w *walker) find(b *branch, name string, v any) (Elem, bool) {
	t := b.stack[len(b.stack)-1].chain.Table
	s := t.Sets[name]
	if s == nil && t.Partial {
		// Not read yet: ask for the packet's key alone when it has an exact one.
		if k, ok := canonical(v); ok {
			w.unprobed(b, t, name, k, v)
		} else {
			w.absent(b, t, "set", name)
		}
		return Elem{}, false
	}
	if s == nil {
		return Elem{}, false
	}
	if s.Partial {
		k, ok := canonical(v)
		if !ok {
			w.absent(b, t, "set", name) // no exact key: the walk needs every element
			return Elem{}, false
		}
		if !s.probed[k] {
			w.unprobed(b, t, name, k, v)
			return Elem{}, false
		}
	}
	index, ranged := s.lookupIndex()
	if k, ok := canonical(v); ok {
		if i, found := index[k]; found {
			return s.Elems[i], true
		}
	}
	for _, i := range ranged {
		if eq(v, s.Elems[i].Key) {
			return s.Elems[i], true
		}
	}
	return Elem{}, false
}

// canonical renders a packet value or an exact set element the same way, so that equal values
// have equal keys; prefixes and ranges have none.
func canonical(v any) (string, bool) {
	switch x := v.(type) {
	case netip.Addr:
		return x.String(), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	case float64:
		return strconv.FormatUint(uint64(x), 10), true
	case string:
		if a, err := netip.ParseAddr(x); err == nil {
			return a.String(), true
		}
		return strings.ToLower(x), true
	case []any:
		parts := make([]string, len(x))
		for i, p := range x {
			k, ok := canonical(p)
			if !ok {
				return "", false
			}
			parts[i] = k
		}
		return strings.Join(parts, " . "), true
	case map[string]any:
		if inner, ok := x["elem"].(map[string]any); ok {
			return canonical(inner["val"])
		}
		if c, ok := x["concat"].([]any); ok {
			return canonical(c)
		}
	}
	return "", false
}
