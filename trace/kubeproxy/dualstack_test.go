package kubeproxy_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/dataplane/xtables"
	"github.com/svctrace/svctrace/test/recorded"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/iptables"
	"github.com/svctrace/svctrace/trace/kubeproxy"
)

// The dual-stack nodes, recorded from the real kube-proxy v1.36.3 with the dual-stack scenario
// (testdata/*-dual-stack*/README.md): a PreferDualStack NodePort Service "dual" over ds-1 and ds-2.
const (
	dualIPTables = "testdata/kube-proxy-v1.36.3-dual-stack"
	dualNftables = "testdata/kube-proxy-v1.36.3-dual-stack-nftables"
)

// dualReplaced is the API as a stale node sees it: ds-2 gone from both families' slices, a new
// pod ds-3 in its place.
func dualReplaced(cl *trace.Cluster) *trace.Cluster {
	return tracetest.EditEndpoints(cl, "dual", map[string]string{"10.244.1.162": "10.244.1.163", "fd00:10:244:1::162": "fd00:10:244:1::163"})
}

// TestDualStackIPTablesPlan: on the recorded dual-stack node the ip6tables rules svctrace writes
// are kube-proxy's (the plan is empty with both families read, and the IPv6 ports are really
// there to plan); with an endpoint replaced in the API the plan rewrites both families' rules
// (ip6tables tables marked ipv6), and applied to the two dumps it leaves a node check finds clean
// and a second plan finds nothing to do on. Without the ip6tables dump the plan says IPv6 is not
// repaired.
func TestDualStackIPTablesPlan(t *testing.T) {
	dp, cl := recorded.IPTables(t, dualIPTables)
	if dp.V6 == nil || len(kubeproxy.FamilyPorts(cl, "node1", true)) == 0 || dp.V6.Tables["nat"].Chains["KUBE-SERVICES"] == nil {
		t.Fatal("the recording has no IPv6 Service ports or no kube-proxy ip6tables chains")
	}
	node := cl.NodeContextFor("node1", nil)
	plan, err := kubeproxy.PlanIPTables(dp, cl, node, trace.CheckScope{})
	if err != nil {
		t.Fatal(err)
	}
	if !plan.Empty() {
		t.Fatalf("plan on the synced dual-stack node is not empty:\n%s", describe(plan))
	}

	edited := dualReplaced(cl)
	plan, err = kubeproxy.PlanIPTables(dp, edited, node, trace.CheckScope{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(plan.Services, " "); got != "default/dual:http" {
		t.Errorf("services %q", got)
	}
	dumps := map[bool][]byte{false: read(t, dualIPTables+"/iptables-save.txt"), true: read(t, dualIPTables+"/ip6tables-save.txt")}
	seen := map[string]bool{}
	for _, tr := range plan.IPTables {
		seen[tr.Key()] = true
		if tr.IPv6() && (strings.Contains(tr.Input, "10.244.") || strings.Contains(tr.Input, "10.96.") || !strings.Contains(tr.Input, "[fd00:10:244:1::163]:8080")) {
			t.Errorf("the %s input does not write IPv6's endpoint:\n%s", tr.Key(), tr.Input)
		}
		if !tr.IPv6() && strings.Contains(tr.Input, "fd00:") {
			t.Errorf("the %s input writes IPv6 addresses:\n%s", tr.Key(), tr.Input)
		}
		if dumps[tr.IPv6()], err = tracetest.ApplyRestore(dumps[tr.IPv6()], tr.Input); err != nil {
			t.Fatalf("%s: %v", tr.Key(), err)
		}
	}
	if !seen["nat"] || !seen["ipv6 nat"] {
		t.Errorf("tables %v, want both families' nat", seen)
	}
	v6Changes := 0
	for _, c := range plan.Changes {
		if c.Family == trace.FamilyIPv6 {
			v6Changes++
		}
	}
	if v6Changes == 0 {
		t.Error("no change is marked as IPv6's")
	}
	v4, err := xtables.Parse(dumps[false])
	if err != nil {
		t.Fatal(err)
	}
	v6, err := xtables.Parse(dumps[true])
	if err != nil {
		t.Fatal(err)
	}
	repaired := &iptables.Dataplane{V4: v4, V6: v6}
	res, err := trace.Check(context.Background(), repaired, edited, node, trace.CheckScope{})
	if err != nil {
		t.Fatal(err)
	}
	if got := tracetest.FindingKinds(res, trace.SeverityWarning); len(got) != 0 {
		t.Errorf("findings after the repair: %v", got)
	}
	if again, err := kubeproxy.PlanIPTables(repaired, edited, node, trace.CheckScope{}); err != nil || !again.Empty() {
		t.Errorf("a second plan is not empty (%v):\n%s", err, describe(again))
	}
	if !strings.Contains(string(dumps[true]), "--to-destination [fd00:10:244:1::163]:8080") || strings.Contains(string(dumps[true]), "[fd00:10:244:1::162]:8080") {
		t.Error("the IPv6 endpoint was not replaced")
	}

	v4only, err := kubeproxy.PlanIPTables(&iptables.Dataplane{V4: dp.V4}, edited, node, trace.CheckScope{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range v4only.IPTables {
		if tr.IPv6() {
			t.Errorf("a plan without the ip6tables dump writes %s", tr.Key())
		}
	}
	if !strings.Contains(strings.Join(v4only.Notes, "\n"), "IPv6 is not repaired") {
		t.Errorf("notes %q do not say IPv6 is not repaired", v4only.Notes)
	}
}

// TestDualStackNftablesPlan: the same for nftables mode: the recorded dual-stack node's ip6
// kube-proxy table is what svctrace generates, and with an endpoint replaced the plan changes
// both families' tables, each into exactly kube-proxy's objects for the new API.
func TestDualStackNftablesPlan(t *testing.T) {
	dp, cl := recorded.Nftables(t, dualNftables)
	node := cl.NodeContextFor("node1", nil)
	if len(kubeproxy.FamilyPorts(cl, "node1", true)) == 0 {
		t.Fatal("the recording has no IPv6 Service ports")
	}
	plan, err := kubeproxy.PlanNftables(context.Background(), dp, cl, node, trace.CheckScope{})
	if err != nil {
		t.Fatal(err)
	}
	if !plan.Empty() {
		t.Fatalf("plan on the synced dual-stack node is not empty:\n%s", describe(plan))
	}
	edited := dualReplaced(cl)
	plan, err = kubeproxy.PlanNftables(context.Background(), dp, edited, node, trace.CheckScope{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(plan.Services, " "); got != "default/dual:http" {
		t.Errorf("services %q", got)
	}
	families := map[string]bool{}
	for _, c := range plan.Nftables {
		families[c.Family] = true
		for _, tab := range dp.Rules.Tables {
			if tab.Family != c.Family || tab.Name != "kube-proxy" {
				continue
			}
			appliedLikeKubeProxy(t, tab, c, edited, node)
		}
	}
	if !families["ip"] || !families["ip6"] {
		t.Errorf("families %v, want ip and ip6", families)
	}

	// Scoped to the Service, the plan removes the replaced pod's hairpin elements too (kube-proxy
	// writes them without a comment: they belong to the Service whose endpoint chain sends there).
	scoped, err := kubeproxy.PlanNftables(context.Background(), dp, edited, node, trace.CheckScope{Namespace: "default", Name: "dual"})
	if err != nil {
		t.Fatal(err)
	}
	removed := map[string]bool{}
	for _, c := range scoped.Nftables {
		for i, e := range c.After.Elements {
			if e.Set == kubeproxy.NftHairpin && !e.Exists && c.Before.Elements[i].Exists {
				removed[c.Family+" "+e.Key] = true
			}
		}
	}
	for _, k := range []string{"ip 10.244.1.162 . 10.244.1.162 . tcp . 8080", "ip6 fd00:10:244:1::162 . fd00:10:244:1::162 . tcp . 8080"} {
		if !removed[k] {
			t.Errorf("the scoped plan keeps the hairpin element %s (removes %v)", k, removed)
		}
	}
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
