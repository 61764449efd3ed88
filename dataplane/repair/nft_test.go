package repair

import (
	"context"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/knftables"

	"github.com/svctrace/svctrace/dataplane/nftwrite"
	"github.com/svctrace/svctrace/test/recorded"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/kubeproxy"
)

// nftPlan is the plan for the recorded nftables node (kube-proxy v1.36.3) against API objects
// edited the way a stale node sees them: hostnames-c replaced by a new pod, the multi Service
// deleted, one dns (UDP) endpoint gone. It rewrites, creates and deletes chains and affinity
// sets, adds and deletes map elements, and deletes UDP conntrack entries.
func nftPlan(t *testing.T) *trace.RepairPlan {
	t.Helper()
	dir := recorded.Root() + "/dataplane/snapshot/demo-nftables"
	dp, _ := recorded.Nftables(t, dir)
	cl := tracetest.EditEndpoints(tracetest.StaleDemo(t, dir), "dns", map[string]string{"10.244.2.52": ""})
	plan, err := kubeproxy.PlanNftables(context.Background(), dp, cl, cl.NodeContextFor("node1", nil), trace.CheckScope{})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Nftables) != 1 || len(plan.Conntrack) != 1 {
		t.Fatalf("the nftables demo plan changed: %d changes, %d flushes", len(plan.Nftables), len(plan.Conntrack))
	}
	return plan
}

// newNftFake is a node whose ip kube-proxy table holds the plan's "before" objects.
func newNftFake(t *testing.T, plan *trace.RepairPlan) *fakeNode {
	t.Helper()
	fk := knftables.NewFake(knftables.IPv4Family, "kube-proxy")
	tx := fk.NewTransaction()
	tx.Add(&knftables.Table{})
	for _, s := range []string{kubeproxy.NftClusterIPs, kubeproxy.NftHairpin} {
		tx.Add(&knftables.Set{Name: s, Type: "ipv4_addr"})
	}
	for _, m := range kubeproxy.NftContainers {
		if m != kubeproxy.NftClusterIPs && m != kubeproxy.NftHairpin {
			tx.Add(&knftables.Map{Name: m, Type: "ipv4_addr . inet_proto . inet_service : verdict"})
		}
	}
	tx.Add(&knftables.Chain{Name: "reject-chain"})
	empty := trace.NftState{}
	for _, c := range plan.Nftables[0].Before.Chains {
		empty.Chains = append(empty.Chains, trace.ChainRules{Chain: c.Chain, Rules: []string{}})
	}
	for _, s := range plan.Nftables[0].Before.Sets {
		empty.Sets = append(empty.Sets, trace.NftSet{Name: s.Name})
	}
	for _, e := range plan.Nftables[0].Before.Elements {
		empty.Elements = append(empty.Elements, trace.NftElement{Set: e.Set, Key: e.Key})
	}
	if err := fk.Run(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	if err := nftwrite.Write(context.Background(), fk, "ip", empty, plan.Nftables[0].Before); err != nil {
		t.Fatal(err)
	}
	f := newFake(&trace.RepairPlan{})
	f.nft = map[string]*knftables.Fake{"ip": fk}
	return f
}

// nftEquals says how the fake table differs from the plan's before or after.
func nftEquals(f *fakeNode, plan *trace.RepairPlan, after bool) string {
	c := plan.Nftables[0]
	want := c.Before
	if after {
		want = c.After
	}
	return strings.Join(nftwrite.Differences(fakeNftState(f.nft["ip"], want), want), "; ")
}

// TestNftApplyFaults: the nftables write path through every step's failure, as TestApplyFaults
// does for iptables and IPVS: what the node holds after, what the engine says, its exit code.
func TestNftApplyFaults(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failAt   string
		corrupt  bool
		check    []string
		want     Outcome
		asBefore bool
		message  string
	}{
		{name: "everything works", want: Applied, message: "read back as planned and traced clean"},
		{name: "re-read before writing", failAt: "NftRead#1", want: NothingWritten, asBefore: true, message: "could not read the nftables objects"},
		{name: "nft --check", failAt: "NftCheck#1", want: NothingWritten, asBefore: true, message: "nft --check did not accept the ip transaction"},
		{name: "saving the state", failAt: "SaveState#1", want: NothingWritten, asBefore: true, message: "could not save the state"},
		{name: "the write", failAt: "NftWrite#1", want: NothingWritten, asBefore: true, message: "read back unchanged, nothing was written"},
		{name: "reading back to verify", failAt: "NftRead#2", want: RolledBack, asBefore: true, message: "reading the nftables objects back failed"},
		{name: "a result that is not the plan's", corrupt: true, want: RolledBack, asBefore: true, message: "other than expected"},
		{name: "the trace of the repaired Services", check: []string{"StaleEndpoint default/dns:dns"}, want: RolledBack, asBefore: true, message: "nftables objects were read back as they were before"},
		{name: "rollback's write", failAt: "NftWrite#2", corrupt: true, want: RollbackFailed, message: "writing the old ip kube-proxy objects failed"},
		{name: "rollback's read-back", failAt: "NftRead#4", corrupt: true, want: RollbackFailed, message: "objects back failed"},
		{name: "conntrack deletion", failAt: "DeleteConntrack#1", want: AppliedCleanupFailed, message: "1 of 1 conntrack deletion(s) failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := nftPlan(t)
			f := newNftFake(t, plan)
			f.failAt, f.fail, f.corrupt = tc.failAt, "error", tc.corrupt
			e := &Engine{Node: f, StateDir: t.TempDir(), Now: func() time.Time { return time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC) },
				Check: func(context.Context, *trace.RepairPlan, []string) ([]string, error) { return tc.check, nil }}
			res := e.Apply(context.Background(), plan, "node1", "")
			if res.Outcome != tc.want || !strings.Contains(res.Message, tc.message) {
				t.Fatalf("outcome %s %q, want %s with %q\ncalls %v", res.Outcome, res.Message, tc.want, tc.message, f.calls)
			}
			switch {
			case tc.asBefore:
				if d := nftEquals(f, plan, false); d != "" {
					t.Errorf("the node is not as before: %s", d)
				}
			case tc.want == Applied || tc.want == AppliedCleanupFailed:
				if d := nftEquals(f, plan, true); d != "" {
					t.Errorf("the node is not as planned: %s", d)
				}
			}
		})
	}
}

