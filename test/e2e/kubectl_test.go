//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svctrace/svctrace/test/e2e/harness"
)

// kubectl runs kubectl with the plugin on PATH — from the root namespace (as a laptop would), or
// inside the node namespace when inNode (node-side) — and returns stdout, stderr and the exit code.
// kubectl takes no flags before a plugin's name, so the kubeconfig comes from the environment.
func kubectl(t *testing.T, inNode bool, args ...string) (stdout []byte, stderr string, code int) {
	t.Helper()
	env := []string{"PATH=" + pluginPath, "KUBECONFIG=" + cluster.Kubeconfig}
	var cmd *exec.Cmd
	if inNode {
		cmd = exec.Command("ip", append(append([]string{"netns", "exec", harness.NodeNS, "env"}, env...), append([]string{"kubectl"}, args...)...)...)
	} else {
		cmd = exec.Command(filepath.Join(cluster.BinDir, "kubectl"), args...)
		cmd.Env = append(os.Environ(), env...)
	}
	var errOut strings.Builder
	cmd.Stderr = &errOut
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out, errOut.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return out, errOut.String(), 0
}

// runKubectl runs kubectl from the root namespace; a non-zero exit is an error with its stderr.
func runKubectl(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	return asError(kubectl(t, false, args...))
}

// kubectlInNode runs kubectl inside the node namespace: kubectl finds kubectl-svctrace by its own
// plugin discovery, and svctrace reads the node's live rules.
func kubectlInNode(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	return asError(kubectl(t, true, args...))
}

// kubectlOnceAllowed runs kubectl until it exits 0 or 10 s have passed (RBAC just applied takes a
// moment to reach the API server's authorizer cache), and returns the last run's stderr and code.
func kubectlOnceAllowed(t *testing.T, inNode bool, args ...string) (string, int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		_, stderr, code := kubectl(t, inNode, args...)
		if code == 0 || time.Now().After(deadline) {
			return stderr, code
		}
	}
}

func asError(out []byte, stderr string, code int) ([]byte, error) {
	if code != 0 {
		return out, fmt.Errorf("exit status %d: %s", code, stderr)
	}
	return out, nil
}

// TestCompletionThroughKubectl: kubectl's plugin completion runs kubectl_complete-svctrace, which
// completes Services, nodes and ports from the cluster.
func TestCompletionThroughKubectl(t *testing.T) {
	needCluster(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"__complete", "svctrace", "trace", "default/host"}, "default/hostnames"},
		{[]string{"__complete", "svctrace", "check", "--node", "no"}, "node1"},
		{[]string{"__complete", "svctrace", "trace", "default/multi", "--port", ""}, "metrics"},
	} {
		out, err := runKubectl(t, tc.args...)
		if err != nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("kubectl %v: %v\n%s", tc.args, err, out)
		}
	}
}
