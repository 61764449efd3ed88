package plugin

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/svctrace/svctrace/dataplane/snapshot"
	"github.com/svctrace/svctrace/render"
	"github.com/svctrace/svctrace/trace"
)

// CheckOptions holds everything `check` needs, typed.
type CheckOptions struct {
	config  *genericclioptions.ConfigFlags
	streams genericiooptions.IOStreams
	Input   InputFlags

	allNamespaces bool
	allNodes      bool
	fleet         fleetFlags
	// noAgents reads every node with --all-nodes, whatever their agents report; agentMaxAge
	// is how recent an agent's condition must be to be believed.
	noAgents    bool
	agentMaxAge time.Duration
	output      string
	failOn      string
	// conntrack is a saved `conntrack -L -o extended` of the node, for stale flows offline.
	conntrack string
	noHeaders bool

	scope    trace.CheckScope
	format   render.Format
	failRank int
}

// NewCheckOptions returns check's options with their defaults.
func NewCheckOptions(streams genericiooptions.IOStreams, cfg *genericclioptions.ConfigFlags) *CheckOptions {
	return &CheckOptions{config: cfg, streams: streams, output: "table", failOn: "error", agentMaxAge: 6 * time.Minute}
}

// NewCmdCheck builds `check`.
func NewCmdCheck(streams genericiooptions.IOStreams, cfg *genericclioptions.ConfigFlags) *cobra.Command {
	o := NewCheckOptions(streams, cfg)
	cmd := &cobra.Command{
		Use:   "check [NAMESPACE/]SERVICE",
		Short: "Find stale and missing rules: where a node's dataplane disagrees with the API",
		Long: `Compare what a node's kube-proxy dataplane does with what the API says it should do, as
kube-proxy would compute it for that node (ready endpoints, or serving terminating ones when none is
ready; internal and external traffic policy). For every Service port in scope it traces the cluster
IP and the node port and compares the backends and their shares; then it lists what the dataplane
handles that the API does not have. It works semantically, so it holds across kube-proxy versions,
modes (iptables, nftables, IPVS) and without rule comments.

Then it joins the node's conntrack table with the API (read with the dataplane: on the node, through
its kube-proxy pod, from a snapshot, or --conntrack FILE offline): connections still translated to
a backend that is no longer a serving endpoint of their Service port are StaleFlow findings (UDP
flows stay pinned to a dead pod as long as the client keeps sending; see kubernetes#139628).
Entries to a backend the rules still send new connections to are StaleEndpoint's business.

On the node itself it also asks kube-proxy which mode it runs in (/proxyMode on 127.0.0.1:10249)
and reports kube-proxy state of any other mode as ModeLeftover: iptables KUBE-* chains (either
backend) or IPVS state on an nftables node, the kube-proxy nftables tables on an iptables or IPVS
node, IPVS state (kube-ipvs0, virtual servers, ipsets) and IPVS mode's own chains on an iptables
node (error when hooked in, so that packets pass through it; repair -A removes it, undoably).

Findings: StaleEndpoint, MissingEndpoint, StaleService, MissingService, StaleFlow, WrongShare,
NotReadyEndpoint, LocalPolicyBlackhole, ModeLeftover (warnings and errors); NoEndpoints,
OrphanChain, StaleFlow of closing TCP connections (info).

With --all-nodes, a node whose svctrace agent (kubectl svctrace agent --help) reports it healthy
through the Node condition ServiceDataplaneHealthy, renewed within --agent-max-age, is not read;
unhealthy, silent and agent-less nodes are read through their kube-proxy pods. --no-agents reads
every node.

Exit codes: 0 clean, 1 findings at or above --fail-on, 2 usage or an input refused, 3 could not
read (the API unreachable or access denied, the node's dataplane unreadable, an exec failed).`,
		Example: fmt.Sprintf(`  # On a node, as root: everything this node programs
  sudo kubectl-svctrace check -A

  # One Service, from saved dumps (with the node's conntrack table for stale flows)
  %[1]s check default/web --dataplane node1.iptables --objects objects.yaml --node node1 --conntrack node1.conntrack

  # From a laptop or CI: every node, through its kube-proxy pod; JUnit for the CI system
  %[1]s check -A --all-nodes --fail-on error -o junit > svctrace.xml`, commandName()),
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageErrorf("check takes at most one SERVICE")
			}
			return nil
		},
		RunE: runOptions(o),
	}
	o.Input.AddFlags(cmd)
	fl := cmd.Flags()
	fl.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "check the Services of every namespace")
	o.fleet.addFlags(cmd, &o.allNodes, "check")
	fl.BoolVar(&o.noAgents, "no-agents", false, "with --all-nodes: read every node, also those whose svctrace agent reports them healthy")
	fl.DurationVar(&o.agentMaxAge, "agent-max-age", o.agentMaxAge, "with --all-nodes: an agent's Node condition renewed longer ago than this counts as silent, and the node is read")
	fl.StringVarP(&o.output, "output", "o", o.output, "output format: table, wide, json, yaml, junit, jsonpath=TEMPLATE, go-template=TEMPLATE (as kubectl)")
	fl.StringVar(&o.failOn, "fail-on", o.failOn, "exit 1 when a finding has at least this severity: error, warning, info or none")
	fl.BoolVar(&o.noHeaders, "no-headers", false, "print the table without its header row")
	fl.StringVar(&o.conntrack, "conntrack", "", "with offline input: the node's `conntrack -L -o extended` output, for stale flows")
	return cmd
}

