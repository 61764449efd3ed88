package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/svctrace/svctrace/dataplane/conntrack"
	dpexec "github.com/svctrace/svctrace/dataplane/exec"
	ipread "github.com/svctrace/svctrace/dataplane/iptables"
	ipvsread "github.com/svctrace/svctrace/dataplane/ipvs"
	nftread "github.com/svctrace/svctrace/dataplane/nftables"
	"github.com/svctrace/svctrace/render"
	"github.com/svctrace/svctrace/trace"
	xt "github.com/svctrace/svctrace/trace/iptables"
	nft "github.com/svctrace/svctrace/trace/nftables"
)

// RepairOptions holds everything `repair` needs.
type RepairOptions struct {
	config  *genericclioptions.ConfigFlags
	streams genericiooptions.IOStreams
	Input   InputFlags

	allNamespaces bool
	apply         bool
	planFile      string
	undoFile      string
	stateDir      string
	force         bool
	output        string

	scope  trace.CheckScope
	format render.Format
}

// NewCmdRepair builds `repair`.
func NewCmdRepair(streams genericiooptions.IOStreams, cfg *genericclioptions.ConfigFlags) *cobra.Command {
	o := &RepairOptions{config: cfg, streams: streams, output: "table", stateDir: "/var/lib/svctrace"}
	cmd := &cobra.Command{
		Use:   "repair [NAMESPACE/]SERVICE",
		Short: "Make a node's dataplane do what the API says now (dry-run unless --apply; on the node, as root)",
		Long: `Compute what kube-proxy would program on this node for the Services in scope, from the API, and
the smallest change from what the node has: rules and chains to add and remove (iptables mode),
real servers to drain, add or re-weight (IPVS mode), UDP conntrack entries of removed endpoints.
Use it when kube-proxy has missed updates or is wedged and a node keeps sending connections to
dead pods.

Dry-run is the default: the plan is printed (-o json includes the exact iptables-restore input
per table, or the netlink operations) and nothing is changed. With --apply, on the node as root:

  1. the touched chains are read again and the run stops if they changed since the plan
     (kube-proxy wrote meanwhile); the iptables backend (legacy or nf_tables) must be clear
  2. their current state is saved to a file in --state-dir
  3. iptables: one "iptables-restore --noflush --wait" transaction per table, holding the complete
     rule list of every chain it touches (checked first with --test); only kube-proxy's service
     chains are written, never KUBE-PROXY-CANARY, KUBE-IPTABLES-HINT or other chains.
     IPVS: a stale real server goes to weight 0 and is deleted once it has no connections
     (UDP at once); missing ones are added; nothing is flushed
  4. the node is read again and the repaired Services traced; if the result is not what was
     planned, everything is rolled back
  5. UDP conntrack entries to removed endpoints are deleted (those of that service port only)

kube-proxy owns these rules: its next sync rewrites them from the API, and with the same API it
writes the same. In nftables mode kube-proxy replaces its whole table on every sync, so repair
reports what is wrong and refuses to write.

Exit codes: 0 nothing to repair (or repaired), 1 a dry run found something to repair, or
verification failed and the change was rolled back, 2 usage, access or refusal.`,
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
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(args); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			return o.Run(ctx)
		},
	}
	o.Input.AddFlags(cmd)
	fl := cmd.Flags()
	fl.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "repair the Services of every namespace (and remove rules of Services the API no longer has)")
	fl.BoolVar(&o.apply, "apply", false, "change the node (default: only show the plan)")
	fl.StringVar(&o.planFile, "plan", "", "use this plan (the -o json of an earlier dry run) instead of computing one")
	fl.StringVar(&o.undoFile, "undo", "", "put back the state saved by an earlier --apply (the file it named)")
	fl.StringVar(&o.stateDir, "state-dir", o.stateDir, "where --apply saves the state it replaces")
	fl.BoolVar(&o.force, "force", false, "with --undo: undo even if the chains changed since the repair (kube-proxy synced them)")
	fl.StringVarP(&o.output, "output", "o", o.output, "output format: table, json or yaml")
	return cmd
}

