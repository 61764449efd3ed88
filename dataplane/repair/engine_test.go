package repair

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/knftables"

	"github.com/svctrace/svctrace/dataplane/nftwrite"
	"github.com/svctrace/svctrace/dataplane/xtables"
	"github.com/svctrace/svctrace/test/recorded"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/iptables"
	"github.com/svctrace/svctrace/trace/kubeproxy"
)

// fakeNode is a node in memory: chains per table, IPVS real servers' weights, and saved files. Any
// call can be made to fail: failAt names it as METHOD#N (the Nth call of that method), and fail
// says how (an error, a timeout, or the run's context cancelled there).
type fakeNode struct {
	chains map[string]map[string]trace.ChainRules
	reals  map[RealKey]int
	busy   map[RealKey]bool
	files  map[string][]byte

	calls  []string
	counts map[string]int
	failAt string
	fail   string
	cancel context.CancelFunc
	// corrupt makes the first two restores (apply's) write one rule more than asked: a result
	// that is not the plan's.
	corrupt bool
	// conntrack is how many entries each flush matches; a deletion leaves ctLeft of them.
	conntrack, ctLeft int
	// nft is kube-proxy's table per family, in knftables' fake (which refuses, as nft does, to
	// delete what is not there or create what is).
	nft map[string]*knftables.Fake
	// leftovers are other modes' state by Where().
	leftovers map[string]*trace.Leftover
	restored  []string // the leftovers put back, in order
	// backends are the iptables commands each chain read, restore test and restore ran with.
	backends []string
}

var errBoom = errors.New("boom")

