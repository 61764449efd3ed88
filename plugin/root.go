// Package plugin holds svctrace's commands: flags at the edge, turned into typed options by
// Complete, checked by Validate, and run against the engine in trace/.
package plugin

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/klog/v2"

	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/dataplane/snapshot"
)

// Version information, set at build time with -ldflags "-X ...plugin.version=v0.1.0".
var (
	version = "dev"
	commit  = ""
)

// Exit codes, shared by every command (CI pipelines branch on them).
const (
	ExitOK       = 0
	ExitFindings = 1
	ExitUsage    = 2
	// ExitRead is "could not check": the API server could not be reached or refused access, or
	// the node's dataplane could not be read (its tools failed, or an exec through the API).
	ExitRead = 3
	// ExitInterrupted is a run stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
	ExitInterrupted = 130
)

// ExitError carries an exit code with its message.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

func usageErrorf(format string, a ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, a...)}
}

// setVerbosity sends klog (client-go's request log, svctrace's exec log) to w at level v.
func setVerbosity(v int, w io.Writer) error {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	for k, val := range map[string]string{"v": strconv.Itoa(v), "logtostderr": "false", "alsologtostderr": "false", "skip_headers": "false"} {
		if err := fs.Set(k, val); err != nil {
			return err
		}
	}
	klog.SetOutput(w)
	return nil
}

// readFailure marks err as a failure to read the API or the node (exit 3); an interruption stays
// what it is.
func readFailure(err error) error {
	var ee *ExitError
	if err == nil || errors.Is(err, context.Canceled) || errors.As(err, &ee) {
		return err
	}
	return &ExitError{Code: ExitRead, Err: err}
}

// isReadFailure says whether an error without an exit code of its own is a failure to reach or
// read the API server or the node: a refused or timed-out connection, a TLS or HTTP failure, an
// API error status (forbidden, unauthorized, unavailable, timeout), or a node tool that failed.
func isReadFailure(err error) bool {
	var ue *url.Error
	var oe *net.OpError
	var de *net.DNSError
	var se apierrors.APIStatus
	var te *noderun.Error
	switch {
	case errors.As(err, &ue), errors.As(err, &oe), errors.As(err, &de), errors.As(err, &te), errors.Is(err, noderun.ErrNotFound),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ECONNREFUSED):
		return true
	case errors.As(err, &se):
		return se.Status().Code >= 401 && se.Status().Code != 404 && se.Status().Code != 409 && se.Status().Code != 422
	}
	return false
}

// codeOf is the exit code of a command's error: its own, if it carries one; 3 for a failure to
// reach the API or read the node; else 2 (usage mistakes, refusals, unreadable files). 1 is
// reserved for "it worked and found problems".
func codeOf(err error) int {
	var ee *ExitError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ee.Code
	case isReadFailure(err) && !errors.Is(err, context.Canceled):
		return ExitRead
	}
	return ExitUsage
}

// errFindings is returned when findings at or above --fail-on were reported; the output
// already says what they are.
var errFindings = &ExitError{Code: ExitFindings, Err: errors.New("findings at or above --fail-on")}

// commandName is how help and examples spell the command: the plugin, as kubectl runs it.
func commandName() string { return "kubectl svctrace" }

// NewRootCommand builds the command tree.
func NewRootCommand(streams genericiooptions.IOStreams) *cobra.Command {
	cfg := genericclioptions.NewConfigFlags(true)
	name := commandName()
	root := &cobra.Command{
		Use:         "kubectl-svctrace",
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: name},
		Short:       "Trace a packet through kube-proxy's dataplane to the pods behind a Service",
		Long: fmt.Sprintf(`%[1]s walks a packet from a Service VIP, NodePort, LoadBalancer or external IP
through a node's real kube-proxy rules (iptables, nftables or IPVS) to the pods, with the exact
share of new connections each backend receives (trace); finds where the rules disagree with the
API (check); explains why one pod takes most of a Service's traffic (balance); and, run as root on
a node, makes that node's dataplane do what the API says now (repair, dry-run unless --apply).

It reads the dataplane live (run as root on the node), from dump files (--dataplane), from a
snapshot bundle (--snapshot, written by snapshot) or from the embedded demo snapshot (--demo).

Exit codes, for every command: 0 ok, 1 findings at or above --fail-on (or a repair dry run with
changes), 2 usage mistake or refused input, 3 could not read (the API server unreachable or
refusing access, the node's dataplane unreadable, an exec through the API failed), 130
interrupted; repair adds 4, 5 and 6 (see its --help).`, name),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	cfg.AddFlags(root.PersistentFlags())
	verbosity := 0
	root.PersistentFlags().IntVarP(&verbosity, "v", "v", 0, "log on stderr, as kubectl does: 2 every command run on the node or in its kube-proxy pod (with its time and output size), 6 every API request, 8 with bodies")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if verbosity < 0 || verbosity > 10 {
			return usageErrorf("-v %d: use 0 to 10", verbosity)
		}
		if cmd.Name() != "agent" {
			oneShotGC()
		}
		return setVerbosity(verbosity, streams.ErrOut)
	}
	for _, c := range []*cobra.Command{NewCmdTrace(streams, cfg), NewCmdCheck(streams, cfg), NewCmdBalance(streams, cfg), NewCmdRepair(streams, cfg)} {
		addCompletion(c, cfg)
		root.AddCommand(c)
	}
	root.AddCommand(NewCmdSnapshot(streams, cfg))
	root.AddCommand(NewCmdAgent(streams, cfg))
	root.AddCommand(NewCmdRBAC(streams))
	root.AddCommand(newCmdVersion(streams))
	root.AddCommand(newCmdNftObjects(streams))
	addRootCompletion(root, cfg)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})
	return root
}

