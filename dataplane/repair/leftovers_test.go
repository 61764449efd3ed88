package repair

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/dataplane"
	"github.com/svctrace/svctrace/trace"
)

// dumpRunner answers every `*-save -t TABLE` with a recorded dump and `nft -j list table FAMILY
// kube-proxy` with that family's objects of a recorded ruleset.
type dumpRunner struct{ save, nft []byte }

func (d dumpRunner) Run(_ context.Context, argv ...string) ([]byte, error) {
	if argv[0] != "nft" {
		return d.save, nil
	}
	if argv[1] == "list" {
		return []byte("table ip kube-proxy\ntable ip6 kube-proxy\n"), nil
	}
	var doc struct {
		Nftables []map[string]map[string]any `json:"nftables"`
	}
	if err := json.Unmarshal(d.nft, &doc); err != nil {
		return nil, err
	}
	var keep []map[string]map[string]any
	for _, o := range doc.Nftables {
		for _, v := range o {
			if v["family"] == argv[4] {
				keep = append(keep, o)
			}
		}
	}
	return json.Marshal(map[string]any{"nftables": keep})
}

// recordedLeftovers are the recorded iptables node's nat chains (kube-proxy v1.36.3) as a leftover
// in the legacy backend, and the recorded nftables node's ip table as one.
func recordedLeftovers(t *testing.T) (ipt, nft, nft6 trace.Leftover) {
	t.Helper()
	save, err := os.ReadFile("../snapshot/demo/iptables-save.txt")
	if err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile("../snapshot/demo-nftables/nft.json")
	if err != nil {
		t.Fatal(err)
	}
	r := dumpRunner{save: save, nft: js}
	l, err := dataplane.IPTablesLeftover(context.Background(), r, "iptables-legacy", "nat", "iptables")
	if err != nil || l == nil {
		t.Fatalf("%v %v", l, err)
	}
	n, err := dataplane.NftLeftover(context.Background(), r, "ip")
	if err != nil || n == nil {
		t.Fatalf("%v %v", n, err)
	}
	n6, err := dataplane.NftLeftover(context.Background(), r, "ip6")
	if err != nil || n6 == nil {
		t.Fatalf("%v %v", n6, err)
	}
	return *l, *n, *n6
}

// TestLeftoverInputs: what removes an iptables leftover deletes exactly kube-proxy's jumps and
// chains; what puts it back recreates them and puts each jump at its position.
func TestLeftoverInputs(t *testing.T) {
	l, _, _ := recordedLeftovers(t)
	if len(l.Jumps) != 3 || len(l.Chains) < 20 {
		t.Fatalf("the recorded nat leftover: %d jumps, %d chains", len(l.Jumps), len(l.Chains))
	}
	rm := removeInput(l)
	for _, want := range []string{"\n-D PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n", "\n-D POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n", "\n:KUBE-MARK-MASQ - [0:0]\n", "\n-X KUBE-SERVICES\n"} {
		if !strings.Contains(rm, want) {
			t.Errorf("the removal lacks %q:\n%s", want, rm)
		}
	}
	for _, line := range strings.Split(rm, "\n") {
		if strings.HasPrefix(line, "-A ") || strings.Contains(line, "KUBE-FIREWALL") || strings.Contains(line, "KUBE-KUBELET-CANARY") {
			t.Errorf("the removal writes %q", line)
		}
	}
	back := restoreInput(l, map[string]int{"PREROUTING": 0, "OUTPUT": 0, "POSTROUTING": 0})
	if !strings.Contains(back, "\n-I PREROUTING 1 -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n") || !strings.Contains(back, "\n-A KUBE-SERVICES ") {
		t.Errorf("the restore input:\n%s", back)
	}
}

