package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/klog/v2"

	"github.com/svctrace/svctrace/dataplane"
	"github.com/svctrace/svctrace/dataplane/nftjson"
	"github.com/svctrace/svctrace/dataplane/nftwrite"
	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/dataplane/repair"
	"github.com/svctrace/svctrace/dataplane/xtables"
	"github.com/svctrace/svctrace/render"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/iptables"
	"github.com/svctrace/svctrace/trace/kubeproxy"
	"github.com/svctrace/svctrace/trace/nftables"
)

// RepairOptions holds everything `repair` needs.
type RepairOptions struct {
	config  *genericclioptions.ConfigFlags
	streams genericiooptions.IOStreams
	Input   InputFlags
	// node is the node the inputs were read for, once they are.
	node string

	allNamespaces bool
	apply         bool
	planFile      string
	undoFile      string
	stateDir      string
	force         bool
	output        string
	// conntrack is a saved conntrack table (offline plans); staleTCP also deletes stale TCP flows.
	conntrack string
	staleTCP  bool

	scope  trace.CheckScope
	format render.Format
}

// NewRepairOptions returns repair's options with their defaults.
func NewRepairOptions(streams genericiooptions.IOStreams, cfg *genericclioptions.ConfigFlags) *RepairOptions {
	return &RepairOptions{config: cfg, streams: streams, output: "table", stateDir: "/var/lib/svctrace"}
}

