//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svctrace/svctrace/test/e2e/harness"
	"github.com/svctrace/svctrace/trace"
)

// bareNode is a kwok node without a kube-proxy pod: reading it needs --debug-pod.
const bareNode = "kwok-bare"

// TestDebugPodFallback: a node with no kube-proxy pod is refused with a sentence that names
// --debug-pod; with it, svctrace creates a hostNetwork pod on the node with NET_ADMIN and NET_RAW
// only and the xtables lock mounted, reads through it (kwok runs its exec in node1's namespace, so
// the answer must equal the node-side one) and deletes it — also when interrupted with Ctrl-C.
// The debug pod needs its own, opt-in Role.
func TestDebugPodFallback(t *testing.T) {
	needCluster(t)
	kwok := os.Getenv("SVCTRACE_KWOK")
	if kwok == "" {
		t.Fatal("SVCTRACE_KWOK is not set (make test sets it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if err := cluster.StartKwok(ctx, kwok); err != nil {
		t.Fatal(err)
	}
	defer cluster.StopProcess("kwok")
	if err := cluster.AddKwokNode(ctx, bareNode, false); err != nil {
		t.Fatal(err)
	}
	debugPods := func() []corev1.Pod {
		l, err := cluster.Client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=svctrace"})
		if err != nil {
			t.Fatal(err)
		}
		return l.Items
	}
	noneLeft := func(what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for len(debugPods()) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: debug pods left behind: %d", what, len(debugPods()))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	args := []string{"svctrace", "trace", "default/hostnames", "--from", "pod/default/client", "-o", "json", "--node", bareNode, "--remote"}
	_, stderr, code := kubectl(t, false, args...)
	if code == 0 || !strings.Contains(stderr, "no running kube-proxy pod") || !strings.Contains(stderr, "--debug-pod") {
		t.Fatalf("without --debug-pod: exit %d %q", code, stderr)
	}

	start := time.Now()
	out, stderr, code := kubectl(t, false, append(args, "--debug-pod")...)
	t.Logf("a read through a debug pod took %s", time.Since(start))
	if code != 0 || !strings.Contains(stderr, "created debug pod kube-system/svctrace-debug-") || !strings.Contains(stderr, "deleted debug pod") {
		t.Fatalf("with --debug-pod: exit %d %q", code, stderr)
	}
	local, err := kubectlInNode(t, "svctrace", "trace", "default/hostnames", "--from", "pod/default/client", "-o", "json", "--node", harness.NodeName)
	if err != nil {
		t.Fatal(err)
	}
	var a, b trace.Result
	if err := json.Unmarshal(local, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &b); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !reflect.DeepEqual(a.Backends, b.Backends) || len(b.Backends) != 3 {
		t.Fatalf("the debug pod's read differs from the node-side one\nnode-side: %+v\ndebug pod: %+v", a.Backends, b.Backends)
	}
	noneLeft("after a read")

	t.Run("all nodes: kube-proxy pods where there are, debug pods elsewhere", func(t *testing.T) {
		out, stderr, code := kubectl(t, false, "svctrace", "check", "-A", "--all-nodes", "--debug-pod", "--node-timeout", "25s", "-o", "json")
		var rep struct{ Nodes []struct{ Node string } }
		if err := json.Unmarshal(out, &rep); err != nil {
			t.Fatalf("exit %d: %v %s", code, err, stderr)
		}
		got := map[string]bool{}
		for _, n := range rep.Nodes {
			got[n.Node] = true
		}
		// node1 and node2 have no kubelet here: their debug pods never run; after --node-timeout
		// they are named (exit 2), deleted, and the other nodes still reported.
		if !got[harness.KwokNode] || !got[bareNode] || !strings.Contains(stderr, "created debug pod") || code != 3 || !strings.Contains(stderr, "could not be read") {
			t.Fatalf("exit %d, nodes %v, stderr %q", code, rep.Nodes, stderr)
		}
		noneLeft("after --all-nodes")
	})

	t.Run("balance over all nodes keeps one debug pod per node for both reads", func(t *testing.T) {
		_, stderr, _ := kubectl(t, false, "svctrace", "balance", "default/hostnames", "--all-nodes", "--node-selector", harness.KwokLabel, "--debug-pod", "--duration", "1s", "-o", "json")
		// --node-selector keeps it to the kwok nodes (the others have no kubelet to run a pod).
		if n := strings.Count(stderr, "on node "+bareNode+"\n"); n != 1 || !strings.Contains(stderr, "watching connections on 2 nodes") {
			t.Fatalf("%d debug pods created on %s: %q", n, bareNode, stderr)
		}
		noneLeft("after balance --all-nodes")
	})

	t.Run("Ctrl-C deletes the debug pod", func(t *testing.T) {
		cmd := exec.Command(filepath.Join(cluster.BinDir, "kubectl"), "svctrace", "balance", "default/hostnames", "--node", bareNode, "--remote", "--debug-pod", "--duration", "2m")
		cmd.Env = append(os.Environ(), "PATH="+pluginPath, "KUBECONFIG="+cluster.Kubeconfig)
		pipe, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var said []string
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			said = append(said, sc.Text())
			if strings.HasPrefix(sc.Text(), "watching connections") {
				break
			}
		}
		pods := debugPods()
		if len(pods) != 1 {
			_ = cmd.Process.Kill()
			t.Fatalf("%d debug pods while balance watches; it said %q", len(pods), said)
		}
		checkDebugPodSpec(t, &pods[0])
		_ = cmd.Process.Signal(syscall.SIGINT)
		for sc.Scan() {
			said = append(said, sc.Text())
		}
		_ = cmd.Wait()
		if !strings.Contains(strings.Join(said, "\n"), "deleted debug pod") {
			t.Errorf("after Ctrl-C it said %q", said)
		}
		noneLeft("after Ctrl-C")
	})

	t.Run("the debug pod needs its own role", func(t *testing.T) {
		if _, err := runKubectl(t, "apply", "-f", "../../krew/rbac/svctrace-reader.yaml", "-f", "../../krew/rbac/svctrace-node-reader.yaml", "-f", "../../krew/rbac/svctrace-debug-pod.yaml"); err != nil {
			t.Fatal(err)
		}
		as := func(groups ...string) (string, int) {
			argv := append(append([]string(nil), args...), "--debug-pod", "--as", "viewer")
			for _, g := range groups {
				argv = append(argv, "--as-group", g)
			}
			_, stderr, code := kubectl(t, false, argv...)
			return stderr, code
		}
		stderr, code := as("svctrace-users", "svctrace-node-readers")
		if code != 3 || !strings.Contains(stderr, "--debug-pod: you may not create pods, delete pods in namespace kube-system") {
			t.Fatalf("without the debug role: exit %d %q", code, stderr)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			stderr, code = as("svctrace-users", "svctrace-node-readers", "svctrace-debuggers")
			if code == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(300 * time.Millisecond)
		}
		if code != 0 {
			t.Fatalf("with the debug role: exit %d %q", code, stderr)
		}
		noneLeft("after the RBAC test")
	})
}

// checkDebugPodSpec: pinned to the node, on its network, NET_ADMIN and NET_RAW only, not
// privileged, the xtables lock mounted, and a deadline should deletion ever fail.
func checkDebugPodSpec(t *testing.T, p *corev1.Pod) {
	t.Helper()
	s := p.Spec
	c := s.Containers[0]
	sc := c.SecurityContext
	if s.NodeName != bareNode || !s.HostNetwork || s.ActiveDeadlineSeconds == nil || sc == nil || sc.Privileged == nil || *sc.Privileged ||
		sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Add, []corev1.Capability{"NET_ADMIN", "NET_RAW"}) ||
		!reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/run/xtables.lock" ||
		len(s.Volumes) != 1 || s.Volumes[0].HostPath == nil || s.Volumes[0].HostPath.Path != "/run/xtables.lock" {
		t.Errorf("debug pod spec: %+v", s)
	}
}
