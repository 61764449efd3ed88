package plugin

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/svctrace/svctrace/dataplane/ipvsadm"
	"github.com/svctrace/svctrace/dataplane/nftjson"

	"github.com/svctrace/svctrace/render"
	"github.com/svctrace/svctrace/trace"
)

// Default sources for --from: documentation ranges, never sent anywhere (the trace is a model).
var defaultExternalSource = netip.MustParseAddr("192.0.2.10")

// defaultExternalSource6 is IPv6's (documentation range, RFC 3849).
var defaultExternalSource6 = netip.MustParseAddr("2001:db8::a")

// TraceOptions holds everything `trace` needs, typed.
type TraceOptions struct {
	config  *genericclioptions.ConfigFlags
	streams genericiooptions.IOStreams
	Input   InputFlags

	// flags, as given
	target   string
	port     string
	protocol string
	from     string
	inIface  string
	output   string
	// human is the name of this command's human format for -o (tree; balance's is table).
	human string
	// graph is --graph FILE: the picture rendered by Graphviz (trace only).
	graph   string
	details bool
	// noHeaders drops the header row of the tables (--no-headers).
	noHeaders bool
	failOn    string

	// completed
	proto    trace.Protocol
	format   render.Format
	failRank int
}

// NewTraceOptions returns options with defaults.
func NewTraceOptions(streams genericiooptions.IOStreams, cfg *genericclioptions.ConfigFlags) *TraceOptions {
	return &TraceOptions{config: cfg, streams: streams, protocol: "tcp", output: "tree", human: "tree", failOn: "none"}
}

// NewCmdTrace builds `trace`.
func NewCmdTrace(streams genericiooptions.IOStreams, cfg *genericclioptions.ConfigFlags) *cobra.Command {
	o := NewTraceOptions(streams, cfg)
	cmd := &cobra.Command{
		Use:   "trace TARGET",
		Short: "Walk a packet to a Service through a node's kube-proxy rules",
		Long: `Walk the first packet of a new connection through a node's kube-proxy dataplane and show every
path it can take: the rules it passes, the share of connections each backend gets, whether the
source is masqueraded and why, and dead ends (REJECT for no endpoints, DROP for no local
endpoints or load balancer source ranges, or no rule at all).

TARGET is a Service (NAMESPACE/NAME, or NAME with -n; with :PORT, a port name or number, as
svctrace prints Service ports; or its DNS name NAME.NAMESPACE.svc.cluster.local), a VIP (IP or
IP:PORT: a cluster IP, external IP or load balancer IP) or NODEIP:NODEPORT. A dual-stack
Service named as NAMESPACE/NAME is traced at its first family's cluster IP; trace the other by
its address, an IPv6 one in brackets with a port ([fd00:10:96::70]:80). From saved dumps, give
iptables-save and ip6tables-save each with --dataplane.

--from picks the source: pod (a pod address on the node, the default for cluster IPs),
node (a process on the node itself), external (an outside client, the default for node ports,
load balancer and external IPs), pod/NAMESPACE/NAME, or any IP address.

On a node in nftables mode the trace reads only what its packet can touch, over netlink (kube-
proxy's chains it jumps to, the keys it looks up in its maps), not the whole ruleset; -v 1 says
what it read. From a laptop (--node) the same read runs in the svctrace agent's pod on that node
(--agent-namespace), when there is one and you may exec there; otherwise, and for check, the whole
ruleset is read, through kube-proxy's pod.`,
		Example: fmt.Sprintf(`  # See it work on the embedded snapshot recorded from a real kube-proxy (no cluster needed)
  %[1]s trace --demo default/hostnames

  # A Service port as svctrace prints it, or a Service by its DNS name
  %[1]s trace --demo default/hostnames:default
  %[1]s trace --demo hostnames.default.svc.cluster.local

  # On a node, as root (the binary itself): where does a pod's connection to this ClusterIP go?
  sudo kubectl-svctrace trace 10.96.0.10:53 --protocol udp

  # A NodePort as an outside client sees it, from a saved dump and objects
  %[1]s trace 172.31.250.2:30080 --dataplane node1.iptables --objects objects.yaml --node node1

  # The IPv6 side of a dual-stack Service, from both families' saved dumps
  %[1]s trace '[fd00:10:96::70]:80' --dataplane node1.iptables --dataplane node1.ip6tables --objects objects.yaml --node node1

  # Machine-readable output for scripts and CI
  %[1]s trace --demo default/web-lb --from 198.51.100.11 -o json

  # The path as a picture for an incident ticket: Mermaid (renders in GitHub and GitLab), or SVG
  %[1]s trace --demo default/web-local -o mermaid
  %[1]s trace --demo default/web-local --graph path.svg`, commandName()),
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf("trace needs exactly one TARGET (a Service, VIP[:PORT] or NODEIP:NODEPORT)")
			}
			return nil
		},
		RunE: runOptions(o),
	}
	o.Input.AddFlags(cmd)
	fl := cmd.Flags()
	fl.StringVar(&o.port, "port", "", "Service port (name or number); needed only when the target is ambiguous")
	fl.StringVar(&o.protocol, "protocol", o.protocol, "tcp, udp or sctp")
	fl.StringVar(&o.from, "from", "", "source: pod, node, external, pod/NAMESPACE/NAME or an IP (default: pod for cluster IPs, external otherwise)")
	fl.StringVar(&o.inIface, "in-interface", "", "interface the packet arrives on, for rules that match one (default: a packet from a pod on this node arrives on a pod interface, any other does not)")
	fl.StringVarP(&o.output, "output", "o", o.output, "output format: tree, wide, json, yaml, jsonpath=TEMPLATE, go-template=TEMPLATE (as kubectl), or the path as a picture: mermaid, dot")
	fl.StringVar(&o.graph, "graph", "", "also render the path as a picture into this .svg, .png or .pdf file (needs Graphviz's dot)")
	fl.BoolVar(&o.details, "details", false, "show every rule passed, including filter-table and postrouting bookkeeping")
	fl.BoolVar(&o.noHeaders, "no-headers", false, "print tables without their header row")
	fl.StringVar(&o.failOn, "fail-on", o.failOn, "exit 1 when a finding has at least this severity: error, warning, info or none")
	return cmd
}

