//go:build linux

package nftnl

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/svctrace/svctrace/dataplane/nftjson"
	"github.com/svctrace/svctrace/test/nftnetns"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace/nftables"
)

// loadNetns loads a recorded `nft -j list ruleset` into a new network namespace and returns it
// open, with what nft itself lists there (the kernel's view: new handles).
func loadNetns(t *testing.T, dump string) (*os.File, *nftables.Ruleset) {
	t.Helper()
	f, ns := nftnetns.Load(t, dump)
	want, _ := nftnetns.List(t, ns)
	return f, want
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// compareTables reports every difference between a table as nft lists it and as read here.
func compareTables(t *testing.T, want, got *nftables.Table) {
	t.Helper()
	where := want.Family + " " + want.Name
	if len(got.Chains) != len(want.Chains) {
		t.Errorf("%s: %d chains, nft lists %d", where, len(got.Chains), len(want.Chains))
	}
	for name, wc := range want.Chains {
		gc := got.Chains[name]
		if gc == nil {
			t.Errorf("%s: chain %s not read", where, name)
			continue
		}
		if gc.Hook != wc.Hook || gc.Type != wc.Type || gc.Prio != wc.Prio || gc.Policy != wc.Policy {
			t.Errorf("%s chain %s: hook %q type %q prio %d policy %q, nft: %q %q %d %q", where, name, gc.Hook, gc.Type, gc.Prio, gc.Policy, wc.Hook, wc.Type, wc.Prio, wc.Policy)
		}
		if len(gc.Rules) != len(wc.Rules) {
			t.Errorf("%s chain %s: %d rules, nft lists %d", where, name, len(gc.Rules), len(wc.Rules))
			continue
		}
		for i, wr := range wc.Rules {
			gr := gc.Rules[i]
			if js(gr.Exprs) != js(wr.Exprs) || gr.Text != wr.Text || gr.Handle != wr.Handle || gr.Comment != wr.Comment {
				t.Errorf("%s chain %s rule %d:\n got %d %s\n     %s\nwant %d %s\n     %s", where, name, i, gr.Handle, gr.Text, js(gr.Exprs), wr.Handle, wr.Text, js(wr.Exprs))
			}
		}
	}
	for name, ws := range want.Sets {
		gs := got.Sets[name]
		if gs == nil {
			t.Errorf("%s: set %s not read", where, name)
			continue
		}
		elems := func(s *nftables.Set) []string {
			var out []string
			for _, e := range s.Elems {
				out = append(out, js([]any{e.Key, e.Data, e.Comment}))
			}
			sort.Strings(out)
			return out
		}
		if gs.Map != ws.Map || gs.Timeout != ws.Timeout || !reflect.DeepEqual(elems(gs), elems(ws)) {
			t.Errorf("%s set %s: map %q timeout %d elements %v\nnft: map %q timeout %d elements %v", where, name, gs.Map, gs.Timeout, elems(gs), ws.Map, ws.Timeout, elems(ws))
		}
	}
}

// Every chain and set of kube-proxy's recorded tables (both families) reads over netlink as nft
// lists it: the same statements, rule text, handles and comments, the same elements.
// SVCTRACE_NFT_DUMP names another recorded dump to check instead (make bench-dump's 10,000 x 10
// node: $CACHE/bench/nftables-10000x10/nft.json).
func TestReadsLikeNft(t *testing.T) {
	dump := "../snapshot/demo-nftables/nft.json"
	if d := os.Getenv("SVCTRACE_NFT_DUMP"); d != "" {
		dump = d
	}
	ns, want := loadNetns(t, dump)
	r, err := Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tables, err := r.Tables()
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) != len(want.Tables) {
		t.Errorf("tables %v, nft lists %d", tables, len(want.Tables))
	}
	for _, wt := range want.Tables {
		start := time.Now()
		got, err := r.ReadTable(wt.Family, wt.Name)
		if err != nil {
			t.Fatalf("%s %s: %v", wt.Family, wt.Name, err)
		}
		t.Logf("read %s %s over netlink in %s: %d chains, %d sets", wt.Family, wt.Name, time.Since(start).Round(time.Millisecond), len(got.Chains), len(got.Sets))
		compareTables(t, wt, got)
	}
}

