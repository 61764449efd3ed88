package plugin

import (
	"context"

	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/trace"
)

// runAllNodes checks every node that runs a kube-proxy pod, reading each through it, and merges
// the findings.
func (o *CheckOptions) runAllNodes(ctx context.Context) error {
	ctx, f, stop, err := openFleet(ctx, o.config, o.streams, o.fleet, &o.Input)
	if err != nil {
		return err
	}
	defer stop()
	results := make([]*trace.CheckResult, len(f.names))
	failures := f.each(ctx, "checked", nil, func(ctx context.Context, i int, name string, r noderun.Runner) error {
		n, err := f.read(ctx, name, r, o.Input.Mode)
		if err == nil {
			results[i], err = trace.Check(ctx, n.Dataplane, f.cluster, f.cluster.NodeContextFor(name, nil), o.scope)
		}
		return err
	})
	bad := f.warn(failures)
	var ok []*trace.CheckResult
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