// Complete turns flags into typed values.
func (o *RepairOptions) Complete(args []string) error {
	var err error
	if o.output == "table" {
		o.format = render.Human
	} else if o.format, err = render.ParseFormat(o.output); err != nil {
		return usageErrorf("--output: %v (repair also takes table)", err)
	}
	o.scope, err = serviceScope(o.config, &o.Input, o.allNamespaces, args)
	return err
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
	var err error
	if o.planFile != "" {
		if plan, err = loadPlan(o.planFile); err != nil {
			return err
		}
	} else {
		if o.apply {
			if err := refuseAmbiguousBackend(ctx); err != nil {
				return err
			}
		}
		ctx2, in, stop, err := o.Input.start(ctx, o.config, o.streams)
		if err != nil {
			return err
		}
		defer stop()
		ctx = ctx2
		if plan, err = o.plan(in); err != nil {
			return err
		}
	}
	if err := render.Repair(o.streams.Out, plan, render.Options{Format: o.format, Color: render.ColorFor(o.streams.Out)}); err != nil {
		return err
	}
	if plan.Mode == "nftables" {
		// Never written; its notes are what check found wrong.
		if o.apply {
			return &ExitError{Code: ExitUsage, Err: errors.New("refusing to write nftables mode's rules: kube-proxy replaces its whole nftables table on every sync, so a change made beside it would race it; restart kube-proxy on this node instead")}
		}
		if len(plan.Notes) > 0 {
			return errFindings
		}
		return nil
	}
	if !o.apply {
		if plan.Empty() {
			return nil
		}
		fmt.Fprintln(o.streams.ErrOut, "dry run: nothing was changed; run it again with --apply, on the node as root, to make these changes")
		return errFindings
	}
	if plan.Empty() {
		return nil
	}
	return o.applyPlan(ctx, plan)
}

// ambiguous refuses to write when it is not clear which iptables backend kube-proxy uses.
func ambiguous(b ipread.Backend) error {
	if !b.Ambiguous {
		return nil
	}
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf("refusing to write: both iptables backends (legacy and nf_tables), or neither, hold kube-proxy's rules on this node, so which one kube-proxy uses is not clear (%s is this node's default)", b.Mode)}
}

// refuseAmbiguousBackend checks the backend before a live plan meant for --apply is computed (an
// unclear backend would be read, and planned against, at random). nftables mode has nothing to
// detect.
func refuseAmbiguousBackend(ctx context.Context) error {
	if nftread.HasKubeProxyTable(ctx, dpexec.Local{}) {
		return nil
	}
	b, err := ipread.DetectBackend(ctx, dpexec.Local{}, false)
	if err != nil {
		return err
	}
	return ambiguous(b)
}

// plan computes the plan for the inputs' dataplane.
func (o *RepairOptions) plan(in *Inputs) (*trace.RepairPlan, error) {
	if in.Cluster == nil {
		return nil, usageErrorf("repair computes the dataplane from the API: reach the API server, or pass --objects FILE")
	}
	if o.scope.Name != "" && in.Cluster.Service(o.scope.Namespace, o.scope.Name) == nil {
		// A deleted Service is repaired by removing its rules: allowed when the dataplane has it.
		if _, ok := in.Dataplane.(trace.Lister); !ok {
			return nil, usageErrorf("service %s/%s not found", o.scope.Namespace, o.scope.Name)
		}
	}
	switch dp := in.Dataplane.(type) {
	case *nft.Dataplane:
		plan := &trace.RepairPlan{APIVersion: trace.APIVersion, Kind: "RepairPlan", Node: in.Node.Name, Mode: dp.Mode(), Changes: []trace.RepairChange{}, Services: []string{}}
		res, err := trace.Check(dp, in.Cluster, in.Node, o.scope)
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
	case *xt.Dataplane:
		version, note := kubeProxyVersion(in.Cluster, in.Node.Name)
		if version.major == 1 && version.minor > 0 && version.minor < 24 {
			return nil, usageErrorf("kube-proxy on %s is %s: repair writes the rules of kube-proxy 1.30-1.36 and would fight an older layout; restart or upgrade kube-proxy instead", in.Node.Name, version.text)
		}
		var plan *trace.RepairPlan
		var err error
		if dp.IPVS != nil {
			plan, err = xt.PlanIPVSRepair(dp, in.Cluster, in.Node, o.scope)
		} else {
			plan, err = xt.PlanRepair(dp, in.Cluster, in.Node, o.scope)
		}
		if err == nil && note != "" && !plan.Empty() {
			plan.Notes = append(plan.Notes, note)
		}
		return plan, err
	}
	return nil, fmt.Errorf("repair does not know this dataplane (%s)", in.Dataplane.Mode())
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

func loadPlan(path string) (*trace.RepairPlan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read --plan: %w", err)
	}
	var p trace.RepairPlan
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, usageErrorf("--plan %s is not a repair plan (the -o json of a dry run): %v", path, err)
	}
	if p.Kind != "RepairPlan" || p.APIVersion != trace.APIVersion {
		return nil, usageErrorf("--plan %s is a %q %q, not a %s RepairPlan", path, p.APIVersion, p.Kind, trace.APIVersion)
	}
	for _, t := range p.IPTables {
		if err := ipread.ValidateInput(t); err != nil {
			return nil, usageErrorf("--plan %s: %v", path, err)
		}
	}
	return &p, nil
}

