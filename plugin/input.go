package plugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/svctrace/svctrace/dataplane"
	"github.com/svctrace/svctrace/dataplane/nftjson"
	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/dataplane/snapshot"
	"github.com/svctrace/svctrace/trace"
)

// InputFlags choose where the dataplane and the API objects come from. Every command that reads a
// node shares them, so offline, node-side and API input reach the same engine.
type InputFlags struct {
	Dataplane []string
	Objects   string
	Snapshot  string
	// DemoMode is --demo's mode ("" when not given).
	DemoMode string
	Node     string
	NodeIPs  []string
	// TargetAddr is the address a command is about (trace's target), when it is one: offline
	// without --node, the Node that has it is the node.
	TargetAddr netip.Addr
	NoAPI      bool
	// Mode forces the live node's kube-proxy mode instead of detecting it.
	Mode string
	// Remote reads the node through its kube-proxy pod (exec via the API server).
	Remote bool
	// NodeFromPod says the command finds the node itself (trace --from pod/NS/NAME), so --remote
	// goes without --node.
	NodeFromPod bool
	// Scoped says the command walks a few packets and nothing else (trace): in nftables mode the
	// live read is then only what they touch (dataplane.ReadOptions.Scoped).
	Scoped bool
	// WalksOnly says the command walks a few packets and compares nothing else with the
	// dataplane (trace, not repair): in IPVS mode the live read then has the real servers of
	// only the packets' virtual servers (dataplane.ReadOptions.WalksOnly).
	WalksOnly bool
	// Counters says the command reads the dataplane's own per-backend counters, also where
	// they cost an extra read (dataplane.ReadOptions.Counters): balance.
	Counters bool
	// OneService names the one Service the command is about (repair NAMESPACE/NAME): other
	// modes' leftovers are not looked for (they are the node's, repaired with -A), and when the
	// live read is scoped (nftables mode, on the node), only that Service, its EndpointSlices,
	// the Node and the pods on it are read from the API (fetchService).
	OneService *trace.CheckScope
	// KubeProxyNamespace is where kube-proxy's pods run (default kube-system).
	KubeProxyNamespace string
	// AgentNamespace is where the svctrace agent's pods run (default svctrace-system): a remote
	// scoped read asks the agent's binary on the node for kube-proxy's nftables objects.
	AgentNamespace string
	// Debug is the debug-pod fallback for remote reads.
	Debug DebugPodFlags

	// live is the remote node's runner once found (a kube-proxy pod, or a debug pod that close
	// deletes): later reads in the same command reuse it.
	live    noderun.Runner
	cleanup func()
	// client is the API client of a OneService read, once made.
	client kubernetes.Interface
	// decoded are API objects already decoded for an earlier node of the same input (a set's
	// nodes share one objects file): used instead of decoding them again.
	decoded *trace.Cluster
}

// Close deletes the debug pod, if one was started. Safe to call more than once.
func (f *InputFlags) Close() {
	if f.cleanup != nil {
		f.cleanup()
		f.cleanup = nil
	}
	f.live = nil
}

// nodeRunner finds how to run commands on a remote node: its kube-proxy pod, or, when that is
// not possible and --debug-pod allows it, a debug pod.
func (f *InputFlags) nodeRunner(ctx context.Context, cfg *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams, node string) (noderun.Runner, error) {
	if f.live != nil {
		return f.live, nil
	}
	r, err := kubeProxyPod(ctx, cfg, f.kubeProxyNamespace(), node)
	if err != nil && f.Debug.Enabled && fallsBackToDebugPod(err) {
		fmt.Fprintf(streams.ErrOut, "%v; reading it from a debug pod instead\n", err)
		r, f.cleanup, err = startDebugPod(ctx, cfg, streams, f.Debug, node)
	}
	if err != nil {
		return nil, err
	}
	f.live = r
	return r, nil
}

// kubeProxyNamespace is --kube-proxy-namespace, kube-system when unset.
func (f *InputFlags) kubeProxyNamespace() string {
	if f.KubeProxyNamespace == "" {
		return "kube-system"
	}
	return f.KubeProxyNamespace
}

