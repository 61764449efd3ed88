// Package xtables reads iptables state: iptables-save text (with or without -c counters, from the
// legacy or the nf_tables variant), live from the node, and hands it to the engine as a
// trace/iptables Ruleset.
package xtables

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/svctrace/svctrace/trace/iptables"
)

// ParseError is a malformed line in an iptables-save dump.
type ParseError struct {
	Line int
	Text string
	Msg  string
}

func (e *ParseError) Error() string {
	text := e.Text
	if len(text) > 80 {
		text = text[:77] + "..."
	}
	return fmt.Sprintf("iptables-save input, line %d: %s (%q)", e.Line, e.Msg, text)
}

// Parse reads iptables-save (or ip6tables-save) output. Every rule's text, chain name and comment
// point into data rather than copies of it, so a 35 MB dump costs little more than its own size:
// the caller must not modify data afterwards.
func Parse(data []byte) (*iptables.Ruleset, error) {
	p := newParser(bytes.Count(data, []byte("-A ")) + 1)
	if len(data) > 0 {
		if err := p.lines(unsafe.String(&data[0], len(data))); err != nil {
			return nil, err
		}
	}
	return p.finish()
}

// newParser starts a parse; rules are placed in blocks of blockSize (the first one) and then of
// ruleBlock.
func newParser(blockSize int) *parser {
	p := &parser{rs: &iptables.Ruleset{Tables: map[string]*iptables.Table{}}, blockSize: blockSize}
	p.ptrs = make([]*iptables.Rule, 0, blockSize)
	p.toks = make([]string, 0, 64)
	return p
}

// ruleBlock is the size of the rule blocks a streamed parse allocates after the first.
const ruleBlock = 16384

// lines parses complete lines (text ends with a newline, or is the end of the input).
func (p *parser) lines(text string) error {
	for len(text) > 0 {
		p.n++
		var l string
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			l, text = text[:i], text[i+1:]
		} else {
			l, text = text, ""
		}
		if err := p.line(p.n, strings.TrimRight(l, "\r")); err != nil {
			return err
		}
	}
	return nil
}

// finish checks the dump is complete and resolves jumps.
func (p *parser) finish() (*iptables.Ruleset, error) {
	if p.table != nil {
		return nil, &ParseError{Line: p.n, Msg: fmt.Sprintf("table %s has no COMMIT line: the dump is truncated", p.table.Name)}
	}
	if len(p.rs.Tables) == 0 {
		return nil, &ParseError{Line: p.n, Msg: "no table found: this is not iptables-save output"}
	}
	if err := p.resolve(); err != nil {
		return nil, err
	}
	return p.rs, nil
}

// ParseReader parses iptables-save output as it arrives from r (a pipe from iptables-save), so
// that parsing overlaps the writer instead of following it, and without one growing buffer: the
// text is read in chunks that the rules point into. It returns the dump as read, too (Dump.Bytes
// joins it, for snapshots). limit bounds the input.
func ParseReader(r io.Reader, limit int64) (*iptables.Ruleset, *Dump, error) {
	return parseReader(r, limit, 1<<20, 0)
}

