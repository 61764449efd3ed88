package noderun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	req := p.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(p.Namespace).Name(p.Name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: p.Container, Command: argv, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(p.Config, "GET", req.URL().String())
	if err != nil {
		return nil, err
	}
	spdy, err := remotecommand.NewSPDYExecutor(p.Config, "POST", req.URL())
	if err != nil {
		return nil, err
	}
	// Fall back to SPDY only when the WebSocket upgrade itself failed (an older API server, or a
	// proxy that cannot upgrade), as kubectl does: any other error, a command's non-zero exit
	// above all, came from a command that ran, and running it again would run it twice.
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	start := time.Now()
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr})
	logExec("pod "+p.Namespace+"/"+p.Name, argv, start, stdout.Len(), err)
	if err == nil {
		return stdout.Bytes(), nil
	}
	var code utilexec.ExitError
	status := -1
	if errors.As(err, &code) {
		status = code.ExitStatus()
	}
	msg := stderr.String()
	if status == 127 || strings.Contains(err.Error(), "executable file not found") || strings.Contains(msg, "not found") && status != 1 {
		return nil, fmt.Errorf("%s in pod %s/%s: %w", argv[0], p.Namespace, p.Name, ErrNotFound)
	}
	if status < 0 {
		return nil, fmt.Errorf("exec %s in pod %s/%s: %w", strings.Join(argv, " "), p.Namespace, p.Name, err)
	}
	return stdout.Bytes(), &Error{Argv: argv, ExitStatus: status, Stderr: msg, Err: err}
}
