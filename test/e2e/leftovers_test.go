//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/test/e2e/harness"
	"github.com/svctrace/svctrace/test/recorded"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/kubeproxy/naming"
)

// TestModeLeftovers: what a failed switch between modes leaves, made the way it happens — a
// recorded iptables-mode ruleset (kube-proxy v1.36.3's, dataplane/snapshot/demo) restored into the
// node while kube-proxy runs in nftables mode, and the reverse: the recorded nftables node's
// kube-proxy table loaded while kube-proxy runs in iptables mode. check reports each as a
// ModeLeftover; repair -A --apply removes exactly it (never the kubelet's chains) and leaves the
// current mode's rules byte for byte as they were; --undo puts it back.
func TestModeLeftovers(t *testing.T) {
	needCluster(t)
	t.Cleanup(func() {
		_, _ = harness.NS(harness.NodeNS, "nft", "delete", "table", "ip", "kube-proxy")
		restartKubeProxy(t, harness.KubeProxyConfig{Mode: "iptables"}, harness.ScenarioProgrammed)
	})
	t.Run("iptables rules on an nftables node", func(t *testing.T) {
		restartKubeProxy(t, harness.KubeProxyConfig{Mode: "nftables"}, harness.ScenarioProgrammed)
		dump, err := os.ReadFile(filepath.Join(recorded.Root(), "dataplane/snapshot/demo/iptables-save.txt"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := harness.NSInput(harness.NodeNS, dump, strings.TrimSuffix(harness.IptablesSave, "-save")+"-restore"); err != nil {
			t.Fatal(err)
		}
		current := nftListing(t)
		restored := iptablesRules(t)
		leftovers(t, 3, "left from iptables mode")
		stderr := applyRepair(t)
		if now := nftListing(t); now != current {
			t.Errorf("the nftables table changed:\n%s", lineDiff(current, now))
		}
		after := iptablesRules(t)
		for _, l := range strings.Split(after, "\n") {
			f := strings.Fields(l)
			if len(f) < 2 {
				continue
			}
			chain := strings.TrimPrefix(f[0], ":")
			if f[0] == "-A" {
				chain = f[1]
			}
			if naming.IsServiceChain(chain) || slices.Contains([]string{"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ", "KUBE-PROXY-CANARY", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-PROXY-FIREWALL"}, chain) ||
				strings.Contains(l, "-j KUBE-SERVICES") || strings.Contains(l, "-j KUBE-POSTROUTING") {
				t.Errorf("kube-proxy's iptables state is still there: %s", l)
			}
		}
		for _, kubelets := range []string{":KUBE-FIREWALL", ":KUBE-KUBELET-CANARY"} {
			if strings.Contains(restored, kubelets) && !strings.Contains(after, kubelets) {
				t.Errorf("the kubelet's chain %s was removed", kubelets)
			}
		}
		leftovers(t, 0, "")
		undo(t, stderr)
		if now := iptablesRules(t); now != restored {
			t.Errorf("after --undo the iptables rules are not those restored:\n%s", lineDiff(restored, now))
		}
		applyRepair(t) // and gone again, for the tests after this one
	})
	t.Run("an nftables table on an iptables node", func(t *testing.T) {
		restartKubeProxy(t, harness.KubeProxyConfig{Mode: "iptables"}, harness.ScenarioProgrammed)
		table := recordedNftTable(t)
		if _, err := harness.NSInput(harness.NodeNS, table, "nft", "-j", "-f", "-"); err != nil {
			t.Fatal(err)
		}
		current := iptablesRules(t)
		loaded := nftShape(t, "ip")
		leftovers(t, 1, "ip kube-proxy")
		stderr := applyRepair(t)
		if now := iptablesRules(t); now != current {
			t.Errorf("the iptables rules changed:\n%s", lineDiff(current, now))
		}
		if out, _ := harness.NS(harness.NodeNS, "nft", "list", "tables"); strings.Contains(string(out), "kube-proxy") {
			t.Errorf("the kube-proxy table is still there: %s", out)
		}
		leftovers(t, 0, "")
		undo(t, stderr)
		if now := nftShape(t, "ip"); now != loaded {
			t.Errorf("after --undo the kube-proxy table is not the one loaded:\n%s", lineDiff(loaded, now))
		}
	})
}

// leftovers runs check -A on the node and wants n ModeLeftover findings, each saying what.
func leftovers(t *testing.T, n int, what string) {
	t.Helper()
	out, _ := checkInNode(t, "-A", "-o", "json", "--node", harness.NodeName)
	var doc struct{ Findings []trace.Finding }
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	var got []trace.Finding
	for _, f := range doc.Findings {
		if f.Kind == trace.ModeLeftover {
			got = append(got, f)
		}
	}
	if len(got) != n {
		t.Fatalf("check -A: %d ModeLeftover findings, want %d: %+v", len(got), n, got)
	}
	for _, f := range got {
		if !strings.Contains(f.Message, what) || !strings.Contains(f.Message, "kube-proxy reports that it runs in") {
			t.Errorf("finding %q does not say %q and that kube-proxy named its mode", f.Message, what)
		}
	}
}

// applyRepair runs repair -A --apply on the node and returns its stderr.
func applyRepair(t *testing.T) string {
	t.Helper()
	_, stderr, code := kubectl(t, true, "svctrace", "repair", "-A", "--node", harness.NodeName, "--apply", "--state-dir", filepath.Join(t.TempDir(), "state"))
	t.Logf("repair -A --apply:\n%s", stderr)
	if code != 0 || !strings.Contains(stderr, "left from") {
		t.Fatalf("repair -A --apply: exit %d\n%s", code, stderr)
	}
	return stderr
}

// undo runs the undo command an --apply printed.
func undo(t *testing.T, applyStderr string) {
	t.Helper()
	state := undoState(t, applyStderr)
	if _, stderr, code := kubectl(t, true, "svctrace", "repair", "--undo", state, "--node", harness.NodeName); code != 0 {
		t.Fatalf("repair --undo %q: exit %d\n%s", state, code, stderr)
	}
}

// undoState is the state file of the undo command an --apply printed (its last).
func undoState(t *testing.T, applyStderr string) string {
	t.Helper()
	state := ""
	for _, l := range strings.Split(applyStderr, "\n") {
		if s, ok := strings.CutPrefix(l, "undo with: kubectl svctrace repair --undo "); ok {
			state = s
		}
	}
	if state == "" {
		t.Fatalf("no undo command in:\n%s", applyStderr)
	}
	return state
}

// iptablesRules is the node's iptables rules and chains (no counters, no generated-by lines).
func iptablesRules(t *testing.T) string {
	t.Helper()
	out, err := harness.NS(harness.NodeNS, harness.IptablesSave)
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		if strings.HasPrefix(l, ":") {
			l = strings.Join(strings.Fields(l)[:2], " ")
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

// nftListing is `nft list table ip kube-proxy` as it prints it.
func nftListing(t *testing.T) string {
	t.Helper()
	out, err := harness.NS(harness.NodeNS, "nft", "list", "table", "ip", "kube-proxy")
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// recordedNftTable is the recorded nftables node's ip kube-proxy table as `nft -j -f` reads it.
func recordedNftTable(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(recorded.Root(), "dataplane/snapshot/demo-nftables/nft.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Nftables []map[string]map[string]any `json:"nftables"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	rank := map[string]int{"table": 0, "chain": 1, "set": 2, "map": 2, "rule": 3}
	var keep []map[string]map[string]any
	for _, o := range doc.Nftables {
		for kind, v := range o {
			if _, ok := rank[kind]; ok && v["family"] == "ip" {
				keep = append(keep, o)
			}
		}
	}
	kind := func(o map[string]map[string]any) string {
		for k := range o {
			return k
		}
		return ""
	}
	sort.SliceStable(keep, func(i, j int) bool { return rank[kind(keep[i])] < rank[kind(keep[j])] })
	out, err := json.Marshal(map[string]any{"nftables": keep})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