// NewCmdRepair builds `repair`.
func NewCmdRepair(streams genericiooptions.IOStreams, cfg *genericclioptions.ConfigFlags) *cobra.Command {
	o := NewRepairOptions(streams, cfg)
	cmd := &cobra.Command{
		Use:   "repair [NAMESPACE/]SERVICE",
		Short: "Make a node's dataplane do what the API says now (dry-run unless --apply; on the node, as root)",
		Long: `Compute what kube-proxy would program on this node for the Services in scope, from the API, and
the smallest change from what the node has: rules and chains to add and remove (iptables mode),
real servers to drain, add or re-weight (IPVS mode), per-Service chains, affinity sets and map
and set elements to add, rewrite and delete (nftables mode), UDP conntrack entries of removed endpoints,
and the stale flows check reports (conntrack entries still translated to a backend that is no
longer a serving endpoint: UDP and SCTP; TCP only with --stale-tcp, since deleting a TCP entry
breaks that connection). Use it when kube-proxy has missed updates or is wedged and a node keeps
sending connections to dead pods.

Dry-run is the default: the plan is printed (-o json includes the exact iptables-restore input
per table, the netlink operations, or the nftables objects before and after) and nothing is changed. With --apply, on the node as root:

  1. the touched chains are read again and the run stops if they changed since the plan
     (kube-proxy wrote meanwhile); the iptables backend (legacy or nf_tables) must be clear;
     the input is checked with iptables-restore --test (nftables: the transaction with nft --check)
  2. their current state (and the touched IPVS real servers') is saved, synced to disk, to a
     0600 file in --state-dir; nothing is written unless that succeeded
  3. iptables: one "iptables-restore --noflush --wait" transaction per table, holding the complete
     rule list of every chain it touches; only kube-proxy's service chains are written, never
     KUBE-PROXY-CANARY, KUBE-IPTABLES-HINT or other chains; nfacct matches only where the node's
     own kube-proxy rules have them.
     nftables: one nft transaction per kube-proxy table (ip, ip6), written with knftables as
     kube-proxy writes it; chains it empties are deleted in a second one, as kube-proxy does.
     IPVS: a stale real server goes to weight 0 and is deleted once it has no connections
     (UDP at once); missing ones are added; nothing is flushed
  4. the touched chains and real servers are read back and must be what was planned, and the
     repaired Services are traced against the API; otherwise everything is put back and read
     back again (the rollback runs to its end even after Ctrl-C)
  5. UDP conntrack entries to removed endpoints and the stale flows are deleted (those of that
     service address and backend only, in their zone), each counted before and after: an entry
     left after the deletion is reported (exit 6)

A plan file (--plan) is data: it is validated, shown as exactly the lines it writes, checked
against this node's name and current chains, and verified like any other apply. A state file
(--undo) is data too: it names no command, only kube-proxy's chains in nat and filter, or its
per-Service objects in the kube-proxy nftables tables.

kube-proxy owns these rules: its next sync rewrites them from the API, and with the same API it
writes the same. In nftables mode repair writes kube-proxy's ip and ip6 kube-proxy tables the way
kube-proxy does (sigs.k8s.io/knftables, one nft transaction per family, checked first with nft
--check): per-Service chains, affinity sets and the elements of the shared sets and maps; the
base chains and kube-proxy's own dispatch chains are left alone. Repairing one SERVICE there reads
only what concerns it: its chains, the maps that name their Services and a few keys, over netlink,
and from the API that Service, its EndpointSlices, the Node and the pods on it (a fraction of a
second on a node with 10,000 Services, where the whole ruleset takes seconds); -A reads everything.

With -A on the node, what another kube-proxy mode left (check's ModeLeftover) is removed too, once
kube-proxy has said which mode it runs in (or --mode does): iptables KUBE-* chains with the
built-in chains' jumps to them, the other mode's kube-proxy nftables table, or IPVS mode's state
(kube-proxy's virtual servers, never another user's: nothing is flushed; the kube-ipvs0 device;
its ipsets). All of it is saved first and put back by --undo.

Exit codes: 0 nothing to repair, repaired and verified, or undone; 1 a dry run found something to
repair; 2 usage or refusal: nothing was written; 3 could not read the API or the node (nothing
was written); 4 the result was not what was planned
(or a write failed) and it was rolled back, read back as before; 5 ROLLBACK FAILED: the node may
hold part of the change, the message names the state file and the command that restores it;
6 partial: repaired and verified but some conntrack entries could not be deleted, or an undo put
back only part of the state.`,
		Example: fmt.Sprintf(`  # On a node, as root: what would change for one Service, then do it
  sudo kubectl-svctrace repair default/web
  sudo kubectl-svctrace repair default/web --apply

  # Every Service this node programs; review the plan, then apply exactly that plan
  sudo kubectl-svctrace repair -A -o json > plan.json
  sudo kubectl-svctrace repair --plan plan.json --apply

  # Put the node back as it was before a repair
  sudo kubectl-svctrace repair --undo /var/lib/svctrace/repair-node1-20261122T101500Z.json

  # Plan from saved dumps (no node needed)
  %[1]s repair -A --dataplane node1.iptables --objects objects.yaml --node node1`, commandName()),
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageErrorf("repair takes at most one SERVICE")
			}
			return nil
		},
		RunE: runOptions(o),
	}
	o.Input.AddFlags(cmd)
	fl := cmd.Flags()
	fl.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "repair the Services of every namespace (and remove rules of Services the API no longer has)")
	fl.BoolVar(&o.apply, "apply", false, "change the node (default: only show the plan)")
	fl.StringVar(&o.planFile, "plan", "", "use this plan (the -o json of an earlier dry run) instead of computing one")
	fl.StringVar(&o.undoFile, "undo", "", "put back the state saved by an earlier --apply (the file it named)")
	fl.StringVar(&o.stateDir, "state-dir", o.stateDir, "where --apply saves the state it replaces")
	fl.BoolVar(&o.force, "force", false, "with --undo: undo even if the chains changed since the repair (kube-proxy synced them)")
	fl.StringVarP(&o.output, "output", "o", o.output, "output format: table, wide, json, yaml, jsonpath=TEMPLATE, go-template=TEMPLATE (as kubectl)")
	fl.StringVar(&o.conntrack, "conntrack", "", "with offline input: the node's `conntrack -L -o extended` output, to plan the deletion of stale flows")
	fl.BoolVar(&o.staleTCP, "stale-tcp", false, "also delete stale TCP flows (their connections break; by default only UDP and SCTP ones go)")
	return cmd
}

// Complete turns flags into typed values.
func (o *RepairOptions) Complete(args []string) error {
	var err error
	if o.output == "table" {
		o.format = render.Human
	} else if o.format, err = render.ParseFormat(o.output, "table"); err != nil {
		return usageErrorf("--output: %v", err)
	}
	if o.scope, err = serviceScope(o.config, &o.Input, o.allNamespaces, args); err != nil {
		return err
	}
	if o.scope.Name != "" {
		// One Service: in nftables mode, on the node, only its objects are read (planDataplane).
		o.Input.Scoped, o.Input.OneService = true, &o.scope
	}
	return nil
}

