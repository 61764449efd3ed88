package kubeproxy_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/test/recorded"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/kubeproxy"
	"github.com/svctrace/svctrace/trace/nftables"
)

func describe(plan *trace.RepairPlan) string {
	var b strings.Builder
	for _, c := range plan.Changes {
		b.WriteString(c.Op + " " + c.Table + " " + c.Chain + ": " + c.Detail + "\n")
	}
	return b.String()
}

// TestNftPlanIsEmptyOnTheRecordedNode: what svctrace generates for every Service port in nftables
// mode is what the real kube-proxy v1.36.3 wrote (dataplane/snapshot/demo-nftables, recorded by
// test/e2e/record): chains with their rules in order, affinity sets, and the elements of every
// shared set and map. Any difference in a rule's text, a chain name or an element shows here.
func TestNftPlanIsEmptyOnTheRecordedNode(t *testing.T) {
	dp, cl := recorded.Nftables(t, recorded.Root()+"/dataplane/snapshot/demo-nftables")
	plan, err := kubeproxy.PlanNftables(context.Background(), dp, cl, cl.NodeContextFor("node1", nil), trace.CheckScope{})
	if err != nil {
		t.Fatal(err)
	}
	if !plan.Empty() || len(plan.Services) != 0 {
		t.Errorf("plan on a freshly synced node is not empty:\n%s", describe(plan))
	}
}

// applyNft does to the objects what the change's transaction does to a table.
// appliedLikeKubeProxy applies a plan's change to the node table's objects, which must then be
// what kube-proxy writes in that table for the API cl (chains, affinity sets, elements); it
// returns them.
func appliedLikeKubeProxy(t *testing.T, table *nftables.Table, c trace.NftChange, cl *trace.Cluster, node *trace.NodeContext) *kubeproxy.NftObjects {
	t.Helper()
	have, bad := kubeproxy.NodeNftObjects(table)
	if len(bad) > 0 {
		t.Fatalf("unrenderable: %v", bad)
	}
	applyNft(have, c)
	layout, err := kubeproxy.DetectNftLayout(table, node)
	if err != nil {
		t.Fatal(err)
	}
	want := kubeproxy.NewNftObjects()
	for _, p := range kubeproxy.FamilyPorts(cl, node.Name, table.Family == "ip6") {
		want.AddNftService(p, layout)
	}
	if !reflect.DeepEqual(have.Chains, want.Chains) || !reflect.DeepEqual(have.Affinity, want.Affinity) || !reflect.DeepEqual(have.Elems, want.Elems) {
		t.Errorf("%s: applied plan differs from kube-proxy's objects:\nchains %v\nwant   %v\nelems %v\nwant  %v", table.Family, have.Chains, want.Chains, have.Elems, want.Elems)
	}
	return have
}

func applyNft(o *kubeproxy.NftObjects, c trace.NftChange) {
	for _, ch := range c.After.Chains {
		if ch.Exists {
			o.Chains[ch.Chain] = ch.Rules
		} else {
			delete(o.Chains, ch.Chain)
		}
	}
	for _, s := range c.After.Sets {
		if s.Exists {
			o.Affinity[s.Name] = s.Timeout
		} else {
			delete(o.Affinity, s.Name)
		}
	}
	for _, e := range c.After.Elements {
		if e.Exists {
			o.Elems[e.Set][e.Key] = e.Value
		} else {
			delete(o.Elems[e.Set], e.Key)
		}
	}
}

// TestNftPlanFollowsTheAPI: the recorded nftables node against API objects edited the way a
// stale node sees them (hostnames-c replaced by a new pod, the multi Service deleted, one of the
// two dns (UDP) endpoints gone). The plan's change, applied to the node's objects, must give
// exactly kube-proxy's objects for the new API; it touches only per-Service chains, affinity sets
// and shared-container elements; and it deletes the UDP conntrack entries of the dns endpoint.
func TestNftPlanFollowsTheAPI(t *testing.T) {
	dir := recorded.Root() + "/dataplane/snapshot/demo-nftables"
	dp, _ := recorded.Nftables(t, dir)
	edited := tracetest.EditEndpoints(tracetest.StaleDemo(t, dir), "dns", map[string]string{"10.244.2.52": ""})
	node := edited.NodeContextFor("node1", nil)
	plan, err := kubeproxy.PlanNftables(context.Background(), dp, edited, node, trace.CheckScope{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(plan.Services, " "); got != "default/dns:dns default/hostnames:default default/multi:http default/multi:metrics" {
		t.Errorf("services %s", got)
	}
	if len(plan.Conntrack) != 1 || plan.Conntrack[0] != (trace.ConntrackFlush{Protocol: "udp", Dst: "10.96.10.53:53", Backend: "10.244.2.52"}) {
		t.Errorf("conntrack %+v", plan.Conntrack)
	}
	if len(plan.Nftables) != 1 || plan.Nftables[0].Family != "ip" {
		t.Fatalf("nftables changes %+v", plan.Nftables)
	}
	c := plan.Nftables[0]
	for _, ch := range c.After.Chains {
		if !kubeproxy.IsNftServiceChain(ch.Chain) {
			t.Errorf("plan writes chain %s", ch.Chain)
		}
	}
	have := appliedLikeKubeProxy(t, dp.Rules.Tables[0], c, edited, node)
	if _, ok := have.Chains["service-WORRPFDT-default/multi/tcp/http"]; ok {
		t.Errorf("the deleted Service's chain is still there")
	}
	if _, ok := have.Elems[kubeproxy.NftClusterIPs]["10.96.10.50"]; ok {
		t.Errorf("the deleted Service's cluster IP is still in cluster-ips")
	}
	// A plan scoped to one Service touches only that Service.
	scoped, err := kubeproxy.PlanNftables(context.Background(), dp, edited, node, trace.CheckScope{Namespace: "default", Name: "dns"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(scoped.Services, " "); got != "default/dns:dns" {
		t.Errorf("scoped services %q:\n%s", got, describe(scoped))
	}
}