// Complete turns flags into typed values.
func (o *CheckOptions) Complete(args []string) error {
	var err error
	if o.output == "junit" {
		o.format = render.JUnit
	} else if o.output == "table" {
		o.format = render.Human
	} else if o.format, err = render.ParseFormat(o.output, "table"); err != nil {
		return usageErrorf("--output: %v (check also takes junit)", err)
	}
	if o.failRank, err = parseFailOn(o.failOn); err != nil {
		return err
	}
	o.scope, err = serviceScope(o.config, &o.Input, o.allNamespaces, args)
	return err
}

// Validate checks what can be checked before reading anything.
func (o *CheckOptions) Validate() error {
	if err := o.Input.Validate(); err != nil {
		return err
	}
	if o.conntrack != "" && (o.allNodes || !o.Input.Offline()) {
		return usageErrorf("--conntrack goes with offline input (--dataplane or --snapshot); live, the node's own table is read")
	}
	if o.noAgents && !o.allNodes {
		return usageErrorf("--no-agents goes with --all-nodes")
	}
	if o.agentMaxAge <= 0 {
		return usageErrorf("--agent-max-age must be positive")
	}
	return o.fleet.validate(o.allNodes)
}

// Run reads the inputs, checks and prints.
func (o *CheckOptions) Run(ctx context.Context) error {
	if o.allNodes {
		if ctx == nil {
			ctx = context.Background()
		}
		return o.runAllNodes(ctx)
	}
	if o.Input.Snapshot != "" && o.Input.Node == "" {
		if set, isSet, err := snapshot.ReadSet(o.Input.Snapshot); err != nil {
			return err
		} else if isSet {
			return o.runSet(ctx, set)
		}
	}
	ctx, in, stop, err := o.Input.start(ctx, o.config, o.streams)
	if err != nil {
		return err
	}
	defer stop()
	if in.Cluster == nil {
		return in.needAPI("check")
	}
	if o.scope.Name != "" && in.Cluster.Service(o.scope.Namespace, o.scope.Name) == nil {
		return usageErrorf("service %s/%s not found", o.scope.Namespace, o.scope.Name)
	}
	res, err := trace.Check(ctx, in.Dataplane, in.Cluster, in.Node, o.scope)
	if err != nil {
		return in.walkError(err)
	}
	flows, err := in.staleFlows(ctx, o.conntrack, o.scope, o.streams.ErrOut)
	if err != nil {
		return err
	}
	res.Findings = append(res.Findings, flows...)
	res.Findings = append(res.Findings, in.leftoverFindings()...)
	return o.report([]*trace.CheckResult{res})
}

// serviceScope is the Services a command covers: [NAMESPACE/]SERVICE (also svc/ or service/
// NAME), else the namespace (--namespace, the kubeconfig's, default), or every namespace with -A.
func serviceScope(cfg *genericclioptions.ConfigFlags, in *InputFlags, allNamespaces bool, args []string) (trace.CheckScope, error) {
	if len(args) == 0 {
		if allNamespaces {
			return trace.CheckScope{}, nil
		}
		return trace.CheckScope{Namespace: namespaceOf(cfg, in)}, nil
	}
	if allNamespaces {
		return trace.CheckScope{}, usageErrorf("a SERVICE and -A do not go together")
	}
	n, name, ok := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(args[0], "svc/"), "service/"), "/")
	if ok {
		return trace.CheckScope{Namespace: n, Name: name}, nil
	}
	return trace.CheckScope{Namespace: namespaceOf(cfg, in), Name: n}, nil
}

// report prints the nodes' merged findings and says whether any reaches --fail-on.
func (o *CheckOptions) report(results []*trace.CheckResult) error {
	report := render.NewCheckReport(results)
	if err := render.Check(o.streams.Out, report, render.Options{Format: o.format, Color: render.ColorFor(o.streams.Out), NoHeaders: o.noHeaders, Width: render.WidthFor(o.streams.Out, o.format), FailRank: o.failRank}); err != nil {
		return err
	}
	for _, r := range results {
		for _, f := range r.Findings {
			if f.Severity.Rank() >= o.failRank {
				return errFindings
			}
		}
	}
	return nil
}

// runSet checks every node of a several-node snapshot, offline, and merges the findings.
func (o *CheckOptions) runSet(ctx context.Context, set *snapshot.SetManifest) error {
	var results []*trace.CheckResult
	in := o.Input
	for _, node := range set.Nodes {
		in.Node = node
		r, err := in.Resolve(ctx, o.config, o.streams)
		if err != nil {
			return err
		}
		in.decoded = r.Cluster // the set's objects, decoded once
		if r.Cluster == nil {
			return usageErrorf("snapshot %s has no API objects to compare with", o.Input.Snapshot)
		}
		res, err := trace.Check(ctx, r.Dataplane, r.Cluster, r.Node, o.scope)
		if err != nil {
			return fmt.Errorf("node %s: %w", node, err)
		}
		flows, err := r.staleFlows(ctx, "", o.scope, o.streams.ErrOut)
		if err != nil {
			return fmt.Errorf("node %s: %w", node, err)
		}
		res.Findings = append(res.Findings, flows...)
		results = append(results, res)
	}
	return o.report(results)
}