// Validate checks flag combinations.
func (o *RepairOptions) Validate() error {
	if err := o.Input.Validate(); err != nil {
		return err
	}
	if o.planFile != "" && o.undoFile != "" {
		return usageErrorf("--plan and --undo do not go together")
	}
	if o.force && o.undoFile == "" {
		return usageErrorf("--force is for --undo")
	}
	writes := o.apply || o.undoFile != ""
	if o.conntrack != "" && !o.Input.Offline() {
		return usageErrorf("--conntrack goes with offline input (--dataplane or --snapshot); live, the node's own table is read")
	}
	if (o.conntrack != "" || o.staleTCP) && (o.planFile != "" || o.undoFile != "") {
		return usageErrorf("--conntrack and --stale-tcp shape a new plan: not with --plan or --undo")
	}
	if writes && o.Input.Offline() {
		return usageErrorf("offline input (--dataplane, --snapshot, --demo) can only plan: --apply and --undo change the live node")
	}
	if writes && o.Input.remote() {
		return usageErrorf("--apply and --undo run on the node itself (sudo kubectl-svctrace repair ... --apply): svctrace does not write through the API server")
	}
	if writes && os.Geteuid() != 0 {
		return &ExitError{Code: ExitUsage, Err: errors.New("changing the node's dataplane needs root: run it on the node with sudo")}
	}
	return nil
}

// Run plans, and applies or undoes.
func (o *RepairOptions) Run(ctx context.Context) error {
	if o.undoFile != "" {
		return o.undo(ctx)
	}
	var plan *trace.RepairPlan
	var backend string
	var err error
	opts := render.Options{Format: o.format, Color: render.ColorFor(o.streams.Out), Width: render.WidthFor(o.streams.Out, o.format)}
	if o.planFile != "" {
		if plan, err = loadPlan(o.planFile); err != nil {
			return err
		}
		// A plan file is shown as exactly what will be written, not as its own description.
		if err := render.RepairInput(o.streams.Out, plan, nftwrite.Script, opts); err != nil {
			return err
		}
	} else {
		if o.apply {
			// The iptables backend, unless the node is in nftables mode (as kube-proxy, --mode
			// or its table says).
			m := o.Input.Mode
			if m == "" {
				m = dataplane.KubeProxyMode(ctx)
			}
			if m == "iptables" || m == "ipvs" || m == "" && !dataplane.HasNftKubeProxy(ctx, noderun.Local{}) {
				if backend, err = liveBackend(ctx); err != nil {
					return err
				}
			}
		}
		ctx2, in, stop, err := o.Input.start(ctx, o.config, o.streams)
		if err != nil {
			return err
		}
		defer stop()
		ctx = ctx2
		o.node = in.Node.Name
		if plan, err = o.plan(ctx, in); err != nil {
			return err
		}
		if err := render.Repair(o.streams.Out, plan, opts); err != nil {
			return err
		}
	}
	if plan.Empty() {
		return nil
	}
	if !o.apply {
		fmt.Fprintln(o.streams.ErrOut, "dry run: nothing was changed; run it again with --apply, on the node as root, to make these changes")
		return errFindings
	}
	if o.planFile != "" && len(plan.IPTables) > 0 {
		if backend, err = liveBackend(ctx); err != nil {
			return err
		}
	}
	return o.report(o.engine().Apply(ctx, plan, o.nodeName(), backend))
}

