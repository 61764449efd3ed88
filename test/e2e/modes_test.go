//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svctrace/svctrace/test/e2e/harness"
	"github.com/svctrace/svctrace/trace"
)

// TestKubeProxyNftablesMode switches the node's kube-proxy to nftables mode, checks what it
// programmed, compares svctrace's predictions with real connections as in iptables mode, and
// switches back.
func TestKubeProxyNftablesMode(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster.StopKubeProxy()
	t.Cleanup(func() {
		cluster.StopKubeProxy()
		if err := cluster.StartKubeProxy("iptables"); err != nil {
			t.Fatal(err)
		}
		if _, err := cluster.WaitDump(context.Background(), "iptables", harness.ScenarioProgrammed); err != nil {
			t.Fatal(err)
		}
		// kube-proxy removes the other mode's rules when it starts, but not necessarily before
		// it has programmed its own: wait for the nftables table to go, so that the tests after
		// this one find a node in one mode.
		deadline := time.Now().Add(20 * time.Second)
		for {
			out, _ := harness.NS(harness.NodeNS, "nft", "list", "tables")
			if !strings.Contains(string(out), "kube-proxy") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("kube-proxy in iptables mode left the nftables table behind:\n%s", out)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	if err := cluster.StartKubeProxy("nftables"); err != nil {
		t.Fatal(err)
	}
	dump, err := cluster.WaitDump(ctx, "nftables", harness.ScenarioProgrammed)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(dump), &doc); err != nil {
		t.Fatalf("nft -j list ruleset is not JSON: %v", err)
	}
	tables := 0
	for _, o := range doc.Nftables {
		if raw, ok := o["table"]; ok && strings.Contains(string(raw), `"kube-proxy"`) {
			tables++
		}
	}
	if tables == 0 {
		t.Fatal("no kube-proxy table in the nft ruleset")
	}
	for name, ip := range harness.ScenarioClusterIPs {
		if harness.ScenarioEndpointCounts[name] > 0 && name != "remote-itp" && !strings.Contains(dump, ip) {
			t.Errorf("the nft ruleset does not mention %s's cluster IP %s", name, ip)
		}
	}
	// kube-proxy cleaned up its iptables rules when it started in nftables mode, so svctrace
	// must find the nftables table on the live node.
	checkFlows(t, "nftables")
	checkRemoteScopedRead(t, len(dump))
}

// checkRemoteScopedRead traces from outside the node, as a laptop does (--remote, through the API
// server): with the svctrace agent's pod on the node, the trace reads only what its packet
// touches through the agent's binary (kwok runs that pod's exec in node1's namespace), which
// walks the packet there and answers with all it read in one exec, moves a
// fraction of the bytes of the whole ruleset (whole: its size), and says what the node-side trace
// says; without the agent it lists the whole ruleset through kube-proxy's pod, as before.
func checkRemoteScopedRead(t *testing.T, whole int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kwok := os.Getenv("SVCTRACE_KWOK")
	if kwok == "" {
		t.Fatal("SVCTRACE_KWOK is not set (make test sets it)")
	}
	if err := cluster.StartKwok(ctx, kwok); err != nil {
		t.Fatal(err)
	}
	defer cluster.StopProcess("kwok")
	if err := cluster.AddAgentPod(ctx); err != nil {
		t.Fatal(err)
	}
	args := []string{"svctrace", "trace", "default/hostnames", "--from", "pod/default/client", "-o", "json"}
	local, err := kubectlInNode(t, append(args, "--node", harness.NodeName)...)
	if err != nil {
		t.Fatal(err)
	}
	var remote []byte
	var stderr string
	// kwok serves a new pod's exec a moment after it reports the pod running.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		var code int
		remote, stderr, code = kubectl(t, false, append(args, "--node", harness.KwokNode, "--remote", "-v", "2")...)
		if code == 0 && strings.Contains(stderr, "KB from the svctrace binary on the node") && !strings.Contains(stderr, "after a scoped read failed") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the remote trace did not read through the agent (exit %d):\n%s", code, stderr)
		}
	}
	var a, b trace.Result
	if json.Unmarshal(local, &a) != nil || json.Unmarshal(remote, &b) != nil {
		t.Fatalf("not JSON:\n%s\n%s", local, remote)
	}
	if !reflect.DeepEqual(a.Backends, b.Backends) || !reflect.DeepEqual(a.Verdicts, b.Verdicts) || !reflect.DeepEqual(a.Hops, b.Hops) || len(b.Backends) != 3 {
		t.Fatalf("the remote scoped trace differs from the node-side one\nnode-side: %s\nremote: %s", local, remote)
	}
	// The agent's binary walked the packet itself: one exec of it read everything the walk
	// needed of kube-proxy's table (it was one per level of the path before). The only other
	// exec of it is the listing of the tables that finds the node's mode.
	walks, listings, others := 0, 0, 0
	for _, line := range strings.Split(stderr, "\n") {
		switch {
		case !strings.Contains(line, "nft-objects"):
		case strings.Contains(line, `{\"walk\":`):
			walks++
		case strings.Contains(line, `{\"tables\":true}`):
			listings++
		default:
			others++
		}
	}
	if walks != 1 || listings > 1 || others != 0 {
		t.Errorf("the agent's binary walked %d times, listed tables %d times and read %d times for one packet, want one walk, at most one listing and no other read:\n%s", walks, listings, others, stderr)
	}
	var kb int
	if i := strings.Index(stderr, "KB from nft and "); i >= 0 {
		fmt.Sscanf(stderr[i+len("KB from nft and "):], "%d", &kb)
	}
	t.Logf("the remote trace moved %d KB through the agent; the whole ruleset is %d KB", kb, whole/1024)
	if kb == 0 || kb*1024 >= whole {
		t.Errorf("the remote trace moved %d KB through the agent, the whole ruleset is %d bytes:\n%s", kb, whole, stderr)
	}
	// Without the agent: the whole ruleset, through kube-proxy's pod, with the same answer.
	if err := cluster.Client.CoreV1().Pods(harness.AgentNamespace).Delete(ctx, harness.AgentPod, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if _, err := cluster.Client.CoreV1().Pods(harness.AgentNamespace).Get(ctx, harness.AgentPod, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the agent pod was not deleted")
		}
	}
	again, stderr, code := kubectl(t, false, append(args, "--node", harness.KwokNode, "--remote", "-v", "1")...)
	var c trace.Result
	if code != 0 || json.Unmarshal(again, &c) != nil || !reflect.DeepEqual(a.Backends, c.Backends) || !strings.Contains(stderr, "a remote nftables read lists the whole ruleset") || strings.Contains(stderr, "svctrace binary on the node") {
		t.Fatalf("without the agent (exit %d):\n%s\n%s", code, again, stderr)
	}
}
