package plugin

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/svctrace/svctrace/render"
	"github.com/svctrace/svctrace/trace"
)

// fanOut is how many nodes are read at once: each read is a few execs through the API server.
const fanOut = 8

// runAllNodes checks every node that runs a kube-proxy pod, reading each through it, with bounded
// concurrency and a progress line on stderr, and merges the findings.
func (o *CheckOptions) runAllNodes(ctx context.Context) error {
	if o.Input.Offline() || o.Input.Node != "" {
		return usageErrorf("--all-nodes reads every node through the API server; it does not go with --node, --dataplane, --snapshot or --demo")
	}
	if o.Input.Objects != "" {
		return usageErrorf("--all-nodes reads the API itself; drop --objects")
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	cl, err := fetchCluster(ctx, o.config)
	if err != nil {
		return err
	}
	pods, err := kubeProxyPods(ctx, o.config)
	if err != nil {
		return err
	}
	var names, skipped []string
	for _, n := range cl.Nodes {
		if _, ok := pods[n.Name]; ok {
			names = append(names, n.Name)
		} else {
			skipped = append(skipped, n.Name)
		}
	}
	sort.Strings(names)
	results := make([]*trace.CheckResult, len(names))
	failures := make([]error, len(names))
	var done atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, fanOut)
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			dp, _, _, _, err := readNode(ctx, o.streams, pods[name], true, o.Input.Mode)
			if err == nil {
				results[i], err = trace.Check(dp, cl, cl.NodeContextFor(name, nil), o.scope)
			}
			failures[i] = err
			fmt.Fprintf(o.streams.ErrOut, "\rchecked %d/%d nodes", done.Add(1), len(names))
		}()
	}
	wg.Wait()
	if len(names) > 0 {
		fmt.Fprintln(o.streams.ErrOut)
	}
	var ok []*trace.CheckResult
	unreadable := 0
	for i, r := range results {
		if failures[i] != nil {
			unreadable++
			fmt.Fprintf(o.streams.ErrOut, "warning: node %s: %v\n", names[i], failures[i])
			continue
		}
		ok = append(ok, r)
	}
	if len(skipped) > 0 {
		fmt.Fprintf(o.streams.ErrOut, "note: %d node(s) run no kube-proxy pod (label %s), not checked: %v\n", len(skipped), kubeProxyLabel, skipped)
	}
	report := render.NewCheckReport(ok)
	if err := render.Check(o.streams.Out, report, render.Options{Format: o.format, Color: render.ColorFor(o.streams.Out)}); err != nil {
		return err
	}
	for _, r := range ok {
		for _, f := range r.Findings {
			if f.Severity.Rank() >= o.failRank {
				return errFindings
			}
		}
	}
	if unreadable > 0 {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("%d of %d nodes could not be read (see the warnings above)", unreadable, len(names))}
	}
	return nil
}
