//go:build e2e

// Package e2e runs svctrace against a real cluster: etcd, kube-apiserver,
// kube-controller-manager and kube-proxy from the k8s.io/kubernetes module, with pods as network
// namespaces answering real connections. It runs when SVCTRACE_E2E=1 (make test sets it) and
// needs root.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/svctrace/svctrace/test/e2e/harness"
)

var (
	cluster *harness.Cluster
	// pluginPath is a PATH with kubectl and kubectl-svctrace, for real plugin discovery.
	pluginPath string
)

func TestMain(m *testing.M) {
	if os.Getenv("SVCTRACE_E2E") != "1" {
		fmt.Println("e2e: skipped (set SVCTRACE_E2E=1 and the binaries, or run make test)")
		os.Exit(m.Run())
	}
	os.Exit(runE2E(m))
}

func runE2E(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: SVCTRACE_E2E=1 needs root (network namespaces, iptables)")
		return 1
	}
	bin, netprobe, plugin := os.Getenv("SVCTRACE_K8S_BIN"), os.Getenv("SVCTRACE_NETPROBE"), os.Getenv("SVCTRACE_PLUGIN_DIR")
	for name, p := range map[string]string{"SVCTRACE_K8S_BIN": bin, "SVCTRACE_NETPROBE": netprobe, "SVCTRACE_PLUGIN_DIR": plugin} {
		if p == "" {
			fmt.Fprintf(os.Stderr, "e2e: %s is not set (make test sets it)\n", name)
			return 1
		}
	}
	if _, err := os.Stat(filepath.Join(plugin, "kubectl-svctrace")); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	pluginPath = plugin + ":" + bin + ":" + os.Getenv("PATH")
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	c, err := harness.Start(ctx, bin, netprobe, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	cluster = c
	c.KwokPath = plugin // the agent pod's exec runs kubectl-svctrace from there
	defer c.Stop()
	if _, err := c.SetupScenario(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	t := time.Now()
	if err := c.StartKubeProxy("iptables"); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	if _, err := c.WaitDump(ctx, "iptables", harness.ScenarioProgrammed); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	c.Phase("kube-proxy (iptables) programmed the scenario", t)
	c.Phase("e2e setup in all", start)
	code := m.Run()
	c.Phase("e2e tests", t)
	return code
}

// needCluster skips a test outside the e2e run.
func needCluster(t *testing.T) {
	t.Helper()
	if cluster == nil {
		t.Skip("e2e cluster not running (SVCTRACE_E2E=1)")
	}
}
