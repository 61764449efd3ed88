package nftjson

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"sync"

	"k8s.io/klog/v2"

	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/kubeproxy"
	"github.com/svctrace/svctrace/trace/nftables"
)

// maxRounds bounds the reads of one walk: a packet's path through kube-proxy's table is a few
// chains deep (base chain, services, the Service's chains, an endpoint's), each level one read.
const maxRounds = 16

// Scoped is a live nftables dataplane that reads only what the packets walked on it can touch:
// the tables other than kube-proxy's whole, with nft (they are small); of kube-proxy's, through
// an ObjectReader (netlink), its static chains and then, read by read, the per-Service chains the
// walk jumps to and the keys it looks up in sets and maps. On a node with 10,000 Services that
// is a few dozen objects where `nft -j list ruleset` prints 13 MB. When a read fails (an object
// gone between two reads: kube-proxy synced), it reads the whole ruleset with nft once and walks
// that.
type Scoped struct {
	r noderun.Runner
	// objects reads kube-proxy's chains, sets and keys one by one.
	objects ObjectReader
	rs      *nftables.Ruleset
	// mu makes walks one at a time: a walk reads what it misses into rs.
	mu sync.Mutex
	// started lists the families ("ip", "ip6") whose first read was made; whole the tables
	// read whole ("inet filter").
	started, whole map[string]bool
	// full is set once the whole ruleset was read (after a failed scoped read).
	full bool
	// Reads counts the reads (nft commands and ObjectReader calls), Bytes what nft printed;
	// Objects the chains, sets and keys read one by one.
	Reads, Bytes, Objects int
	// Fallback says why the whole ruleset was read, when it was.
	Fallback string
	// next are chains the chains read so far jump to: read with the next objects a walk
	// misses, as a walk will likely need them too.
	next map[nftables.Object]bool
	// walked are the packets the ObjectReader walked where the objects are (PacketWalker);
	// noWalk is set once such a walk failed.
	walked map[trace.Packet]bool
	noWalk bool
}

// PacketWalker is an ObjectReader that can walk a packet where the objects are (the svctrace
// binary on the node) and answer, in one round trip, with every object of kube-proxy's table of
// the family that the walk read, and the tables' names.
type PacketWalker interface {
	WalkObjects(family string, p trace.Packet, node *trace.NodeContext) (*nftables.Ruleset, []nftables.Object, error)
}

// ObjectReader reads tables' names, and chains, sets and keys of sets of a table one by one
// (dataplane/nftnl, over netlink). An element object is one key of a set (values hold the
// packet's values of the keys): the set it returns is partial.
type ObjectReader interface {
	Tables() ([]nftables.Object, error)
	Read(family, table string, objs []nftables.Object, values map[nftables.Object]any) (*nftables.Ruleset, error)
}

// NewScoped returns a dataplane that reads kube-proxy's objects through objects as walks need
// them, and other tables with nft through r.
func NewScoped(r noderun.Runner, objects ObjectReader) *Scoped {
	return &Scoped{r: r, objects: objects, rs: &nftables.Ruleset{}, started: map[string]bool{}, whole: map[string]bool{}}
}

// Mode implements trace.Dataplane.
func (s *Scoped) Mode() string { return "nftables" }

// Summary says what was read, for a Source line.
func (s *Scoped) Summary() string {
	if s.full {
		return fmt.Sprintf("nft -j list ruleset, after a scoped read failed: %s", s.Fallback)
	}
	if x, ok := s.objects.(*ExecReader); ok {
		return fmt.Sprintf("scoped to the packet: %d objects in %d reads, %d KB from nft and %d KB from the svctrace binary on the node", s.Objects, s.Reads, (s.Bytes+1023)/1024, (x.Bytes+1023)/1024)
	}
	return fmt.Sprintf("scoped to the packet: %d objects in %d reads, %d KB from nft", s.Objects, s.Reads, (s.Bytes+1023)/1024)
}

// Walk implements trace.Dataplane: it walks what was read and reads what the walk missed, until
// the walk needs nothing more.
func (s *Scoped) Walk(ctx context.Context, p trace.Packet, node *trace.NodeContext) (*trace.Walk, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	family := "ip"
	if p.Dst.Is6() && !p.Dst.Is4In6() {
		family = "ip6"
	}
	if !s.full && !s.started[family] {
		if err := s.first(ctx, family, p, node); err != nil {
			if err := s.fallBack(ctx, err); err != nil {
				return nil, err
			}
		}
		s.started[family] = true
	}
	for round := 0; ; round++ {
		w, err := (&nftables.Dataplane{Rules: s.rs}).Walk(ctx, p, node)
		var miss *nftables.MissingError
		if !errors.As(err, &miss) {
			return w, err
		}
		if round == maxRounds {
			return nil, fmt.Errorf("nftables: the packet's path still reaches objects not read after %d reads: %v", maxRounds, err)
		}
		if !s.full && s.walkThere(family, p, node) {
			continue // (a packet is walked there once; what its walk here still misses is read below)
		}
		if err := s.read(ctx, nil, s.withNext(miss.Objects), miss.Values); err != nil {
			if err := s.fallBack(ctx, err); err != nil {
				return nil, err
			}
		}
	}
}

