package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/svctrace/svctrace/dataplane/nftjson"
	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/test/e2e/harness"
)

// remoteFlag is -remote.
var remoteFlag bool

// recordRemote measures a trace from outside the node (--remote, exec through the API server) on
// a large nftables node, side by side in one run: through the svctrace agent's pod (kwok serves
// its exec in node1's namespace; only what the packet touches crosses the exec stream) and, with
// the agent's pod gone, through kube-proxy's pod (nft lists the whole ruleset). It prints the
// median wall time of five runs each and the bytes the exec stream carried, next to the size of
// `nft -j list ruleset`, and fails when the two traces differ.
func recordRemote(ctx context.Context, c *harness.Cluster, svctrace string, services int) error {
	if fleetFlags.kwok == "" {
		return fmt.Errorf("-remote needs -kwok")
	}
	c.KwokPath = filepath.Dir(svctrace)
	if filepath.Base(svctrace) != "kubectl-svctrace" {
		return fmt.Errorf("-compare must name a file called kubectl-svctrace (kwok runs the agent's binary by that name), not %s", svctrace)
	}
	if err := c.StartKwok(ctx, fleetFlags.kwok); err != nil {
		return err
	}
	defer c.StopProcess("kwok")
	if err := c.AddAgentPod(ctx); err != nil {
		return err
	}
	svc, err := c.Client.CoreV1().Services(harness.ScaleNamespace).Get(ctx, fmt.Sprintf("svc-%05d", services/2), metav1.GetOptions{})
	if err != nil {
		return err
	}
	dump, err := harness.NS(harness.NodeNS, "nft", "-j", "list", "ruleset")
	if err != nil {
		return err
	}
	args := []string{"trace", svc.Spec.ClusterIP + ":80", "--kubeconfig", c.Kubeconfig, "--node", harness.KwokNode, "--remote", "--from", "10.244.1.254", "-o", "json", "-v", "1"}
	measure := func(want string) (time.Duration, string, string, error) {
		var times []time.Duration
		var out, stderr string
		for i := 0; i < 5; i++ {
			var so, se strings.Builder
			cmd := exec.CommandContext(ctx, svctrace, args...)
			cmd.Stdout, cmd.Stderr = &so, &se
			start := time.Now()
			if err := cmd.Run(); err != nil {
				return 0, "", "", fmt.Errorf("%v: %s", err, tail(se.String(), 2000))
			}
			times = append(times, time.Since(start))
			out, stderr = so.String(), se.String()
			if !strings.Contains(stderr, want) {
				return 0, "", "", fmt.Errorf("the remote trace did not say %q:\n%s", want, tail(stderr, 2000))
			}
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		return times[2], out, stderr, nil
	}
	// kwok serves a new pod's exec a moment after it reports the pod running.
	var agentTime time.Duration
	var agentOut, agentErr string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		if agentTime, agentOut, agentErr, err = measure("KB from the svctrace binary on the node"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return err
	}
	var kb, reads int
	if i := strings.Index(agentErr, "KB from nft and "); i >= 0 {
		fmt.Sscanf(agentErr[i+len("KB from nft and "):], "%d", &kb)
	}
	if i := strings.Index(agentErr, " objects in "); i >= 0 {
		fmt.Sscanf(agentErr[i+len(" objects in "):], "%d", &reads)
	}
	// The single reads, bare, through the same pods: one exec of the agent's binary (its
	// smallest answer, the table list) and, through kube-proxy's pod, the whole ruleset.
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return err
	}
	bare := func(pod noderun.Pod, argv ...string) (time.Duration, error) {
		var times []time.Duration
		for i := 0; i < 5; i++ {
			start := time.Now()
			if _, err := pod.Run(ctx, argv...); err != nil {
				return 0, fmt.Errorf("%s through %s: %w", strings.Join(argv, " "), pod.Name, err)
			}
			times = append(times, time.Since(start))
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		return times[2], nil
	}
	agentExec, err := bare(noderun.Pod{Client: c.Client, Config: cfg, Namespace: harness.AgentNamespace, Name: harness.AgentPod}, "kubectl-svctrace", nftjson.ObjectsCommand, `{"tables":true}`)
	if err != nil {
		return err
	}
	nftExec, err := bare(noderun.Pod{Client: c.Client, Config: cfg, Namespace: "kube-system", Name: harness.KubeProxyPod}, "nft", "-j", "list", "ruleset")
	if err != nil {
		return err
	}
	if err := c.Client.CoreV1().Pods(harness.AgentNamespace).Delete(ctx, harness.AgentPod, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	wholeTime, wholeOut, _, err := measure("a remote nftables read lists the whole ruleset")
	if err != nil {
		return err
	}
	if agentOut != wholeOut {
		return fmt.Errorf("the trace through the agent differs from the trace of the whole ruleset:\n%s\n%s", tail(agentOut, 1500), tail(wholeOut, 1500))
	}
	fmt.Printf("| remote trace of one Service, %d × %d node (nftables), through the API server | median of 5 | through the exec stream |\n|---|---|---|\n", services, scale.endpoints)
	fmt.Printf("| `nft -j list ruleset` alone, through kube-proxy's pod | %.2fs | %d KB |\n", nftExec.Seconds(), len(dump)/1024)
	fmt.Printf("| trace through kube-proxy's pod (`nft -j list ruleset`) | %.2fs (%.2f× that read) | %d KB |\n", wholeTime.Seconds(), wholeTime.Seconds()/nftExec.Seconds(), len(dump)/1024)
	fmt.Printf("| one exec of `kubectl-svctrace nft-objects` alone (the table list), through the agent's pod | %.2fs | |\n", agentExec.Seconds())
	fmt.Printf("| trace through the svctrace agent's pod (only what the packet touches, %d reads) | %.2fs (%.1f× one exec) | %d KB (%.2f%%) |\n", reads, agentTime.Seconds(), agentTime.Seconds()/agentExec.Seconds(), kb, 100*float64(kb*1024)/float64(len(dump)))
	fmt.Fprintf(os.Stderr, "record: the two traces print the same %d bytes\n", len(agentOut))
	// Where the time goes through kube-proxy's pod: one more run, with every exec logged.
	logged, took, err := verboseRun(ctx, svctrace, args)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "record: one more run through kube-proxy's pod with -v 2 took %v; its execs:\n", took)
	for _, line := range strings.Split(logged, "\n") {
		if strings.Contains(line, `"exec"`) || strings.HasPrefix(line, "read ") {
			fmt.Fprintln(os.Stderr, line)
		}
	}
	if holdCluster {
		fmt.Fprintf(os.Stderr, "record: holding; KUBECONFIG=%s; try: %s %s; Ctrl-C to stop\n", c.Kubeconfig, svctrace, strings.Join(args, " "))
		<-ctx.Done()
	}
	return nil
}

// recordRemoteIptables measures a remote trace on a large node in iptables mode (legacy), side
// by side in one run, interleaved, five runs each: the bare `iptables-legacy-save -c` through
// kube-proxy's pod (kwok serves its exec in node1's namespace; the output crosses the exec
// stream to this process) and `trace VIP:80 --remote`, which runs that same command there and
// the small detection reads before it. It prints the medians and their ratio, and fails unless
// the remote trace prints what the trace of the node's own dump prints.
// remoteRuns is how many runs of each the iptables remote bench interleaves: the exec stream's
// time through this machine's API server varies by ±15 % from run to run.
const remoteRuns = 9

func recordRemoteIptables(ctx context.Context, c *harness.Cluster, svctrace string, services int) error {
	if fleetFlags.kwok == "" {
		return fmt.Errorf("-remote needs -kwok")
	}
	if err := c.StartKwok(ctx, fleetFlags.kwok); err != nil {
		return err
	}
	defer c.StopProcess("kwok")
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return err
	}
	pod := noderun.Pod{Client: c.Client, Config: cfg, Namespace: "kube-system", Name: harness.KubeProxyPod}
	// kwok serves a new pod's exec a moment after it reports the pod running.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		if _, err = pod.Run(ctx, "true"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("exec through kwok never worked: %w", err)
	}
	svc, err := c.Client.CoreV1().Services(harness.ScaleNamespace).Get(ctx, fmt.Sprintf("svc-%05d", services/2), metav1.GetOptions{})
	if err != nil {
		return err
	}
	args := []string{"trace", svc.Spec.ClusterIP + ":80", "--kubeconfig", c.Kubeconfig, "--node", harness.KwokNode, "--remote", "--no-api", "--from", "10.244.1.254", "-o", "json"}
	var saveTimes, traceTimes []time.Duration
	var size int
	var remoteOut string
	for i := 0; i < remoteRuns; i++ {
		start := time.Now()
		out, err := pod.Run(ctx, "iptables-legacy-save", "-c")
		if err != nil {
			return fmt.Errorf("iptables-legacy-save through the pod: %w", err)
		}
		saveTimes, size = append(saveTimes, time.Since(start)), len(out)
		var so, se strings.Builder
		cmd := exec.CommandContext(ctx, svctrace, args...)
		cmd.Stdout, cmd.Stderr = &so, &se
		start = time.Now()
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("remote trace: %v: %s", err, tail(se.String(), 2000))
		}
		traceTimes, remoteOut = append(traceTimes, time.Since(start)), so.String()
	}
	// Where the time goes: one more run, with every exec logged (-v 2: its command, time and
	// bytes).
	logged, took, err := verboseRun(ctx, svctrace, args)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "record: one more run with -v 2 took %v:\n%s", took, logged)
	// The reference: the same trace of the node's own dump, read on the node.
	dump, err := harness.NS(harness.NodeNS, harness.IptablesSave, "-c")
	if err != nil {
		return err
	}
	file := filepath.Join(os.TempDir(), "svctrace-remote-bench-iptables-save.txt")
	if err := os.WriteFile(file, dump, 0o600); err != nil {
		return err
	}
	defer os.Remove(file)
	local := []string{"trace", svc.Spec.ClusterIP + ":80", "--dataplane", file, "--node", harness.KwokNode, "--no-api", "--from", "10.244.1.254", "-o", "json"}
	want, err := exec.CommandContext(ctx, svctrace, local...).Output()
	if err != nil {
		return fmt.Errorf("trace of the dump: %w", err)
	}
	if remoteOut != string(want) {
		return fmt.Errorf("the remote trace differs from the trace of the node's dump:\n%s\n%s", tail(remoteOut, 1500), tail(string(want), 1500))
	}
	median := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	s, t := median(saveTimes), median(traceTimes)
	fmt.Printf("| remote, %d × %d node (legacy iptables), through kube-proxy's pod and the API server | median of %d, interleaved |\n|---|---|\n", services, scale.endpoints, remoteRuns)
	fmt.Printf("| `iptables-legacy-save -c` alone (%d KB through the exec stream) | %.2f s |\n", size/1024, s.Seconds())
	fmt.Printf("| `trace VIP:80 --remote --no-api` | %.2f s (%.2f×) |\n", t.Seconds(), t.Seconds()/s.Seconds())
	fmt.Fprintf(os.Stderr, "record: the remote trace prints what the trace of the node's dump prints (%d bytes)\n", len(remoteOut))
	if holdCluster {
		fmt.Fprintf(os.Stderr, "record: holding; KUBECONFIG=%s; try: %s %s; Ctrl-C to stop\n", c.Kubeconfig, svctrace, strings.Join(args, " "))
		<-ctx.Done()
	}
	return nil
}

// verboseRun runs svctrace with args and -v 2 (every exec logged: its command, time and bytes),
// and returns what it logged and how long it took.
func verboseRun(ctx context.Context, svctrace string, args []string) (string, time.Duration, error) {
	var se strings.Builder
	verbose := exec.CommandContext(ctx, svctrace, append(args, "-v", "2")...)
	verbose.Stderr = &se
	start := time.Now()
	if err := verbose.Run(); err != nil {
		return "", 0, fmt.Errorf("remote trace -v 2: %v: %s", err, tail(se.String(), 2000))
	}
	return se.String(), time.Since(start).Round(time.Millisecond), nil
}