func (f *fakeNode) call(ctx context.Context, method string) error {
	if f.counts == nil {
		f.counts = map[string]int{}
	}
	f.counts[method]++
	name := fmt.Sprintf("%s#%d", method, f.counts[method])
	f.calls = append(f.calls, name)
	if err := ctx.Err(); err != nil {
		return err
	}
	if !slices.Contains(strings.Split(f.failAt, ","), name) {
		return nil
	}
	switch f.fail {
	case "timeout":
		return fmt.Errorf("%s: %w", name, context.DeadlineExceeded)
	case "cancelled":
		// Ctrl-C arrives during this call: it fails if it runs on the run's context.
		f.cancel()
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	return fmt.Errorf("%s: %w", name, errBoom)
}

func (f *fakeNode) ReadChains(ctx context.Context, backend string, want map[string][]string) (map[string]map[string]trace.ChainRules, error) {
	if err := f.call(ctx, "ReadChains"); err != nil {
		return nil, err
	}
	f.backends = append(f.backends, "read "+backend)
	out := map[string]map[string]trace.ChainRules{}
	for table, chains := range want {
		out[table] = map[string]trace.ChainRules{}
		for _, c := range chains {
			cr, ok := f.chains[fakeKey(backend, table)][c]
			if !ok {
				cr = trace.ChainRules{Chain: c, Rules: []string{}}
			}
			out[table][c] = cr
		}
	}
	return out, nil
}

func (f *fakeNode) TestRestore(ctx context.Context, backend, input string) error {
	f.backends = append(f.backends, "test "+backend)
	return f.call(ctx, "TestRestore")
}

// fakeKey is where the fake keeps a table: ip6tables commands write IPv6's (TableRestore.Key).
func fakeKey(backend, table string) string {
	return trace.TableKey(table, strings.HasPrefix(backend, "ip6tables"))
}

// Restore applies restore input as iptables-restore --noflush does: a chain line creates or
// flushes the chain, -A appends, -X deletes; one table, all or nothing.
func (f *fakeNode) Restore(ctx context.Context, backend, input string) error {
	f.backends = append(f.backends, "restore "+backend)
	if err := f.call(ctx, "Restore"); err != nil {
		return err
	}
	lines := strings.Split(strings.TrimRight(input, "\n"), "\n")
	table := fakeKey(backend, strings.TrimPrefix(lines[0], "*"))
	next := map[string]trace.ChainRules{}
	for k, v := range f.chains[table] {
		next[k] = v
	}
	for _, l := range lines[1 : len(lines)-1] {
		fields := strings.Fields(l)
		switch {
		case strings.HasPrefix(l, ":"):
			c := fields[0][1:]
			next[c] = trace.ChainRules{Chain: c, Exists: true, Rules: []string{}}
		case fields[0] == "-A":
			c := next[fields[1]]
			c.Rules = append(slices.Clone(c.Rules), l)
			next[fields[1]] = c
		case fields[0] == "-X":
			delete(next, fields[1])
		}
	}
	if f.corrupt && f.counts["Restore"] <= 2 {
		for k, c := range next {
			if c.Exists {
				c.Rules = append(slices.Clone(c.Rules), "-A "+k+" -j RETURN")
				next[k] = c
				break
			}
		}
	}
	f.chains[table] = next
	return nil
}

func (f *fakeNode) IPVSWeights(ctx context.Context, keys []RealKey) (map[RealKey]int, error) {
	if err := f.call(ctx, "IPVSWeights"); err != nil {
		return nil, err
	}
	out := map[RealKey]int{}
	for _, k := range keys {
		if w, ok := f.reals[k]; ok {
			out[k] = w
		}
	}
	return out, nil
}

func (f *fakeNode) IPVS(ctx context.Context, op trace.IPVSOp) (string, error) {
	if err := f.call(ctx, "IPVS"); err != nil {
		return "", err
	}
	k := RealKey{op.Protocol, op.Virtual, op.Real}
	switch op.Op {
	case "add-real", "set-weight":
		f.reals[k] = op.Weight
	case "delete-real":
		if op.WhenIdle && f.busy[k] {
			return "still busy", nil
		}
		delete(f.reals, k)
	}
	return "", nil
}

func (f *fakeNode) DeleteConntrack(ctx context.Context, fl trace.ConntrackFlush) error {
	if err := f.call(ctx, "DeleteConntrack"); err != nil {
		return err
	}
	f.conntrack = f.ctLeft
	return nil
}

func (f *fakeNode) CountConntrack(ctx context.Context, fl trace.ConntrackFlush) (int, error) {
	return f.conntrack, f.call(ctx, "CountConntrack")
}

func (f *fakeNode) NftRead(ctx context.Context, family string, want trace.NftState) (trace.NftState, error) {
	if err := f.call(ctx, "NftRead"); err != nil {
		return trace.NftState{}, err
	}
	return fakeNftState(f.nft[family], want), nil
}

func (f *fakeNode) NftCheck(ctx context.Context, family string, from, to trace.NftState) error {
	return f.call(ctx, "NftCheck")
}

func (f *fakeNode) NftWrite(ctx context.Context, family string, from, to trace.NftState) error {
	if err := f.call(ctx, "NftWrite"); err != nil {
		return err
	}
	fk := f.nft[family]
	if err := nftwrite.Write(ctx, fk, family, from, to); err != nil {
		return err
	}
	if f.corrupt && f.counts["NftWrite"] <= 1 {
		for _, c := range to.Chains {
			if c.Exists {
				fk.Table.Chains[c.Chain].Rules = append(fk.Table.Chains[c.Chain].Rules, &knftables.Rule{Chain: c.Chain, Rule: "return"})
				break
			}
		}
	}
	return nil
}

// fakeNftState reads the objects want names from a fake table, as nftwrite.Read reads a node's.
func fakeNftState(fk *knftables.Fake, want trace.NftState) trace.NftState {
	var out trace.NftState
	for _, c := range want.Chains {
		cr := trace.ChainRules{Chain: c.Chain, Rules: []string{}}
		if ch := fk.Table.Chains[c.Chain]; ch != nil {
			cr.Exists = true
			for _, r := range ch.Rules {
				cr.Rules = append(cr.Rules, r.Rule)
			}
		}
		out.Chains = append(out.Chains, cr)
	}
	for _, s := range want.Sets {
		ns := trace.NftSet{Name: s.Name}
		if set := fk.Table.Sets[s.Name]; set != nil {
			ns.Exists, ns.Timeout = true, int(set.Timeout.Seconds())
		}
		out.Sets = append(out.Sets, ns)
	}
	for _, e := range want.Elements {
		ne := trace.NftElement{Set: e.Set, Key: e.Key}
		var elems []*knftables.Element
		if m := fk.Table.Maps[e.Set]; m != nil {
			elems = m.Elements
		} else if s := fk.Table.Sets[e.Set]; s != nil {
			elems = s.Elements
		}
		for _, el := range elems {
			if strings.Join(el.Key, " . ") == e.Key {
				ne.Exists, ne.Value = true, strings.Join(el.Value, " . ")
			}
		}
		out.Elements = append(out.Elements, ne)
	}
	return out
}

func (f *fakeNode) ReadLeftover(ctx context.Context, l trace.Leftover) (*trace.Leftover, error) {
	if err := f.call(ctx, "ReadLeftover"); err != nil {
		return nil, err
	}
	return f.leftovers[l.Where()], nil
}

func (f *fakeNode) RemoveLeftover(ctx context.Context, l trace.Leftover) error {
	if err := f.call(ctx, "RemoveLeftover"); err != nil {
		return err
	}
	if f.corrupt {
		return nil // "succeeds" and leaves it there
	}
	delete(f.leftovers, l.Where())
	return nil
}

func (f *fakeNode) RestoreLeftover(ctx context.Context, l trace.Leftover) error {
	if err := f.call(ctx, "RestoreLeftover"); err != nil {
		return err
	}
	c := l
	f.leftovers[l.Where()] = &c
	f.restored = append(f.restored, l.Where())
	return nil
}

func (f *fakeNode) SaveState(path string, data []byte) error {
	if err := f.call(context.Background(), "SaveState"); err != nil {
		return err
	}
	f.files[path] = slices.Clone(data)
	return nil
}

// demoPlan is the plan for the recorded demo node against API objects edited the way a stale node
// sees them (a Service deleted, an endpoint replaced: the nat table), plus a filter transaction
// and a UDP conntrack deletion, so that every step has something to do.
func demoPlan(t *testing.T) *trace.RepairPlan {
	t.Helper()
	dump, err := os.ReadFile("../snapshot/demo/iptables-save.txt")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := xtables.Parse(dump)
	if err != nil {
		t.Fatal(err)
	}
	cl := tracetest.StaleDemo(t, "../snapshot/demo")
	plan, err := kubeproxy.PlanIPTables(&iptables.Dataplane{V4: rs}, cl, cl.NodeContextFor("node1", nil), trace.CheckScope{})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.IPTables) != 1 || plan.IPTables[0].Table != "nat" {
		t.Fatalf("the demo plan changed: %+v", plan.IPTables)
	}
	before := []string{"-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment \"default/x:http has no endpoints\" -j REJECT"}
	plan.IPTables = append([]trace.TableRestore{{
		Table:  "filter",
		Input:  "*filter\n:KUBE-EXTERNAL-SERVICES - [0:0]\nCOMMIT\n",
		Before: []trace.ChainRules{{Chain: "KUBE-EXTERNAL-SERVICES", Exists: true, Rules: before}},
		After:  []trace.ChainRules{{Chain: "KUBE-EXTERNAL-SERVICES", Exists: true, Rules: []string{}}},
	}}, plan.IPTables...)
	plan.Conntrack = append(plan.Conntrack, trace.ConntrackFlush{Protocol: "udp", Dst: "10.96.10.53:53", Backend: "10.244.1.51"})
	return plan
}

