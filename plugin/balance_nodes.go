package plugin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/svctrace/svctrace/dataplane/conntrack"
	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/render"
	"github.com/svctrace/svctrace/trace"
)

// runAllNodes measures the Service on every node that runs a kube-proxy pod: every node's
// conntrack (and dataplane counters) read at the start of one window and again --duration later.
func (o *BalanceOptions) runAllNodes(ctx context.Context) error {
	t := o.trace
	if o.conntrack != "" {
		return usageErrorf("--conntrack is one node's table; --all-nodes reads every node's")
	}
	ctx, f, stop, err := openFleet(ctx, t.config, t.streams, o.fleet, &t.Input)
	if err != nil {
		return err
	}
	defer stop()
	f.keepDebugPods = true // the same pod for both reads of the window
	type node struct {
		trace        *trace.Result
		counters     map[string]uint64
		before, conn []trace.Conn
	}
	nodes := make([]node, len(f.names))
	t.from = "pod"
	failures := f.each(ctx, "read", nil, func(ctx context.Context, i int, name string, r noderun.Runner) error {
		read, err := f.read(ctx, name, r, t.Input.Mode)
		if err != nil {
			return err
		}
		dp := read.Dataplane
		in := &Inputs{Dataplane: dp, Cluster: f.cluster, Node: f.cluster.NodeContextFor(name, nil)}
		q, err := t.query(in)
		if err != nil {
			return err
		}
		n := &nodes[i]
		if n.trace, err = trace.Run(ctx, dp, f.cluster, q); err != nil {
			return err
		}
		n.counters = newConnections(dp, n.trace)
		n.before, err = conntrack.ReadLive(ctx, r)
		return err
	})
	if len(f.names) > 0 && countErrors(failures) == len(f.names) {
		return failures[0] // the same mistake everywhere (an unknown Service, say): say it once
	}
	if o.duration > 0 {
		fmt.Fprintf(t.streams.ErrOut, "watching connections on %d nodes for %s...\n", len(f.names), o.duration)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(o.duration):
		}
	}
	second := f.each(ctx, "read", failures, func(ctx context.Context, i int, name string, r noderun.Runner) error {
		n := &nodes[i]
		if o.duration == 0 {
			n.conn = n.before
			return nil
		}
		after, err := conntrack.ReadLive(ctx, r)
		if err != nil {
			return err
		}
		n.conn = conntrackWindow(n.before, after)
		if n.counters != nil {
			again, err := f.read(ctx, name, r, t.Input.Mode)
			if err != nil {
				return err
			}
			if now := newConnections(again.Dataplane, n.trace); now != nil {
				n.counters = counterGrowth(n.counters, now)
			}
		}
		return nil
	})
	bad := f.warn(second)
	var windows []trace.NodeWindow
	for i, n := range nodes {
		if second[i] == nil {
			windows = append(windows, trace.NodeWindow{Trace: n.trace, Conns: n.conn, Counters: n.counters})
		}
	}
	if len(windows) == 0 {
		if bad > 0 {
			return f.unreadable(bad)
		}
		return errors.New("no node runs a kube-proxy pod to read")
	}
	res := trace.BalanceNodes(f.cluster, windows)
	if err := render.BalanceNodes(t.streams.Out, res, render.Options{Format: t.format, Color: render.ColorFor(t.streams.Out), NoHeaders: t.noHeaders, Width: render.WidthFor(t.streams.Out, t.format)}); err != nil {
		return err
	}
	if imbalanced(res.Overall.Diagnosis) {
		return errFindings
	}
	for _, n := range res.Nodes {
		if imbalanced(n.Diagnosis) {
			return errFindings
		}
	}
	return f.unreadable(bad)
}

func imbalanced(diagnosis string) bool {
	return diagnosis == trace.ConnectionStickiness || diagnosis == trace.SkewedRules
}

func countErrors(errs []error) int {
	n := 0
	for _, e := range errs {
		if e != nil {
			n++
		}
	}
	return n
}
