package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