// ipvsPlan drains one real server (weight 0, then deleted when idle), adds one and re-weights one.
func ipvsPlan() *trace.RepairPlan {
	vs := "10.96.30.10:80"
	return &trace.RepairPlan{APIVersion: trace.APIVersion, Kind: "RepairPlan", Node: "node1", Mode: "ipvs", Services: []string{"ipvs/vm:http/tcp"},
		IPVS: []trace.IPVSOp{
			{Op: "set-weight", Protocol: "tcp", Virtual: vs, Real: "10.244.2.3:8080", Weight: 0},
			{Op: "delete-real", Protocol: "tcp", Virtual: vs, Real: "10.244.2.3:8080", WhenIdle: true},
			{Op: "add-real", Protocol: "tcp", Virtual: vs, Real: "10.244.2.4:8080", Weight: 1},
			{Op: "set-weight", Protocol: "tcp", Virtual: vs, Real: "10.244.2.5:8080", Weight: 1},
		}}
}

func newFake(plan *trace.RepairPlan) *fakeNode {
	f := &fakeNode{chains: map[string]map[string]trace.ChainRules{}, files: map[string][]byte{},
		reals: map[RealKey]int{{"tcp", "10.96.30.10:80", "10.244.2.3:8080"}: 1, {"tcp", "10.96.30.10:80", "10.244.2.5:8080"}: 3},
		busy:  map[RealKey]bool{}}
	for _, t := range plan.IPTables {
		f.chains[t.Key()] = map[string]trace.ChainRules{}
		for _, c := range t.Before {
			if c.Exists {
				f.chains[t.Key()][c.Chain] = c
			}
		}
	}
	return f
}

// setup is a fault case's plan (iptables or IPVS), its fake node, and that node's real servers as
// they are before anything runs.
func setup(t *testing.T, ipvs bool) (*trace.RepairPlan, *fakeNode, map[RealKey]int) {
	plan := demoPlan(t)
	if ipvs {
		plan = ipvsPlan()
	}
	f := newFake(plan)
	before := map[RealKey]int{}
	for k, v := range f.reals {
		before[k] = v
	}
	return plan, f, before
}

// nodeEquals says how the fake's chains and real servers differ from a plan's before or after.
func nodeEquals(f *fakeNode, plan *trace.RepairPlan, after bool, realsBefore map[RealKey]int) string {
	got := map[string]map[string]trace.ChainRules{}
	for table, cs := range f.chains {
		got[table] = cs
	}
	if d := xtables.Differences(got, plan.IPTables, after); len(d) > 0 {
		return strings.Join(d, "; ")
	}
	if !after && realsBefore != nil && fmt.Sprint(f.reals) != fmt.Sprint(realsBefore) {
		return fmt.Sprintf("real servers %v, were %v", f.reals, realsBefore)
	}
	return ""
}

