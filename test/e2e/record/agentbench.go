package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svctrace/svctrace/test/e2e/harness"
)

var agentFlags struct {
	duration time.Duration
	args     string
}

// procTicks returns a process's CPU time in clock ticks, its own and its waited-for children's
// (the nft and iptables-save it runs), from /proc/PID/stat.
func procTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) start after the last ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	var sum int64
	for _, i := range []int{11, 12, 13, 14} { // utime, stime, cutime, cstime (fields 14-17)
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// procHWM returns a process's peak RSS in KiB (VmHWM).
func procHWM(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			n, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return n
		}
	}
	return 0
}

// metric sums a metric's samples (all label sets) in a Prometheus text page.
func metric(page, name string) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(page))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, name+" ") || strings.HasPrefix(l, name+"{") {
			v, _ := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
			sum += v
		}
	}
	return sum
}

// scrape fetches the agent's metrics (it listens on the node's address).
func scrape(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+harness.NodeIP+":9808/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return string(b), err
}

// recordAgent measures the agent on a large node: it runs next to the real kube-proxy while one
// EndpointSlice changes every second for agentFlags.duration, and reports its average CPU (its
// children's included), peak RSS, checks, programming latency and findings.
func recordAgent(ctx context.Context, c *harness.Cluster, svctrace string, services int) error {
	logPath := filepath.Join(c.Dir, "agent.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := append([]string{"netns", "exec", harness.NodeNS, svctrace, "agent", "--node", harness.NodeName,
		"--kubeconfig", c.Kubeconfig, "--metrics-bind-address", harness.NodeIP + ":9808"}, strings.Fields(agentFlags.args)...)
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Env = append(os.Environ(), "GOMEMLIMIT=350MiB") // as the shipped DaemonSet sets it
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	t := time.Now()
	for {
		if page, err := scrape(ctx); err == nil && metric(page, "svctrace_checks_total") > 0 {
			break
		}
		if time.Since(t) > 5*time.Minute {
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("the agent made no check in 5 minutes: %s", tail(string(b), 2000))
		}
		time.Sleep(time.Second)
	}
	c.Phase("agent: first whole-node check done", t)
	cs, err := c.BulkClient()
	if err != nil {
		return err
	}
	ticks0, err := procTicks(pid)
	if err != nil {
		return err
	}
	start := time.Now()
	changes := 0
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for time.Since(start) < agentFlags.duration {
		<-tick.C
		// One endpoint of one Service moves to a new address, as a pod replaced elsewhere.
		name := fmt.Sprintf("svc-%05d", changes%services)
		slices, err := cs.DiscoveryV1().EndpointSlices(harness.ScaleNamespace).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + name})
		if err != nil || len(slices.Items) == 0 || len(slices.Items[0].Endpoints) == 0 {
			return fmt.Errorf("EndpointSlice of %s: %v", name, err)
		}
		s := slices.Items[0]
		s.Endpoints[0].Addresses = []string{fmt.Sprintf("10.200.%d.%d", changes/250, changes%250+1)}
		if _, err := cs.DiscoveryV1().EndpointSlices(harness.ScaleNamespace).Update(ctx, &s, metav1.UpdateOptions{}); err != nil {
			return err
		}
		changes++
	}
	elapsed := time.Since(start)
	// Give the last change its grace period before reading the findings.
	time.Sleep(20 * time.Second)
	ticks1, err := procTicks(pid)
	if err != nil {
		return err
	}
	page, err := scrape(ctx)
	if err != nil {
		return err
	}
	logBytes, _ := os.ReadFile(logPath)
	findingsLogged := strings.Count(string(logBytes), " finding: ")
	cpu := float64(ticks1-ticks0) / 100 / (elapsed + 20*time.Second).Seconds()
	fmt.Printf("| agent %s on the %d × %d node (%s), one EndpointSlice change per second for %s | result |\n|---|---|\n",
		agentFlags.args, services, scale.endpoints, proxyFlags.Mode, agentFlags.duration)
	fmt.Printf("| changes made | %d |\n", changes)
	fmt.Printf("| average CPU (the agent and the commands it ran) | %.1f%% of one core |\n", 100*cpu)
	fmt.Printf("| peak RSS | %d MiB |\n", procHWM(pid)/1024)
	fmt.Printf("| checks (whole node + changed Services) | %.0f |\n", metric(page, "svctrace_checks_total"))
	fmt.Printf("| programming latency observations, mean | %.0f, %.2f s |\n", metric(page, "svctrace_programming_latency_seconds_count"),
		metric(page, "svctrace_programming_latency_seconds_sum")/max(1, metric(page, "svctrace_programming_latency_seconds_count")))
	fmt.Printf("| findings reported at the end / logged during the run | %.0f / %d |\n", metric(page, "svctrace_findings"), findingsLogged)
	fmt.Fprintf(os.Stderr, "record: agent log: %s\n", tail(string(logBytes), 1500))
	return nil
}
