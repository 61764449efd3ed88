package plugin

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/svctrace/svctrace/dataplane/conntrack"
	"github.com/svctrace/svctrace/render"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/iptables"
)

// BalanceOptions holds everything `balance` needs.
type BalanceOptions struct {
	trace     *TraceOptions
	duration  time.Duration
	conntrack string
	allNodes  bool
	fleet     fleetFlags
}

// NewBalanceOptions returns balance's options with their defaults.
func NewBalanceOptions(streams genericiooptions.IOStreams, cfg *genericclioptions.ConfigFlags) *BalanceOptions {
	o := &BalanceOptions{trace: NewTraceOptions(streams, cfg), duration: 30 * time.Second}
	// The dataplane's own count of new connections per backend (IPVS's real server
	// statistics on the node) is part of the measurement.
	o.trace.Input.Counters = true
	return o
}

// NewCmdBalance builds `balance`.
func NewCmdBalance(streams genericiooptions.IOStreams, cfg *genericclioptions.ConfigFlags) *cobra.Command {
	o := NewBalanceOptions(streams, cfg)
	o.trace.output, o.trace.human = "table", "table"
	cmd := &cobra.Command{
		Use:   "balance [NAMESPACE/]SERVICE",
		Short: "Measure how a Service's traffic is really spread over its backends, and why",
		Long: `Measure how a Service's traffic is really spread over its backends on a node, compared with how
the dataplane splits new connections, and diagnose the cause of an imbalance:

  ConnectionStickiness  a few long-lived connections carry most of the traffic (Envoy, gRPC,
                        HTTP/2 or keep-alive clients: L4 balancing happens once per connection);
                        the heaviest clients are named, with the fixes that apply
  SkewedRules           the dataplane's own shares are unequal, or new connections do not follow
                        them (chi-square test, p < 1e-6)
  Balanced              traffic follows the split

It reads conntrack (with byte accounting: sysctl net.netfilter.nf_conntrack_acct=1) twice,
--duration apart, on the node (as root there, or from a laptop with --node, through the node's
kube-proxy pod), or a saved ` + "`conntrack -L -o extended`" + ` with --conntrack or a snapshot.
With --all-nodes it watches the same window on every node that runs a kube-proxy pod and reports
the Service's traffic over all of them, and each node's diagnosis.

Exit codes: 0 Balanced (or too little traffic to judge), 1 an imbalance, 2 usage, 3 could not read
the API or the node.`,
		Example: fmt.Sprintf(`  # See it on a recorded node (no cluster needed): one keep-alive client pins most of the traffic
  %[1]s balance default/hostnames --demo
  %[1]s balance ipvs/vmweb --demo=ipvs

  # On a node, as root: watch a Service for 30 seconds
  sudo kubectl-svctrace balance default/api

  # From a laptop: every node's share of the traffic, through the kube-proxy pods
  %[1]s balance default/api --all-nodes --duration 1m

  # From saved state
  %[1]s balance default/api --dataplane node1.iptables --objects objects.yaml --conntrack conntrack.txt --node node1`, commandName()),
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf("balance needs exactly one SERVICE")
			}
			return nil
		},
		RunE: runOptions(o),
	}
	o.trace.Input.AddFlags(cmd)
	fl := cmd.Flags()
	fl.StringVar(&o.trace.port, "port", "", "Service port (name or number); needed only when the Service has several")
	fl.StringVar(&o.trace.protocol, "protocol", o.trace.protocol, "tcp, udp or sctp")
	fl.DurationVar(&o.duration, "duration", o.duration, "how long to watch live connections; 0 takes one snapshot now")
	fl.StringVar(&o.conntrack, "conntrack", "", "read connections from this `conntrack -L -o extended` output instead of the node")
	fl.StringVarP(&o.trace.output, "output", "o", o.trace.output, "output format: table, wide, json, yaml, jsonpath=TEMPLATE, go-template=TEMPLATE (as kubectl)")
	fl.BoolVar(&o.trace.noHeaders, "no-headers", false, "print tables without their header row")
	o.fleet.addFlags(cmd, &o.allNodes, "measure on")
	return cmd
}

// Complete turns flags into typed values.
func (o *BalanceOptions) Complete(args []string) error { return o.trace.Complete(args) }

// Validate checks what can be checked before reading anything.
func (o *BalanceOptions) Validate() error {
	if err := o.trace.Validate(); err != nil {
		return err
	}
	if o.duration < 0 {
		return usageErrorf("--duration must not be negative")
	}
	return o.fleet.validate(o.allNodes)
}

