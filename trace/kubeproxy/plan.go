package kubeproxy

import (
	"context"
	"fmt"

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

// PlanNftables lists what is wrong and writes nothing: kube-proxy's nftables table is kube-proxy's,
// replaced whole on every sync, so a plan for it is only its notes.
func PlanNftables(ctx context.Context, d *nftables.Dataplane, cl *trace.Cluster, node *trace.NodeContext, scope trace.CheckScope) (*trace.RepairPlan, error) {
	plan := &trace.RepairPlan{APIVersion: trace.APIVersion, Kind: "RepairPlan", Node: node.Name, Mode: d.Mode(), Changes: []trace.RepairChange{}, Services: []string{}}
	res, err := trace.Check(ctx, d, cl, node, scope)
	if err != nil {
		return nil, err
	}
	for _, f := range res.Findings {
		if f.Severity.Rank() >= trace.SeverityWarning.Rank() {
			plan.Notes = append(plan.Notes, fmt.Sprintf("%s %s: %s", f.Kind, f.Service, f.Message))
		}
	}
	if len(plan.Notes) > 0 {
		plan.Notes = append([]string{"refused: kube-proxy's nftables table belongs to kube-proxy (it replaces the whole table on every sync); svctrace does not write it. What is wrong:"}, plan.Notes...)
	}
	return plan, nil
}