// parseReader is ParseReader reading chunks of size bytes (tests use small ones). rules, when
// known, is about how many rules will come: their memory is then allocated and written to before
// the first read, while iptables-save is still fetching the tables and prints nothing (a fresh
// page's first write costs a fault, this machine's dearest operation, and the parse would
// otherwise pay them after iptables-save, while it waits).
func parseReader(r io.Reader, limit int64, size, rules int) (*iptables.Ruleset, *Dump, error) {
	p := newParser(ruleBlock)
	p.work = newRuleWork(runtime.GOMAXPROCS(0))
	defer func() {
		if p.work != nil { // an early return (a read error): stop the workers
			_ = p.work.wait(p.rs, nil)
		}
	}()
	var arena []byte // the text's chunks, cut from one allocation made ready up front
	if rules > 0 {
		p.presize(rules)
		arena = touched(rules * bytesPerRule)
	}
	d := &Dump{}
	var tail []byte
	for eof := false; !eof; {
		if len(tail) >= size/2 {
			size *= 2 // a line longer than half a chunk: room for it
		}
		var buf []byte
		if len(arena) >= size {
			buf, arena = arena[:size:size], arena[size:]
		} else {
			buf = make([]byte, size)
		}
		n := copy(buf, tail)
		for n < len(buf) {
			m, err := r.Read(buf[n:])
			n += m
			if err == io.EOF {
				eof = true
				break
			}
			if err != nil {
				return nil, nil, err
			}
		}
		if d.size += int64(n - len(tail)); d.size > limit {
			return nil, nil, fmt.Errorf("the dump is larger than %d MiB", limit>>20)
		}
		end := n
		if !eof {
			end = bytes.LastIndexByte(buf[:n], '\n') + 1
		}
		tail = buf[end:n]
		if end > 0 {
			d.parts = append(d.parts, buf[:end])
			if err := p.lines(unsafe.String(&buf[0], end)); err != nil {
				err = p.work.wait(p.rs, err)
				p.work = nil
				return nil, d, err
			}
		}
	}
	return p.done(d, nil)
}

// done waits for the workers and completes the parse; stop is the parser's own error, if any.
func (p *parser) done(d *Dump, stop error) (*iptables.Ruleset, *Dump, error) {
	err := p.work.wait(p.rs, stop)
	p.work = nil
	if err != nil {
		return nil, d, err
	}
	rs, err := p.finish()
	if err != nil {
		return nil, d, err
	}
	return rs, d, nil
}

// parseChunks parses text that produce hands over in pieces ending at a line's end, while it
// makes the next one (produce runs on a goroutine of its own; the parser places rules and its
// workers parse them). It returns once produce has returned.
func (p *parser) parseChunks(produce func(emit func([]byte) error) error) (*iptables.Ruleset, *Dump, error) {
	p.work = newRuleWork(runtime.GOMAXPROCS(0))
	chunks := make(chan []byte, 4)
	stop := make(chan struct{})
	produced := make(chan error, 1)
	go func() {
		defer close(chunks)
		produced <- produce(func(b []byte) error {
			select {
			case chunks <- b:
				return nil
			case <-stop:
				return errStopped
			}
		})
	}()
	d := &Dump{}
	var perr error
	for b := range chunks {
		if perr != nil || len(b) == 0 {
			continue
		}
		if b[len(b)-1] != '\n' {
			perr = errors.New("a piece of the text does not end at a line's end")
		} else {
			d.parts = append(d.parts, b)
			d.size += int64(len(b))
			perr = p.lines(unsafe.String(&b[0], len(b)))
		}
		if perr != nil {
			close(stop)
		}
	}
	gerr := <-produced // the chunks are closed: produce has returned
	rs, d, err := p.done(d, perr)
	if gerr != nil && !errors.Is(gerr, errStopped) {
		return nil, nil, gerr
	}
	return rs, d, err
}

var errStopped = errors.New("the parse stopped")

// Dump is iptables-save output as ParseReader read it, in parts.
type Dump struct {
	parts [][]byte
	size  int64
}

// Len is the dump's size in bytes.
func (d *Dump) Len() int { return int(d.size) }

// Bytes joins the dump into one copy.
func (d *Dump) Bytes() []byte {
	return bytes.Join(d.parts, nil)
}

type parser struct {
	rs    *iptables.Ruleset
	table *iptables.Table
	toks  []string
	// work, when set, parses rules' arguments on other goroutines: the parser itself only
	// places each rule in its chain (the streamed parse of a live read).
	work *ruleWork
	// huge asks for huge pages for the rule blocks (hugePages), all of blockSize.
	huge bool
	// n is the line number; blockSize the size of the next rule block.
	n         int
	blockSize int
	// ptrs is the shared slab of rule pointers; last is the chain whose rules end it, start
	// where they begin.
	ptrs  []*iptables.Rule
	last  *iptables.Chain
	start int
}