// AddFlags binds the input flags.
func (f *InputFlags) AddFlags(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.Dataplane, "dataplane", nil, "read the node's dataplane from this dump instead of the live node: iptables-save [-c] output (repeat for the IPv6 one), nft -j list ruleset, or for IPVS also ipset save and ipvsadm -Ln/-Sn or /proc/net/ip_vs; the format is detected")
	fl.StringVar(&f.Objects, "objects", "", "read API objects from this file (kubectl get svc,endpointslices,pods,nodes -A -o yaml) instead of the API server")
	fl.StringVar(&f.Snapshot, "snapshot", "", "read dataplane and objects from a snapshot bundle directory")
	fl.StringVar(&f.DemoMode, "demo", "", "use an embedded demo snapshot, recorded from a real kube-proxy v1.36.3: --demo (iptables mode, node node1), --demo=nftables (node1) or --demo=ipvs (node vm1); --demo nftables works too")
	fl.Lookup("demo").NoOptDefVal = "iptables"
	fl.StringVar(&f.Node, "node", "", "the name of the node the dataplane belongs to: this machine when reading live (default: its hostname), or the one a dump came from (default for a snapshot: its node)")
	fl.StringArrayVar(&f.NodeIPs, "node-ip", nil, "an address of the node, in addition to those in its Node object (repeatable)")
	fl.BoolVar(&f.NoAPI, "no-api", false, "do not contact the API server (trace the dataplane alone)")
	fl.StringVar(&f.Mode, "mode", "", "kube-proxy mode of the live node: iptables, nftables or ipvs (default: detected)")
	fl.StringVar(&f.KubeProxyNamespace, "kube-proxy-namespace", "kube-system", "the namespace of kube-proxy's pods (remote reads exec only into pods there that a DaemonSet runs, or static pods)")
	fl.StringVar(&f.AgentNamespace, "agent-namespace", "svctrace-system", "the namespace of the svctrace agent's pods: a remote trace in nftables mode reads only what its packet touches through the agent on the node, when there is one")
	fl.BoolVar(&f.Remote, "remote", false, "read --node's dataplane from a laptop: exec (argv, no shell) into the node's kube-proxy pod through the API server (default when not root and --node is set)")
	f.Debug.addFlags(fl)
}

// Inputs are the resolved inputs of one node.
type Inputs struct {
	Dataplane trace.Dataplane
	Cluster   *trace.Cluster
	Node      *trace.NodeContext
	// Source says, for people, where the dataplane came from.
	Source string
	// Warnings are printed on stderr: degraded input the user should know about.
	Warnings []string
	// Files are the raw dumps read from the live node (file name → content), for snapshots.
	Files map[string]func() []byte
	// Conntrack is a snapshot bundle's conntrack table, when it has one.
	Conntrack []byte
	// Runner runs commands on the live node (this machine, or its kube-proxy pod); nil offline.
	Runner noderun.Runner
	// Leftovers are kube-proxy state of other modes on the live node; ModeFrom says how its mode
	// was known (dataplane.Node's).
	Leftovers []trace.Leftover
	ModeFrom  string
	// APIErr is why the API could not be read (the dataplane alone was read), if it could not.
	APIErr error
}

// needAPI is the error of a command that compares with the API when it has no API objects: the
// API's own failure (exit 3) when it was tried, else a usage error saying what to pass.
func (in *Inputs) needAPI(what string) error {
	if in.APIErr != nil {
		return &ExitError{Code: ExitRead, Err: fmt.Errorf("%s compares the dataplane with the API, which could not be read: %w", what, in.APIErr)}
	}
	return usageErrorf("%s compares the dataplane with the API: reach the API server, or pass --objects FILE", what)
}

// leftoverFindings are check's findings for the node's leftovers of other modes.
func (in *Inputs) leftoverFindings() []trace.Finding {
	return trace.LeftoverFindings(in.Node.Name, in.Dataplane.Mode(), in.ModeFrom != "detected", in.Leftovers)
}

// firstN returns at most n of list, with "..." when there are more.
func firstN(list []string, n int) []string {
	if len(list) <= n {
		return list
	}
	return append(append([]string(nil), list[:n]...), "...")
}

// demo says whether --demo was given.
func (f *InputFlags) demo() bool { return f.DemoMode != "" }