// Complete turns flags into typed values.
func (o *TraceOptions) Complete(args []string) error {
	o.target = args[0]
	o.Input.NodeFromPod = strings.HasPrefix(o.from, "pod/")
	var err error
	if o.proto, err = trace.ParseProtocol(o.protocol); err != nil {
		return usageErrorf("--protocol: %v", err)
	}
	switch {
	case o.human == "tree" && (o.output == string(render.Mermaid) || o.output == string(render.Dot)):
		o.format = render.Format(o.output)
	default:
		if o.format, err = render.ParseFormat(o.output, o.human); err != nil {
			if o.human == "tree" {
				err = fmt.Errorf("%v, mermaid or dot", err)
			}
			return usageErrorf("--output: %v", err)
		}
	}
	if o.graph != "" {
		switch strings.ToLower(filepath.Ext(o.graph)) {
		case ".svg", ".png", ".pdf":
		default:
			return usageErrorf("--graph %s: name an .svg, .png or .pdf file (or use -o dot, -o mermaid)", o.graph)
		}
		if _, err := exec.LookPath("dot"); err != nil {
			return usageErrorf("--graph needs Graphviz's dot, which is not installed here (apt install graphviz); -o dot or -o mermaid print the picture's source instead")
		}
	}
	if o.failRank, err = parseFailOn(o.failOn); err != nil {
		return err
	}
	return nil
}

func parseFailOn(s string) (int, error) {
	switch s {
	case "error", "warning", "info":
		return trace.Severity(s).Rank(), nil
	case "none", "never":
		return 99, nil
	}
	return 0, usageErrorf("--fail-on %q: use error, warning, info or none", s)
}

// Validate checks what can be checked before reading anything.
func (o *TraceOptions) Validate() error {
	return o.Input.Validate()
}