// TestNftUndo: undo puts the stale objects back; after kube-proxy rewrote one of them it refuses
// unless forced.
func TestNftUndo(t *testing.T) {
	for _, tc := range []struct {
		name    string
		synced  bool
		force   bool
		want    Outcome
		message string
	}{
		{name: "after a repair", want: Undone, message: "nftables object(s) read back as before"},
		{name: "kube-proxy rewrote a chain", synced: true, want: NothingWritten, message: "add --force to undo anyway"},
		{name: "kube-proxy rewrote a chain, forced", synced: true, force: true, want: Undone, message: "read back as before"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := nftPlan(t)
			f := newNftFake(t, plan)
			e := &Engine{Node: f, StateDir: t.TempDir()}
			applied := e.Apply(context.Background(), plan, "node1", "")
			if applied.Outcome != Applied {
				t.Fatalf("apply: %s %s", applied.Outcome, applied.Message)
			}
			if tc.synced {
				for _, c := range plan.Nftables[0].After.Chains {
					if c.Exists {
						f.nft["ip"].Table.Chains[c.Chain].Rules = nil
						break
					}
				}
			}
			s, err := DecodeState(f.files[applied.StatePath])
			if err != nil {
				t.Fatal(err)
			}
			res := e.Undo(context.Background(), s, applied.StatePath, "node1", tc.force)
			if res.Outcome != tc.want || !strings.Contains(res.Message, tc.message) {
				t.Fatalf("%s %q, want %s with %q", res.Outcome, res.Message, tc.want, tc.message)
			}
			if res.Outcome == Undone {
				if d := nftEquals(f, plan, false); d != "" {
					t.Errorf("the node is not as before: %s", d)
				}
			}
		})
	}
}

// TestNftPlansAreValidated: what a plan or state file may not make repair write to the table.
func TestNftPlansAreValidated(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(c *trace.NftChange)
		want string
	}{
		{"another family", func(c *trace.NftChange) { c.Family = "inet" }, `family "inet"`},
		{"a base chain", func(c *trace.NftChange) {
			c.After.Chains[0].Chain, c.Before.Chains[0].Chain = "filter-input", "filter-input"
		}, `"filter-input" is not one of kube-proxy's per-Service chains`},
		{"a second command on a rule's line", func(c *trace.NftChange) { addRule(c, "drop; flush ruleset") }, "holds characters"},
		{"a line break", func(c *trace.NftChange) { addRule(c, "drop\nflush ruleset") }, "holds characters"},
		{"a jump out of kube-proxy's chains", func(c *trace.NftChange) { addRule(c, "jump filter-input") }, "jumps to filter-input"},
		{"a foreign set", func(c *trace.NftChange) { c.After.Elements[0].Set, c.Before.Elements[0].Set = "allowlist", "allowlist" }, `"allowlist" is not one of kube-proxy's shared sets`},
		{"an element that is not an address", func(c *trace.NftChange) {
			c.After.Elements[0].Key = "* . tcp . 80"
			c.Before.Elements[0].Key = c.After.Elements[0].Key
		}, "not made of addresses"},
		{"a verdict to elsewhere", func(c *trace.NftChange) {
			for i, e := range c.Before.Elements {
				if e.Exists && e.Value != "" {
					c.Before.Elements[i].Value = "goto filter-input"
					return
				}
			}
		}, `sends to "goto filter-input"`},
		{"before and after of different objects", func(c *trace.NftChange) { c.After.Chains = c.After.Chains[1:] }, "do not name the same objects"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := nftPlan(t)
			tc.edit(&plan.Nftables[0])
			if err := ValidatePlan(plan); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	if err := ValidatePlan(nftPlan(t)); err != nil {
		t.Errorf("the computed plan is refused: %v", err)
	}
}

// addRule adds a rule to the first chain the change keeps.
func addRule(c *trace.NftChange, rule string) {
	for i, ch := range c.After.Chains {
		if ch.Exists {
			c.After.Chains[i].Rules = append(c.After.Chains[i].Rules, rule)
			return
		}
	}
}
