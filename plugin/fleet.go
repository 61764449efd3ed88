package plugin

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/svctrace/svctrace/dataplane"
	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/render"
	"github.com/svctrace/svctrace/trace"
)

// fleetFlags tune --all-nodes runs.
type fleetFlags struct {
	parallel     int
	nodeTimeout  time.Duration
	nodeSelector string
}

func (f *fleetFlags) validate(allNodes bool) error {
	if f.nodeSelector != "" && !allNodes {
		return usageErrorf("--node-selector chooses nodes for --all-nodes; for one node use --node")
	}
	if f.parallel < 1 {
		return usageErrorf("--parallel must be at least 1")
	}
	if f.nodeTimeout <= 0 {
		return usageErrorf("--node-timeout must be positive")
	}
	if _, err := labels.Parse(f.nodeSelector); err != nil {
		return usageErrorf("--node-selector: %v", err)
	}
	return nil
}

// fleet is the set of nodes an --all-nodes run reads: every node with a running kube-proxy pod,
// each read through that pod. The API objects are read once for all of them.
type fleet struct {
	flags   fleetFlags
	debug   DebugPodFlags
	config  *genericclioptions.ConfigFlags
	streams genericiooptions.IOStreams
	cluster *trace.Cluster
	pods    map[string]noderun.Pod
	// names are the nodes to read, sorted; skipped run no kube-proxy pod.
	names, skipped []string

	// keepDebugPods keeps each node's debug pod between calls of each (balance reads every node
	// twice); close deletes them.
	keepDebugPods bool
	mu            sync.Mutex
	debugPods     map[string]noderun.Runner
	cleanups      []func()
}

// close deletes the debug pods kept between reads.
func (f *fleet) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.cleanups {
		c()
	}
	f.cleanups, f.debugPods = nil, nil
}

// runner returns how to run commands on a node: its kube-proxy pod, or a debug pod (deleted by
// done, unless kept for a later read).
func (f *fleet) runner(ctx context.Context, name string) (r noderun.Runner, done func(), err error) {
	if p, ok := f.pods[name]; ok {
		return p, func() {}, nil
	}
	f.mu.Lock()
	r, ok := f.debugPods[name]
	f.mu.Unlock()
	if ok {
		return r, func() {}, nil
	}
	r, cleanup, err := startDebugPod(ctx, f.config, f.streams, f.debug, name)
	if err != nil {
		return nil, nil, err
	}
	if !f.keepDebugPods {
		return r, cleanup, nil
	}
	f.mu.Lock()
	if f.debugPods == nil {
		f.debugPods = map[string]noderun.Runner{}
	}
	f.debugPods[name] = r
	f.cleanups = append(f.cleanups, cleanup)
	f.mu.Unlock()
	return r, func() {}, nil
}

// openFleet starts an --all-nodes run: the input flags checked, the API objects and the
// kube-proxy pods read once. stop deletes any debug pods kept; call it when done (Ctrl-C cancels
// ctx, Execute's, and the command returns through stop).
func openFleet(ctx context.Context, cfg *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams, flags fleetFlags, in *InputFlags) (context.Context, *fleet, func(), error) {
	if err := allNodesConflict(in); err != nil {
		return nil, nil, nil, err
	}
	debug := in.Debug
	ctx, cancel := context.WithCancel(ctx)
	cl, err := fetchCluster(ctx, cfg)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	pods, err := kubeProxyPods(ctx, cfg, in.kubeProxyNamespace(), "")
	if err != nil && debug.Enabled && fallsBackToDebugPod(err) {
		fmt.Fprintf(streams.ErrOut, "%v; reading every node from a debug pod instead\n", err)
		pods, err = map[string]noderun.Pod{}, nil
	}
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	f := &fleet{flags: flags, debug: debug, config: cfg, streams: streams, cluster: cl, pods: pods}
	sel, _ := labels.Parse(flags.nodeSelector)
	for _, n := range cl.Nodes {
		if !sel.Matches(labels.Set(n.Labels)) {
			continue
		}
		if _, ok := pods[n.Name]; ok || debug.Enabled {
			f.names = append(f.names, n.Name)
		} else {
			f.skipped = append(f.skipped, n.Name)
		}
	}
	sort.Strings(f.names)
	return ctx, f, func() {
		f.close()
		cancel()
	}, nil
}

// each runs fn for every node, --parallel at a time, each bounded by --node-timeout, with a
// progress line on stderr ("VERB i/n nodes"). It returns each node's error (nil when it worked).
// Nodes that already failed (earlier[i] != nil) are not read again and keep their error.
func (f *fleet) each(ctx context.Context, verb string, earlier []error, fn func(ctx context.Context, i int, node string, r noderun.Runner) error) []error {
	failures := make([]error, len(f.names))
	var done, failed atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	p := newProgress(f.streams.ErrOut, verb, len(f.names))
	sem := make(chan struct{}, f.flags.parallel)
	for i, name := range f.names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if earlier != nil && earlier[i] != nil {
				failures[i] = earlier[i]
				return
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				failures[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			nctx, cancel := context.WithTimeout(ctx, f.flags.nodeTimeout)
			defer cancel()
			r, release, err := f.runner(nctx, name)
			if err == nil {
				err = fn(nctx, i, name, r)
				release()
			}
			if err != nil && nctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
				err = fmt.Errorf("no answer within --node-timeout %s: %w", f.flags.nodeTimeout, err)
			}
			failures[i] = err
			if err != nil {
				failed.Add(1)
			}
			mu.Lock()
			p.update(int(done.Add(1)), int(failed.Load()))
			mu.Unlock()
		}()
	}
	wg.Wait()
	p.end(int(done.Load()), int(failed.Load()))
	return failures
}