// plan computes the plan for the inputs' dataplane.
func (o *RepairOptions) plan(ctx context.Context, in *Inputs) (*trace.RepairPlan, error) {
	if in.Cluster == nil {
		return nil, in.needAPI("repair")
	}
	dp, err := o.planDataplane(ctx, in)
	if err != nil {
		return nil, err
	}
	if o.scope.Name != "" && in.Cluster.Service(o.scope.Namespace, o.scope.Name) == nil {
		// A deleted Service is repaired by removing its rules: allowed when the dataplane has it.
		if _, ok := dp.(trace.Lister); !ok {
			return nil, usageErrorf("service %s/%s not found", o.scope.Namespace, o.scope.Name)
		}
	}
	note := ""
	if _, isIPTables := in.Dataplane.(*iptables.Dataplane); isIPTables {
		var version kpVersion
		version, note = kubeProxyVersion(in.Cluster, in.Node.Name)
		if version.major == 1 && version.minor > 0 && version.minor < 24 {
			return nil, usageErrorf("kube-proxy on %s is %s: repair writes the rules of kube-proxy 1.30-1.36 and would fight an older layout; restart or upgrade kube-proxy instead", in.Node.Name, version.text)
		}
	}
	plan, err := kubeproxy.Plan(ctx, dp, in.Cluster, in.Node, o.scope)
	if err != nil {
		return nil, err
	}
	flows, err := in.staleFlows(ctx, o.conntrack, o.scope, o.streams.ErrOut)
	if err != nil {
		return nil, err
	}
	plan.AddStaleFlows(flows, o.staleTCP)
	o.addLeftovers(plan, in)
	if note != "" && !plan.Empty() {
		plan.Notes = append(plan.Notes, note)
	}
	return plan, nil
}

// planDataplane is the dataplane a plan is made on. A live nftables read scoped to one Service
// (trace's kind, read walk by walk) becomes kube-proxy's tables as a plan of that Service needs
// them, read over netlink (nftwrite.PlanTables: its chains, the maps that name their Services, a
// few keys); when that read fails, the whole ruleset is read with nft.
func (o *RepairOptions) planDataplane(ctx context.Context, in *Inputs) (trace.Dataplane, error) {
	if _, ok := in.Dataplane.(*nftjson.Scoped); !ok {
		return in.Dataplane, nil
	}
	start := time.Now()
	tables, err := nftwrite.PlanTables(in.Cluster, in.Node, o.scope)
	if err == nil {
		chains := 0
		for _, t := range tables {
			chains += len(t.Chains)
		}
		klog.V(1).Infof("read %d chains of kube-proxy's nftables tables over netlink for the plan, in %s", chains, time.Since(start).Round(time.Millisecond))
		if o.Input.Mode == "" {
			o.Input.Mode = "nftables" // the verification's read needs no detection again
		}
		return &nftables.Dataplane{Rules: &nftables.Ruleset{Tables: tables}}, nil
	}
	fmt.Fprintf(o.streams.ErrOut, "warning: reading only %s/%s's objects over netlink failed (%v); reading the whole ruleset with nft\n", o.scope.Namespace, o.scope.Name, err)
	rs, _, err := nftjson.ReadLive(ctx, in.Runner)
	if err != nil {
		return nil, readFailure(err)
	}
	return &nftables.Dataplane{Rules: rs}, nil
}

// addLeftovers plans the removal of what other kube-proxy modes left on the node: with -A only
// (it is the node's, not a Service's), and only when kube-proxy said which mode it runs in (or
// --mode did), so that the current mode's state is never taken for a leftover.
func (o *RepairOptions) addLeftovers(plan *trace.RepairPlan, in *Inputs) {
	if len(in.Leftovers) == 0 {
		return
	}
	var where []string
	for _, l := range in.Leftovers {
		where = append(where, l.Where())
	}
	switch {
	case o.scope.Namespace != "" || o.scope.Name != "":
		plan.Notes = append(plan.Notes, fmt.Sprintf("this node has kube-proxy state of another mode (%s): repair -A removes it", strings.Join(where, ", ")))
		return
	case in.ModeFrom == "detected":
		plan.Notes = append(plan.Notes, fmt.Sprintf("this node has kube-proxy state of two modes (%s besides %s), and kube-proxy did not say which it runs in (its /proxyMode on 127.0.0.1:10249 did not answer): not removed; pass --mode MODE to name the current one", strings.Join(where, ", "), plan.Mode))
		return
	}
	for _, l := range in.Leftovers {
		if !l.Removable() {
			plan.Notes = append(plan.Notes, fmt.Sprintf("%s is left from IPVS mode: it was seen through a pod; repair run on the node itself removes it", l.Where()))
			continue
		}
		plan.Leftovers = append(plan.Leftovers, l)
		svc := "leftovers of " + l.Mode + " mode"
		switch {
		case !l.IsIPTables() && l.Mode == "nftables":
			plan.Changes = append(plan.Changes, trace.RepairChange{Service: svc, Op: "delete-table", Table: l.Where(), Detail: fmt.Sprintf("delete table %s (%d rules)", l.Where(), strings.Count(l.NftJSON, `"rule":`))})
			continue
		case !l.IsIPTables():
			for _, what := range ipvsRemoval(l.IPVS) {
				plan.Changes = append(plan.Changes, trace.RepairChange{Service: svc, Op: what[0], Table: l.Where(), Detail: what[1]})
			}
			continue
		}
		for _, j := range l.Jumps {
			plan.Changes = append(plan.Changes, trace.RepairChange{Service: svc, Op: "delete-rule", Table: l.Where(), Chain: j.Chain, Detail: j.Rule})
		}
		for _, c := range l.Chains {
			plan.Changes = append(plan.Changes, trace.RepairChange{Service: svc, Op: "delete-chain", Table: l.Where(), Chain: c.Chain, Detail: fmt.Sprintf("delete chain %s (%d rules)", c.Chain, len(c.Rules))})
		}
	}
}

