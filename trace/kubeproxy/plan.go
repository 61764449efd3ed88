package kubeproxy

import (
	"context"
	"fmt"
	"sort"

	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/iptables"
	"github.com/svctrace/svctrace/trace/nftables"
)

// Plan computes what kube-proxy would program now for the Services in scope and the smallest
// change from what the node has, for the node's mode: PlanIPTables, PlanIPVS or PlanNftables.
func Plan(ctx context.Context, dp trace.Dataplane, cl *trace.Cluster, node *trace.NodeContext, scope trace.CheckScope) (*trace.RepairPlan, error) {
	switch d := dp.(type) {
	case *iptables.Dataplane:
		if d.IPVS != nil {
			return PlanIPVS(d, cl, node, scope)
		}
		return PlanIPTables(d, cl, node, scope)
	case *nftables.Dataplane:
		return PlanNftables(ctx, d, cl, node, scope)
	}
	return nil, fmt.Errorf("repair does not know this dataplane (%s)", dp.Mode())
}

// PlanNftables computes, per family, the smallest change that makes kube-proxy's nftables table
// hold what kube-proxy would write for the Services in scope now: per-Service chains rewritten,
// created or deleted, affinity sets, and the elements of the shared sets and maps added or
// deleted. kube-proxy's own chains (base chains, dispatch, masquerading) are left as they are.
func PlanNftables(ctx context.Context, d *nftables.Dataplane, cl *trace.Cluster, node *trace.NodeContext, scope trace.CheckScope) (*trace.RepairPlan, error) {
	plan := &trace.RepairPlan{APIVersion: trace.APIVersion, Kind: "RepairPlan", Node: node.Name, Mode: d.Mode(), Changes: []trace.RepairChange{}, Services: []string{}}
	found := false
	for _, family := range []string{"ip", "ip6"} {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var t *nftables.Table
		for _, x := range d.Rules.Tables {
			if x.Family == family && x.Name == "kube-proxy" {
				t = x
			}
		}
		if t == nil {
			continue
		}
		found = true
		if err := planNftFamily(plan, t, cl, node, scope); err != nil {
			return nil, err
		}
	}
	if !found {
		return nil, fmt.Errorf("the node has no kube-proxy nftables table (ip or ip6): kube-proxy has not set this node up")
	}
	sort.Strings(plan.Services)
	if !plan.Empty() {
		plan.Notes = append(plan.Notes, "kube-proxy owns these objects: its next sync rewrites them from the API again (and, with the same API, writes the same)")
	}
	return plan, nil
}
