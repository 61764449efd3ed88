//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"

	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/plugin/agent"
	"github.com/svctrace/svctrace/test/e2e/harness"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/watch"
)

// TestRemoteReadThroughKubeProxyPod reads node1's rules the way a laptop does: kubectl svctrace
// from outside the node, exec'ing (argv, no shell) into a kube-proxy pod through the API server;
// kwok serves that exec in node1's namespace. The answer must equal the node-side one.
func TestRemoteReadThroughKubeProxyPod(t *testing.T) {
	needCluster(t)
	kwok := os.Getenv("SVCTRACE_KWOK")
	if kwok == "" {
		t.Fatal("SVCTRACE_KWOK is not set (make test sets it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cluster.StartKwok(ctx, kwok); err != nil {
		t.Fatal(err)
	}
	defer cluster.StopProcess("kwok")
	// A command that fails runs once: the WebSocket executor falls back to SPDY only when the
	// upgrade fails, never because the command exited non-zero (it ran, and its output counts).
	cfg, err := clientcmd.BuildConfigFromFlags("", cluster.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	counter := filepath.Join(t.TempDir(), "runs")
	pod := noderun.Pod{Client: cluster.Client, Config: cfg, Namespace: "kube-system", Name: harness.KubeProxyPod}
	// (kwok reports a failed command as an internal error, without its exit status, where a
	// kubelet sends the status; either way it is an error, and the command ran once.)
	// kwok serves exec for the pod a moment after it reports it running: wait for a command
	// that succeeds first.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		_, err := pod.Run(ctx, "true")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("exec through kwok never worked: %v", err)
		}
	}
	out, err := pod.Run(ctx, "sh", "-c", "echo run >> "+counter+"; echo out; exit 1")
	if err == nil {
		t.Fatalf("a command exiting 1 succeeded: %q", out)
	}
	if runs, _ := os.ReadFile(counter); string(runs) != "run\n" {
		t.Fatalf("a command exiting 1 ran %d times through the exec stream, want once (its error: %v)", strings.Count(string(runs), "run"), err)
	}

	// Stream hands the output over as it arrives, with Run's errors.
	var got []byte
	if err := pod.Stream(ctx, func(r io.Reader) error { var err error; got, err = io.ReadAll(r); return err }, "sh", "-c", "printf 'a\\nb\\n'; head -c 3000000 /dev/zero"); err != nil || len(got) != 3000004 || string(got[:4]) != "a\nb\n" {
		t.Fatalf("Stream: %d bytes (%q...), %v", len(got), got[:min(len(got), 8)], err)
	}
	if err := pod.Stream(ctx, func(r io.Reader) error { _, err := io.ReadAll(r); return err }, "sh", "-c", "echo out; exit 1"); err == nil {
		t.Fatal("Stream: a command exiting 1 succeeded")
	}
	boom := errors.New("boom")
	if err := pod.Stream(ctx, func(io.Reader) error { return boom }, "head", "-c", "20000000", "/dev/zero"); !errors.Is(err, boom) {
		t.Fatalf("Stream: a consumer that fails: %v", err)
	}
	_, runErr := pod.Run(ctx, "no-such-tool-here")
	streamErr := pod.Stream(ctx, func(r io.Reader) error { _, err := io.ReadAll(r); return err }, "no-such-tool-here")
	if runErr == nil || streamErr == nil || errors.Is(runErr, noderun.ErrNotFound) != errors.Is(streamErr, noderun.ErrNotFound) {
		t.Fatalf("a missing tool: Run says %v, Stream %v", runErr, streamErr)
	}

	args := []string{"svctrace", "trace", "default/hostnames", "--from", "pod/default/client", "-o", "json"}
	local, err := kubectlInNode(t, append(args, "--node", harness.NodeName)...)
	if err != nil {
		t.Fatal(err)
	}
	remote, err := runKubectl(t, append(args, "--node", harness.KwokNode, "--remote")...)
	if err != nil {
		t.Fatal(err)
	}
	var a, b trace.Result
	if err := json.Unmarshal(local, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(remote, &b); err != nil {
		t.Fatalf("%v: %s", err, remote)
	}
	// Line numbers may move between the two reads: kube-proxy rewrites KUBE-SERVICES, in map
	// order, whenever another test's Services change. Everything else must be the same.
	stripLines(a.Hops)
	stripLines(b.Hops)
	if !reflect.DeepEqual(a.Backends, b.Backends) || !reflect.DeepEqual(a.Verdicts, b.Verdicts) || !reflect.DeepEqual(a.Hops, b.Hops) || len(b.Backends) != 3 {
		t.Fatalf("remote read differs from the node-side one\nnode-side: %s\nremote: %s", local, remote)
	}

	// --from a pod walks the rules of the node it runs on: from a laptop (--remote, no --node),
	// svctrace reads the pod's node through its kube-proxy pod.
	follow, followErr, followCode := kubectl(t, false, "svctrace", "trace", "default/hostnames", "--from", "pod/kube-system/"+harness.KubeProxyPod, "--remote", "-o", "json")
	var f trace.Result
	if followCode != 0 || json.Unmarshal(follow, &f) != nil || f.Node != harness.KwokNode || !strings.Contains(followErr, "pod kube-system/"+harness.KubeProxyPod+" runs on node "+harness.KwokNode+": tracing that node's rules (read through its kube-proxy pod") {
		t.Fatalf("--from a pod on another node: exit %d, node %q\n%s", followCode, f.Node, followErr)
	}

	// What `svctrace rbac --exec` prints is exactly enough for the remote read: applied as printed
	// for one user the read works; with pods/exec taken away, for another, it fails naming it.
	printed, _, code := kubectl(t, false, "svctrace", "rbac", "--user", "rbac-remote", "--exec")
	if code != 0 {
		t.Fatalf("svctrace rbac --exec: exit %d", code)
	}
	noExec := strings.ReplaceAll(string(printed), "rbac-remote", "rbac-noexec")
	noExec = strings.Replace(noExec, "  - pods/exec\n", "  - pods/log\n", 1)
	noExec = strings.ReplaceAll(noExec, "name: svctrace-node-reader\n", "name: svctrace-node-reader-noexec\n")
	rbacDir := t.TempDir()
	for name, content := range map[string]string{"rbac.yaml": string(printed), "noexec.yaml": noExec} {
		path := filepath.Join(rbacDir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := runKubectl(t, "apply", "-f", path); err != nil {
			t.Fatalf("kubectl apply %s: %v %s", name, err, out)
		}
	}
	remoteAs := func(user string) (string, int) {
		return kubectlOnceAllowed(t, false, "svctrace", "trace", "default/hostnames", "--node", harness.KwokNode, "--remote", "--as", user)
	}
	if stderr, code := remoteAs("rbac-remote"); code != 0 {
		t.Fatalf("remote read with the printed RBAC: exit %d %s", code, stderr)
	}
	if stderr, code := remoteAs("rbac-noexec"); code != 3 || !strings.Contains(stderr, "you may not create pods/exec in namespace kube-system") {
		t.Fatalf("remote read without pods/exec: exit %d %s", code, stderr)
	}

	// A pod that only carries kube-proxy's label is never read through: in a tenant's namespace
	// it is not looked at, in kube-system (not run by a DaemonSet) it is refused by name.
	planted := func(ns string) func() {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "planted", Labels: map[string]string{"k8s-app": "kube-proxy"}},
			Spec: corev1.PodSpec{NodeName: harness.KwokNode, Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
				Containers: []corev1.Container{{Name: "x", Image: "registry.k8s.io/pause:3.10"}}}}
		created, err := cluster.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// kwok plays the kubelet of its node and writes the pod's status too: on a conflict,
		// the status is set again on the pod as it now is.
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			created.Status.Phase = corev1.PodRunning
			_, err := cluster.Client.CoreV1().Pods(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{})
			if apierrors.IsConflict(err) {
				if latest, gerr := cluster.Client.CoreV1().Pods(ns).Get(ctx, "planted", metav1.GetOptions{}); gerr == nil {
					created = latest
				}
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return func() {
			zero := int64(0)
			_ = cluster.Client.CoreV1().Pods(ns).Delete(ctx, "planted", metav1.DeleteOptions{GracePeriodSeconds: &zero})
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
				if _, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, "planted", metav1.GetOptions{}); apierrors.IsNotFound(err) {
					return
				}
			}
			t.Fatal("the planted pod was not deleted")
		}
	}
	remove := planted("default")
	if again, err := runKubectl(t, append(args, "--node", harness.KwokNode, "--remote")...); err != nil || string(again) == "" {
		t.Fatalf("with a labelled pod in another namespace: %v %s", err, again)
	}
	remove()
	remove = planted("kube-system")
	if _, stderr, code := kubectl(t, false, append(args, "--node", harness.KwokNode, "--remote")...); code != 2 || !strings.Contains(string(stderr), "pod kube-system/planted on node "+harness.KwokNode+" carries kube-proxy's label") {
		t.Fatalf("a planted pod in kube-system: exit %d %s", code, stderr)
	}
	remove()

	// A snapshot from the laptop side holds the node's rules and its conntrack, read through the
	// pod: it must show a connection made in node1's namespace just before (this machine's own
	// conntrack never sees Service addresses).
	probeFrom(t, harness.ClientPod, "-n", "3", "10.96.10.10:80")
	dir := t.TempDir()
	if out, err := runKubectl(t, "svctrace", "snapshot", dir, "--node", harness.KwokNode, "--remote"); err != nil {
		t.Fatalf("remote snapshot: %v %s", err, out)
	}
	for _, f := range []string{"iptables-save.txt", "objects.json", "conntrack.txt", "snapshot.yaml"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("remote snapshot lacks %s: %v", f, err)
		}
	}
	if ct, _ := os.ReadFile(filepath.Join(dir, "conntrack.txt")); !strings.Contains(string(ct), "dst=10.96.10.10 ") {
		t.Errorf("the remote snapshot's conntrack is not node1's:\n%.500s", ct)
	}
	if out, err := runKubectl(t, "svctrace", "balance", "default/hostnames", "--snapshot", dir, "-o", "json"); err != nil && !strings.Contains(err.Error(), "exit status 1") {
		t.Errorf("balance on the remote snapshot: %v %s", err, out)
	}

	// Every node with a kube-proxy pod, read through it; the others are named and skipped.
	out, errOut, code := kubectl(t, false, "svctrace", "check", "-A", "--all-nodes", "-o", "json")
	if code != 0 {
		t.Fatalf("check --all-nodes: exit %d\n%s", code, errOut)
	}
	var rep struct{ Nodes []struct{ Node string } }
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Nodes) != 1 || rep.Nodes[0].Node != harness.KwokNode || !strings.Contains(errOut, "checked 1/1 nodes") || !strings.Contains(errOut, "run no kube-proxy pod") {
		t.Fatalf("check --all-nodes: nodes %+v, stderr %q", rep.Nodes, errOut)
	}

	// With the node's svctrace agent reporting it healthy (its condition written by the agent's
	// own code), check --all-nodes takes its word and does not read it; unhealthy, it reads it;
	// --no-agents reads it whatever the agent says.
	type agentRun struct {
		Nodes []struct {
			Node, Mode, ReportedBy string
			Checked                int
		}
	}
	allNodes := func(extra ...string) (agentRun, string) {
		t.Helper()
		out, errOut, code := kubectl(t, false, append([]string{"svctrace", "check", "-A", "--all-nodes", "-o", "json"}, extra...)...)
		var r agentRun
		if err := json.Unmarshal(out, &r); err != nil || code != 0 || len(r.Nodes) != 1 {
			t.Fatalf("check --all-nodes %v: exit %d %v\n%s\n%s", extra, code, err, out, errOut)
		}
		return r, errOut
	}
	if _, err := agent.WriteCondition(ctx, cluster.Client, harness.KwokNode, nil, corev1.ConditionTrue, watch.ReasonAgrees, "kube-proxy's rules on this node agree with the API"); err != nil {
		t.Fatal(err)
	}
	if r, errOut := allNodes(); r.Nodes[0].ReportedBy != "agent" || r.Nodes[0].Checked != 0 || !strings.Contains(errOut, "1 of 1 nodes: healthy as their svctrace agent reports") {
		t.Errorf("agent healthy: %+v, stderr %q", r.Nodes, errOut)
	}
	if r, errOut := allNodes("--no-agents"); r.Nodes[0].ReportedBy != "" || r.Nodes[0].Checked == 0 {
		t.Errorf("--no-agents: %+v, stderr %q", r.Nodes, errOut)
	}
	if _, err := agent.WriteCondition(ctx, cluster.Client, harness.KwokNode, nil, corev1.ConditionFalse, watch.ReasonStale, "1 stale or missing: StaleEndpoint default/x:http"); err != nil {
		t.Fatal(err)
	}
	if r, errOut := allNodes(); r.Nodes[0].ReportedBy != "" || r.Nodes[0].Checked == 0 || !strings.Contains(errOut, "reading 1 (1 unhealthy") {
		t.Errorf("agent unhealthy: %+v, stderr %q", r.Nodes, errOut)
	}

	// balance --all-nodes over a window: the nodes' conntrack and DNAT counters are read through
	// their kube-proxy pods at the start and --duration later; connections made in between, one
	// keep-alive client and many short ones, must show up as ConnectionStickiness naming it.
	if _, err := harness.NS(harness.NodeNS, "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1"); err != nil {
		t.Fatal(err)
	}
	probes := make(chan error, 1)
	go func() {
		time.Sleep(2 * time.Second) // after the first read
		_, err := harness.NS(cluster.Pod("default", harness.ClientPod).NetNS, cluster.Netprobe, "probe", "-n", "1", "-requests", "600", "10.96.10.10:80")
		if err == nil {
			_, err = harness.NS(cluster.Pod("default", "multi-1").NetNS, cluster.Netprobe, "probe", "-n", "60", "10.96.10.10:80")
		}
		probes <- err
	}()
	out, errOut, code = kubectl(t, false, "svctrace", "balance", "default/hostnames", "--all-nodes", "--duration", "8s", "-o", "json")
	if err := <-probes; err != nil {
		t.Fatal(err)
	}
	var bal trace.BalanceAcrossNodes
	if err := json.Unmarshal(out, &bal); err != nil {
		t.Fatalf("balance --all-nodes: %v (exit %d) %s\n%s", err, code, out, errOut)
	}
	conns := 0
	var counted uint64
	for _, b := range bal.Overall.Backends {
		conns += b.Connections
		if b.NewConnections != nil {
			counted += *b.NewConnections
		}
	}
	if code != 1 || bal.Overall.Diagnosis != trace.ConnectionStickiness || !strings.Contains(bal.Overall.Message, harness.ClientPodIP) ||
		len(bal.Nodes) != 1 || bal.Nodes[0].Node != harness.KwokNode || !strings.Contains(errOut, "read 1/1 nodes") {
		t.Fatalf("balance --all-nodes: exit %d, %s: %s; nodes %+v; stderr %q", code, bal.Overall.Diagnosis, bal.Overall.Message, bal.Nodes, errOut)
	}
	// The window holds exactly the 61 new connections, by conntrack and by the DNAT counters.
	if conns != 61 || counted != 61 {
		t.Errorf("balance --all-nodes saw %d connections in conntrack and %d in the counters, want 61 and 61", conns, counted)
	}

	// A set of every node with a kube-proxy pod, written from the laptop side, checked offline.
	set := t.TempDir()
	if out, errOut, code := kubectl(t, false, "svctrace", "snapshot", set, "--all-nodes"); code != 0 || !strings.Contains(string(out), "wrote 1 node(s)") {
		t.Fatalf("snapshot --all-nodes: exit %d %s %s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(set, "nodes", harness.KwokNode, "iptables-save.txt")); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = kubectl(t, false, "svctrace", "check", "-A", "--snapshot", set, "-o", "json")
	if err := json.Unmarshal(out, &rep); err != nil || code != 0 || len(rep.Nodes) != 1 || rep.Nodes[0].Node != harness.KwokNode {
		t.Fatalf("check on the set: exit %d %v %s", code, rep.Nodes, errOut)
	}

	// Exec is a separate right: the reader role alone is refused with the missing permission.
	asUser := func(groups ...string) (string, int) {
		argv := []string{"svctrace", "trace", "default/hostnames", "--node", harness.KwokNode, "--remote", "--as", "viewer"}
		for _, g := range groups {
			argv = append(argv, "--as-group", g)
		}
		_, stderr, code := kubectl(t, false, argv...)
		return stderr, code
	}
	if _, err := runKubectl(t, "apply", "-f", "../../krew/rbac/svctrace-reader.yaml", "-f", "../../krew/rbac/svctrace-node-reader.yaml"); err != nil {
		t.Fatal(err)
	}
	stderr, code := asUser("svctrace-users")
	if code != 3 || !strings.Contains(stderr, "you may not create pods/exec in namespace kube-system") {
		t.Fatalf("reader without exec: exit %d %q", code, stderr)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		stderr, code = asUser("svctrace-users", "svctrace-node-readers")
		if code == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if code != 0 {
		t.Fatalf("with both roles: exit %d %q", code, stderr)
	}
}

func stripLines(hs []*trace.Hop) {
	for _, h := range hs {
		h.Line = 0
		stripLines(h.Children)
	}
}