// repairState is what --apply saves before it writes, and --undo reads.
type repairState struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Time       time.Time         `json:"time"`
	Status     string            `json:"status"`
	Backend    ipread.Backend    `json:"backend"`
	Plan       *trace.RepairPlan `json:"plan"`
	// IPVSUndo reverses the IPVS operations that were done, in order.
	IPVSUndo []trace.IPVSOp `json:"ipvsUndo,omitempty"`
	Deferred []string       `json:"deferred,omitempty"`
}

func (s *repairState) save(path string) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// pause is a test hook: SVCTRACE_REPAIR_PAUSE=STEP stops before that step ("write", "verify")
// long enough for a test to kill the process there.
func pause(streams genericiooptions.IOStreams, step string) {
	if os.Getenv("SVCTRACE_REPAIR_PAUSE") == step {
		fmt.Fprintf(streams.ErrOut, "paused before %s\n", step)
		time.Sleep(time.Minute)
	}
}

// touched lists each table's touched chains.
func touched(p *trace.RepairPlan) map[string][]string {
	out := map[string][]string{}
	for _, t := range p.IPTables {
		for _, c := range t.Before {
			out[t.Table] = append(out[t.Table], c.Chain)
		}
	}
	return out
}

// applyPlan writes the plan, verifies it and rolls it back if the result is not the plan's.
func (o *RepairOptions) applyPlan(ctx context.Context, plan *trace.RepairPlan) error {
	local := dpexec.Local{}
	state := &repairState{APIVersion: trace.APIVersion, Kind: "RepairState", Time: time.Now().UTC(), Status: "writing", Plan: plan}
	if len(plan.IPTables) > 0 {
		b, err := ipread.DetectBackend(ctx, local, false)
		if err != nil {
			return err
		}
		if err := ambiguous(b); err != nil {
			return err
		}
		state.Backend = b
		now, err := ipread.ReadChains(ctx, local, b, touched(plan))
		if err != nil {
			return err
		}
		if diff := ipread.Differences(now, plan.IPTables, false); len(diff) > 0 {
			return &ExitError{Code: ExitUsage, Err: fmt.Errorf("the node changed since the plan was made (is kube-proxy running?): %s; nothing was written", strings.Join(diff, "; "))}
		}
		var all strings.Builder
		for _, t := range plan.IPTables {
			all.WriteString(t.Input)
		}
		if _, err := local.RunInput([]byte(all.String()), b.Restore(), "--test", "--noflush", "--wait", "10"); err != nil {
			return &ExitError{Code: ExitUsage, Err: fmt.Errorf("%s --test did not accept the plan's input, so nothing was written: %w", b.Restore(), err)}
		}
	}
	var ipvsBefore map[string]int
	if len(plan.IPVS) > 0 {
		tab, err := ipvsread.ReadNetlink()
		if err != nil {
			return err
		}
		ipvsBefore = map[string]int{}
		for _, vs := range tab.Services {
			for _, rs := range vs.Reals {
				ipvsBefore[vs.Protocol+" "+vs.Addr.String()+" "+rs.Addr.String()] = rs.Weight
			}
		}
	}
	if err := os.MkdirAll(o.stateDir, 0o700); err != nil {
		return fmt.Errorf("cannot create --state-dir: %w", err)
	}
	path := filepath.Join(o.stateDir, fmt.Sprintf("repair-%s-%s.json", plan.Node, state.Time.Format("20060102T150405.000Z")))
	if err := state.save(path); err != nil {
		return fmt.Errorf("cannot save the current state, nothing was written: %w", err)
	}
	fmt.Fprintf(o.streams.ErrOut, "saved the state being replaced to %s\n", path)

	pause(o.streams, "write")
	if len(plan.IPTables) > 0 {
		var all strings.Builder
		for _, t := range plan.IPTables {
			all.WriteString(t.Input)
		}
		if err := ipread.Restore(local, state.Backend, all.String()); err != nil {
			// Each table commits on its own: put back whatever part went in.
			if rerr := o.rollbackTables(ctx, state); rerr != nil {
				return fmt.Errorf("writing failed (%v) and so did putting the old rules back (%v): restore them with: kubectl svctrace repair --undo %s --force", err, rerr, path)
			}
			state.Status = "failed"
			_ = state.save(path)
			return fmt.Errorf("writing failed, the old rules are in place: %w", err)
		}
	}
	var deferred []string
	if len(plan.IPVS) > 0 {
		results, err := ipvsread.Apply(plan.IPVS)
		for _, r := range results {
			if r.Done {
				before, had := ipvsBefore[r.Op.Protocol+" "+r.Op.Virtual+" "+r.Op.Real]
				if !had {
					before = -1
				}
				if u, ok := r.Op.Undo(before); ok {
					state.IPVSUndo = append([]trace.IPVSOp{u}, state.IPVSUndo...)
				}
			}
			if r.Deferred != "" {
				deferred = append(deferred, r.Deferred)
			}
		}
		state.Deferred = deferred
		_ = state.save(path)
		if err != nil {
			o.rollback(ctx, state)
			return fmt.Errorf("IPVS: %w; what was done is undone", err)
		}
	}

	pause(o.streams, "verify")
	if problems := o.verify(ctx, state, deferred); len(problems) > 0 {
		o.rollback(ctx, state)
		state.Status = "rolled back"
		_ = state.save(path)
		return &ExitError{Code: ExitFindings, Err: fmt.Errorf("the repaired dataplane is not what was planned (%s): rolled back", strings.Join(problems, "; "))}
	}
	for _, f := range plan.Conntrack {
		if err := conntrack.Delete(ctx, local, f); err != nil {
			fmt.Fprintf(o.streams.ErrOut, "warning: %v\n", err)
		}
	}
	state.Status = "applied"
	if err := state.save(path); err != nil {
		fmt.Fprintf(o.streams.ErrOut, "warning: could not update %s: %v\n", path, err)
	}
	fmt.Fprintf(o.streams.ErrOut, "repaired %d service port(s) on %s and verified by tracing them: %s\n", len(plan.Services), plan.Node, strings.Join(plan.Services, ", "))
	for _, d := range deferred {
		fmt.Fprintf(o.streams.ErrOut, "note: %s\n", d)
	}
	fmt.Fprintf(o.streams.ErrOut, "undo with: kubectl svctrace repair --undo %s\n", path)
	fmt.Fprintln(o.streams.ErrOut, "kube-proxy owns these rules: on its next sync it writes them from the API again.")
	return nil
}