// ipvsRemoval lists what removing IPVS state does, as (op, detail) pairs in the order it is
// done: the virtual servers, the device, the ipsets.
func ipvsRemoval(s *trace.IPVSState) [][2]string {
	var out [][2]string
	for _, v := range s.VirtualServers {
		out = append(out, [2]string{"delete-virtual-server", fmt.Sprintf("delete virtual server %s %s (%d real servers)", v.Protocol, v.Address, len(v.Reals))})
	}
	if s.Device != "" {
		out = append(out, [2]string{"delete-device", fmt.Sprintf("delete device %s (%d addresses)", s.Device, len(s.Addresses))})
	}
	for _, set := range s.IPSets {
		out = append(out, [2]string{"destroy-ipset", fmt.Sprintf("destroy ipset %s (%d members)", set.Name, len(set.Members))})
	}
	return out
}

type kpVersion struct {
	major, minor int
	text         string
}

// kubeProxyVersion reads the version of the node's kube-proxy from its pod's image tag, and says
// how far the written rules are verified for it.
func kubeProxyVersion(cl *trace.Cluster, node string) (kpVersion, string) {
	for _, p := range cl.Pods {
		if p.Spec.NodeName != node || p.Labels["k8s-app"] != "kube-proxy" || len(p.Spec.Containers) == 0 {
			continue
		}
		img := p.Spec.Containers[0].Image
		i := strings.LastIndex(img, ":")
		if i < 0 {
			break
		}
		v := kpVersion{text: img[i+1:]}
		if _, err := fmt.Sscanf(strings.TrimPrefix(v.text, "v"), "%d.%d", &v.major, &v.minor); err != nil {
			break
		}
		if v.major == 1 && v.minor >= 30 && v.minor <= 36 {
			return v, "" // the rule text is verified against recorded 1.30, 1.33 and 1.36 nodes
		}
		return v, fmt.Sprintf("kube-proxy here is %s; the rules written are those of kube-proxy 1.30-1.36 (verified against recorded v1.30.14, v1.33.13 and v1.36.3 nodes): if this version writes any differently, its next sync rewrites them (the result is checked either way)", v.text)
	}
	return kpVersion{}, "kube-proxy's version is not known (no kube-proxy pod on this node in the API): the rules written are those of kube-proxy 1.30-1.36; the result is checked either way"
}

// repairPause is the test seam between repair's steps; only a binary built with the
// svctrace_testhooks tag sets it (repair_testhooks.go), the shipped one never does.
var repairPause func(step string)

// engine is the repair engine on this node, verifying with a fresh read of the node and the API.
func (o *RepairOptions) engine() *repair.Engine {
	return &repair.Engine{Node: repair.Local{}, StateDir: o.stateDir, Log: o.streams.ErrOut, Pause: repairPause,
		Check: func(ctx context.Context, plan *trace.RepairPlan, deferred []string) ([]string, error) {
			return o.verifyTrace(ctx, plan, deferred)
		}}
}