// TestApplyFaults fails every step of apply, verify and rollback in turn, three ways, and checks
// what the node then holds, what the engine says, and its exit code.
func TestApplyFaults(t *testing.T) {
	type node int
	const (
		asBefore node = iota
		asPlanned
		mixed
	)
	for _, tc := range []struct {
		name    string
		ipvs    bool
		failAt  string
		corrupt bool
		// rollback marks a failure in the rollback: Ctrl-C there does not stop it.
		rollback bool
		// onCancel is the message when Ctrl-C comes at failAt, where it differs.
		onCancel string
		check    []string
		want     Outcome
		node     node
		message  string
	}{
		{name: "everything works", want: Applied, node: asPlanned, message: "read back as planned and traced clean"},
		{name: "re-read before writing", failAt: "ReadChains#1", want: NothingWritten, node: asBefore, message: "could not read the chains"},
		{name: "restore --test", failAt: "TestRestore#1", want: NothingWritten, node: asBefore, message: "did not accept the plan's input"},
		{name: "saving the state", failAt: "SaveState#1", want: NothingWritten, node: asBefore, message: "could not save the state", onCancel: "interrupted before writing"},
		{name: "marking the state applied", failAt: "SaveState#2", want: Applied, node: asPlanned, message: "read back as planned"},
		{name: "writing the first table", failAt: "Restore#1", want: NothingWritten, node: asBefore, message: "read back unchanged, nothing was written"},
		{name: "writing the second table", failAt: "Restore#2", want: RolledBack, node: asBefore, message: "writing the nat table failed"},
		{name: "reading back to verify", failAt: "ReadChains#2", want: RolledBack, node: asBefore, message: "reading the chains back failed"},
		{name: "a result that is not the plan's", corrupt: true, want: RolledBack, node: asBefore, message: "is not what was planned"},
		{name: "the trace of the repaired Services", check: []string{"StaleEndpoint default/hostnames:default"}, want: RolledBack, node: asBefore, message: "StaleEndpoint default/hostnames:default"},
		{name: "rollback's read", rollback: true, failAt: "ReadChains#3", corrupt: true, want: RollbackFailed, node: mixed, message: "ROLLBACK FAILED"},
		{name: "rollback's write", rollback: true, failAt: "Restore#3", corrupt: true, want: RollbackFailed, node: mixed, message: "writing the old filter chains failed"},
		{name: "rollback's read-back", rollback: true, failAt: "ReadChains#4", corrupt: true, want: RollbackFailed, node: mixed, message: "reading the chains back failed"},
		{name: "conntrack deletion", failAt: "DeleteConntrack#1", want: AppliedCleanupFailed, node: asPlanned, message: "1 of 1 conntrack deletion(s) failed"},
		{name: "ipvs: everything works", ipvs: true, want: Applied, node: asPlanned, message: "repaired 1 service port(s)"},
		{name: "ipvs: reading real servers", ipvs: true, failAt: "IPVSWeights#1", want: NothingWritten, node: asBefore, message: "could not read the IPVS real servers"},
		{name: "ipvs: first operation", ipvs: true, failAt: "IPVS#1", want: NothingWritten, node: asBefore, message: "read back unchanged"},
		{name: "ipvs: third operation", ipvs: true, failAt: "IPVS#3", want: RolledBack, node: asBefore, message: "IPVS add-real 10.244.2.4:8080"},
		{name: "ipvs: reading back to verify", ipvs: true, failAt: "IPVSWeights#2", want: RolledBack, node: asBefore, message: "reading the real servers back failed"},
		{name: "ipvs: rollback's operation", ipvs: true, rollback: true, failAt: "IPVS#5", check: []string{"WrongShare x"}, want: RollbackFailed, node: mixed, message: "ROLLBACK FAILED"},
		{name: "ipvs: rollback's read-back", ipvs: true, rollback: true, failAt: "IPVSWeights#4", check: []string{"WrongShare x"}, want: RollbackFailed, node: mixed, message: "real servers back failed"},
	} {
		for _, how := range []string{"error", "timeout", "cancelled"} {
			if tc.failAt == "" && how != "error" {
				continue
			}
			t.Run(tc.name+" ("+how+")", func(t *testing.T) {
				plan, f, realsBefore := setup(t, tc.ipvs)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				f.failAt, f.fail, f.cancel, f.corrupt = tc.failAt, how, cancel, tc.corrupt
				dir := t.TempDir()
				e := &Engine{Node: f, StateDir: dir, Now: func() time.Time { return time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC) },
					Check: func(context.Context, *trace.RepairPlan, []string) ([]string, error) { return tc.check, nil }}
				res := e.Apply(ctx, plan, "node1", "iptables-legacy")
				wantOutcome, wantNode, message := tc.want, tc.node, tc.message
				if how == "cancelled" && tc.rollback {
					// The rollback runs on a context of its own: Ctrl-C does not leave it halfway.
					wantOutcome, wantNode, message = RolledBack, asBefore, "rolled back"
				}
				if how == "cancelled" && tc.onCancel != "" {
					message = tc.onCancel
				}
				if res.Outcome != wantOutcome || !strings.Contains(res.Message, message) {
					t.Fatalf("outcome %s %q, want %s with %q\ncalls %v", res.Outcome, res.Message, wantOutcome, message, f.calls)
				}
				if res.Outcome.ExitCode() != map[Outcome]int{Applied: 0, NothingWritten: 2, RolledBack: 4, RollbackFailed: 5, AppliedCleanupFailed: 6}[res.Outcome] {
					t.Errorf("exit code %d for %s", res.Outcome.ExitCode(), res.Outcome)
				}
				switch wantNode {
				case asBefore:
					if d := nodeEquals(f, plan, false, realsBefore); d != "" {
						t.Errorf("the node is not as before: %s", d)
					}
				case asPlanned:
					if d := nodeEquals(f, plan, true, nil); d != "" {
						t.Errorf("the node is not as planned: %s", d)
					}
				}
				// Nothing is written before the state it replaces is saved.
				firstWrite := slices.IndexFunc(f.calls, func(c string) bool { return strings.HasPrefix(c, "Restore") || strings.HasPrefix(c, "IPVS#") })
				firstSave := slices.Index(f.calls, "SaveState#1")
				if firstWrite >= 0 && (firstSave < 0 || firstSave > firstWrite || tc.failAt == "SaveState#1") {
					t.Errorf("a write came before the state was saved: %v", f.calls)
				}
				if res.Outcome == RollbackFailed {
					// The loudest message names the state file and the command that restores it.
					if res.StatePath == "" || !strings.Contains(res.Message, "--undo "+res.StatePath+" --force") {
						t.Errorf("the message does not say how to restore: %q", res.Message)
					}
					var s State
					if err := json.Unmarshal(f.files[res.StatePath], &s); err != nil || s.Status != "rollback failed" {
						t.Errorf("state file: %v %q", err, s.Status)
					}
				}
				if res.Outcome == Applied {
					if !slices.Contains(res.Notes, "undo with: kubectl svctrace repair --undo "+res.StatePath) {
						t.Errorf("notes %q", res.Notes)
					}
				}
			})
		}
	}
}