// Offline reports whether the dataplane comes from files rather than the live node.
func (f *InputFlags) Offline() bool {
	return len(f.Dataplane) > 0 || f.Snapshot != "" || f.demo()
}

// Validate checks combinations before anything is read.
func (f *InputFlags) Validate() error {
	n := 0
	for _, set := range []bool{len(f.Dataplane) > 0, f.Snapshot != "", f.demo()} {
		if set {
			n++
		}
	}
	if n > 1 {
		return usageErrorf("--dataplane, --snapshot and --demo each name a whole input; use one of them")
	}
	for _, ip := range f.NodeIPs {
		if _, err := netip.ParseAddr(ip); err != nil {
			return usageErrorf("--node-ip %q is not an IP address", ip)
		}
	}
	switch f.Mode {
	case "", "iptables", "nftables", "ipvs":
	default:
		return usageErrorf("--mode %q: use iptables, nftables or ipvs", f.Mode)
	}
	if f.Mode != "" && f.Offline() {
		return usageErrorf("--mode is for the live node; a dump's format says its mode")
	}
	if f.Remote && f.Offline() {
		return usageErrorf("--remote reads a live node; it does not go with --dataplane, --snapshot or --demo")
	}
	if f.Remote && f.Node == "" && !f.NodeFromPod {
		return usageErrorf("--remote needs --node NAME: the node whose kube-proxy pod to read through")
	}
	if f.Debug.Enabled && f.Offline() {
		return usageErrorf("--debug-pod reads a live node from a laptop; it does not go with --dataplane, --snapshot or --demo")
	}
	return nil
}

// remote reports whether the live read goes through the node's kube-proxy pod.
func (f *InputFlags) remote() bool {
	return f.Remote || f.Node != "" && os.Geteuid() != 0 && !f.Offline()
}