// walkThere has the ObjectReader walk p where the objects are, when it can (PacketWalker) and
// has not walked p before, and merges what that walk read; it reports whether it did. Without a
// runner (the binary on the node itself, reading kube-proxy's table alone) it never does. A failed
// walk there is no error: the walk here reads what it misses level by level, as without one.
func (s *Scoped) walkThere(family string, p trace.Packet, node *trace.NodeContext) bool {
	w, ok := s.objects.(PacketWalker)
	if !ok || s.r == nil || s.noWalk || s.walked[p] {
		return false
	}
	if s.walked == nil {
		s.walked = map[trace.Packet]bool{}
	}
	s.walked[p] = true
	rs, _, err := w.WalkObjects(family, p, node)
	s.Reads++
	if err != nil {
		// (An older binary on the node does not know the request: it is not asked again.)
		s.noWalk = true
		klog.V(2).Infof("walking %s on the node failed (%v): reading what the walk misses one level at a time", p, err)
		return false
	}
	for _, t := range rs.Tables {
		s.Objects += len(t.Chains) + len(t.Sets)
	}
	s.merge(rs)
	s.markPartial(family)
	return true
}

// markPartial marks kube-proxy's table of a family as read in part.
func (s *Scoped) markPartial(family string) {
	for _, t := range s.rs.Tables {
		if t.Name == "kube-proxy" && t.Family == family {
			t.Partial = true
		}
	}
}

// first reads, for a family, the tables of that family and inet other than kube-proxy's whole,
// and kube-proxy's static chains; kube-proxy's table is then marked partial. Where the objects
// can be walked there (PacketWalker), the walk of p there comes first: it answers with the
// tables' names and what p touches in kube-proxy's table, static chains included. Without a
// runner, kube-proxy's table alone is read.
func (s *Scoped) first(ctx context.Context, family string, p trace.Packet, node *trace.NodeContext) error {
	walked := s.walkThere(family, p, node)
	tables, err := s.objects.Tables()
	if !walked {
		s.Reads++ // (the walk there answered them: they are kept)
	}
	if err != nil {
		return err
	}
	var cmds []string
	var kp []nftables.Object
	for _, t := range tables {
		if t.Family != family && t.Family != "inet" {
			continue
		}
		if !safeName.MatchString(t.Table) {
			return fmt.Errorf("table name %q is not one svctrace puts in an nft command", t.Table)
		}
		if t.Table != "kube-proxy" || t.Family == "inet" {
			if s.r == nil {
				continue
			}
			if id := t.Family + " " + t.Table; !s.whole[id] {
				s.whole[id] = true
				cmds = append(cmds, "list table "+id)
			}
			continue
		}
		for _, c := range kubeproxy.NftStaticChains {
			if o := (nftables.Object{Family: t.Family, Table: t.Table, Kind: "chain", Name: c}); !s.has(o) {
				kp = append(kp, o)
			}
		}
	}
	if err := s.read(ctx, cmds, kp, nil); err != nil {
		return err
	}
	s.markPartial(family)
	return nil
}