// netnsRunner runs commands in a network namespace (the node's nft, for tables other than
// kube-proxy's and for the fallback).
type netnsRunner string

func (n netnsRunner) Run(ctx context.Context, argv ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", string(n)}, argv...)...).Output()
	if err != nil {
		return nil, fmt.Errorf("%v: %w", argv, err)
	}
	return out, nil
}

// A read scoped to the packet, over netlink, walks every packet exactly as the whole ruleset nft
// lists does, and looks the big sets up by key (they stay partial) instead of reading them.
func TestScopedOverNetlinkWalksLikeNft(t *testing.T) {
	ns, _ := loadNetns(t, "../snapshot/demo-nftables/nft.json")
	name := strings.TrimPrefix(ns.Name(), "/run/netns/")
	// Tables of iptables-nft next to kube-proxy's, as a node has them: listed whole with nft,
	// one command each (nft 1.0.6 fails several listings in one command).
	for _, args := range [][]string{{"-t", "mangle", "-A", "PREROUTING", "-j", "ACCEPT"}, {"-t", "nat", "-A", "POSTROUTING", "-j", "RETURN"}} {
		if out, err := exec.Command("ip", append([]string{"netns", "exec", name, "iptables-nft"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("iptables-nft: %v: %s", err, out)
		}
	}
	want, listed := nftnetns.List(t, name)
	whole := &nftables.Dataplane{Rules: want}
	cl := tracetest.LoadObjects(t, "../snapshot/demo-nftables/objects.yaml")
	node := cl.NodeContextFor("node1", nil)
	pkts := tracetest.PacketsTo(whole.Entries())
	if len(pkts) < 40 {
		t.Fatalf("only %d packets", len(pkts))
	}
	probed := 0
	for _, p := range pkts {
		r, err := Open(ns)
		if err != nil {
			t.Fatal(err)
		}
		sc := nftjson.NewScoped(netnsRunner(name), r)
		tracetest.SameWalk(t, whole, sc, p, node)
		if sc.Fallback != "" || !strings.HasPrefix(sc.Summary(), "scoped to the packet") {
			t.Errorf("%v: %s", p, sc.Summary())
		}
		if sc.Bytes == 0 || sc.Bytes > len(listed)/2 {
			t.Errorf("%v: %d bytes came from nft (the iptables-nft tables; the whole ruleset is %d)", p, sc.Bytes, len(listed))
		}
		if s := sc.Set("ip", "kube-proxy", "service-ips"); s != nil && s.Partial {
			probed++
		}
		r.Close()
	}
	if probed == 0 {
		t.Error("service-ips was never looked up by key")
	}
}

// ChainNames lists exactly the chains nft lists, table by table; SetWhere dumps a set and keeps
// exactly the elements its filter accepts, decoded as a whole-set read decodes them, each told by
// its verdict's chain and its comment.
func TestChainNamesAndFilteredSets(t *testing.T) {
	ns, want := loadNetns(t, "../snapshot/demo-nftables/nft.json")
	r, err := Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	sets := 0
	for _, wt := range want.Tables {
		if wt.Family == "inet" || wt.Family == "ip" || wt.Family == "ip6" {
			names, err := r.ChainNames(wt.Family, wt.Name)
			if err != nil {
				t.Fatal(err)
			}
			var listed []string
			for name := range wt.Chains {
				listed = append(listed, name)
			}
			sort.Strings(names)
			sort.Strings(listed)
			if !reflect.DeepEqual(names, listed) {
				t.Errorf("%s %s: chain names %v, nft lists %v", wt.Family, wt.Name, names, listed)
			}
		}
		if wt.Name != "kube-proxy" {
			continue
		}
		whole, err := r.ReadTable(wt.Family, wt.Name)
		if err != nil {
			t.Fatal(err)
		}
		for name, s := range whole.Sets {
			if len(s.Elems) == 0 {
				continue
			}
			all, err := r.SetWhere(wt.Family, wt.Name, name, func(string, string) bool { return true })
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !all.Partial || js(all.Elems) != js(s.Elems) {
				t.Errorf("%s %s: SetWhere(all) read %s, the whole set is %s", wt.Family, name, js(all.Elems), js(s.Elems))
			}
			none, err := r.SetWhere(wt.Family, wt.Name, name, func(string, string) bool { return false })
			if err != nil || len(none.Elems) != 0 {
				t.Errorf("%s %s: SetWhere(none) read %d elements, %v", wt.Family, name, len(none.Elems), err)
			}
			sets++
		}
		// service-ips by the chain its elements go to: exactly the elements that go there.
		if s := whole.Sets["service-ips"]; s != nil && len(s.Elems) > 0 {
			target := s.Elems[0].Data.(map[string]any)["goto"].(map[string]any)["target"].(string)
			one, err := r.SetWhere(wt.Family, wt.Name, "service-ips", func(to, _ string) bool { return to == target })
			n := 0
			for _, e := range s.Elems {
				if js(e.Data) == js(s.Elems[0].Data) {
					n++
				}
			}
			if err != nil || len(one.Elems) != n || n == 0 {
				t.Errorf("service-ips elements going to %s: %d read, %d in the set (%v)", target, len(one.Elems), n, err)
			}
		}
		// no-endpoint-services by comment.
		if s := whole.Sets["no-endpoint-services"]; s != nil && len(s.Elems) > 0 {
			c := s.Elems[0].Comment
			one, err := r.SetWhere(wt.Family, wt.Name, "no-endpoint-services", func(_, comment string) bool { return comment == c })
			if err != nil || c == "" || len(one.Elems) == 0 || one.Elems[0].Comment != c {
				t.Errorf("no-endpoint-services elements commented %q: %v (%v)", c, one, err)
			}
		}
	}
	if sets < 4 {
		t.Errorf("only %d sets compared", sets)
	}
}

// freshReaders serves each `nft-objects` request as the agent's pod does: a process of its own,
// so a reader of its own (nothing learnt by an earlier request survives).
type freshReaders struct {
	ns    *os.File
	reads int
}

func (f *freshReaders) Run(_ context.Context, argv ...string) ([]byte, error) {
	if len(argv) != 3 || argv[1] != nftjson.ObjectsCommand {
		return nil, fmt.Errorf("unexpected command %q", argv)
	}
	r, err := Open(f.ns)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	f.reads++
	return nftjson.ServeObjects(context.Background(), r, []byte(argv[2]))
}

// A remote scoped read, each request served by a fresh reader over real netlink, walks every
// packet of the recorded node exactly as the whole ruleset does, without falling back: the
// binary on the node walks the packet over netlink and answers with all the walk here needs, in
// one request.
func TestScopedThroughExecWalksLikeNft(t *testing.T) {
	ns, want := loadNetns(t, "../snapshot/demo-nftables/nft.json")
	name := strings.TrimPrefix(ns.Name(), "/run/netns/")
	whole := &nftables.Dataplane{Rules: want}
	cl := tracetest.LoadObjects(t, "../snapshot/demo-nftables/objects.yaml")
	node := cl.NodeContextFor("node1", nil)
	ctx := context.Background()
	for _, p := range tracetest.PacketsTo(whole.Entries()) {
		served := &freshReaders{ns: ns}
		x := &nftjson.ExecReader{Ctx: ctx, Runner: served, Argv0: "kubectl-svctrace"}
		sc := nftjson.NewScoped(netnsRunner(name), x)
		tracetest.SameWalk(t, whole, sc, p, node)
		if sc.Fallback != "" {
			t.Errorf("%v: the read through exec fell back: %s", p, sc.Fallback)
		}
		if served.reads != 1 {
			t.Errorf("%v: %d requests served, want one (the walk there)", p, served.reads)
		}
	}
}