// bytesPerRule is about how long an iptables-save line of kube-proxy's is (the recorded 10,000 ×
// 10 node: 33 MB for 320,024 rules).
const bytesPerRule = 104

// touched allocates n bytes and writes to each of their pages.
func touched(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 4096 {
		b[i] = 0
	}
	return b
}

// presize allocates the first rule block and the pointer slab for n rules, and writes to every
// page of them.
func (p *parser) presize(n int) {
	block := make([]iptables.Rule, n)
	for i := 0; i < n; i += 4096 / int(unsafe.Sizeof(iptables.Rule{})) {
		block[i].Line = 0 // a store, so the page is faulted in now
	}
	ptrs := make([]*iptables.Rule, n)
	for i := 0; i < n; i += 512 {
		ptrs[i] = nil
	}
	p.rs.Blocks = append(p.rs.Blocks, block[:0])
	p.ptrs = ptrs[:0]
}

func (p *parser) line(n int, l string) error {
	if l == "" || strings.TrimLeft(l, " \t") == "" {
		return nil // blank lines are skipped, as by iptables-restore
	}
	switch l[0] {
	case '#':
		if strings.HasPrefix(l, "# Generated by ") {
			if strings.Contains(l, "ip6tables") {
				p.rs.IPv6 = true
			}
			if v := variantOf(l); v != "" {
				p.rs.Variant = v
			}
		}
		return nil
	case '*':
		if p.table != nil {
			return &ParseError{Line: n, Text: l, Msg: fmt.Sprintf("table %s starts before table %s was committed", l[1:], p.table.Name)}
		}
		name := strings.TrimSpace(l[1:])
		if name == "" {
			return &ParseError{Line: n, Text: l, Msg: "table line without a name"}
		}
		t := p.rs.Tables[name]
		if t == nil {
			t = &iptables.Table{Name: name, Chains: map[string]*iptables.Chain{}}
			p.rs.Tables[name] = t
		}
		p.table = t
		return nil
	case ':':
		if p.table == nil {
			return &ParseError{Line: n, Text: l, Msg: "chain declared outside a table"}
		}
		name, rest, _ := strings.Cut(l[1:], " ")
		policy, _, _ := strings.Cut(strings.TrimLeft(rest, " "), " ")
		if name == "" || policy == "" {
			return &ParseError{Line: n, Text: l, Msg: "chain line needs a name and a policy"}
		}
		c := p.table.Chains[name]
		if c == nil {
			c = &iptables.Chain{Name: name}
			p.table.Chains[name] = c
			p.table.Order = append(p.table.Order, c)
		}
		c.Policy, c.Line = policy, n
		return nil
	case 'C':
		if l == "COMMIT" {
			if p.table == nil {
				return &ParseError{Line: n, Text: l, Msg: "COMMIT outside a table"}
			}
			p.table = nil
			return nil
		}
	case '[', '-':
		return p.rule(n, l)
	}
	return &ParseError{Line: n, Text: l, Msg: "unrecognised line"}
}