// safeName is what a table's name may be to be put in an nft command: never a space, quote or ';'.
var safeName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_./:-]{0,255}$`)

// withNext adds to objs the chains the chains read so far jump to that are still not read.
func (s *Scoped) withNext(objs []nftables.Object) []nftables.Object {
	seen := map[nftables.Object]bool{}
	for _, o := range objs {
		seen[o] = true
	}
	for o := range s.next {
		if s.has(o) {
			delete(s.next, o)
			continue
		}
		if !seen[o] {
			objs = append(objs, o)
		}
	}
	sort.Slice(objs, func(i, j int) bool {
		return objs[i].Kind+objs[i].Name+objs[i].Key < objs[j].Kind+objs[j].Name+objs[j].Key
	})
	return objs
}

// has reports whether an object was read: a chain, a whole set, a set's key.
func (s *Scoped) has(o nftables.Object) bool {
	t := s.table(o.Family, o.Table)
	if t == nil {
		return false
	}
	switch o.Kind {
	case "chain":
		return t.Chains[o.Name] != nil
	case "set":
		return t.Sets[o.Name] != nil && !t.Sets[o.Name].Partial
	case "element":
		set := t.Sets[o.Name]
		return set != nil && (!set.Partial || set.Probed(o.Key))
	}
	return false
}

// read runs cmds (nft listings of whole tables, one command each) and reads objs of kube-proxy's tables through
// the ObjectReader (values giving the element keys), then checks every object asked for is there.
func (s *Scoped) read(ctx context.Context, cmds []string, objs []nftables.Object, values map[nftables.Object]any) error {
	byTable := map[[2]string][]nftables.Object{}
	var order [][2]string
	for _, o := range objs {
		k := [2]string{o.Family, o.Table}
		if byTable[k] == nil {
			order = append(order, k)
		}
		byTable[k] = append(byTable[k], o)
	}
	// One nft command per table: nft 1.0.6 fails a command of several listings ("list table ip
	// mangle; list table ip nat": the second finds no table in the first one's cache). They run
	// beside each other and beside the object reads (through the API server each is a round
	// trip); what they read is merged in the same order as before, objects first.
	listed := make([]struct {
		out []byte
		err error
	}, len(cmds))
	var wg sync.WaitGroup
	for i, cmd := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			listed[i].out, listed[i].err = s.nft(ctx, cmd)
		}()
	}
	defer wg.Wait() // (an early return still waits: the commands write into listed)
	for _, k := range order {
		part, err := s.objects.Read(k[0], k[1], byTable[k], values)
		s.Reads++
		if err != nil {
			return err
		}
		s.merge(part)
	}
	wg.Wait()
	for _, l := range listed {
		s.Reads++
		s.Bytes += len(l.out)
		if l.err != nil {
			return l.err
		}
		part, err := parsePart(l.out)
		if err != nil {
			return err
		}
		s.merge(part)
	}
	for _, o := range objs {
		if !s.has(o) {
			return fmt.Errorf("%s %s %s %s was not read", o.Kind, o.Family, o.Table, o.Name)
		}
	}
	s.Objects += len(objs)
	return nil
}

// nft runs one nft command (a listing) with JSON output; the caller counts it.
func (s *Scoped) nft(ctx context.Context, script string) ([]byte, error) {
	out, err := s.r.Run(ctx, "nft", "-j", script)
	if err != nil {
		if errors.Is(err, noderun.ErrNotFound) {
			return nil, errors.New("nft is not installed on this node: install nftables, or pass --dataplane FILE")
		}
		return nil, fmt.Errorf("nft -j %q: %w", script, err)
	}
	return out, nil
}

// fallBack reads the whole ruleset after a scoped read failed with why.
func (s *Scoped) fallBack(ctx context.Context, why error) error {
	if s.full || s.r == nil {
		return why
	}
	rs, raw, err := ReadLive(ctx, s.r)
	s.Reads++
	s.Bytes += len(raw)
	if err != nil {
		return err
	}
	s.rs, s.full, s.Fallback = rs, true, why.Error()
	return nil
}

// Set returns a set as read so far (nil when it was not), for tests and diagnostics.
func (s *Scoped) Set(family, table, name string) *nftables.Set {
	if t := s.table(family, table); t != nil {
		return t.Sets[name]
	}
	return nil
}

func (s *Scoped) table(family, name string) *nftables.Table {
	for _, t := range s.rs.Tables {
		if t.Family == family && t.Name == name {
			return t
		}
	}
	return nil
}

// merge adds part's tables, chains and sets to what was read (a partial set's keys to the keys
// already asked), and notes what its chains name.
func (s *Scoped) merge(part *nftables.Ruleset) {
	for _, pt := range part.Tables {
		t := s.table(pt.Family, pt.Name)
		if t == nil {
			for _, c := range pt.Chains {
				c.Table = pt // (a reader's chains could still name the table they were read from)
			}
			s.rs.Tables = append(s.rs.Tables, pt)
			continue
		}
		for name, c := range pt.Chains {
			c.Table = t
			t.Chains[name] = c
		}
		for name, set := range pt.Sets {
			old := t.Sets[name]
			switch {
			case !set.Partial || old == nil:
				t.Sets[name] = set
			case old.Partial:
				old.MergeProbes(set)
			}
		}
	}
	s.named(part)
}

// named notes the chains the rules of part's kube-proxy tables jump to.
func (s *Scoped) named(part *nftables.Ruleset) {
	if s.next == nil {
		s.next = map[nftables.Object]bool{}
	}
	for _, pt := range part.Tables {
		if pt.Name != "kube-proxy" || pt.Family == "inet" {
			continue
		}
		for _, c := range pt.Chains {
			for _, r := range c.Rules {
				for _, e := range r.Exprs {
					jumps(e, func(name string) {
						s.next[nftables.Object{Family: pt.Family, Table: pt.Name, Kind: "chain", Name: name}] = true
					})
				}
			}
		}
	}
}

// jumps calls f with every jump or goto target in a statement (an inline map's too).
func jumps(v any, f func(name string)) {
	switch x := v.(type) {
	case map[string]any:
		for k, sub := range x {
			if k == "jump" || k == "goto" {
				if m, ok := sub.(map[string]any); ok {
					if name, ok := m["target"].(string); ok {
						f(name)
					}
				}
			}
			if k != "comment" {
				jumps(sub, f)
			}
		}
	case []any:
		for _, sub := range x {
			jumps(sub, f)
		}
	}
}

// parsePart reads the output of one nft command of several listings: one JSON document per
// listing, each a part of the ruleset (jumps to chains not listed are not checked).
func parsePart(data []byte) (*nftables.Ruleset, error) {
	rs := &nftables.Ruleset{}
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var doc document
		err := dec.Decode(&doc)
		if err == io.EOF {
			return rs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("nft JSON, byte %d: %w", dec.InputOffset(), err)
		}
		if doc.Nftables == nil {
			return nil, errors.New(`nft JSON: no "nftables" array`)
		}
		if err := add(rs, doc.Nftables); err != nil {
			return nil, err
		}
	}
}

var _ trace.Dataplane = (*Scoped)(nil)
