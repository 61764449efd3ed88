package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/svctrace/svctrace/plugin/agent"
	"github.com/svctrace/svctrace/test/e2e/harness"
	"github.com/svctrace/svctrace/trace/watch"
)

var fleetFlags struct {
	nodes    int
	parallel string
	kwok     string
}

// recordFleet measures `check -A --all-nodes` on many nodes: kwok plays the kubelet of N nodes
// that each run a kube-proxy pod, and every exec into them runs in node1's namespace, against the
// real kube-proxy's rules. It prints wall time, peak RSS and the API requests the command made.
func recordFleet(ctx context.Context, c *harness.Cluster, svctrace string) error {
	if fleetFlags.kwok == "" || svctrace == "" {
		return fmt.Errorf("-fleet needs -kwok and -compare (the kubectl-svctrace binary)")
	}
	if err := c.StartKwok(ctx, fleetFlags.kwok); err != nil {
		return err
	}
	defer c.StopProcess("kwok")
	cs, err := c.BulkClient()
	if err != nil {
		return err
	}
	t := time.Now()
	if err := parallel(fleetFlags.nodes, func(i int) error { return addFleetNode(ctx, cs, fmt.Sprintf("fleet-%05d", i)) }); err != nil {
		return err
	}
	c.Phase(fmt.Sprintf("created %d kwok nodes with kube-proxy pods", fleetFlags.nodes), t)
	t = time.Now()
	for {
		pods, err := cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-proxy"})
		running := 0
		if err == nil {
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning {
					running++
				}
			}
		}
		fmt.Fprintf(os.Stderr, "\rkwok runs %d/%d kube-proxy pods", running, fleetFlags.nodes+1)
		if running >= fleetFlags.nodes+1 {
			break
		}
		if time.Since(t) > 20*time.Minute {
			return fmt.Errorf("kwok did not run the pods in time")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	fmt.Fprintln(os.Stderr)
	c.Phase("kwok runs every kube-proxy pod", t)

	fmt.Printf("| `check -A --all-nodes` on %d nodes | wall time | peak RSS | nodes checked | exec requests | other API requests |\n|---|---|---|---|---|---|\n", fleetFlags.nodes+1)
	for _, p := range strings.Split(fleetFlags.parallel, ",") {
		run, err := timedCheck(ctx, c, cs, svctrace, p)
		if err != nil {
			return err
		}
		var report struct{ Nodes []struct{ Node string } }
		_ = json.Unmarshal([]byte(run.stdout), &report)
		if run.err != nil && !strings.Contains(run.err.Error(), "exit status 1") {
			return fmt.Errorf("check --all-nodes --parallel %s: %v: %s", p, run.err, tail(run.stderr, 20))
		}
		fmt.Printf("| --parallel %s | %.1fs | %d MiB | %d | %d | %d |\n", p, run.wall.Seconds(), run.rss/1024, len(report.Nodes),
			run.after["exec"]-run.before["exec"], run.after["other"]-run.before["other"])
	}
	return agentFleet(ctx, c, cs, svctrace)
}

// agentFleet writes the svctrace agent's Node condition on every node with the agent's own code
// (True, and False on every 500th: unhealthy nodes that must still be read), then times check
// --all-nodes again: in the same run as the exec fan-out above.
func agentFleet(ctx context.Context, c *harness.Cluster, cs kubernetes.Interface, svctrace string) error {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: harness.KwokLabel})
	if err != nil {
		return err
	}
	t := time.Now()
	unhealthy := len(nodes.Items) / 500
	err = parallel(len(nodes.Items), func(i int) error {
		status, reason := corev1.ConditionTrue, watch.ReasonAgrees
		if i%500 == 499 {
			status, reason = corev1.ConditionFalse, watch.ReasonStale
		}
		_, err := agent.WriteCondition(ctx, cs, nodes.Items[i].Name, nil, status, reason, "written by the fleet benchmark")
		return err
	})
	if err != nil {
		return err
	}
	c.Phase(fmt.Sprintf("agent conditions on %d nodes (%d unhealthy)", len(nodes.Items), unhealthy), t)
	run, err := timedCheck(ctx, c, cs, svctrace, "64")
	if err != nil {
		return err
	}
	if run.err != nil && !strings.Contains(run.err.Error(), "exit status 1") {
		return fmt.Errorf("check --all-nodes with agents: %v: %s", run.err, tail(run.stderr, 20))
	}
	var report struct {
		Nodes []struct{ Node, ReportedBy string }
	}
	_ = json.Unmarshal([]byte(run.stdout), &report)
	read := 0
	for _, n := range report.Nodes {
		if n.ReportedBy == "" {
			read++
		}
	}
	fmt.Printf("| --parallel 64, agent conditions on every node (%d unhealthy) | %.1fs | %d MiB | %d (%d read) | %d | %d |\n", unhealthy, run.wall.Seconds(), run.rss/1024,
		len(report.Nodes), read, run.after["exec"]-run.before["exec"], run.after["other"]-run.before["other"])
	fmt.Fprintln(os.Stderr, tail(run.stderr, 3))
	return nil
}

// checkRun is one timed `check -A --all-nodes` and the API server's request counts around it.
type checkRun struct {
	stdout, stderr string
	err            error
	wall           time.Duration
	rss            int64 // KiB
	before, after  map[string]int64
}

// timedCheck runs `check -A --all-nodes --parallel P` under GNU time.
func timedCheck(ctx context.Context, c *harness.Cluster, cs kubernetes.Interface, svctrace, parallel string) (*checkRun, error) {
	before, err := requestCounts(ctx, cs)
	if err != nil {
		return nil, err
	}
	var stdout, stderr strings.Builder
	cmd := exec.CommandContext(ctx, "/usr/bin/time", "-f", "maxrss=%M", svctrace, "check", "-A", "--all-nodes", "--parallel", parallel, "-o", "json", "--kubeconfig", c.Kubeconfig)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	runErr := cmd.Run()
	r := &checkRun{stdout: stdout.String(), stderr: stderr.String(), err: runErr, wall: time.Since(start), before: before}
	if r.after, err = requestCounts(ctx, cs); err != nil {
		return nil, err
	}
	if i := strings.LastIndex(r.stderr, "maxrss="); i >= 0 {
		fmt.Sscanf(r.stderr[i:], "maxrss=%d", &r.rss)
	}
	return r, nil
}

// parallel runs fn(0..n-1) on 32 workers and returns one of the errors.
func parallel(n int, fn func(i int) error) error {
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := fn(i); err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	return firstErr
}

func addFleetNode(ctx context.Context, cs kubernetes.Interface, name string) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"type": "kwok"}}}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return err
	}
	pod := &corev1.Pod{
		ObjectMeta: harness.KubeProxyPodMeta("kube-proxy-" + name),
		Spec: corev1.PodSpec{NodeName: name, Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{Name: "kube-proxy", Image: "registry.k8s.io/kube-proxy:v1.36.3"}}},
	}
	_, err := cs.CoreV1().Pods("kube-system").Create(ctx, pod, metav1.CreateOptions{})
	return err
}

// requestCounts reads kube-apiserver's request counters: exec requests, and all others.
func requestCounts(ctx context.Context, cs kubernetes.Interface) (map[string]int64, error) {
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, l := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(l, "apiserver_request_total{") {
			continue
		}
		i := strings.LastIndex(l, " ")
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			continue
		}
		key := "other"
		if strings.Contains(l, `subresource="exec"`) {
			key = "exec"
		}
		out[key] += int64(v)
	}
	return out, nil
}