// TestApplyRefuses: what is refused before anything is read or written.
func TestApplyRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(*trace.RepairPlan)
		node    string
		backend string
		want    string
	}{
		{"another node's plan", nil, "node2", "iptables-legacy", "the plan is for node node1, this is node node2"},
		{"a node name that is a path", func(p *trace.RepairPlan) { p.Node = "../../etc" }, "../../etc", "iptables-legacy", "is not a valid Kubernetes node name"},
		{"an unclear backend", nil, "node1", "", "backend \"\" is not clear"},
		{"a command for a backend", nil, "node1", "/tmp/evil", "backend \"/tmp/evil\" is not clear"},
		{"nftables objects in iptables mode", func(p *trace.RepairPlan) {
			p.Nftables = []trace.NftChange{{Family: "ip"}}
		}, "node1", "iptables-legacy", "writes nftables objects in iptables mode"},
		{"a foreign chain", func(p *trace.RepairPlan) {
			p.IPTables[1].Input = strings.Replace(p.IPTables[1].Input, "COMMIT", "-A INPUT -j DROP\nCOMMIT", 1)
		}, "node1", "iptables-legacy", "names chain INPUT"},
		{"a rule of another chain in before", func(p *trace.RepairPlan) {
			p.IPTables[0].Before[0].Rules = append(p.IPTables[0].Before[0].Rules, "-A INPUT -j DROP")
		}, "node1", "iptables-legacy", "lists a rule of another chain"},
		{"the mangle table", func(p *trace.RepairPlan) { p.IPTables[0].Table = "mangle" }, "node1", "iptables-legacy", "repair writes only nat and filter"},
		{"a conntrack flush of anything", func(p *trace.RepairPlan) { p.Conntrack[0].Dst = "-F" }, "node1", "iptables-legacy", "is not ADDRESS:PORT"},
		{"an IPVS op with a bad protocol", func(p *trace.RepairPlan) {
			p.Mode = "ipvs"
			p.IPVS = append(p.IPVS, trace.IPVSOp{Op: "add-real", Protocol: "icmp", Virtual: "10.0.0.1:80", Real: "10.0.0.2:80"})
		}, "node1", "iptables-legacy", "protocol \"icmp\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := demoPlan(t)
			if tc.edit != nil {
				tc.edit(plan)
			}
			f := newFake(plan)
			e := &Engine{Node: f, StateDir: t.TempDir()}
			res := e.Apply(context.Background(), plan, tc.node, tc.backend)
			if res.Outcome != NothingWritten || !strings.Contains(res.Message, tc.want) || !strings.HasSuffix(res.Message, "nothing was written") {
				t.Fatalf("%s %q, want NothingWritten with %q", res.Outcome, res.Message, tc.want)
			}
			if len(f.calls) > 0 {
				t.Errorf("the node was touched: %v", f.calls)
			}
		})
	}
	if res := (&Engine{}).Apply(context.Background(), &trace.RepairPlan{Mode: "iptables"}, "node1", ""); res.Outcome != NothingToDo || res.Outcome.ExitCode() != 0 {
		t.Errorf("an empty plan: %s", res.Outcome)
	}
}

