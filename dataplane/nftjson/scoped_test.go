package nftjson

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/nftables"
)

// fakeObjects is an ObjectReader over a recorded ruleset: chains and whole sets as recorded, a
// key of a set as the partial set holding just that key's element. It counts its reads and can
// fail the ones naming an object.
type fakeObjects struct {
	rs    *nftables.Ruleset
	reads int
	fail  string
}

func (f *fakeObjects) Tables() ([]nftables.Object, error) {
	var out []nftables.Object
	for _, t := range f.rs.Tables {
		out = append(out, nftables.Object{Family: t.Family, Table: t.Name, Kind: "table", Name: t.Name})
	}
	return out, nil
}

func (f *fakeObjects) Read(family, table string, objs []nftables.Object, values map[nftables.Object]any) (*nftables.Ruleset, error) {
	f.reads++
	var src *nftables.Table
	for _, t := range f.rs.Tables {
		if t.Family == family && t.Name == table {
			src = t
		}
	}
	if src == nil {
		return nil, fmt.Errorf("no table %s %s", family, table)
	}
	t := &nftables.Table{Family: family, Name: table, Chains: map[string]*nftables.Chain{}, Sets: map[string]*nftables.Set{}}
	for _, o := range objs {
		if f.fail != "" && o.Name == f.fail {
			return nil, fmt.Errorf("%s: No such file or directory", o.Name)
		}
		switch o.Kind {
		case "chain":
			c := src.Chains[o.Name]
			if c == nil {
				return nil, fmt.Errorf("no chain %s", o.Name)
			}
			cc := *c
			cc.Table = t // (as nftnl's reader: the chain is of the table read, not of the whole)
			t.Chains[o.Name] = &cc
		case "set":
			set := src.Sets[o.Name]
			if set == nil {
				return nil, fmt.Errorf("no set %s", o.Name)
			}
			sc := nftables.Set{Name: set.Name, Map: set.Map, Timeout: set.Timeout, Elems: set.Elems}
			t.Sets[o.Name] = &sc
		case "element":
			set := src.Sets[o.Name]
			if set == nil {
				return nil, fmt.Errorf("no set %s", o.Name)
			}
			if _, ok := values[o]; !ok {
				return nil, fmt.Errorf("no value for %v", o)
			}
			ps := t.Sets[o.Name]
			if ps == nil {
				ps = &nftables.Set{Name: set.Name, Map: set.Map, Timeout: set.Timeout, Partial: true}
				t.Sets[o.Name] = ps
			}
			var found *nftables.Elem
			for i, e := range set.Elems {
				if k, ok := nftables.CanonicalKey(e.Key); ok && k == o.Key {
					found = &set.Elems[i]
				}
			}
			ps.AddProbed(o.Key, found)
		}
	}
	return &nftables.Ruleset{Tables: []*nftables.Table{t}}, nil
}

// noNft fails every nft command but the whole listing, which it answers from the recording.
type noNft struct {
	data  []byte
	mu    sync.Mutex // (the table listings run side by side)
	calls []string
}

func (n *noNft) Run(_ context.Context, argv ...string) ([]byte, error) {
	n.mu.Lock()
	n.calls = append(n.calls, strings.Join(argv, " "))
	n.mu.Unlock()
	if strings.Join(argv, " ") == "nft -j list ruleset" {
		return n.data, nil
	}
	return nil, errors.New("unexpected nft command")
}

func recorded(t testing.TB) ([]byte, *nftables.Ruleset) {
	data, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return data, rs
}

// A scoped read walks every packet exactly as the whole ruleset does (same paths, steps and
// shares), reading a few objects and looking big sets up by key.
func TestScopedWalksLikeTheWholeRuleset(t *testing.T) {
	data, rs := recorded(t)
	whole := &nftables.Dataplane{Rules: rs}
	cl := tracetest.LoadObjects(t, "../snapshot/demo-nftables/objects.yaml")
	node := cl.NodeContextFor("node1", nil)
	pkts := tracetest.PacketsTo(whole.Entries())
	if len(pkts) < 40 {
		t.Fatalf("only %d packets from the recorded node", len(pkts))
	}
	total := 0
	for _, tb := range rs.Tables {
		total += len(tb.Chains)
	}
	for _, p := range pkts {
		_, fresh := recorded(t)
		objs := &fakeObjects{rs: fresh}
		run := &noNft{data: data}
		sc := NewScoped(run, objs)
		tracetest.SameWalk(t, whole, sc, p, node)
		if sc.full || len(run.calls) > 0 {
			t.Errorf("%v: ran nft %q (%s)", p, run.calls, sc.Fallback)
		}
		// A read per level of the path, fewer where the chains read name the next ones: the
		// table names, the static chains, and up to 9 more on this node.
		if sc.Objects >= total || objs.reads > 11 {
			t.Errorf("%v: read %d objects in %d reads (the node has %d chains)", p, sc.Objects, objs.reads, total)
		}
		if s := sc.Set("ip", "kube-proxy", "service-ips"); s != nil && !s.Partial {
			t.Errorf("%v: service-ips was read whole, not by key", p)
		}
	}
}

// When a read fails (an object gone between two reads: kube-proxy synced), the walk reads the
// whole ruleset with nft once and says so.
func TestScopedFallsBackToTheWholeRuleset(t *testing.T) {
	data, rs := recorded(t)
	run := &noNft{data: data}
	sc := NewScoped(run, &fakeObjects{rs: rs, fail: "services"})
	cl := tracetest.LoadObjects(t, "../snapshot/demo-nftables/objects.yaml")
	p := trace.Packet{Src: netip.MustParseAddr(tracetest.ClientPodIP), Dst: netip.MustParseAddr(tracetest.ClusterIP(t, cl, "hostnames")), DstPort: 80, Protocol: trace.TCP}
	w, err := sc.Walk(context.Background(), p, cl.NodeContextFor("node1", nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Paths) != 3 || !sc.full || !strings.Contains(sc.Summary(), "after a scoped read failed") || !strings.Contains(sc.Fallback, "services") {
		t.Fatalf("paths %d, full %v, summary %q", len(w.Paths), sc.full, sc.Summary())
	}
	if len(run.calls) != 1 || run.calls[0] != "nft -j list ruleset" {
		t.Errorf("nft commands %q, want the whole listing once", run.calls)
	}
}

// A table name from the node that could smuggle a command into nft's script is refused: the read
// falls back to the whole ruleset instead of running it.
func TestScopedRefusesUnsafeTableNames(t *testing.T) {
	data, rs := recorded(t)
	for _, name := range []string{"a; flush ruleset", "a b", `a"`, "-x", strings.Repeat("a", 300)} {
		odd := &nftables.Table{Family: "ip", Name: name, Chains: map[string]*nftables.Chain{}, Sets: map[string]*nftables.Set{}}
		run := &noNft{data: data}
		sc := NewScoped(run, &fakeObjects{rs: &nftables.Ruleset{Tables: append([]*nftables.Table{odd}, rs.Tables...)}})
		p := trace.Packet{Src: netip.MustParseAddr(tracetest.ClientPodIP), Dst: netip.MustParseAddr("10.96.10.10"), DstPort: 80, Protocol: trace.TCP}
		if _, err := sc.Walk(context.Background(), p, &trace.NodeContext{}); err != nil {
			t.Fatal(err)
		}
		if !sc.full || strings.Contains(strings.Join(run.calls, "\n"), name) {
			t.Errorf("%q: full %v, nft commands %q", name, sc.full, run.calls)
		}
	}
}
