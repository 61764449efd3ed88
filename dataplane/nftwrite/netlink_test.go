//go:build linux

package nftwrite_test

import (
	"context"
	"reflect"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/svctrace/svctrace/dataplane/nftnl"
	"github.com/svctrace/svctrace/dataplane/nftwrite"
	"github.com/svctrace/svctrace/test/nftnetns"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/kubeproxy"
	"github.com/svctrace/svctrace/trace/nftables"
)

// The recorded nftables node (kube-proxy v1.36.3; dataplane/snapshot/demo-nftables/README.md).
const demo = "../snapshot/demo-nftables"

// staleAPI is the demo's API as a node that missed updates sees it: hostnames-c replaced by a new
// pod, the multi Service deleted, one of the two dns endpoints gone, one of sticky's (affinity)
// endpoints gone, and web-nodeport's node port changed.
func staleAPI(t *testing.T) *trace.Cluster {
	cl := tracetest.EditEndpoints(tracetest.StaleDemo(t, demo), "dns", map[string]string{"10.244.2.52": ""})
	cl = tracetest.EditEndpoints(cl, "sticky", map[string]string{"10.244.1.13": ""})
	var svcs []*corev1.Service
	for _, s := range cl.Services {
		if s.Name == "web-nodeport" {
			s = s.DeepCopy()
			s.Spec.Ports[0].NodePort = 31234
		}
		svcs = append(svcs, s)
	}
	return trace.NewCluster(svcs, cl.Slices, cl.Pods, cl.Nodes)
}

// TestScopedReadsPlanLikeTheWholeTable: with the recorded node loaded into a network namespace,
// the plan of each single Service (every one the API or the node has, the deleted one among them)
// made from ReadForPlan's netlink reads is the plan made from the whole ruleset nft lists; the
// reads hold only a few of the table's chains; and ReadNetlink reads each plan's objects, before
// and after, as Select finds them in the whole table.
func TestScopedReadsPlanLikeTheWholeTable(t *testing.T) {
	f, ns := nftnetns.Load(t, demo+"/nft.json")
	rs, _ := nftnetns.List(t, ns)
	whole := &nftables.Dataplane{Rules: rs}
	cl := staleAPI(t)
	node := cl.NodeContextFor("node1", nil)
	r, err := nftnl.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	services := map[string]bool{}
	for _, s := range cl.Services {
		services[s.Namespace+"/"+s.Name] = true
	}
	wholeTables := map[string]*nftables.Table{}
	for _, tab := range rs.Tables {
		if tab.Name != nftwrite.Table {
			continue
		}
		wholeTables[tab.Family] = tab
		for name := range tab.Chains {
			if kubeproxy.IsNftServiceChain(name) {
				_, rest, _ := strings.Cut(name, "-")
				_, rest, _ = strings.Cut(rest, "-")
				parts := strings.SplitN(rest, "/", 3)
				services[parts[0]+"/"+parts[1]] = true
			}
		}
	}
	var names []string
	for s := range services {
		names = append(names, s)
	}
	sort.Strings(names)
	ctx := context.Background()
	planned := map[string]bool{}
	for _, svc := range names {
		nsName, name, _ := strings.Cut(svc, "/")
		scope := trace.CheckScope{Namespace: nsName, Name: name}
		want, err := kubeproxy.PlanNftables(ctx, whole, cl, node, scope)
		if err != nil {
			t.Fatalf("%s: whole table: %v", svc, err)
		}
		var tables []*nftables.Table
		for _, fam := range []string{"ip", "ip6"} {
			tab, err := nftwrite.ReadForPlan(r, fam, cl, node, scope)
			if err != nil {
				t.Fatalf("%s: ReadForPlan %s: %v", svc, fam, err)
			}
			for name := range tab.Chains {
				if kubeproxy.IsNftServiceChain(name) && !kubeproxy.NftChainInScope(name, scope) && !strings.HasPrefix(name, "external-") {
					t.Errorf("%s %s: read chain %s, another Service's", svc, fam, name)
				}
			}
			tables = append(tables, tab)
		}
		got, err := kubeproxy.PlanNftables(ctx, &nftables.Dataplane{Rules: &nftables.Ruleset{Tables: tables}}, cl, node, scope)
		if err != nil {
			t.Fatalf("%s: scoped read: %v", svc, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: the plan from the scoped read differs:\n got %+v\nwant %+v", svc, got, want)
		}
		if !want.Empty() {
			planned[svc] = true
		}
		for _, c := range want.Nftables {
			for _, state := range []trace.NftState{c.Before, c.After} {
				wantRead, err := nftwrite.Select(wholeTables[c.Family], state)
				if err != nil {
					t.Fatal(err)
				}
				gotRead, err := nftwrite.ReadNetlink(r, c.Family, state)
				if err != nil {
					t.Fatalf("%s: ReadNetlink: %v", svc, err)
				}
				if !reflect.DeepEqual(gotRead, wantRead) {
					t.Errorf("%s: ReadNetlink differs from the whole table:\n got %+v\nwant %+v", svc, gotRead, wantRead)
				}
			}
		}
	}
	for _, svc := range []string{"default/dns", "default/hostnames", "default/multi", "default/sticky", "default/web-nodeport"} {
		if !planned[svc] {
			t.Errorf("%s: no change planned (the edits should make one)", svc)
		}
	}
	if len(planned) != 5 {
		t.Errorf("changes planned for %v", planned)
	}
}
