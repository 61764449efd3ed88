package kubeproxy_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/dataplane/xtables"
	"github.com/svctrace/svctrace/test/recorded"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/iptables"
	"github.com/svctrace/svctrace/trace/kubeproxy"
	"github.com/svctrace/svctrace/trace/kubeproxy/naming"
)

// TestRepairPlanIsEmptyOnTheRecordedNode: the rules svctrace writes for every Service port are the
// ones the real kube-proxy v1.36.3 wrote (dataplane/snapshot/demo, recorded by test/e2e/record):
// ClusterIP, NodePort with Cluster and Local policy, LoadBalancer with source ranges and a
// health-check node port, no endpoints, internalTrafficPolicy Local, session affinity, multi-port,
// UDP. Any difference in a rule's text or order would show as a change here.
//
// The same holds for kube-proxy v1.33.13 and v1.30.14 (testdata/kube-proxy-v*, recorded the same
// way with those versions' kube-proxy), and for v1.36.3 with the interface local-traffic
// detectors (InterfaceNamePrefix; BridgeInterface with --masquerade-all).
func TestRepairPlanIsEmptyOnTheRecordedNode(t *testing.T) {
	for _, dir := range append([]string{"../../dataplane/snapshot/demo"}, recordedIPTablesNodes...) {
		dp, cl := recorded.IPTables(t, dir)
		plan, err := kubeproxy.PlanIPTables(dp, cl, cl.NodeContextFor("node1", nil), trace.CheckScope{})
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Services) != 0 || !plan.Empty() {
			var b strings.Builder
			for _, c := range plan.Changes {
				b.WriteString(c.Op + " " + c.Table + " " + c.Chain + ": " + c.Detail + "\n")
			}
			t.Errorf("%s: plan on a freshly synced node is not empty:\n%s", dir, b.String())
		}
	}
}