// TestUndo: undo after a repair, after a repair kube-proxy overwrote (refused without force), and
// with each of its steps failing.
func TestUndo(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ipvs    bool
		failAt  string
		synced  bool
		force   bool
		want    Outcome
		message string
	}{
		{name: "after a repair", want: Undone, message: "restored the state saved in"},
		{name: "ipvs: after a repair", ipvs: true, want: Undone, message: "3 real server(s) read back as before"},
		{name: "kube-proxy rewrote the chains", synced: true, want: NothingWritten, message: "add --force to undo anyway"},
		{name: "kube-proxy rewrote the chains, forced", synced: true, force: true, want: Undone, message: "read back as before"},
		{name: "reading the chains", failAt: "ReadChains#1", want: NothingWritten, message: "could not read the chains"},
		{name: "reading the chains, forced", failAt: "ReadChains#1", synced: true, force: true, want: NothingWritten, message: "could not undo"},
		{name: "writing the old chains", failAt: "Restore#1", want: UndoPartial, message: "writing the old filter chains failed"},
		{name: "reading them back", failAt: "ReadChains#3", want: UndoPartial, message: "reading the chains back failed"},
		{name: "ipvs: an operation", ipvs: true, failAt: "IPVS#2", want: UndoPartial, message: "IPVS: "},
		{name: "ipvs: reading back", ipvs: true, failAt: "IPVSWeights#2", want: UndoPartial, message: "real servers back failed"},
		{name: "marking the state undone", failAt: "SaveState#1", want: Undone, message: "restored the state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, f, realsBefore := setup(t, tc.ipvs)
			e := &Engine{Node: f, StateDir: t.TempDir()}
			applied := e.Apply(context.Background(), plan, "node1", "iptables-legacy")
			if applied.Outcome != Applied {
				t.Fatalf("apply: %s %s", applied.Outcome, applied.Message)
			}
			if tc.synced {
				f.chains["filter"]["KUBE-EXTERNAL-SERVICES"] = trace.ChainRules{Chain: "KUBE-EXTERNAL-SERVICES", Exists: true, Rules: []string{"-A KUBE-EXTERNAL-SERVICES -j RETURN"}}
			}
			s, err := DecodeState(f.files[applied.StatePath])
			if err != nil {
				t.Fatal(err)
			}
			f.calls, f.counts, f.failAt, f.fail = nil, nil, tc.failAt, "error"
			res := e.Undo(context.Background(), s, applied.StatePath, "node1", tc.force)
			if res.Outcome != tc.want || !strings.Contains(res.Message, tc.message) {
				t.Fatalf("%s %q, want %s with %q (calls %v)", res.Outcome, res.Message, tc.want, tc.message, f.calls)
			}
			if res.Outcome.ExitCode() != map[Outcome]int{Undone: 0, NothingWritten: 2, UndoPartial: 6}[res.Outcome] {
				t.Errorf("exit code %d", res.Outcome.ExitCode())
			}
			if res.Outcome == Undone {
				if d := nodeEquals(f, plan, false, realsBefore); d != "" {
					t.Errorf("the node is not as before: %s", d)
				}
			}
		})
	}
	plan := demoPlan(t)
	f := newFake(plan)
	e := &Engine{Node: f, StateDir: t.TempDir()}
	applied := e.Apply(context.Background(), plan, "node1", "iptables-legacy")
	s, _ := DecodeState(f.files[applied.StatePath])
	if res := e.Undo(context.Background(), s, applied.StatePath, "node2", false); res.Outcome != NothingWritten || !strings.Contains(res.Message, "saved on node node1, this is node node2") {
		t.Errorf("undo on another node: %s %q", res.Outcome, res.Message)
	}
}

