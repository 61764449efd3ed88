package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svctrace/svctrace/test/e2e/harness"
)

// repairRounds is how many Services the repair benchmark changes and repairs, one after another.
const repairRounds = 5

// recordRepair measures repair of one changed Service on a large node: kube-proxy is stopped
// after it programmed every Service; then, round by round, one endpoint of a Service moves to a
// new address in the API and svctrace plans (dry run) and applies the repair of that Service. It
// prints the median wall time of the plan and of the apply next to `nft -j list ruleset`, and
// fails when a plan is empty, an apply does not exit 0 or the repaired Service still needs repair.
func recordRepair(ctx context.Context, c *harness.Cluster, svctrace string, services int) error {
	c.StopKubeProxy()
	cs, err := c.BulkClient()
	if err != nil {
		return err
	}
	stateDir, err := os.MkdirTemp(c.Dir, "repair-state-")
	if err != nil {
		return err
	}
	common := []string{"--kubeconfig", c.Kubeconfig, "--node", harness.NodeName}
	// run runs a command in the node's namespace: its wall time, exit code, stdout and stderr.
	run := func(args ...string) (time.Duration, int, string, string, error) {
		var stdout, stderr strings.Builder
		cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", harness.NodeNS}, args...)...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		err := cmd.Run()
		wall := time.Since(start)
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code, err = ee.ExitCode(), nil
		}
		return wall, code, stdout.String(), stderr.String(), err
	}
	var dump, plans, applies []time.Duration
	for i := 0; i < repairRounds; i++ {
		wall, code, _, errOut, err := run("nft", "-j", "list", "ruleset")
		if err != nil || code != 0 {
			return fmt.Errorf("nft -j list ruleset: %v (exit %d): %s", err, code, errOut)
		}
		dump = append(dump, wall)

		name := fmt.Sprintf("svc-%05d", services/2+i)
		list, err := cs.DiscoveryV1().EndpointSlices(harness.ScaleNamespace).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + name})
		if err != nil || len(list.Items) == 0 || len(list.Items[0].Endpoints) == 0 {
			return fmt.Errorf("EndpointSlice of %s: %v", name, err)
		}
		s := list.Items[0]
		s.Endpoints[0].Addresses = []string{fmt.Sprintf("10.201.0.%d", i+1)}
		if _, err := cs.DiscoveryV1().EndpointSlices(harness.ScaleNamespace).Update(ctx, &s, metav1.UpdateOptions{}); err != nil {
			return err
		}
		target := harness.ScaleNamespace + "/" + name
		wall, code, out, errOut, err := run(append([]string{svctrace, "repair", target, "-o", "json"}, common...)...)
		if err != nil || code != 1 {
			return fmt.Errorf("repair %s (dry run) exited %d, not 1 (a plan): %v: %s", target, code, err, tail(errOut, 2000))
		}
		var plan struct {
			Changes []json.RawMessage `json:"changes"`
		}
		if err := json.Unmarshal([]byte(out), &plan); err != nil || len(plan.Changes) == 0 {
			return fmt.Errorf("repair %s planned no change: %v: %s", target, err, tail(out, 2000))
		}
		plans = append(plans, wall)
		wall, code, _, errOut, err = run(append([]string{svctrace, "repair", target, "--apply", "--state-dir", stateDir}, common...)...)
		if err != nil || code != 0 {
			return fmt.Errorf("repair %s --apply exited %d: %v: %s", target, code, err, tail(errOut, 2000))
		}
		applies = append(applies, wall)
		if _, code, out, errOut, err = run(append([]string{svctrace, "repair", target}, common...)...); err != nil || code != 0 {
			return fmt.Errorf("after repair %s --apply, its dry run still plans (exit %d): %v: %s%s", target, code, err, tail(out, 2000), tail(errOut, 1000))
		}
		fmt.Fprintf(os.Stderr, "record: round %d: %s planned in %.2fs (%d changes), applied in %.2fs\n", i+1, target, plans[i].Seconds(), len(plan.Changes), applies[i].Seconds())
	}
	states, _ := filepath.Glob(filepath.Join(stateDir, "*"))
	median := func(d []time.Duration) float64 {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2].Seconds()
	}
	fmt.Printf("| on the %d × %d node (nftables, kube-proxy stopped), one endpoint of one Service replaced in the API | median of %d |\n|---|---|\n", services, scale.endpoints, repairRounds)
	fmt.Printf("| nft -j list ruleset | %.2fs |\n", median(dump))
	fmt.Printf("| svctrace repair scale/svc-NNNNN (the plan, dry run) | %.2fs |\n", median(plans))
	fmt.Printf("| svctrace repair scale/svc-NNNNN --apply (plan, check, save, write, read back, trace) | %.2fs |\n", median(applies))
	fmt.Fprintf(os.Stderr, "record: %d state files written\n", len(states))
	return nil
}