// Run measures and prints: on one node, or with --all-nodes on every node.
func (o *BalanceOptions) Run(ctx context.Context) error {
	if o.allNodes {
		return o.runAllNodes(ctx)
	}
	t := o.trace
	ctx, in, stop, err := t.Input.start(ctx, t.config, t.streams)
	if err != nil {
		return err
	}
	defer stop()
	t.from = "pod"
	q, err := t.query(in)
	if err != nil {
		return err
	}
	tr, err := trace.Run(ctx, in.Dataplane, in.Cluster, q)
	if err != nil {
		return in.walkError(err)
	}
	before := newConnections(in.Dataplane, tr)
	conns, err := o.connections(ctx, in)
	if err != nil {
		return err
	}
	counters := before
	if before != nil && o.conntrack == "" && o.duration > 0 {
		// Read the dataplane again: the window's new connections are the counters' growth.
		after, err := t.Input.Resolve(ctx, t.config, t.streams)
		if err != nil {
			return err
		}
		if now := newConnections(after.Dataplane, tr); now != nil {
			counters = counterGrowth(before, now)
		}
	}
	res := trace.Balance(tr, in.Cluster, conns, counters)
	if err := render.Balance(t.streams.Out, res, render.Options{Format: t.format, Color: render.ColorFor(t.streams.Out), NoHeaders: t.noHeaders, Width: render.WidthFor(t.streams.Out, t.format)}); err != nil {
		return err
	}
	if imbalanced(res.Diagnosis) {
		return errFindings
	}
	return nil
}

// connections returns the connections of the window: from the file, one snapshot, or the
// difference of two snapshots --duration apart (bytes counted since the first).
func (o *BalanceOptions) connections(ctx context.Context, in *Inputs) ([]trace.Conn, error) {
	if o.conntrack != "" || in.Conntrack != nil {
		conns, _, err := in.conntrackTable(ctx, o.conntrack) // the file, or the snapshot bundle's
		return conns, err
	}
	if o.trace.Input.Offline() {
		return nil, usageErrorf("offline input needs --conntrack FILE (`conntrack -L -o extended` from the node), or a snapshot taken with its conntrack")
	}
	// The node's own conntrack: this machine as root, or through its kube-proxy pod.
	r := in.Runner
	if o.duration == 0 {
		return conntrack.ReadLive(ctx, r)
	}
	before, err := conntrack.ReadLive(ctx, r)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.trace.streams.ErrOut, "watching connections for %s...\n", o.duration)
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(o.duration):
	}
	after, err := conntrack.ReadLive(ctx, r)
	if err != nil {
		return nil, err
	}
	return conntrackWindow(before, after), nil
}

// conntrackWindow is the connections of a window from two conntrack snapshots: those new in the
// second, and those that carried traffic in between (bytes counted since the first).
func conntrackWindow(before, after []trace.Conn) []trace.Conn {
	type key struct {
		c  netip.Addr
		cp uint16
		d  netip.AddrPort
	}
	seen := map[key]uint64{}
	for _, c := range before {
		seen[key{c.Client, c.ClientPort, c.Dst}] = c.Bytes
	}
	var window []trace.Conn
	for _, c := range after {
		b0, existed := seen[key{c.Client, c.ClientPort, c.Dst}]
		if existed {
			if c.Bytes <= b0 {
				continue // idle during the window
			}
			c.Bytes -= b0
		}
		window = append(window, c)
	}
	return window
}

// counterGrowth is how much each counter grew from before to now.
func counterGrowth(before, now map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range now {
		out[k] = v - min(v, before[k])
	}
	return out
}

// newConnections reads the dataplane's own count of new connections per backend: in IPVS mode the
// real servers' connection statistics (netlink); otherwise the packet counters of the DNAT rules
// the trace passed (a connection's first packet alone traverses nat): iptables-save -c, or nft
// counter statements. nil when the dataplane has no counters (kube-proxy's nftables rules,
// ipvsadm text, a dump without -c).
func newConnections(dp trace.Dataplane, tr *trace.Result) map[string]uint64 {
	if x, ok := dp.(*iptables.Dataplane); ok && x.IPVS != nil {
		proto, _ := trace.ParseProtocol(tr.Packet.Protocol)
		dst, err := netip.ParseAddr(tr.Packet.Dst)
		vs := x.IPVS.Find(proto.String(), netip.AddrPortFrom(dst, tr.Packet.Port))
		if err != nil || vs == nil {
			return nil
		}
		out := map[string]uint64{}
		for _, rs := range vs.Reals {
			if rs.Connections < 0 {
				return nil
			}
			out[rs.Addr.String()] = uint64(rs.Connections)
		}
		return out
	}
	c, ok := dp.(trace.HopCounter)
	if !ok {
		return nil
	}
	out := map[string]uint64{}
	// A rule that DNATs to several backends (nftables' `dnat to numgen ... map`) counts them
	// together: then there is no per-backend count.
	owner := map[string]string{}
	shared := false
	var walk func(hs []*trace.Hop)
	walk = func(hs []*trace.Hop) {
		for _, h := range hs {
			if to, isDNAT := strings.CutPrefix(h.Action, "DNAT to "); isDNAT {
				if n, ok := c.HopPackets(h); ok {
					rule := fmt.Sprint(h.Table, h.Chain, h.Line, h.Rule)
					if prev, seen := owner[rule]; seen && prev != to {
						shared = true
					} else if !seen {
						owner[rule] = to
						out[to] += n
					}
				}
			}
			walk(h.Children)
		}
	}
	walk(tr.Hops)
	if len(owner) == 0 || shared {
		return nil
	}
	return out
}