func (p *parser) rule(n int, l string) error {
	if p.table == nil {
		return &ParseError{Line: n, Text: l, Msg: "rule outside a table"}
	}
	// Chains point into the blocks: a full block is never grown (that would leave them
	// pointing at stale copies); a new one starts.
	last := len(p.rs.Blocks) - 1
	if last < 0 || len(p.rs.Blocks[last]) == cap(p.rs.Blocks[last]) {
		block := make([]iptables.Rule, 0, p.blockSize)
		if p.huge {
			hugePages(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(block))), cap(block)*int(unsafe.Sizeof(iptables.Rule{}))))
		}
		p.rs.Blocks = append(p.rs.Blocks, block)
		if !p.huge {
			p.blockSize = ruleBlock
		}
		last++
	}
	p.rs.Blocks[last] = append(p.rs.Blocks[last], iptables.Rule{Line: int32(n)})
	r := &p.rs.Blocks[last][len(p.rs.Blocks[last])-1]
	if l[0] == '[' {
		end := strings.IndexByte(l, ']')
		if end < 0 {
			return &ParseError{Line: n, Text: l, Msg: "counter without a closing ]"}
		}
		pk, by, ok := strings.Cut(l[1:end], ":")
		var err1, err2 error
		r.Packets, err1 = strconv.ParseUint(pk, 10, 64)
		r.Bytes, err2 = strconv.ParseUint(by, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			return &ParseError{Line: n, Text: l, Msg: "counters must read [packets:bytes]"}
		}
		r.HasCounters = true
		p.rs.Counters = true
		l = strings.TrimLeft(l[end+1:], " ")
	}
	r.Text = l
	if name, ok := strings.CutPrefix(l, "-A "); ok && p.work != nil {
		// The chain from the line's start; the rest, tokens and arguments, on a worker. A line
		// that does not start plainly (quotes, no name) is parsed here, as without workers.
		name, _, _ = strings.Cut(name, " ")
		if c := p.table.Chains[name]; c != nil && !strings.ContainsAny(name, `"\`) {
			r.Chain = name
			p.addRule(c, r)
			p.work.add(r)
			return nil
		}
	}
	toks, err := tokenize(l, p.toks[:0])
	p.toks = toks
	if err != nil {
		return &ParseError{Line: n, Text: l, Msg: err.Error()}
	}
	if len(toks) < 2 || toks[0] != "-A" {
		return &ParseError{Line: n, Text: l, Msg: "a rule must start with -A CHAIN"}
	}
	r.Chain = toks[1]
	c := p.table.Chains[r.Chain]
	if c == nil {
		return &ParseError{Line: n, Text: l, Msg: fmt.Sprintf("rule for chain %s, which the table does not declare", r.Chain)}
	}
	if err := parseArgs(r, toks[2:]); err != nil {
		return &ParseError{Line: n, Text: l, Msg: err.Error()}
	}
	if r.Src.Prefix.Addr().Is6() || r.Dst.Prefix.Addr().Is6() {
		p.rs.IPv6 = true // a dump without its header still says its family through its addresses
	}
	p.addRule(c, r)
	return nil
}

// ruleWork parses rules' tokens and arguments on worker goroutines, a batch at a time, while the
// parser reads on: after iptables-save's silence its 33 MB come faster than one core parses them.
type ruleWork struct {
	batch   []*iptables.Rule
	batches chan []*iptables.Rule
	wg      sync.WaitGroup
	mu      sync.Mutex
	err     *ParseError // the one of the lowest line
	ipv6    atomic.Bool
}

// ruleBatch is how many rules go to a worker at once.
const ruleBatch = 2048

func newRuleWork(workers int) *ruleWork {
	w := &ruleWork{batches: make(chan []*iptables.Rule, workers*2)}
	for range workers {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			toks := make([]string, 0, 64)
			for b := range w.batches {
				for _, r := range b {
					toks = w.parse(r, toks)
				}
			}
		}()
	}
	return w
}

func (w *ruleWork) add(r *iptables.Rule) {
	w.batch = append(w.batch, r)
	if len(w.batch) == ruleBatch {
		w.batches <- w.batch
		w.batch = make([]*iptables.Rule, 0, ruleBatch)
	}
}

// parse does for one rule what parser.rule does after placing it.
func (w *ruleWork) parse(r *iptables.Rule, buf []string) []string {
	toks, err := tokenize(r.Text, buf[:0])
	switch {
	case err != nil:
		w.fail(&ParseError{Line: int(r.Line), Text: r.Text, Msg: err.Error()})
	case len(toks) < 2 || toks[0] != "-A" || toks[1] != r.Chain:
		w.fail(&ParseError{Line: int(r.Line), Text: r.Text, Msg: "a rule must start with -A CHAIN"})
	default:
		if err := parseArgs(r, toks[2:]); err != nil {
			w.fail(&ParseError{Line: int(r.Line), Text: r.Text, Msg: err.Error()})
		} else if r.Src.Prefix.Addr().Is6() || r.Dst.Prefix.Addr().Is6() {
			w.ipv6.Store(true)
		}
	}
	return toks
}

func (w *ruleWork) fail(e *ParseError) {
	w.mu.Lock()
	if w.err == nil || e.Line < w.err.Line {
		w.err = e
	}
	w.mu.Unlock()
}

// wait parses what is left and waits for the workers; it returns the error a sequential parse
// would have stopped at: of the workers' and the parser's own (stop), the one on the lowest line.
func (w *ruleWork) wait(rs *iptables.Ruleset, stop error) error {
	if len(w.batch) > 0 {
		w.batches <- w.batch
		w.batch = nil
	}
	close(w.batches)
	w.wg.Wait()
	if w.ipv6.Load() {
		rs.IPv6 = true
	}
	var pe *ParseError
	if w.err != nil && (stop == nil || errors.As(stop, &pe) && w.err.Line < pe.Line) {
		return w.err
	}
	return stop
}

// addRule appends r to c. iptables-save prints a chain's rules together, so chains share one
// slab of pointers (a sub-slice each) instead of growing 100,000 small slices; a chain whose
// rules are interleaved with another's gets its own copy.
func (p *parser) addRule(c *iptables.Chain, r *iptables.Rule) {
	if len(c.Rules) > 0 && p.last != c {
		// Slab sub-slices have no spare capacity, so this append copies; it never writes
		// into the slab.
		c.Rules = append(c.Rules, r)
		return
	}
	if len(c.Rules) == 0 {
		p.start = len(p.ptrs)
	}
	p.ptrs = append(p.ptrs, r)
	c.Rules = p.ptrs[p.start:len(p.ptrs):len(p.ptrs)]
	p.last = c
}

// resolve points every jump and goto at its chain, so evaluation never looks names up.
func (p *parser) resolve() error {
	for _, t := range p.rs.Tables {
		for _, c := range t.Order {
			for _, r := range c.Rules {
				if r.Target == "" || isBuiltinTarget(r.Target) {
					if r.Goto {
						return &ParseError{Line: int(r.Line), Text: r.Text, Msg: fmt.Sprintf("goto needs a chain, not %s", r.Target)}
					}
					continue
				}
				jc := t.Chains[r.Target]
				if jc == nil {
					// An extension target we do not model (LOG, CT, TPROXY, ...) stays unresolved;
					// the evaluator reports it.
					if strings.HasPrefix(r.Target, "KUBE-") || r.Goto {
						return &ParseError{Line: int(r.Line), Text: r.Text, Msg: fmt.Sprintf("jump to chain %s, which table %s does not declare", r.Target, t.Name)}
					}
					continue
				}
				r.JumpChain = jc
			}
		}
	}
	return nil
}

func isBuiltinTarget(s string) bool {
	switch s {
	case "ACCEPT", "DROP", "REJECT", "RETURN", "DNAT", "SNAT", "MASQUERADE", "MARK", "REDIRECT", "LOG", "NFLOG", "CONNMARK", "NOTRACK", "CT", "TPROXY", "QUEUE", "NFQUEUE", "TCPMSS", "CHECKSUM":
		return true
	}
	return false
}

// tokenize splits a rule line like a shell would for iptables-save's quoting: words separated by
// spaces, double quotes group words and backslash escapes a quote. Unquoted words are substrings
// of the line; only words that contain escapes are copied.
func tokenize(l string, toks []string) ([]string, error) {
	i := 0
	for i < len(l) {
		for i < len(l) && l[i] == ' ' {
			i++
		}
		if i >= len(l) {
			break
		}
		if l[i] != '"' {
			j := i
			for j < len(l) && l[j] != ' ' {
				j++
			}
			toks = append(toks, l[i:j])
			i = j
			continue
		}
		j := i + 1
		escaped := false
		for j < len(l) && l[j] != '"' {
			if l[j] == '\\' && j+1 < len(l) {
				escaped = true
				j++
			}
			j++
		}
		if j >= len(l) {
			return toks, fmt.Errorf("unterminated quote")
		}
		w := l[i+1 : j]
		if escaped {
			var b strings.Builder
			for k := 0; k < len(w); k++ {
				if w[k] == '\\' && k+1 < len(w) {
					k++
				}
				b.WriteByte(w[k])
			}
			w = b.String()
		}
		toks = append(toks, w)
		i = j + 1
	}
	return toks, nil
}

// knownModules are match modules whose options parseArgs understands.
var knownModules = map[string]bool{
	"tcp": true, "udp": true, "sctp": true, "comment": true, "addrtype": true, "statistic": true,
	"mark": true, "recent": true, "conntrack": true, "state": true, "set": true, "multiport": true,
	"nfacct": true,
}

func parseArgs(r *iptables.Rule, toks []string) error {
	module := ""
	neg := false
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		val := func() (string, error) {
			if i+1 >= len(toks) {
				return "", fmt.Errorf("%s needs a value", t)
			}
			i++
			return toks[i], nil
		}
		if t == "!" {
			neg = true
			continue
		}
		var err error
		switch t {
		case "-s", "--source", "-d", "--destination":
			var v string
			if v, err = val(); err != nil {
				return err
			}
			m := &r.Src
			if t == "-d" || t == "--destination" {
				m = &r.Dst
			}
			m.Set, m.Neg = true, neg
			if m.Prefix, err = parsePrefix(v); err != nil {
				return err
			}

		case "-p", "--protocol":
			var v string
			if v, err = val(); err != nil {
				return err
			}
			if r.Proto, err = parseProto(v); err != nil {
				return err
			}
			r.ProtoNeg = neg
		case "-i", "--in-interface", "-o", "--out-interface":
			var v string
			if v, err = val(); err != nil {
				return err
			}
			m := &ext(r).InIface
			if t[1] == 'o' || t == "--out-interface" {
				m = &ext(r).OutIface
			}
			*m = iptables.IfaceMatch{Set: true, Neg: neg, Name: v}
		case "-f", "--fragment":
			ext(r).Unknown = append(ext(r).Unknown, "fragment")
		case "-m", "--match":
			if module, err = val(); err != nil {
				return err
			}
			if !knownModules[module] {
				ext(r).Unknown = append(ext(r).Unknown, module)
			}
		case "-j", "--jump", "-g", "--goto":
			r.Goto = t == "-g" || t == "--goto"
			if r.Target, err = val(); err != nil {
				return err
			}
			return parseTarget(r, toks[i+1:])
		default:
			if !strings.HasPrefix(t, "--") {
				return fmt.Errorf("unexpected word %q", t)
			}
			if !knownModules[module] {
				// Options of a module we do not model: skip them and their values.
				for i+1 < len(toks) && !strings.HasPrefix(toks[i+1], "-") && toks[i+1] != "!" {
					i++
				}
				break
			}
			if err = parseModuleOption(r, module, t, neg, &i, toks); err != nil {
				return err
			}
		}
		neg = false
	}
	return nil
}

func parseModuleOption(r *iptables.Rule, module, opt string, neg bool, i *int, toks []string) error {
	val := func() (string, error) {
		if *i+1 >= len(toks) {
			return "", fmt.Errorf("%s needs a value", opt)
		}
		*i++
		return toks[*i], nil
	}
	var err error
	var v string
	switch opt {
	case "--dport", "--destination-port", "--sport", "--source-port":
		if v, err = val(); err != nil {
			return err
		}
		m := &r.DPort
		if opt == "--sport" || opt == "--source-port" {
			m = &ext(r).SPort
		}
		m.Set, m.Neg = true, neg
		m.PortRange, err = parsePortRange(v)
		return err
	case "--dports", "--destination-ports", "--sports", "--source-ports", "--ports":
		if v, err = val(); err != nil {
			return err
		}
		var list []iptables.PortRange
		for _, part := range strings.Split(v, ",") {
			pr, err := parsePortRange(part)
			if err != nil {
				return err
			}
			list = append(list, pr)
		}
		if opt == "--sports" || opt == "--source-ports" {
			ext(r).MultiSPorts = list
		} else {
			ext(r).MultiDPorts = list
		}
		ext(r).MultiNeg = neg
		return nil
	case "--comment":
		r.Comment, err = val()
		return err
	case "--src-type", "--dst-type":
		if v, err = val(); err != nil {
			return err
		}
		m := &ext(r).SrcType
		if opt == "--dst-type" {
			m = &ext(r).DstType
		}
		m.Set, m.Neg, m.Type = true, neg, v
		return nil
	case "--limit-iface-in", "--limit-iface-out":
		ext(r).DstType.LimitIfaceIn = opt == "--limit-iface-in"
		return nil
	case "--mode":
		if v, err = val(); err != nil {
			return err
		}
		stat(r).Mode = v
		stat(r).Neg = stat(r).Neg || neg
		return nil
	case "--probability":
		if v, err = val(); err != nil {
			return err
		}
		p, err := strconv.ParseFloat(v, 64)
		if err != nil || !(p >= 0 && p <= 1) { // NaN too
			return fmt.Errorf("probability %q is not a number between 0 and 1", v)
		}
		stat(r).Probability = p
		stat(r).Neg = stat(r).Neg || neg
		return nil
	case "--every", "--packet":
		if v, err = val(); err != nil {
			return err
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("%s %q is not a count", opt, v)
		}
		if opt == "--every" {
			if n == 0 {
				return fmt.Errorf("--every must be at least 1")
			}
			stat(r).Every = n
		} else {
			stat(r).Packet = n
		}
		return nil
	case "--mark":
		if v, err = val(); err != nil {
			return err
		}
		val, mask, err := parseMark(v)
		if err != nil {
			return err
		}
		ext(r).Mark = &iptables.MarkMatch{Neg: neg, Value: val, Mask: mask}
		return nil
	case "--set", "--rcheck", "--update", "--remove":
		rc := recent(r)
		rc.Op = opt[2:]
		rc.Neg = rc.Neg || neg
		return nil
	case "--name":
		recent(r).Name, err = val()
		return err
	case "--seconds":
		if v, err = val(); err != nil {
			return err
		}
		if recent(r).Seconds, err = strconv.Atoi(v); err != nil {
			return fmt.Errorf("--seconds %q is not a number", v)
		}
		return nil
	case "--reap":
		recent(r).Reap = true
		return nil
	case "--rsource", "--rdest":
		recent(r).Dest = opt == "--rdest"
		return nil
	case "--mask", "--rttl", "--hitcount":
		if opt != "--rttl" {
			_, err = val()
		}
		return err
	case "--ctstate", "--state":
		if v, err = val(); err != nil {
			return err
		}
		ext(r).CtState = &iptables.StateMatch{Neg: neg, States: strings.Split(v, ",")}
		return nil
	case "--match-set":
		name, err := val()
		if err != nil {
			return err
		}
		if v, err = val(); err != nil {
			return err
		}
		ext(r).Sets = append(ext(r).Sets, iptables.SetMatch{Neg: neg, Name: name, Flags: strings.Split(v, ",")})
		return nil
	case "--nfacct-name":
		ext(r).NFAcct, err = val()
		return err
	}
	// A known module with an option we do not model: keep the rule, mark it undecidable.
	ext(r).Unknown = append(ext(r).Unknown, module+" "+opt)
	for *i+1 < len(toks) && !strings.HasPrefix(toks[*i+1], "-") && toks[*i+1] != "!" {
		*i++
	}
	return nil
}

func stat(r *iptables.Rule) *iptables.StatisticMatch {
	if r.Statistic == nil {
		r.Statistic = &iptables.StatisticMatch{}
	}
	return r.Statistic
}

func recent(r *iptables.Rule) *iptables.RecentMatch {
	x := ext(r)
	if x.Recent == nil {
		x.Recent = &iptables.RecentMatch{}
	}
	return x.Recent
}

func parseTarget(r *iptables.Rule, toks []string) error {
	for i := 0; i < len(toks); i++ {
		opt := toks[i]
		next := func() (string, error) {
			if i+1 >= len(toks) {
				return "", fmt.Errorf("target option %s needs a value", opt)
			}
			i++
			return toks[i], nil
		}
		var err error
		switch opt {
		case "--to-destination":
			r.ToDestination, err = next()
		case "--to-source":
			ext(r).ToSource, err = next()
		case "--reject-with":
			ext(r).RejectWith, err = next()
		case "--set-xmark", "--set-mark", "--or-mark", "--and-mark", "--xor-mark":
			var v string
			if v, err = next(); err != nil {
				return err
			}
			x := ext(r)
			x.MarkOp = opt[2:]
			x.MarkVal, x.MarkMk, err = parseMark(v)
			if err == nil && !strings.Contains(v, "/") {
				// Without a mask, --set-mark/--set-xmark touch every bit.
				x.MarkMk = 0xffffffff
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// ext returns the rule's Extra, allocating it on first use.
func ext(r *iptables.Rule) *iptables.RuleExtra {
	if r.Extra == nil {
		r.Extra = &iptables.RuleExtra{}
	}
	return r.Extra
}

func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad address %q", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	// Older tools print dotted masks: 10.0.0.0/255.255.0.0.
	addr, mask, _ := strings.Cut(s, "/")
	a, err1 := netip.ParseAddr(addr)
	m, err2 := netip.ParseAddr(mask)
	if err1 != nil || err2 != nil || !a.Is4() || !m.Is4() {
		return netip.Prefix{}, fmt.Errorf("bad address %q", s)
	}
	b := m.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	bits := 0
	for v&0x80000000 != 0 {
		bits++
		v <<= 1
	}
	if v != 0 {
		return netip.Prefix{}, fmt.Errorf("non-contiguous mask in %q", s)
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

func parseProto(s string) (uint8, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return 6, nil
	case "udp":
		return 17, nil
	case "sctp":
		return 132, nil
	case "icmp":
		return 1, nil
	case "ipv6-icmp", "icmpv6":
		return 58, nil
	case "all", "0":
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, fmt.Errorf("unknown protocol %q", s)
	}
	return uint8(n), nil
}

func parsePortRange(s string) (iptables.PortRange, error) {
	lo, hi, isRange := strings.Cut(s, ":")
	a, err := parsePort(lo)
	if err != nil {
		return iptables.PortRange{}, err
	}
	if !isRange {
		return iptables.PortRange{Lo: a, Hi: a}, nil
	}
	b, err := parsePort(hi)
	if err != nil {
		return iptables.PortRange{}, err
	}
	if b < a {
		return iptables.PortRange{}, fmt.Errorf("port range %q runs backwards", s)
	}
	return iptables.PortRange{Lo: a, Hi: b}, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" || len(s) > 5 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad port %q", s)
		}
		n = n*10 + int(c-'0')
	}
	if n > 65535 {
		return 0, fmt.Errorf("port %q out of range", s)
	}
	return uint16(n), nil
}

func parseMark(s string) (val, mask uint32, err error) {
	v, m, hasMask := strings.Cut(s, "/")
	a, err := strconv.ParseUint(v, 0, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("bad mark %q", s)
	}
	mask = 0xffffffff
	if hasMask {
		b, err := strconv.ParseUint(m, 0, 32)
		if err != nil {
			return 0, 0, fmt.Errorf("bad mark mask %q", s)
		}
		mask = uint32(b)
	}
	return uint32(a), mask, nil
}

// variantOf is the variant an iptables-save header line ("# Generated by iptables-save v1.8.9
// (nf_tables) on ...") names: nf_tables, legacy, or "" when it names none.
func variantOf(header string) string {
	switch {
	case strings.Contains(header, "(nf_tables)"):
		return "nf_tables"
	case strings.Contains(header, "(legacy)"):
		return "legacy"
	}
	return ""
}

// headerVariant is the variant the first header line of save output names ("" for none).
func headerVariant(out []byte) string {
	for len(out) > 0 {
		line, rest, _ := bytes.Cut(out, []byte("\n"))
		if bytes.HasPrefix(line, []byte("# Generated by ")) {
			return variantOf(string(line))
		}
		out = rest
	}
	return ""
}
