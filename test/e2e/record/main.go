// Command record brings up the e2e harness with the standard scenario, lets the real kube-proxy
// program it, and writes what it programmed as fixtures: the node's dataplane dump and the API
// objects as `kubectl get svc,endpointslices,pods,nodes -A -o yaml` prints them.
//
//	go run ./test/e2e/record -mode iptables -out trace/testdata/scenario-iptables
//
// Rerun it (as root) whenever the kube-proxy version changes; hack/record-fixtures.sh does.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/svctrace/svctrace/test/e2e/harness"
)

func main() {
	mode := flag.String("mode", "iptables", "kube-proxy mode: iptables or nftables")
	out := flag.String("out", "", "directory to write dataplane and objects.yaml into")
	bin := flag.String("bin", "", "directory with the Kubernetes binaries (hack/k8s-binaries.sh)")
	netprobe := flag.String("netprobe", "", "path to the netprobe binary")
	hold := flag.Bool("hold", false, "keep the cluster running until Ctrl-C (for poking at it)")
	flag.Parse()
	if err := record(*mode, *out, *bin, *netprobe, *hold); err != nil {
		fmt.Fprintln(os.Stderr, "record:", err)
		os.Exit(1)
	}
}

func record(mode, out, bin, netprobe string, hold bool) error {
	if out == "" || bin == "" || netprobe == "" {
		return fmt.Errorf("-out, -bin and -netprobe are required")
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	c, err := harness.Start(ctx, bin, netprobe, os.Stderr)
	if err != nil {
		return err
	}
	defer c.Stop()
	if _, err := c.SetupScenario(ctx); err != nil {
		return err
	}
	if err := c.StartKubeProxy(mode); err != nil {
		return err
	}
	dump, err := c.WaitDump(ctx, mode, harness.ScenarioProgrammed)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	name := "iptables-save.txt"
	if mode == "nftables" {
		name = "nft.json"
	}
	if err := os.WriteFile(filepath.Join(out, name), []byte(dump), 0o644); err != nil {
		return err
	}
	kubectl := exec.Command(filepath.Join(bin, "kubectl"), "--kubeconfig", c.Kubeconfig, "get", "svc,endpointslices,pods,nodes", "-A", "-o", "yaml")
	kubectl.Stderr = os.Stderr
	objs, err := kubectl.Output()
	if err != nil {
		return fmt.Errorf("kubectl get: %w", err)
	}
	if err := os.WriteFile(filepath.Join(out, "objects.yaml"), objs, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "record: wrote %s and objects.yaml to %s\n", name, out)
	if hold {
		fmt.Fprintf(os.Stderr, "record: holding; KUBECONFIG=%s; Ctrl-C to stop\n", c.Kubeconfig)
		<-ctx.Done()
	}
	return nil
}
