package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runKubectl runs kubectl from the root namespace with the plugin on PATH.
func runKubectl(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(cluster.BinDir, "kubectl"), args...)
	// kubectl takes no flags before a plugin's name, so the kubeconfig comes from the environment.
	cmd.Env = append(os.Environ(), "PATH="+pluginPath, "KUBECONFIG="+cluster.Kubeconfig)
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return out, fmt.Errorf("%w: %s", err, ee.Stderr)
	}
	return out, err
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