// progress reports a fleet run on stderr: on a terminal one line that rewrites itself; anywhere
// else (a CI log) a line every few seconds and one at the end, never a carriage return.
type progress struct {
	w        io.Writer
	verb     string
	total    int
	terminal bool
	start    time.Time
	last     time.Time
}

// progressEvery is how often a non-terminal progress line is written.
const progressEvery = 5 * time.Second

func newProgress(w io.Writer, verb string, total int) *progress {
	now := time.Now()
	return &progress{w: w, verb: verb, total: total, terminal: render.IsTerminal(w), start: now, last: now}
}

func (p *progress) line(done, failed int) string {
	s := fmt.Sprintf("%s %d/%d nodes", p.verb, done, p.total)
	if failed > 0 {
		s += fmt.Sprintf(", %d failed", failed)
	}
	return s + fmt.Sprintf(", %s", time.Since(p.start).Round(100*time.Millisecond))
}

func (p *progress) update(done, failed int) {
	switch {
	case p.terminal:
		fmt.Fprintf(p.w, "\r%s", p.line(done, failed))
	case time.Since(p.last) >= progressEvery && done < p.total:
		p.last = time.Now()
		fmt.Fprintln(p.w, p.line(done, failed))
	}
}

func (p *progress) end(done, failed int) {
	switch {
	case done == 0:
	case p.terminal:
		fmt.Fprintln(p.w)
	default:
		fmt.Fprintln(p.w, p.line(done, failed))
	}
}

// warn prints the nodes that failed and those skipped, and returns how many failed.
func (f *fleet) warn(failures []error) int {
	n := 0
	for i, err := range failures {
		if err != nil {
			n++
			fmt.Fprintf(f.streams.ErrOut, "warning: node %s: %v\n", f.names[i], err)
		}
	}
	if len(f.skipped) > 0 {
		shown := f.skipped
		if len(shown) > 20 {
			shown = shown[:20]
		}
		fmt.Fprintf(f.streams.ErrOut, "note: %d node(s) run no kube-proxy pod (label %s), not read: %v", len(f.skipped), kubeProxyLabel, shown)
		if len(shown) < len(f.skipped) {
			fmt.Fprintf(f.streams.ErrOut, " and %d more", len(f.skipped)-len(shown))
		}
		fmt.Fprintln(f.streams.ErrOut)
	}
	return n
}

// unreadable is the exit error when some nodes could not be read (nil when all were).
func (f *fleet) unreadable(n int) error {
	if n == 0 {
		return nil
	}
	return &ExitError{Code: ExitRead, Err: fmt.Errorf("%d of %d nodes could not be read (see the warnings above)", n, len(f.names))}
}

// allNodesConflict says why --all-nodes cannot go with the other input flags.
func allNodesConflict(in *InputFlags) error {
	if in.Offline() || in.Node != "" {
		return usageErrorf("--all-nodes reads every node through the API server; it does not go with --node, --dataplane, --snapshot or --demo")
	}
	if in.Objects != "" {
		return usageErrorf("--all-nodes reads the API itself; drop --objects")
	}
	return nil
}

// addFlags binds --all-nodes and its tuning flags.
func (f *fleetFlags) addFlags(cmd *cobra.Command, all *bool, what string) {
	fl := cmd.Flags()
	fl.BoolVar(all, "all-nodes", false, what+" every node that runs a kube-proxy pod, read through it, and merge the results")
	fl.IntVar(&f.parallel, "parallel", 16, "with --all-nodes: how many nodes to read at once")
	fl.DurationVar(&f.nodeTimeout, "node-timeout", 2*time.Minute, "with --all-nodes: give up on a node that has not answered in this long (it is reported, the others go on)")
	fl.StringVar(&f.nodeSelector, "node-selector", "", "with --all-nodes: only the nodes with these labels (e.g. node-pool=blue)")
}

// read reads one node of the fleet through r and prints its warnings, named by node, on stderr.
func (f *fleet) read(ctx context.Context, node string, r noderun.Runner, mode string) (*dataplane.Node, error) {
	n, err := dataplane.Read(ctx, r, dataplane.ReadOptions{Mode: mode, Remote: true, Progress: f.streams.ErrOut})
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range n.Warnings {
		fmt.Fprintf(f.streams.ErrOut, "warning: node %s: %s\n", node, w)
	}
	return n, nil
}
