package plugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/svctrace/svctrace/dataplane"
	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/dataplane/repair"
	"github.com/svctrace/svctrace/plugin/agent"
	"github.com/svctrace/svctrace/trace"
)

// AgentOptions holds everything `agent` needs, typed.
type AgentOptions struct {
	config  *genericclioptions.ConfigFlags
	streams genericiooptions.IOStreams

	node        string
	metricsAddr string
	mode        string
	grace       time.Duration
	interval    time.Duration
	batch       time.Duration
	heartbeat   time.Duration
}

// NewAgentOptions returns agent's options with their defaults.
func NewAgentOptions(streams genericiooptions.IOStreams, cfg *genericclioptions.ConfigFlags) *AgentOptions {
	return &AgentOptions{config: cfg, streams: streams, metricsAddr: ":9808", grace: 15 * time.Second,
		interval: time.Minute, batch: 2 * time.Second, heartbeat: 2 * time.Minute}
}

// NewCmdAgent builds `agent`.
func NewCmdAgent(streams genericiooptions.IOStreams, cfg *genericclioptions.ConfigFlags) *cobra.Command {
	o := NewAgentOptions(streams, cfg)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run on a node and keep checking it: Prometheus metrics, Events and a Node condition",
		Long: fmt.Sprintf(`Run on a node (as the svctrace-agent DaemonSet does: host network, root) and check it again and
again: the Services an API change touched (batched, at most every --batch; in nftables mode reading
only what their packets touch), and the whole node every --interval, or less often where one
whole-node check takes more than a fortieth of it (40 times its duration apart). A finding is
reported only once it has lasted --grace (kube-proxy applies a change within seconds; what
outlasts that is stale), three ways:

  - Prometheus metrics on --metrics-bind-address (/metrics): svctrace_findings by kind, severity
    and Service; svctrace_checks_total, svctrace_check_duration_seconds,
    svctrace_last_success_timestamp_seconds, svctrace_read_errors_total; and
    svctrace_programming_latency_seconds, from an EndpointSlice change seen in the API to this
    node's dataplane agreeing with it. /healthz and /readyz too.
  - Events (events.k8s.io, reportingController %[2]s) on the Service when a finding
    appears and when it clears, and on the Node when its condition changes.
  - The Node condition %[3]s (True, or False with the findings), renewed every
    --heartbeat, so that kubectl describe node and %[1]s check --all-nodes see it.

It reads the API with informers (this node's pods and Node only) and the dataplane with the same
readers as check. Install: krew/agent/ (docs/agent.md).`, commandName(), agent.ReportingController, agent.ConditionType),
		Example: `  # On a node, as root, with a kubeconfig (the DaemonSet runs it in-cluster)
  sudo kubectl-svctrace agent --node node1 --kubeconfig /etc/kubernetes/svctrace.conf

  # Metrics on another port, stale after 30 s
  sudo kubectl-svctrace agent --metrics-bind-address 127.0.0.1:9900 --grace 30s`,
		Args: cobra.NoArgs,
		RunE: runOptions(o),
	}
	fl := cmd.Flags()
	fl.StringVar(&o.node, "node", "", "this node's name (default: $NODE_NAME, else the hostname)")
	fl.StringVar(&o.metricsAddr, "metrics-bind-address", o.metricsAddr, "address for /metrics, /healthz and /readyz (empty: none)")
	fl.StringVar(&o.mode, "mode", "", "kube-proxy's mode: iptables, nftables or ipvs (default: detected)")
	fl.DurationVar(&o.grace, "grace", o.grace, "how long a finding must last before it is reported")
	fl.DurationVar(&o.interval, "interval", o.interval, "how often the whole node is checked (at least 40 times a check's duration apart)")
	fl.DurationVar(&o.batch, "batch", o.batch, "least time between two checks of Services the API changed")
	fl.DurationVar(&o.heartbeat, "heartbeat", o.heartbeat, "how often the Node condition is renewed when nothing changed")
	return cmd
}

// Complete fills the node name.
func (o *AgentOptions) Complete([]string) error {
	if o.node == "" {
		o.node = os.Getenv("NODE_NAME")
	}
	if o.node == "" {
		h, _ := os.Hostname()
		o.node = strings.ToLower(strings.TrimSpace(h))
	}
	return nil
}

// Validate checks the flags.
func (o *AgentOptions) Validate() error {
	if err := repair.ValidNodeName(o.node); err != nil {
		return usageErrorf("--node: %v", err)
	}
	for name, d := range map[string]time.Duration{"--grace": o.grace, "--interval": o.interval, "--batch": o.batch, "--heartbeat": o.heartbeat} {
		if d <= 0 {
			return usageErrorf("%s must be positive", name)
		}
	}
	if o.interval < o.batch {
		return usageErrorf("--interval (%s) must not be shorter than --batch (%s)", o.interval, o.batch)
	}
	switch o.mode {
	case "", "iptables", "nftables", "ipvs":
	default:
		return usageErrorf("--mode must be iptables, nftables or ipvs")
	}
	if os.Geteuid() != 0 {
		return &ExitError{Code: ExitUsage, Err: errors.New("the agent reads this node's dataplane and needs root (the DaemonSet runs it privileged)")}
	}
	return nil
}

// Run runs the agent until it is interrupted.
func (o *AgentOptions) Run(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background()
	}
	rc, err := o.config.ToRESTConfig()
	if err != nil {
		return usageErrorf("no API server to report to: %v", err)
	}
	rc.UserAgent = "svctrace-agent/" + version
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	m := agent.NewMetrics(o.node)
	var lastMode string // the agent reads from one goroutine
	a := agent.New(agent.Config{
		Node: o.node, Grace: o.grace, Interval: o.interval, Batch: o.batch, Heartbeat: o.heartbeat, Log: o.streams.ErrOut,
		Read: func(ctx context.Context, scoped bool) (trace.Dataplane, error) {
			// A check of a few Services reads in the mode the last whole-node read found, and
			// leaves the look for other modes' state to the whole-node checks.
			mode := o.mode
			if mode == "" && scoped {
				mode = lastMode
			}
			n, err := dataplane.Read(ctx, noderun.Local{}, dataplane.ReadOptions{Mode: mode, Scoped: scoped, NoLeftovers: scoped})
			if err != nil {
				return nil, err
			}
			if !scoped {
				lastMode = n.Dataplane.Mode()
			}
			return n.Dataplane, nil
		},
	}, client, m)
	if o.metricsAddr != "" {
		ln, err := net.Listen("tcp", o.metricsAddr)
		if err != nil {
			return usageErrorf("--metrics-bind-address: %v", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", probe(a.Live))
		mux.HandleFunc("/readyz", probe(a.Ready))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		fmt.Fprintf(o.streams.ErrOut, "serving metrics on %s\n", ln.Addr())
	}
	if err := a.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func probe(ok func() bool) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if !ok() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}
}