// oneShotGC paces the garbage collector for a command that reads a node or a cluster once and
// ends. What it reads (a 10,000-Service node's rules, its API objects) stays live to the end,
// and at Go's default pace (GOGC=100) the collector marks it again and again: a fifth of the CPU
// of a node-side check -A there. The pace is GOGC=400 under a soft heap limit of 1 GiB, so
// memory stays bounded: past it the collector runs as often as it must. The agent, which runs
// for days, keeps the default, and so does a user who sets GOGC or GOMEMLIMIT.
func oneShotGC() {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetGCPercent(oneShotGCPercent)
	debug.SetMemoryLimit(oneShotMemoryLimit)
}

const (
	oneShotGCPercent   = 400
	oneShotMemoryLimit = 1 << 30
)

func newCmdVersion(streams genericiooptions.IOStreams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the svctrace version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			v := version
			if commit != "" {
				v += " (" + commit + ")"
			}
			fmt.Fprintf(streams.Out, "svctrace %s\n", v)
			return nil
		},
	}
}

// Execute runs the command line and returns the process exit code. Errors are printed as one
// sentence on stderr.
func Execute() (code int) {
	// Ctrl-C, SIGTERM and SIGHUP cancel the context every command runs with: the walk stops
	// within milliseconds, output stops at its next write, and deferred clean-up (a debug pod)
	// runs.
	ctx, cancel := interruptible(context.Background())
	defer cancel()
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: &ctxWriter{ctx: ctx, f: os.Stdout}, ErrOut: os.Stderr}
	defer func() {
		// A bug must still end in one sentence, not a Go stack.
		if r := recover(); r != nil {
			fmt.Fprintf(streams.ErrOut, "error: internal error (%v); please report it with the command line and, if you can, the dump\n", r)
			code = ExitUsage
		}
	}()
	root := NewRootCommand(streams)
	root.SetArgs(demoArgs(os.Args[1:]))
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	code = codeOf(err)
	var ee *ExitError
	if errors.As(err, &ee) && ee == errFindings {
		return code
	}
	if ctx.Err() != nil && ee == nil && errors.Is(err, context.Canceled) {
		// Interrupted before the command had anything else to say: say that, as a shell does.
		fmt.Fprintln(streams.ErrOut, "error: interrupted")
		return ExitInterrupted
	}
	fmt.Fprintf(streams.ErrOut, "error: %v\n", err)
	return code
}

// demoArgs joins `--demo MODE` into `--demo=MODE` when MODE is a demo's mode: --demo alone means
// the iptables demo, so the flag parser would take the mode for a command argument (a TARGET or a
// Service named nftables, which no demo has).
func demoArgs(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		if args[i] == "--" {
			return append(out, args[i:]...)
		}
		if args[i] == "--demo" && i+1 < len(args) {
			if _, mode := snapshot.DemoModes[args[i+1]]; mode {
				out = append(out, "--demo="+args[i+1])
				i++
				continue
			}
		}
		out = append(out, args[i])
	}
	return out
}

// options is what every command is: its flags turned into typed values (Complete), checked before
// anything is read (Validate), then run with the command's context (Run).
type options interface {
	Complete(args []string) error
	Validate() error
	Run(ctx context.Context) error
}

// Every command is one.
var (
	_ options = (*TraceOptions)(nil)
	_ options = (*CheckOptions)(nil)
	_ options = (*BalanceOptions)(nil)
	_ options = (*RepairOptions)(nil)
	_ options = (*SnapshotOptions)(nil)
)

// runOptions is every command's RunE.
func runOptions(o options) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
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
	}
}

// interruptible returns ctx cancelled also by Ctrl-C, SIGTERM and SIGHUP, so that a command
// returns through its deferred clean-up (a debug pod deleted, a repair rolled back) instead of
// dying. Execute wraps every command's context in it, once.
func interruptible(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
}

// ctxWriter is standard output that refuses writes once the command's context is cancelled, so
// that rendering a long result stops at Ctrl-C. Fd lets render see whether it is a terminal.
type ctxWriter struct {
	ctx context.Context
	f   *os.File
}

func (w *ctxWriter) Write(p []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	return w.f.Write(p)
}

// Fd is the file descriptor of the output.
func (w *ctxWriter) Fd() uintptr { return w.f.Fd() }