// verify re-reads the node: the touched chains must hold what the plan wrote, IPVS must have the
// planned real servers, and a check of the repaired Services must find them right.
func (o *RepairOptions) verify(ctx context.Context, s *repairState, deferred []string) []string {
	var problems []string
	local := dpexec.Local{}
	if len(s.Plan.IPTables) > 0 {
		now, err := ipread.ReadChains(ctx, local, s.Backend, touched(s.Plan))
		if err != nil {
			return []string{err.Error()}
		}
		problems = append(problems, ipread.Differences(now, s.Plan.IPTables, true)...)
	}
	if len(problems) > 0 {
		return problems
	}
	in, err := o.Input.Resolve(ctx, o.config, o.streams)
	if err != nil {
		return []string{"re-reading the node: " + err.Error()}
	}
	if o.planFile != "" || in.Cluster == nil {
		return nil // an applied plan file is verified against its own text only
	}
	res, err := trace.Check(in.Dataplane, in.Cluster, in.Node, o.scope)
	if err != nil {
		return []string{err.Error()}
	}
	repaired := map[string]bool{}
	for _, n := range s.Plan.Services {
		repaired[n] = true
	}
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
	return problems
}

// rollback puts back what the state's plan changed.
func (o *RepairOptions) rollback(ctx context.Context, s *repairState) {
	if len(s.Plan.IPTables) > 0 {
		if err := o.rollbackTables(ctx, s); err != nil {
			fmt.Fprintf(o.streams.ErrOut, "error: putting the old rules back failed: %v\n", err)
		}
	}
	if len(s.IPVSUndo) > 0 {
		if _, err := ipvsread.Apply(s.IPVSUndo); err != nil {
			fmt.Fprintf(o.streams.ErrOut, "error: undoing the IPVS changes failed: %v\n", err)
		}
	}
}