// Run reads the inputs, traces and prints.
func (o *TraceOptions) Run(ctx context.Context) error {
	if ap, err := netip.ParseAddrPort(o.target); err == nil {
		o.Input.TargetAddr = ap.Addr()
	} else if a, err := netip.ParseAddr(strings.Trim(o.target, "[]")); err == nil {
		o.Input.TargetAddr = a
	}
	o.followPod(ctx)
	o.Input.Scoped, o.Input.WalksOnly = true, true
	if o.Input.Remote && o.Input.Node == "" {
		return usageErrorf("--remote needs --node NAME, or --from a pod the API knows (its node is read)")
	}
	ctx, in, stop, err := o.Input.start(ctx, o.config, o.streams)
	if err != nil {
		return err
	}
	defer stop()
	q, err := o.query(in)
	if err != nil {
		return err
	}
	res, err := trace.Run(ctx, in.Dataplane, in.Cluster, q)
	if sc, ok := in.Dataplane.(*ipvsadm.Scoped); ok {
		klog.V(1).InfoS("read", "what", fmt.Sprintf("%d IPVS virtual server(s) with their real servers and %d ipset lookup(s) over netlink", sc.Services, sc.Tests))
		if sc.Fallback != "" {
			fmt.Fprintf(o.streams.ErrOut, "warning: read every ipset with `ipset save`: asking the kernel about the packet's ipset lookups failed (%s)\n", sc.Fallback)
		}
	}
	if sc, ok := in.Dataplane.(*nftjson.Scoped); ok {
		klog.V(1).InfoS("read", "what", sc.Summary())
		if sc.Fallback != "" {
			fmt.Fprintf(o.streams.ErrOut, "warning: read the whole nftables ruleset: reading only what the packet touches failed (%s)\n", sc.Fallback)
		}
	}
	if err != nil {
		return in.walkError(err)
	}
	if err := render.Trace(o.streams.Out, res, render.Options{Format: o.format, Details: o.details, Color: render.ColorFor(o.streams.Out), NoHeaders: o.noHeaders, Width: render.WidthFor(o.streams.Out, o.format)}); err != nil {
		return err
	}
	if o.graph != "" {
		if err := writeGraph(ctx, res, o.graph, o.details); err != nil {
			return err
		}
		fmt.Fprintf(o.streams.ErrOut, "wrote the picture of the path to %s\n", o.graph)
	}
	for _, f := range res.Findings {
		if f.Severity.Rank() >= o.failRank {
			return errFindings
		}
	}
	return nil
}

// followPod makes a live or remote trace --from pod/NS/NAME without --node walk the rules of the
// node that pod runs on: its connections go through that node's kube-proxy rules. From a laptop
// that node is read through its kube-proxy pod; on a node whose pod is elsewhere, that other node
// is read through the API. A --node given is kept, and so is an offline input's node (query
// warns about the pod then).
func (o *TraceOptions) followPod(ctx context.Context) {
	parts := strings.SplitN(o.from, "/", 3)
	if len(parts) != 3 || parts[0] != "pod" || o.Input.Offline() || o.Input.NoAPI || o.Input.Node != "" {
		return
	}
	cs, err := clientFor(o.config)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	pod, err := cs.CoreV1().Pods(parts[1]).Get(ctx, parts[2], metav1.GetOptions{})
	if err != nil || pod.Spec.NodeName == "" {
		return // the query reports a pod it cannot find
	}
	here := ""
	if os.Geteuid() == 0 && !o.Input.Remote {
		// This machine's node, as the read names it: its hostname if that is a Node, else the
		// Node that has one of its addresses. Unknown: stay (query warns).
		if here = thisNode(ctx, cs); here == "" {
			return
		}
	}
	if pod.Spec.NodeName == here {
		return
	}
	how := "read through its kube-proxy pod"
	if here != "" {
		how += ", not this machine's"
	}
	fmt.Fprintf(o.streams.ErrOut, "pod %s/%s runs on node %s: tracing that node's rules (%s)\n", pod.Namespace, pod.Name, pod.Spec.NodeName, how)
	o.Input.Node = pod.Spec.NodeName
	if os.Geteuid() == 0 {
		// As root, --node names this machine; another node is read through the API.
		o.Input.Remote = true
	}
}