// report prints a run's outcome and turns it into the exit code.
func (o *RepairOptions) report(res repair.Result) error {
	for _, n := range res.Notes {
		fmt.Fprintln(o.streams.ErrOut, n)
	}
	switch res.Outcome {
	case repair.NothingToDo, repair.Applied, repair.Undone:
		fmt.Fprintln(o.streams.ErrOut, res.Message)
		if res.Outcome == repair.Applied && strings.HasPrefix(res.Message, "repaired ") {
			fmt.Fprintln(o.streams.ErrOut, "kube-proxy owns these rules: on its next sync it writes them from the API again.")
		}
		return nil
	}
	return &ExitError{Code: res.Outcome.ExitCode(), Err: errors.New(res.Message)}
}

// nodeName is the name of this node: the one the inputs were read for, --node, or the hostname
// (as kube-proxy defaults it).
func (o *RepairOptions) nodeName() string {
	if o.node != "" {
		return o.node
	}
	if o.Input.Node != "" {
		return o.Input.Node
	}
	h, _ := os.Hostname()
	return strings.ToLower(strings.TrimSpace(h)) // as kube-proxy and Resolve name the node
}

// liveBackend is the iptables family kube-proxy writes to on this node; an unclear one is refused
// (it would be read, planned against and written at random).
func liveBackend(ctx context.Context) (string, error) {
	b, err := xtables.DetectBackend(ctx, noderun.Local{}, false)
	if err != nil {
		return "", err
	}
	if b.Ambiguous {
		return "", &ExitError{Code: ExitUsage, Err: fmt.Errorf("refusing to write: both iptables backends (legacy and nf_tables), or neither, hold kube-proxy's rules on this node, so which one kube-proxy uses is not clear (%s is this node's default); nothing was written", b.Mode)}
	}
	return repair.BackendOf(b), nil
}

// verifyTrace reads the node and the API again and checks the repaired Service ports: what is
// still wrong with them. A real server left at weight 0 until its connections end is still
// reported stale by a trace; that is expected when a deletion was deferred.
func (o *RepairOptions) verifyTrace(ctx context.Context, plan *trace.RepairPlan, deferred []string) ([]string, error) {
	in, err := o.Input.Resolve(ctx, o.config, o.streams)
	if err != nil {
		return nil, fmt.Errorf("re-reading the node: %w", err)
	}
	if in.Cluster == nil {
		return nil, repair.ErrNotTraced
	}
	scope := trace.CheckScope{} // every Service: a plan file may repair any
	if o.scope.Name != "" {
		scope = o.scope // the one Service repaired (and read: OneService)
	}
	res, err := trace.Check(ctx, in.Dataplane, in.Cluster, in.Node, scope)
	if err != nil {
		return nil, err
	}
	repaired := map[string]bool{}
	for _, n := range plan.Services {
		repaired[n] = true
	}
	var problems []string
	for _, f := range res.Findings {
		switch f.Kind {
		case trace.StaleEndpoint, trace.MissingEndpoint, trace.StaleService, trace.MissingService, trace.WrongShare:
		default:
			continue
		}
		if repaired[f.Service] && !(f.Kind == trace.StaleEndpoint && len(deferred) > 0) {
			problems = append(problems, fmt.Sprintf("%s %s", f.Kind, f.Service))
		}
	}
	return problems, nil
}

// undo puts back the state an earlier --apply saved.
func (o *RepairOptions) undo(ctx context.Context) error {
	data, err := readBounded(o.undoFile)
	if err != nil {
		return fmt.Errorf("cannot read --undo: %w", err)
	}
	s, err := repair.DecodeState(data)
	if err != nil {
		return usageErrorf("--undo %s: %v", o.undoFile, err)
	}
	return o.report(o.engine().Undo(ctx, s, o.undoFile, o.nodeName(), o.force))
}

// loadPlan reads and validates a --plan file.
func loadPlan(path string) (*trace.RepairPlan, error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read --plan: %w", err)
	}
	p, err := repair.DecodePlan(data)
	if err != nil {
		return nil, usageErrorf("--plan %s: %v", path, err)
	}
	return p, nil
}

// readBounded reads a plan or a state file: a regular file of at most 256 MiB.
func readBounded(path string) ([]byte, error) { return dataplane.ReadFile(path, 256<<20) }