func (o *RepairOptions) rollbackTables(ctx context.Context, s *repairState) error {
	local := dpexec.Local{}
	now, err := ipread.ReadChains(ctx, local, s.Backend, touched(s.Plan))
	if err != nil {
		return err
	}
	if len(ipread.Differences(now, s.Plan.IPTables, false)) == 0 {
		return nil // nothing went in
	}
	var in strings.Builder
	for _, t := range s.Plan.IPTables {
		in.WriteString(ipread.RollbackInput(t, now[t.Table]))
	}
	if err := ipread.Restore(local, s.Backend, in.String()); err != nil {
		return err
	}
	now, err = ipread.ReadChains(ctx, local, s.Backend, touched(s.Plan))
	if err != nil {
		return err
	}
	if diff := ipread.Differences(now, s.Plan.IPTables, false); len(diff) > 0 {
		return errors.New(strings.Join(diff, "; "))
	}
	return nil
}

// undo puts back the state an earlier --apply saved.
func (o *RepairOptions) undo(ctx context.Context) error {
	data, err := os.ReadFile(o.undoFile)
	if err != nil {
		return fmt.Errorf("cannot read --undo: %w", err)
	}
	var s repairState
	if err := json.Unmarshal(data, &s); err != nil || s.Kind != "RepairState" || s.Plan == nil {
		return usageErrorf("--undo %s is not a state file written by repair --apply", o.undoFile)
	}
	if len(s.Plan.IPTables) > 0 {
		now, err := ipread.ReadChains(ctx, dpexec.Local{}, s.Backend, touched(s.Plan))
		if err != nil {
			return err
		}
		if diff := ipread.Differences(now, s.Plan.IPTables, true); len(diff) > 0 && !o.force {
			return &ExitError{Code: ExitUsage, Err: fmt.Errorf("the chains changed since the repair (kube-proxy synced them?): %s; undoing would overwrite that; add --force to undo anyway", strings.Join(diff, "; "))}
		}
	}
	o.rollback(ctx, &s)
	if len(s.Plan.IPTables) > 0 {
		now, err := ipread.ReadChains(ctx, dpexec.Local{}, s.Backend, touched(s.Plan))
		if err != nil {
			return err
		}
		if diff := ipread.Differences(now, s.Plan.IPTables, false); len(diff) > 0 {
			return fmt.Errorf("undo did not restore every chain: %s", strings.Join(diff, "; "))
		}
	}
	s.Status = "undone"
	if err := s.save(o.undoFile); err != nil {
		fmt.Fprintf(o.streams.ErrOut, "warning: could not update %s: %v\n", o.undoFile, err)
	}
	fmt.Fprintf(o.streams.ErrOut, "restored the state saved in %s (%d service port(s))\n", o.undoFile, len(s.Plan.Services))
	return nil
}