// TestRepairPlanFollowsTheAPI: the recorded node against API objects edited the way a stale node
// sees them (hostnames-c gone and a new pod in its place, the multi Service deleted, one of the
// two dns (UDP) endpoints gone). The plan, applied to the dump, must leave a node that check finds
// clean and that a second plan finds nothing to do on; only kube-proxy's chains are written; UDP
// conntrack entries to the removed dns endpoint are flushed.
func TestRepairPlanFollowsTheAPI(t *testing.T) {
	dump, err := os.ReadFile("../../dataplane/snapshot/demo/iptables-save.txt")
	if err != nil {
		t.Fatal(err)
	}
	dp, _ := recorded.IPTables(t, "../../dataplane/snapshot/demo")
	edited := tracetest.EditEndpoints(tracetest.StaleDemo(t, "../../dataplane/snapshot/demo"), "dns", map[string]string{"10.244.2.52": ""})
	node := edited.NodeContextFor("node1", nil)
	plan, err := kubeproxy.PlanIPTables(dp, edited, node, trace.CheckScope{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(plan.Services, " "); got != "default/dns:dns default/hostnames:default default/multi:http default/multi:metrics" {
		t.Errorf("services %s", got)
	}
	if len(plan.Conntrack) != 1 || plan.Conntrack[0] != (trace.ConntrackFlush{Protocol: "udp", Dst: "10.96.10.53:53", Backend: "10.244.2.52"}) {
		t.Errorf("conntrack %+v", plan.Conntrack)
	}
	after := dump
	for _, tr := range plan.IPTables {
		sawX := false
		for _, l := range strings.Split(tr.Input, "\n") {
			f := strings.Fields(l)
			switch {
			case strings.HasPrefix(l, ":"):
				if c := f[0][1:]; !naming.IsServiceChain(c) && c != "KUBE-SERVICES" && c != "KUBE-NODEPORTS" && c != "KUBE-EXTERNAL-SERVICES" && c != "KUBE-PROXY-FIREWALL" {
					t.Errorf("plan writes chain %s", c)
				}
			case strings.HasPrefix(l, "-X "):
				sawX = true
			case strings.HasPrefix(l, "-A ") && sawX:
				t.Errorf("a rule after a chain deletion: %s", l)
			}
		}
		if after, err = tracetest.ApplyRestore(after, tr.Input); err != nil {
			t.Fatalf("%s: %v\n%s", tr.Table, err, tr.Input)
		}
	}
	rs, err := xtables.Parse(after)
	if err != nil {
		t.Fatal(err)
	}
	repaired := &iptables.Dataplane{V4: rs}
	res, err := trace.Check(context.Background(), repaired, edited, node, trace.CheckScope{})
	if err != nil {
		t.Fatal(err)
	}
	if got := tracetest.FindingKinds(res, trace.SeverityWarning); len(got) != 0 {
		t.Errorf("findings after the repair: %v", got)
	}
	if again, err := kubeproxy.PlanIPTables(repaired, edited, node, trace.CheckScope{}); err != nil || !again.Empty() {
		t.Errorf("a second plan is not empty (%v): %+v", err, again.Changes)
	}
	// The multi Service's chains are gone; hostnames' new endpoint has its own chain.
	for _, gone := range []string{"KUBE-SVC-IT553CU5HUYL252M", "KUBE-SVC-ZI7V5MEXJLWC5J7J"} {
		if rs.Tables["nat"].Chains[gone] != nil {
			t.Errorf("chain %s of the deleted Service is still there", gone)
		}
	}
	if !strings.Contains(string(after), `"default/hostnames:default" -m tcp -j DNAT --to-destination 10.244.1.15:9376`) || strings.Contains(string(after), `"default/hostnames:default" -m tcp -j DNAT --to-destination 10.244.1.13:9376`) {
		t.Errorf("hostnames' endpoints not replaced")
	}

	// Scope: only hostnames is planned when only hostnames is asked for.
	one, err := kubeproxy.PlanIPTables(dp, edited, node, trace.CheckScope{Namespace: "default", Name: "hostnames"})
	if err != nil || strings.Join(one.Services, " ") != "default/hostnames:default" || len(one.Conntrack) != 0 {
		t.Errorf("scoped plan: %v %v %+v", err, one.Services, one.Conntrack)
	}
}

// TestIPVSRepairPlan: on the node recorded from the real kube-proxy in IPVS mode there is nothing
// to do (including its NodePort-Local-without-local-endpoint case, which kube-proxy fills with
// the cluster's endpoints on purpose); with vm-c gone from the API and a new pod in vmweb, the
// plan drains vm-c (weight 0, deleted once idle) and adds the new one on every virtual server of
// the Service; nothing else.
func TestIPVSRepairPlan(t *testing.T) {
	dp, cl := recorded.IPVS(t, "ipvsadm-Ln.txt")
	node := cl.NodeContextFor("vm1", dp.IPVS.Addresses())
	plan, err := kubeproxy.PlanIPVS(dp, cl, node, trace.CheckScope{})
	if err != nil {
		t.Fatal(err)
	}
	if !plan.Empty() {
		t.Fatalf("plan on the synced node: %+v", plan.Changes)
	}
	edited := tracetest.EditEndpoints(cl, "vmweb", map[string]string{"10.244.3.13": "10.244.3.14"})
	plan, err = kubeproxy.PlanIPVS(dp, edited, node, trace.CheckScope{Namespace: "ipvs"})
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, op := range plan.IPVS {
		ops = append(ops, fmt.Sprintf("%s %s %s %s w%d idle=%v", op.Op, op.Protocol, op.Virtual, op.Real, op.Weight, op.WhenIdle))
	}
	want := []string{
		"set-weight tcp 10.96.30.10:80 10.244.3.13:8080 w0 idle=false",
		"delete-real tcp 10.96.30.10:80 10.244.3.13:8080 w0 idle=true",
		"add-real tcp 10.96.30.10:80 10.244.3.14:8080 w1 idle=false",
	}
	if strings.Join(ops, "\n") != strings.Join(want, "\n") || strings.Join(plan.Services, " ") != "ipvs/vmweb:http" {
		t.Fatalf("ops:\n%s\nservices %v", strings.Join(ops, "\n"), plan.Services)
	}
}

// An old kube-proxy's layout (KUBE-XLB chains; the hand-written v1.20 fixture in testdata) is
// refused rather than overwritten with the new one.
func TestRepairRefusesAnOldLayout(t *testing.T) {
	cl := trace.NewCluster(nil, nil, nil, nil)
	_, err := kubeproxy.PlanIPTables(&iptables.Dataplane{V4: recorded.OldLayout(t)}, cl, cl.NodeContextFor("node1", nil), trace.CheckScope{})
	if err == nil || !strings.Contains(err.Error(), "before 1.24") {
		t.Fatalf("old layout: %v", err)
	}
}

// TestRepairFollowsTheNodesNFAcct: kube-proxy adds its nfacct matches only where the kernel has
// nfacct. The recorded node with those matches taken out (what kube-proxy writes on such a kernel)
// plans empty too, and a plan that rewrites a localhost node-port rule writes it without the match.
func TestRepairFollowsTheNodesNFAcct(t *testing.T) {
	dump, err := os.ReadFile("../../dataplane/snapshot/demo/iptables-save.txt")
	if err != nil {
		t.Fatal(err)
	}
	without := strings.NewReplacer(" -m nfacct --nfacct-name  localhost_nps_accepted_pkts", "", " -m nfacct --nfacct-name  ct_state_invalid_dropped_pkts", "").Replace(string(dump))
	if without == string(dump) || strings.Contains(without, "nfacct") {
		t.Fatal("the recorded node has no nfacct matches to take out")
	}
	rs, err := xtables.Parse([]byte(without))
	if err != nil {
		t.Fatal(err)
	}
	_, cl := recorded.IPTables(t, "../../dataplane/snapshot/demo")
	for _, tc := range []struct {
		name string
		cl   *trace.Cluster
	}{{"synced", cl}, {"a node port Service gone", tracetest.WithoutService(cl, "web-nodeport")}} {
		plan, err := kubeproxy.PlanIPTables(&iptables.Dataplane{V4: rs}, tc.cl, tc.cl.NodeContextFor("node1", nil), trace.CheckScope{})
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range plan.IPTables {
			if strings.Contains(tr.Input, "nfacct") {
				t.Errorf("%s: the plan writes an nfacct match on a node without them:\n%s", tc.name, tr.Input)
			}
		}
		if empty := plan.Empty(); empty != (tc.name == "synced") {
			t.Errorf("%s: plan empty %v", tc.name, empty)
		}
	}
}