// thisNode is the Node this machine is: its hostname (lowercased, as kube-proxy names it) when the
// API has such a Node, else the one with one of its addresses; "" when neither.
func thisNode(ctx context.Context, cs kubernetes.Interface) string {
	h, _ := os.Hostname()
	h = strings.ToLower(strings.TrimSpace(h))
	if _, err := cs.CoreV1().Nodes().Get(ctx, h, metav1.GetOptions{}); err == nil {
		return h
	}
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return ""
	}
	nodes := make([]*corev1.Node, len(list.Items))
	for i := range list.Items {
		nodes[i] = &list.Items[i]
	}
	name, _, _ := trace.NewCluster(nil, nil, nil, nodes).NodeWithAddress(machineAddrs())
	return name
}

// writeGraph renders the trace's picture with Graphviz's dot into path (its format from the
// extension).
func writeGraph(ctx context.Context, res *trace.Result, path string, details bool) error {
	var src bytes.Buffer
	if err := render.Graph(&src, res, render.Dot, details); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "dot", "-T"+strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), "."), "-o", path)
	cmd.Stdin = &src
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("--graph %s: dot failed: %v %s", path, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// query resolves the target and the source into a packet.
func (o *TraceOptions) query(in *Inputs) (trace.Query, error) {
	q := trace.Query{Node: in.Node, Packet: trace.Packet{Protocol: o.proto, InInterface: o.inIface}}
	kind, err := o.resolveTarget(in, &q.Packet)
	if err != nil {
		return q, err
	}
	from := o.from
	if from == "" {
		from = "pod"
		if kind != trace.ClusterIPAddr {
			from = "external"
		}
	}
	q.From = from
	p := &q.Packet
	v6 := p.Dst.Is6() && !p.Dst.Is4In6() // sources of the destination's family
	switch {
	case from == "external":
		p.Src, p.Origin = defaultExternalSource, trace.FromNetwork
		if v6 {
			p.Src = defaultExternalSource6
		}
	case from == "node":
		p.Origin = trace.FromLocalProcess
		switch {
		case p.Dst.IsLoopback():
			p.Src = p.Dst
		case len(in.Node.Local) > 0:
			// The node's first address of the destination's family, as the kernel would pick a
			// source (an IPv6 cluster IP is reached from the node's IPv6 address).
			p.Src = in.Node.Local[0]
			for _, a := range in.Node.Local {
				if a.Is4() == p.Dst.Is4() && !a.IsLoopback() {
					p.Src = a
					break
				}
			}
		default:
			return q, usageErrorf("--from node needs the node's address: give --node-ip, or API objects with the Node")
		}
	case from == "pod":
		src, ok := podSource(in, v6)
		if !ok {
			return q, usageErrorf("--from pod needs the node's pod CIDR (from its Node object) or the cluster CIDR in the rules; give --from IP instead")
		}
		p.Src, p.Origin = src, trace.FromNetwork
	case strings.HasPrefix(from, "pod/"):
		parts := strings.Split(from, "/")
		if len(parts) != 3 {
			return q, usageErrorf("--from %q: write pod/NAMESPACE/NAME", from)
		}
		pod := findPod(in.Cluster, parts[1], parts[2])
		if pod == nil {
			return q, usageErrorf("--from %s: no such pod in the API objects", from)
		}
		ip, ok := podAddrOfFamily(pod, p.Dst)
		if !ok {
			return q, usageErrorf("--from %s: the pod has no IP address yet", from)
		}
		p.Src, p.Origin = ip, trace.FromNetwork
		if pod.Spec.HostNetwork {
			p.Origin = trace.FromLocalProcess
		}
		if pod.Spec.NodeName != "" && pod.Spec.NodeName != in.Node.Name {
			// Its connections go through its own node's rules, not these.
			fmt.Fprintf(o.streams.ErrOut, "warning: pod %s/%s runs on node %s, but this trace walks node %s's rules; trace it with --node %s\n",
				pod.Namespace, pod.Name, pod.Spec.NodeName, in.Node.Name, pod.Spec.NodeName)
		}
	default:
		ip, err := netip.ParseAddr(from)
		if err != nil {
			return q, usageErrorf("--from %q: use pod, node, external, pod/NAMESPACE/NAME or an IP address", from)
		}
		p.Src, p.Origin = ip, trace.FromNetwork
		if in.Node.IsLocal(ip) {
			p.Origin = trace.FromLocalProcess
		}
	}
	if p.Src.Is4() != p.Dst.Is4() {
		return q, usageErrorf("source %s and destination %s are of different address families", p.Src, p.Dst)
	}
	return q, nil
}

// podAddrOfFamily is the pod's address of dst's family (a dual-stack pod has one of each and
// reaches an IPv6 Service from its IPv6 address), or else its first one.
func podAddrOfFamily(pod *corev1.Pod, dst netip.Addr) (netip.Addr, bool) {
	ips := []string{pod.Status.PodIP}
	for _, ip := range pod.Status.PodIPs {
		ips = append(ips, ip.IP)
	}
	var first netip.Addr
	for _, ip := range ips {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			continue
		}
		if a.Is4() == dst.Is4() {
			return a, true
		}
		if !first.IsValid() {
			first = a
		}
	}
	return first, first.IsValid()
}