// TestDeferredDeleteIsVerified: a real server kept at weight 0 because it still has connections is
// what the plan asks for until it is idle.
func TestDeferredDeleteIsVerified(t *testing.T) {
	plan := ipvsPlan()
	f := newFake(plan)
	f.busy[RealKey{"tcp", "10.96.30.10:80", "10.244.2.3:8080"}] = true
	var gotDeferred []string
	e := &Engine{Node: f, StateDir: t.TempDir(), Check: func(_ context.Context, _ *trace.RepairPlan, d []string) ([]string, error) {
		gotDeferred = d
		return nil, nil
	}}
	res := e.Apply(context.Background(), plan, "node1", "")
	if res.Outcome != Applied || !slices.Contains(res.Notes, "still busy") || len(gotDeferred) != 1 {
		t.Fatalf("%s %q %q %v", res.Outcome, res.Message, res.Notes, gotDeferred)
	}
}

// TestStateFilesAreData: state files that name commands, foreign chains or other nodes, or are not
// state files at all, are refused before anything is done.
func TestStateFilesAreData(t *testing.T) {
	plan := demoPlan(t)
	f := newFake(plan)
	e := &Engine{Node: f, StateDir: t.TempDir()}
	applied := e.Apply(context.Background(), plan, "node1", "iptables-legacy")
	good := string(f.files[applied.StatePath])
	if _, err := DecodeState([]byte(good)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, from, to, want string }{
		{"a command as backend", `"backend": "iptables-legacy"`, `"backend": "/tmp/evil"`, "is not one of"},
		{"an unknown field", `"backend": "iptables-legacy"`, `"backend": "iptables-legacy", "save": "/bin/sh"`, "unknown field"},
		{"a rule into INPUT", `"rules": [`, `"rules": ["-A INPUT -j DROP",`, "lists a rule of another chain"},
		{"a path as node", `"node": "node1"`, `"node": "../x"`, "not a valid Kubernetes node name"},
		{"another kind", `"kind": "RepairState"`, `"kind": "Check"`, "not a state file"},
		{"a weight out of range", `"mode": "iptables"`, `"mode": "iptables", "ipvsBefore": [{"protocol":"tcp","virtual":"1.2.3.4:80","real":"1.2.3.5:80","weight":99999}]`, "weight 99999"},
	} {
		edited := strings.Replace(good, tc.from, tc.to, 1)
		if edited == good {
			t.Fatalf("%s: the edit did not apply", tc.name)
		}
		if _, err := DecodeState([]byte(edited)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestLocalSaveState: the real state writer makes 0600 files in a 0700 directory and never writes
// through a link.
func TestLocalSaveState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	path := filepath.Join(dir, "s.json")
	if err := (Local{}).SaveState(path, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	di, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
		t.Errorf("file %v, directory %v", fi.Mode(), di.Mode())
	}
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, path+".tmp"); err != nil {
		t.Fatal(err)
	}
	if err := (Local{}).SaveState(path, []byte("{\"x\":1}")); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(victim); string(data) != "keep" {
		t.Errorf("wrote through a link: %q", data)
	}
	link := filepath.Join(dir, "link.json")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	if err := (Local{}).SaveState(link, []byte("{}")); err == nil {
		t.Error("replaced a link")
	}
	if data, _ := os.ReadFile(victim); string(data) != "keep" {
		t.Errorf("wrote through a link: %q", data)
	}
}

// TestVerificationSaysWhatRan: without the API the repair is read back but not traced, and says
// so; a trace that fails rolls back.
func TestVerificationSaysWhatRan(t *testing.T) {
	for _, tc := range []struct {
		err     error
		want    Outcome
		message string
	}{
		{ErrNotTraced, Applied, "read back as planned (not traced against the API"},
		{errBoom, RolledBack, "tracing the repaired Service ports failed"},
	} {
		plan := demoPlan(t)
		f := newFake(plan)
		e := &Engine{Node: f, StateDir: t.TempDir(), Check: func(context.Context, *trace.RepairPlan, []string) ([]string, error) { return nil, tc.err }}
		res := e.Apply(context.Background(), plan, "node1", "iptables-nft")
		if res.Outcome != tc.want || !strings.Contains(res.Message, tc.message) {
			t.Errorf("%v: %s %q", tc.err, res.Outcome, res.Message)
		}
	}
}

// TestApplyFlowsOnly: a plan of stale flows only deletes them with no state saved and no chain read, and says how many entries matched
// before and after; an entry still there after the deletion makes the run partial.
func TestApplyFlowsOnly(t *testing.T) {
	zone := uint16(0)
	plan := &trace.RepairPlan{Node: "node1", Mode: "nftables", Conntrack: []trace.ConntrackFlush{
		{Protocol: "udp", Dst: "10.96.10.53:53", Backend: "10.244.1.77", BackendPort: 5353, Zone: &zone, Entries: 3}}}
	for _, tc := range []struct {
		left    int
		failAt  string
		want    Outcome
		message string
	}{
		{left: 0, want: Applied, message: "udp to 10.96.10.53:53 via 10.244.1.77:5353 in zone 0: 3 before, 0 after"},
		{left: 1, want: AppliedCleanupFailed, message: "3 entries before, 1 after the deletion"},
		{failAt: "DeleteConntrack#1", want: AppliedCleanupFailed, message: "1 of 1 conntrack deletion(s) failed"},
		{failAt: "CountConntrack#2", want: AppliedCleanupFailed, message: "counting them after the deletion failed"},
	} {
		f := &fakeNode{files: map[string][]byte{}, conntrack: 3, ctLeft: tc.left, failAt: tc.failAt, fail: "error"}
		e := &Engine{Node: f, StateDir: t.TempDir()}
		res := e.Apply(context.Background(), plan, "node1", "")
		if res.Outcome != tc.want || !strings.Contains(res.Message, tc.message) {
			t.Errorf("%+v: %s: %s, want %s: %q", tc, res.Outcome, res.Message, tc.want, tc.message)
		}
		if len(f.files) != 0 || f.counts["ReadChains"] != 0 || f.counts["Restore"] != 0 {
			t.Errorf("%+v: a flows-only plan saved state or touched chains: %v", tc, f.calls)
		}
	}
	plan.IPTables = []trace.TableRestore{{Table: "nat", Input: "*nat\nCOMMIT\n"}}
	if res := (&Engine{Node: &fakeNode{}}).Apply(context.Background(), plan, "node1", "iptables-legacy"); res.Outcome != NothingWritten || !strings.Contains(res.Message, "writes iptables rules in nftables mode") {
		t.Errorf("an nftables plan with iptables rules: %s %s", res.Outcome, res.Message)
	}
}

// TestApplyDualStack: a plan for both families (the recorded dual-stack node, one of its dual-stack
// Service's pods replaced in the API) reads, tests and writes IPv4's tables with the node's
// backend and IPv6's with its ip6tables twin, and is verified in both; when IPv6's write fails,
// both families are put back; --undo puts both back.
func TestApplyDualStack(t *testing.T) {
	dp, cl := recorded.IPTables(t, filepath.Join(recorded.Root(), "trace/kubeproxy/testdata/kube-proxy-v1.36.3-dual-stack"))
	edited := tracetest.EditEndpoints(cl, "dual", map[string]string{"10.244.1.162": "10.244.1.163", "fd00:10:244:1::162": "fd00:10:244:1::163"})
	plan, err := kubeproxy.PlanIPTables(dp, edited, edited.NodeContextFor("node1", nil), trace.CheckScope{})
	if err != nil {
		t.Fatal(err)
	}
	last := -1
	for i, tr := range plan.IPTables {
		if tr.IPv6() {
			last = i
		}
	}
	if last < 0 || !slices.ContainsFunc(plan.IPTables, func(tr trace.TableRestore) bool { return !tr.IPv6() }) {
		t.Fatalf("the plan does not write both families: %+v", plan.IPTables)
	}
	f := newFake(plan)
	e := &Engine{Node: f, StateDir: t.TempDir()}
	res := e.Apply(context.Background(), plan, "node1", "iptables-legacy")
	if res.Outcome != Applied {
		t.Fatalf("%s: %s", res.Outcome, res.Message)
	}
	if d := nodeEquals(f, plan, true, nil); d != "" {
		t.Errorf("not as planned: %s", d)
	}
	for _, want := range []string{"test iptables-legacy", "test ip6tables-legacy", "restore iptables-legacy", "restore ip6tables-legacy", "read ip6tables-legacy"} {
		if !slices.Contains(f.backends, want) {
			t.Errorf("no %q among the calls %v", want, f.backends)
		}
	}
	s, err := DecodeState(f.files[res.StatePath])
	if err != nil {
		t.Fatal(err)
	}
	if undone := e.Undo(context.Background(), s, res.StatePath, "node1", false); undone.Outcome != Undone {
		t.Fatalf("undo: %s %s", undone.Outcome, undone.Message)
	}
	if d := nodeEquals(f, plan, false, nil); d != "" {
		t.Errorf("not as before after --undo: %s", d)
	}

	g := newFake(plan)
	g.failAt, g.fail = fmt.Sprintf("Restore#%d", last+1), "error"
	res = (&Engine{Node: g, StateDir: t.TempDir()}).Apply(context.Background(), plan, "node1", "iptables-legacy")
	if res.Outcome != RolledBack || !strings.Contains(res.Message, "ipv6 ") {
		t.Fatalf("IPv6's write failing: %s %q, want RolledBack naming the ipv6 table", res.Outcome, res.Message)
	}
	if d := nodeEquals(g, plan, false, nil); d != "" {
		t.Errorf("not as before after the rollback: %s", d)
	}
}
