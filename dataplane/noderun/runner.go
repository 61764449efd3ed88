// Package noderun runs the node tools svctrace reads the dataplane with (iptables-save, nft, ipset,
// conntrack), always with an argument vector and never through a shell.
package noderun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	osexec "os/exec"
	"strings"
	"time"

	"k8s.io/klog/v2"
)

// Runner runs a command and returns its standard output. The live node, a remote exec into a
// kube-proxy pod and unit-test fakes all implement it.
type Runner interface {
	Run(ctx context.Context, argv ...string) ([]byte, error)
}

// Error is a command that failed: it keeps the command, its exit status and what it printed on
// standard error, so a user sees why.
type Error struct {
	Argv       []string
	ExitStatus int
	Stderr     string
	Err        error
}

func (e *Error) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	return fmt.Sprintf("%s failed (exit status %d): %s", strings.Join(e.Argv, " "), e.ExitStatus, msg)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrNotFound is returned when the tool is not installed.
var ErrNotFound = errors.New("command not found")

// Local runs commands on this machine.
type Local struct{}

// Run implements Runner.
func (Local) Run(ctx context.Context, argv ...string) ([]byte, error) {
	if _, err := osexec.LookPath(argv[0]); err != nil {
		logExec("local", argv, time.Now(), 0, ErrNotFound)
		return nil, fmt.Errorf("%s: %w", argv[0], ErrNotFound)
	}
	start := time.Now()
	out, err := runLocal(osexec.CommandContext(ctx, argv[0], argv[1:]...), argv)
	logExec("local", argv, start, len(out), err)
	return out, err
}

// logExec logs one command at -v 2 and above (klog, as kubectl logs its requests): where it ran,
// the argument vector, how long it took, how much it printed, and how it failed.
func logExec(where string, argv []string, start time.Time, n int, err error) {
	if !klog.V(2).Enabled() {
		return
	}
	if err != nil {
		klog.InfoS("exec", "on", where, "argv", strings.Join(argv, " "), "elapsed", time.Since(start).Round(time.Millisecond), "bytes", n, "err", err)
		return
	}
	klog.InfoS("exec", "on", where, "argv", strings.Join(argv, " "), "elapsed", time.Since(start).Round(time.Millisecond), "bytes", n)
}

// Streamer is a Runner that can also hand a command's standard output to a consumer as it is
// written, rather than once the command has ended.
type Streamer interface {
	Stream(ctx context.Context, consume func(io.Reader) error, argv ...string) error
}

// Stream implements Streamer: consume reads the command's standard output while it runs. When
// consume fails the command is stopped; a command that fails is an *Error as with Run.
func (Local) Stream(ctx context.Context, consume func(io.Reader) error, argv ...string) error {
	if _, err := osexec.LookPath(argv[0]); err != nil {
		return fmt.Errorf("%s: %w", argv[0], ErrNotFound)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := osexec.CommandContext(ctx, argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return &Error{Argv: argv, ExitStatus: -1, Err: err}
	}
	growPipe(out)
	start := time.Now()
	counted := &countingReader{r: out}
	cerr := consume(counted)
	defer func() { logExec("local", argv, start, counted.n, cerr) }()
	if cerr != nil {
		cancel() // the command must not block on a pipe nobody reads
	}
	if werr := cmd.Wait(); werr != nil && cerr == nil {
		return commandError(argv, werr, stderr.String())
	}
	return cerr
}

// RunInput runs a command on this machine with stdin as its standard input. The command runs in
// its own process group, so a Ctrl-C meant for svctrace does not interrupt it halfway: writers
// (iptables-restore) finish their transaction, and svctrace decides what to do next; for the same
// reason it takes no context.
func (Local) RunInput(stdin []byte, argv ...string) ([]byte, error) {
	if _, err := osexec.LookPath(argv[0]); err != nil {
		return nil, fmt.Errorf("%s: %w", argv[0], ErrNotFound)
	}
	cmd := osexec.Command(argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.SysProcAttr = detached()
	start := time.Now()
	out, err := runLocal(cmd, argv)
	logExec("local", argv, start, len(out), err)
	return out, err
}

// countingReader counts what a streamed command printed, for the log.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// runLocal runs cmd and returns its standard output, or an *Error with its exit status and
// standard error.
func runLocal(cmd *osexec.Cmd, argv []string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), commandError(argv, err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// commandError is a command that failed, with its exit status (-1 when it did not exit).
func commandError(argv []string, err error, stderr string) *Error {
	status := -1
	var ee *osexec.ExitError
	if errors.As(err, &ee) {
		status = ee.ExitCode()
	}
	return &Error{Argv: argv, ExitStatus: status, Stderr: stderr, Err: err}
}