// Resolve reads the dataplane and the objects.
func (f *InputFlags) Resolve(ctx context.Context, cfg *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) (*Inputs, error) {
	in := &Inputs{}
	files := map[string][]byte{}
	var objects []byte
	objectsFrom := ""
	node := f.Node
	byHostname := false // node is this machine's hostname, not named by the user
	switch {
	case f.demo() || f.Snapshot != "":
		var b *snapshot.Bundle
		var err error
		if f.demo() {
			b, err = snapshot.Demo(f.DemoMode)
			in.Source = "embedded demo snapshot"
		} else if set, isSet, serr := snapshot.ReadSet(f.Snapshot); serr != nil {
			return nil, serr
		} else if isSet {
			if node == "" {
				return nil, usageErrorf("snapshot %s holds %d nodes: choose one with --node (%s)", f.Snapshot, len(set.Nodes), strings.Join(firstN(set.Nodes, 10), ", "))
			}
			b, err = snapshot.LoadNode(f.Snapshot, set, node)
			in.Source = "snapshot " + f.Snapshot + ", node " + node
		} else {
			b, err = snapshot.LoadDir(f.Snapshot)
			in.Source = "snapshot " + f.Snapshot
		}
		if err != nil {
			return nil, err
		}
		files = b.Dataplane
		objects, objectsFrom = b.Objects, in.Source
		in.Conntrack = b.Conntrack
		if node == "" {
			node = b.Manifest.Node
		} else if node != b.Manifest.Node {
			return nil, usageErrorf("the snapshot holds node %s, not %s", b.Manifest.Node, node)
		}
	case len(f.Dataplane) > 0:
		for _, p := range f.Dataplane {
			data, err := dataplane.ReadFile(p, dataplane.MaxFileBytes)
			if err != nil {
				return nil, fmt.Errorf("cannot read --dataplane: %w", err)
			}
			files[p] = data
		}
		in.Source = strings.Join(f.Dataplane, ", ")
	}
	if f.Objects != "" {
		data, err := dataplane.ReadFile(f.Objects, dataplane.MaxFileBytes)
		if err != nil {
			return nil, fmt.Errorf("cannot read --objects: %w", err)
		}
		objects, objectsFrom = data, f.Objects
	}
	// The objects are decoded while the dataplane is read (on a 10,000-Service node both take
	// about a second).
	type decodedObjects struct {
		cl  *trace.Cluster
		err error
	}
	var decoding chan decodedObjects
	// listing is the API's objects, listed while a live dataplane is read.
	type listedCluster struct {
		cl  *trace.Cluster
		err error
	}
	var listing chan listedCluster
	if f.decoded == nil && objects != nil {
		decoding = make(chan decodedObjects, 1)
		go func() {
			cl, err := trace.DecodeObjects(objects)
			decoding <- decodedObjects{cl, err}
		}()
	}

	if len(files) > 0 {
		n, err := dataplane.Load(files)
		if err != nil {
			return nil, err
		}
		in.Dataplane = n.Dataplane
		in.Warnings = append(in.Warnings, n.Warnings...)
	} else {
		if !f.NoAPI && f.decoded == nil && decoding == nil && f.OneService == nil {
			// The API objects are listed while the dataplane is read (each takes about a
			// second at 10,000 Services); a failed read leaves the list unused.
			listing = make(chan listedCluster, 1)
			go func() {
				cl, err := fetchCluster(ctx, cfg)
				listing <- listedCluster{cl, err}
			}()
		}
		var r noderun.Runner = noderun.Local{}
		remote := f.remote()
		opts := dataplane.ReadOptions{Mode: f.Mode, Remote: remote, Progress: streams.ErrOut, Scoped: f.Scoped, WalksOnly: f.WalksOnly, NoLeftovers: f.OneService != nil, Counters: f.Counters}
		if remote {
			// Through the API, kube-proxy's pod has nft alone, which lists everything; the
			// svctrace agent's pod, where there is one, reads only the packet's objects. It is
			// looked for while kube-proxy's pod is (each look is API round trips).
			type agentLookup struct {
				pod noderun.Pod
				ok  bool
				why string
			}
			var agent chan agentLookup
			if f.Scoped && node != "" {
				agent = make(chan agentLookup, 1)
				go func() {
					var a agentLookup
					a.pod, a.ok, a.why = agentPod(ctx, cfg, f.AgentNamespace, node)
					agent <- a
				}()
			}
			pod, err := f.nodeRunner(ctx, cfg, streams, node)
			if err != nil {
				return nil, err
			}
			r = pod
			if agent != nil {
				if a := <-agent; a.ok {
					opts.Objects = &nftjson.ExecReader{Ctx: ctx, Runner: a.pod, Argv0: agentBinary}
				} else {
					klog.V(1).InfoS("a remote nftables read lists the whole ruleset", "why", a.why)
				}
			}
		} else if os.Geteuid() != 0 {
			return nil, fmt.Errorf("reading this node's dataplane needs root (run with sudo); from a laptop, name the node with --node; or pass --dataplane FILE, --snapshot DIR or --demo")
		}
		n, err := dataplane.Read(ctx, r, opts)
		if err != nil {
			return nil, readFailure(err)
		}
		in.Dataplane, in.Source, in.Files, in.Runner = n.Dataplane, n.Source, n.Files, r
		in.Leftovers, in.ModeFrom = n.Leftovers, n.ModeFrom
		in.Warnings = append(in.Warnings, n.Warnings...)
		if node == "" {
			node, _ = os.Hostname()
			node = strings.ToLower(strings.TrimSpace(node)) // as kube-proxy names its node
			byHostname = true
		}
	}

	switch {
	case f.decoded != nil:
		in.Cluster = f.decoded
	case decoding != nil:
		d := <-decoding
		if d.err != nil {
			return nil, fmt.Errorf("objects from %s: %w", objectsFrom, d.err)
		}
		in.Cluster = d.cl
	case !f.NoAPI && !f.Offline():
		var cl *trace.Cluster
		var err error
		if _, scoped := in.Dataplane.(*nftjson.Scoped); scoped && f.OneService != nil && node != "" {
			if f.client == nil { // the same client for the verification's read: permissions checked once
				f.client, err = apiClient(ctx, cfg)
			}
			if err == nil {
				cl, err = fetchService(ctx, f.client, *f.OneService, node)
			}
		} else if listing != nil {
			l := <-listing
			cl, err = l.cl, l.err
		} else {
			cl, err = fetchCluster(ctx, cfg)
		}
		var denied *ExitError
		if errors.As(err, &denied) {
			return nil, err // missing permissions are the user's to fix, not to work around silently
		}
		if err != nil {
			// An operator on a node whose API server is down still gets the dataplane trace.
			in.Warnings = append(in.Warnings, fmt.Sprintf("could not read the API (%v); tracing the dataplane alone", err))
			in.APIErr = err
		} else {
			in.Cluster = cl
		}
	}
	if byHostname && in.Cluster != nil && in.Cluster.Node(node) == nil {
		// kube-proxy may run with --hostname-override: the Node that has one of this
		// machine's addresses is this node.
		if name, addr, ok := in.Cluster.NodeWithAddress(machineAddrs()); ok {
			in.Warnings = append(in.Warnings, fmt.Sprintf("this machine's hostname %q is not a Node in the API; it was taken to be node %s, whose address %s it has (--node names another)", node, name, addr))
			node = name
		}
	}
	if node == "" && in.Cluster != nil && f.TargetAddr.IsValid() {
		if name, _, ok := in.Cluster.NodeWithAddress([]netip.Addr{f.TargetAddr}); ok {
			in.Warnings = append(in.Warnings, fmt.Sprintf("no --node: taking node %s, whose address %s the target is", name, f.TargetAddr))
			node = name
		}
	}
	if node == "" {
		node = "unknown"
	}
	var extra []netip.Addr
	for _, ip := range f.NodeIPs {
		extra = append(extra, netip.MustParseAddr(ip))
	}
	in.Node = in.Cluster.NodeContextFor(node, extra)
	if _, here := in.Runner.(noderun.Local); here {
		// Read on this machine: the kernel's LOCAL addresses (addrtype, fib daddr type local)
		// are all of its addresses, not only those the Node object lists (an IPv6 address on
		// an outside interface, say), when the Node is this machine (it lists none, or one of
		// them). The Node's come first: they are the node's own.
		// (An IPVS node has every Service address on kube-ipvs0: 10,000 of them, looked up in
		// a set, not one by one in the list.)
		addrs := machineAddrs()
		known := make(map[netip.Addr]bool, len(in.Node.Local)+len(addrs))
		for _, a := range in.Node.Local {
			known[a] = true
		}
		if len(in.Node.Local) == 0 || slices.ContainsFunc(addrs, func(a netip.Addr) bool { return !a.IsLoopback() && known[a] }) {
			for _, a := range addrs {
				if !a.IsLoopback() && !known[a] {
					known[a] = true
					in.Node.Local = append(in.Node.Local, a)
				}
			}
		}
	}
	if in.Cluster != nil && in.Cluster.Node(node) == nil && len(in.Cluster.Nodes) > 0 {
		in.Warnings = append(in.Warnings, fmt.Sprintf("the API objects have no node %q; its addresses are unknown (use --node or --node-ip)", node))
	}
	return in, nil
}

// machineAddrs are this machine's interface addresses (in its network namespace): on an IPVS
// node 10,000 of them, converted without text.
func machineAddrs() []netip.Addr {
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	out := make([]netip.Addr, 0, len(ifAddrs))
	for _, a := range ifAddrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

// start is the common beginning of every command's Run: the inputs read, and their warnings
// printed on stderr. Call stop when done.
func (f *InputFlags) start(ctx context.Context, cfg *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) (context.Context, *Inputs, func(), error) {
	if ctx == nil {
		ctx = context.Background()
	}
	// Ctrl-C and termination cancel Execute's context; the command then returns through its
	// deferred stop, which deletes a debug pod if one was started.
	ctx, cancel := context.WithCancel(ctx)
	stop := func() {
		f.Close()
		cancel()
	}
	in, err := f.Resolve(ctx, cfg, streams)
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	for _, w := range in.Warnings {
		fmt.Fprintf(streams.ErrOut, "warning: %s\n", w)
	}
	return ctx, in, stop, nil
}

// walkError names the input a walk failed on (a loop in a dump file, a cancelled walk aside).
func (in *Inputs) walkError(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || in.Source == "" {
		return err
	}
	return fmt.Errorf("%s: %w", in.Source, err)
}
