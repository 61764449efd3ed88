package plugin

import (
	"context"
	"fmt"
	"time"

	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/watch"
)

// runAllNodes checks every node that runs a kube-proxy pod, reading each through it, and merges
// the findings; nodes whose agent reports them healthy are taken at its word (not with
// --no-agents).
func (o *CheckOptions) runAllNodes(ctx context.Context) error {
	ctx, f, stop, err := openFleet(ctx, o.config, o.streams, o.fleet, &o.Input)
	if err != nil {
		return err
	}
	defer stop()
	trusted := o.agentReported(f)
	results := make([]*trace.CheckResult, len(f.names))
	failures := f.each(ctx, "checked", nil, func(ctx context.Context, i int, name string, r noderun.Runner) error {
		n, err := f.read(ctx, name, r, o.Input.Mode)
		if err == nil {
			results[i], err = trace.Check(ctx, n.Dataplane, f.cluster, f.cluster.NodeContextFor(name, nil), o.scope)
		}
		if err == nil {
			results[i].Findings = append(results[i].Findings, trace.LeftoverFindings(name, n.Dataplane.Mode(), n.ModeFrom != "detected", n.Leftovers)...)
		}
		return err
	})
	bad := f.warn(failures)
	ok := trusted
	for i, r := range results {
		if failures[i] == nil {
			ok = append(ok, r)
		}
	}
	if err := o.report(ok); err != nil {
		return err
	}
	return f.unreadable(bad)
}

// agentReported takes the nodes whose svctrace agent reports them healthy out of the fleet's
// reads and returns their results; it says on stderr how many were and why the others are read.
func (o *CheckOptions) agentReported(f *fleet) []*trace.CheckResult {
	if o.noAgents {
		return nil
	}
	now := time.Now()
	var trusted []*trace.CheckResult
	var read []string
	count := map[watch.AgentState]int{}
	for _, name := range f.names {
		state := watch.AgentAbsent
		if n := f.cluster.Node(name); n != nil {
			state = watch.StateOf(n, now, o.agentMaxAge)
		}
		count[state]++
		if state == watch.AgentHealthy {
			trusted = append(trusted, &trace.CheckResult{Node: name, Mode: "-", Findings: []trace.Finding{}, ReportedBy: "agent"})
			continue
		}
		read = append(read, name)
	}
	if len(f.names) > count[watch.AgentAbsent] {
		fmt.Fprintf(o.streams.ErrOut, "%d of %d nodes: healthy as their svctrace agent reports (condition %s renewed within %s), not read; reading %d (%d unhealthy, %d silent, %d without an agent); --no-agents reads every node\n",
			len(trusted), len(f.names), watch.ConditionType, o.agentMaxAge, len(read), count[watch.AgentUnhealthy], count[watch.AgentSilent], count[watch.AgentAbsent])
	}
	f.names = read
	return trusted
}
