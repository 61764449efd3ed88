package noderun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	"k8s.io/streaming/pkg/httpstream"
)

// Pod runs commands inside a pod's container through the API server (kubectl exec), with an
// argument vector, never a shell: how svctrace reads a node from a laptop, in the node's
// kube-proxy pod.
type Pod struct {
	Client    kubernetes.Interface
	Config    *rest.Config
	Namespace string
	Name      string
	Container string
}

// Run implements Runner.
func (p Pod) Run(ctx context.Context, argv ...string) ([]byte, error) {
	var stdout bytes.Buffer
	err := p.exec(ctx, &stdout, argv)
	var failed *Error
	if err != nil && !errors.As(err, &failed) {
		return nil, err
	}
	return stdout.Bytes(), err
}

// Stream implements Streamer: consume reads the command's output as it arrives through the exec
// stream (a 33 MB iptables-save is parsed while it is carried, not after). When consume fails
// the exec is ended and consume's error returned, unless the command was not found or failed:
// that is the error then, as with Run.
func (p Pod) Stream(ctx context.Context, consume func(io.Reader) error, argv ...string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := p.exec(ctx, pw, argv)
		pw.CloseWithError(err) // nil: the consumer sees the end of the output
		done <- err
	}()
	cerr := consume(pr)
	if cerr != nil {
		cancel()                // end the exec,
		pr.CloseWithError(cerr) // and any write it is blocked in
	} else {
		_, _ = io.Copy(io.Discard, pr) // what the consumer left: the command's status follows it
	}
	xerr := <-done
	var failed *Error
	if errors.Is(xerr, ErrNotFound) || errors.As(xerr, &failed) || cerr == nil {
		return xerr
	}
	return cerr
}

// exec runs argv in the pod with its standard output to stdout and returns Run's errors: a
// missing command is ErrNotFound, a non-zero exit an *Error.
func (p Pod) exec(ctx context.Context, stdout io.Writer, argv []string) error {
	req := p.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(p.Namespace).Name(p.Name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: p.Container, Command: argv, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(p.Config, "GET", req.URL().String())
	if err != nil {
		return err
	}
	spdy, err := remotecommand.NewSPDYExecutor(p.Config, "POST", req.URL())
	if err != nil {
		return err
	}
	// Fall back to SPDY only when the WebSocket upgrade itself failed (an older API server, or a
	// proxy that cannot upgrade), as kubectl does: any other error, a command's non-zero exit
	// above all, came from a command that ran, and running it again would run it twice.
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	counted := &countingWriter{w: stdout}
	start := time.Now()
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: counted, Stderr: &stderr})
	logExec("pod "+p.Namespace+"/"+p.Name, argv, start, counted.n, err)
	if err == nil {
		return nil
	}
	var code utilexec.ExitError
	status := -1
	if errors.As(err, &code) {
		status = code.ExitStatus()
	}
	msg := stderr.String()
	if status == 127 || strings.Contains(err.Error(), "executable file not found") || strings.Contains(msg, "not found") && status != 1 {
		return fmt.Errorf("%s in pod %s/%s: %w", argv[0], p.Namespace, p.Name, ErrNotFound)
	}
	if status < 0 {
		return fmt.Errorf("exec %s in pod %s/%s: %w", strings.Join(argv, " "), p.Namespace, p.Name, err)
	}
	return &Error{Argv: argv, ExitStatus: status, Stderr: msg, Err: err}
}

// countingWriter counts what passes through it.
type countingWriter struct {
	w io.Writer
	n int
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += n
	return n, err
}