func findPod(cl *trace.Cluster, ns, name string) *corev1.Pod {
	if cl == nil {
		return nil
	}
	for _, p := range cl.Pods {
		if p.Namespace == ns && p.Name == name {
			return p
		}
	}
	return nil
}

// podSource picks an address in the node's pod CIDR of the family (IPv6's when v6) that no pod
// uses (the last one), standing for "some pod on this node"; failing that, one in the cluster
// CIDR the rules name.
func podSource(in *Inputs, v6 bool) (netip.Addr, bool) {
	prefix, ok := in.Cluster.PodCIDROfFamily(in.Node.Name, v6)
	if !ok {
		if h, isHinted := in.Dataplane.(interface{ ClusterCIDR() (netip.Prefix, bool) }); isHinted {
			prefix, ok = h.ClusterCIDR()
			ok = ok && prefix.Addr().Is4() != v6
		}
	}
	if !ok {
		return netip.Addr{}, false
	}
	return lastHost(prefix), true
}

func lastHost(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 7; j >= 0; j-- {
			if i*8+(7-j) >= bits {
				b[i] |= 1 << j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	if a.Is4() && bits < 31 {
		a = a.Prev() // not the broadcast address
	}
	return a
}

// resolveTarget fills the packet's destination and port and says what kind of address it is.
func (o *TraceOptions) resolveTarget(in *Inputs, p *trace.Packet) (trace.AddressKind, error) {
	t := o.target
	for _, prefix := range []string{"service/", "services/", "svc/"} {
		t = strings.TrimPrefix(t, prefix)
	}
	// An address, with or without a port.
	if ap, err := netip.ParseAddrPort(t); err == nil {
		p.Dst, p.DstPort = ap.Addr(), ap.Port()
		if o.port != "" {
			return "", usageErrorf("the target %s already has a port; drop --port", o.target)
		}
		return o.kindOf(in, p), nil
	}
	if a, err := netip.ParseAddr(strings.Trim(t, "[]")); err == nil {
		p.Dst = a
		port, err := o.portFor(in, a)
		if err != nil {
			return "", err
		}
		p.DstPort = port
		return o.kindOf(in, p), nil
	}
	// A Service: NAME or NS/NAME, with :PORT (a port name or number) as svctrace prints
	// Service ports, or its DNS name NAME.NS[.svc[.CLUSTER-DOMAIN]].
	port := o.port
	if i := strings.LastIndexByte(t, ':'); i >= 0 {
		if o.port != "" {
			return "", usageErrorf("the target %s already has a port; drop --port", o.target)
		}
		t, port = t[:i], t[i+1:]
	}
	ns, name, ok := strings.Cut(t, "/")
	if !ok {
		ns, name = o.namespace(), t
		if parts := strings.Split(t, "."); len(parts) >= 2 {
			if len(parts) > 2 && parts[2] != "svc" {
				return "", usageErrorf("%s is not a Service's DNS name (NAME.NAMESPACE.svc.CLUSTER-DOMAIN)", o.target)
			}
			name, ns = parts[0], parts[1]
		}
	}
	if in.Cluster == nil {
		return "", usageErrorf("%s looks like a Service name, and finding its address needs API objects: pass --objects, reach the API server, or give the VIP:PORT", o.target)
	}
	svc := in.Cluster.Service(ns, name)
	if svc == nil {
		return "", usageErrorf("service %s/%s not found", ns, name)
	}
	sp, err := pickPort(svc, port, o.proto)
	if err != nil {
		return "", err
	}
	ip := svc.Spec.ClusterIP
	if ip == "" || ip == corev1.ClusterIPNone {
		return "", usageErrorf("service %s/%s is headless (clusterIP None): kube-proxy does not handle it; clients reach the pods directly", ns, name)
	}
	p.Dst, p.DstPort = netip.MustParseAddr(ip), uint16(sp.Port)
	return trace.ClusterIPAddr, nil
}

func (o *TraceOptions) namespace() string { return namespaceOf(o.config, &o.Input) }

// namespaceOf is -n, else the kubeconfig context's namespace (when the API is used), else default.
func namespaceOf(cfg *genericclioptions.ConfigFlags, in *InputFlags) string {
	if cfg.Namespace != nil && *cfg.Namespace != "" {
		return *cfg.Namespace
	}
	if ns, _, err := cfg.ToRawKubeConfigLoader().Namespace(); err == nil && ns != "" && !in.Offline() {
		return ns
	}
	return "default"
}

func (o *TraceOptions) kindOf(in *Inputs, p *trace.Packet) trace.AddressKind {
	if m := in.Cluster.Lookup(p.Dst, p.DstPort, p.Protocol, in.Node.IsLocal(p.Dst)); m != nil {
		return m.Kind
	}
	if in.Node.IsLocal(p.Dst) {
		return trace.NodePortAddr
	}
	return trace.ClusterIPAddr
}

// portFor picks the port for an address given without one.
func (o *TraceOptions) portFor(in *Inputs, a netip.Addr) (uint16, error) {
	if o.port != "" {
		if n, err := strconv.ParseUint(o.port, 10, 16); err == nil {
			return uint16(n), nil
		}
	}
	if svcs := in.Cluster.ServicesFor(a); len(svcs) > 0 {
		sp, err := pickPort(svcs[0], o.port, o.proto)
		if err != nil {
			return 0, err
		}
		return uint16(sp.Port), nil
	}
	return 0, usageErrorf("%s has no port: write %s:PORT or pass --port NUMBER", a, a)
}

func pickPort(svc *corev1.Service, want string, proto trace.Protocol) (corev1.ServicePort, error) {
	var cands []corev1.ServicePort
	for _, sp := range svc.Spec.Ports {
		p := strings.ToLower(string(sp.Protocol))
		if p == "" {
			p = "tcp"
		}
		if p != proto.String() {
			continue
		}
		if want == "" || want == sp.Name || want == strconv.Itoa(int(sp.Port)) {
			cands = append(cands, sp)
		}
	}
	switch {
	case len(cands) == 1:
		return cands[0], nil
	case len(cands) == 0 && want != "":
		return corev1.ServicePort{}, usageErrorf("service %s/%s has no %s port %q (it has %s)", svc.Namespace, svc.Name, proto, want, portList(svc))
	case len(cands) == 0:
		return corev1.ServicePort{}, usageErrorf("service %s/%s has no %s port (it has %s); set --protocol", svc.Namespace, svc.Name, proto, portList(svc))
	}
	return corev1.ServicePort{}, usageErrorf("service %s/%s has several ports (%s): choose one with --port", svc.Namespace, svc.Name, portList(svc))
}

func portList(svc *corev1.Service) string {
	var parts []string
	for _, sp := range svc.Spec.Ports {
		s := fmt.Sprintf("%d/%s", sp.Port, strings.ToLower(string(sp.Protocol)))
		if sp.Name != "" {
			s = sp.Name + "=" + s
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}