// TestLeftoverApplyUndo: removing leftovers is verified, rolled back and undone like any write:
// an nftables node's iptables leftover, and an iptables node's two nftables tables (so that the
// second removal can fail after the first succeeded).
func TestLeftoverApplyUndo(t *testing.T) {
	ipt, nft, nft6 := recordedLeftovers(t)
	for _, tc := range []struct {
		name, failAt string
		tables       bool
		corrupt      bool
		want         Outcome
		message      string
	}{
		{name: "everything works", want: Applied, message: "read back as gone: iptables-legacy nat (from iptables mode)"},
		{name: "both tables", tables: true, want: Applied, message: "read back as gone: ip kube-proxy (from nftables mode), ip6 kube-proxy"},
		{name: "re-read", failAt: "ReadLeftover#1", want: NothingWritten, message: "could not read iptables-legacy nat"},
		{name: "the removal", failAt: "RemoveLeftover#1", want: NothingWritten, message: "nothing was written"},
		{name: "the second removal", tables: true, failAt: "RemoveLeftover#2", want: RolledBack, message: "removing ip6 kube-proxy failed"},
		{name: "still there", corrupt: true, want: RolledBack, message: "is still there after its removal"},
		{name: "putting back", tables: true, failAt: "RemoveLeftover#2,RestoreLeftover#1", want: RollbackFailed, message: "putting back ip kube-proxy failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := &trace.RepairPlan{APIVersion: trace.APIVersion, Kind: "RepairPlan", Node: "node1", Mode: "nftables", Leftovers: []trace.Leftover{ipt}}
			if tc.tables {
				plan.Mode, plan.Leftovers = "iptables", []trace.Leftover{nft, nft6}
			}
			f := newFake(&trace.RepairPlan{})
			f.leftovers = map[string]*trace.Leftover{}
			for i := range plan.Leftovers {
				l := plan.Leftovers[i]
				f.leftovers[l.Where()] = &l
			}
			f.corrupt = tc.corrupt
			f.failAt, f.fail = tc.failAt, "error"
			e := &Engine{Node: f, StateDir: t.TempDir()}
			res := e.Apply(context.Background(), plan, "node1", "")
			if res.Outcome != tc.want || !strings.Contains(res.Message, tc.message) {
				t.Fatalf("%s %q, want %s with %q (calls %v)", res.Outcome, res.Message, tc.want, tc.message, f.calls)
			}
			for _, l := range plan.Leftovers {
				if _, there := f.leftovers[l.Where()]; there == (res.Outcome == Applied) && res.Outcome != RollbackFailed {
					t.Errorf("%s there: %v after %s", l.Where(), there, res.Outcome)
				}
			}
			if res.Outcome == Applied {
				s, err := DecodeState(f.files[res.StatePath])
				if err != nil {
					t.Fatal(err)
				}
				if u := e.Undo(context.Background(), s, res.StatePath, "node1", false); u.Outcome != Undone || len(f.leftovers) != len(plan.Leftovers) {
					t.Errorf("undo: %s %s", u.Outcome, u.Message)
				}
			}
		})
	}
}

// TestLeftoversAreValidated: a plan or state file cannot make the removal or the undo touch what
// is not kube-proxy's.
func TestLeftoversAreValidated(t *testing.T) {
	ipt, nft, _ := recordedLeftovers(t)
	if err := ValidLeftover(ipt); err != nil {
		t.Fatalf("the recorded iptables leftover is refused: %v", err)
	}
	if err := ValidLeftover(nft); err != nil {
		t.Fatalf("the recorded nftables leftover is refused: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(l *trace.Leftover)
		want string
	}{
		{"the kubelet's chain", func(l *trace.Leftover) { l.Chains[0].Chain = "KUBE-FIREWALL" }, "is not one kube-proxy's cleanup removes"},
		{"a built-in chain", func(l *trace.Leftover) { l.Chains[0].Chain = "PREROUTING" }, "is not one kube-proxy's cleanup removes"},
		{"a command for a backend", func(l *trace.Leftover) { l.Backend = "/tmp/evil" }, "backend \"/tmp/evil\""},
		{"a jump to elsewhere", func(l *trace.Leftover) { l.Jumps[0].Rule = "-A PREROUTING -j DROP" }, "is not a jump from PREROUTING"},
		{"a second line", func(l *trace.Leftover) {
			l.Jumps[0].Rule = "-A PREROUTING -j KUBE-SERVICES\n-A INPUT -j DROP -j KUBE-SERVICES"
		}, "is not a jump"},
		{"the raw table", func(l *trace.Leftover) { l.Table = "raw" }, "is not nat, filter or mangle"},
	} {
		l := ipt
		l.Chains = append([]trace.ChainRules(nil), ipt.Chains...)
		l.Jumps = append([]trace.Jump(nil), ipt.Jumps...)
		tc.edit(&l)
		if err := ValidLeftover(l); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	bad := nft
	bad.NftJSON = strings.ReplaceAll(nft.NftJSON, `"name":"services"`, `"name":"evil"`)
	if bad.NftJSON == nft.NftJSON {
		t.Fatal("the edit did not apply")
	}
	if err := ValidLeftover(bad); err == nil || !strings.Contains(err.Error(), `chain "evil"`) {
		t.Errorf("a foreign nftables chain: %v", err)
	}
	other := nft
	other.Table = "ip6"
	if err := ValidLeftover(other); err == nil || !strings.Contains(err.Error(), "not exactly the ip6 kube-proxy table") {
		t.Errorf("another family's JSON: %v", err)
	}
}
