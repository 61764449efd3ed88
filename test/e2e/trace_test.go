//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/test/e2e/harness"
	"github.com/svctrace/svctrace/trace"
)

// flow is one comparison of what svctrace predicts with what real connections do.
type flow struct {
	name string
	// traceArgs are the arguments after `kubectl svctrace trace`.
	traceArgs []string
	// clientNS is where the real connections start; src binds them to an address there.
	clientNS, src string
	// addr is where the client connects.
	addr string
	udp  bool
	// wantVerdict is what svctrace must predict (DNAT, REJECT or DROP).
	wantVerdict string
	// wantPods, for DNAT, is the set of pods svctrace must predict and connections must reach.
	wantPods []string
	// sticky: all connections from one client must reach one backend (session affinity).
	sticky bool
}

func client() string { return cluster.Pod("default", harness.ClientPod).NetNS }

func flows() []flow {
	return []flow{
		{name: "ClusterIP from a pod", traceArgs: []string{"default/hostnames", "--from", "pod/default/client"},
			clientNS: client(), addr: "10.96.10.10:80", wantVerdict: "DNAT", wantPods: []string{"hostnames-a", "hostnames-b", "hostnames-c"}},
		{name: "ClusterIP from the node itself", traceArgs: []string{"default/hostnames", "--from", "node"},
			clientNS: harness.NodeNS, addr: "10.96.10.10:80", wantVerdict: "DNAT", wantPods: []string{"hostnames-a", "hostnames-b", "hostnames-c"}},
		{name: "NodePort with Cluster policy from outside", traceArgs: []string{harness.NodeIP + ":30080", "--from", harness.ExternalIP},
			clientNS: harness.ExternalNS, addr: harness.NodeIP + ":30080", wantVerdict: "DNAT", wantPods: []string{"web-1", "web-2"}},
		{name: "NodePort with Local policy from outside", traceArgs: []string{harness.NodeIP + ":30081", "--from", harness.ExternalIP},
			clientNS: harness.ExternalNS, addr: harness.NodeIP + ":30081", wantVerdict: "DNAT", wantPods: []string{"web-1"}},
		{name: "LoadBalancer from an allowed source", traceArgs: []string{harness.LBIP + ":80", "--from", harness.ExternalIP},
			clientNS: harness.ExternalNS, addr: harness.LBIP + ":80", wantVerdict: "DNAT", wantPods: []string{"web-1", "web-2"}},
		{name: "LoadBalancer from a source outside loadBalancerSourceRanges", traceArgs: []string{harness.LBIP + ":80", "--from", "198.51.100.11"},
			clientNS: harness.ExternalNS, src: "198.51.100.11", addr: harness.LBIP + ":80", wantVerdict: "DROP"},
		{name: "Service without endpoints", traceArgs: []string{"default/empty", "--from", "pod/default/client"},
			clientNS: client(), addr: "10.96.10.30:80", wantVerdict: "REJECT"},
		{name: "NodePort without endpoints", traceArgs: []string{harness.NodeIP + ":30090", "--from", harness.ExternalIP},
			clientNS: harness.ExternalNS, addr: harness.NodeIP + ":30090", wantVerdict: "REJECT"},
		{name: "Local policy without local endpoints", traceArgs: []string{harness.NodeIP + ":30083", "--from", harness.ExternalIP},
			clientNS: harness.ExternalNS, addr: harness.NodeIP + ":30083", wantVerdict: "DROP"},
		{name: "internalTrafficPolicy Local without local endpoints", traceArgs: []string{"default/remote-itp", "--from", "pod/default/client"},
			clientNS: client(), addr: "10.96.10.61:80", wantVerdict: "DROP"},
		{name: "session affinity", traceArgs: []string{"default/sticky", "--from", "pod/default/client"},
			clientNS: client(), addr: "10.96.10.40:80", wantVerdict: "DNAT", wantPods: []string{"hostnames-a", "hostnames-b", "hostnames-c"}, sticky: true},
		{name: "hairpin: a pod reaching its own Service", traceArgs: []string{"default/multi", "--port", "metrics", "--from", "pod/default/multi-1"},
			clientNS: cluster.Pod("default", "multi-1").NetNS, addr: "10.96.10.50:9090", wantVerdict: "DNAT", wantPods: []string{"multi-1", "multi-2"}},
		{name: "second port of a multi-port Service", traceArgs: []string{"default/multi", "--port", "http", "--from", "pod/default/client"},
			clientNS: client(), addr: "10.96.10.50:80", wantVerdict: "DNAT", wantPods: []string{"multi-1", "multi-2"}},
		{name: "UDP", traceArgs: []string{"default/dns", "--protocol", "udp", "--from", "pod/default/client"},
			clientNS: client(), addr: "10.96.10.53:53", udp: true, wantVerdict: "DNAT", wantPods: []string{"dns-1", "dns-2"}},
	}
}

type probeResult struct {
	Backends map[string]int `json:"backends"`
	Failures map[string]int `json:"failures"`
}

func probe(t *testing.T, f flow, n int) probeResult {
	t.Helper()
	args := []string{"probe", "-n", fmt.Sprint(n), "-timeout", "1s"}
	if f.udp {
		args = append(args, "-udp")
	}
	if f.src != "" {
		args = append(args, "-src", f.src)
	}
	out, err := harness.NS(f.clientNS, append([]string{cluster.Netprobe}, append(args, f.addr)...)...)
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	var r probeResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("probe output %q: %v", out, err)
	}
	return r
}

// TestTracePredictsRealConnections runs in kube-proxy's iptables mode; modes_test.go runs the same
// flows in nftables mode.
func TestTracePredictsRealConnections(t *testing.T) {
	needCluster(t)
	checkFlows(t, "iptables")
}

// checkFlows traces every flow with kubectl svctrace and compares it with real connections.
func checkFlows(t *testing.T, mode string) {
	for _, f := range flows() {
		t.Run(f.name, func(t *testing.T) {
			traceAndProbe(t, f, mode, 150)
			if mode == "nftables" {
				checkScopedRead(t, f)
			}
		})
	}
}

// checkScopedRead: in nftables mode a node-side trace reads only what its packet touches (it
// says so at -v 1, and does not fall back to the whole ruleset); its result is the trace of a
// snapshot of the node taken right after (the whole ruleset, as nft lists it, and the API's
// objects).
func checkScopedRead(t *testing.T, f flow) {
	t.Helper()
	args := append([]string{"svctrace", "trace", "-o", "json", "--node", harness.NodeName}, f.traceArgs...)
	live, stderr, code := kubectl(t, true, append(args, "-v", "1")...)
	if code != 0 || !strings.Contains(stderr, "scoped to the packet") || strings.Contains(stderr, "whole nftables ruleset") {
		t.Fatalf("the live trace did not read only what the packet touches (exit %d):\n%s", code, stderr)
	}
	dir := filepath.Join(t.TempDir(), "snap")
	if _, err := kubectlInNode(t, "svctrace", "snapshot", dir, "--node", harness.NodeName, "--conntrack=false"); err != nil {
		t.Fatal(err)
	}
	whole, err := kubectlInNode(t, append(args, "--snapshot", dir)...)
	if err != nil {
		t.Fatal(err)
	}
	var a, b trace.Result
	if json.Unmarshal(live, &a) != nil || json.Unmarshal(whole, &b) != nil || !reflect.DeepEqual(a, b) {
		t.Errorf("the scoped live trace differs from the trace of the whole ruleset:\nlive:  %s\nwhole: %s", live, whole)
	}
}

// traceAndProbe traces one flow node-side and compares the prediction with n real connections
// (3 when the prediction is that none gets through).
func traceAndProbe(t *testing.T, f flow, mode string, n int) {
	t.Helper()
	out, err := kubectlInNode(t, append([]string{"svctrace", "trace", "-o", "json", "--node", harness.NodeName}, f.traceArgs...)...)
	if err != nil {
		t.Fatalf("kubectl svctrace trace: %v", err)
	}
	var res trace.Result
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if res.Mode != mode {
		t.Fatalf("svctrace read the node as %s mode, want %s", res.Mode, mode)
	}
	want := expectation{verdict: f.wantVerdict, pods: f.wantPods, sticky: f.sticky, nodeAddrs: map[string]bool{harness.NodeIP: true, harness.NodeExtIP: true, harness.NodeIP6: true, harness.NodeExtIP6: true}}
	masq := checkPrediction(t, &res, want)
	if f.wantVerdict != "DNAT" {
		n = 3
	}
	checkConnections(t, &res, masq, probe(t, f, n), want)
}

// TestPluginDiscoveryAndDemo runs the plugin from the root namespace the way a laptop user would.
func TestPluginDiscoveryAndDemo(t *testing.T) {
	needCluster(t)
	out, err := runKubectl(t, "svctrace", "trace", "--demo", "default/hostnames")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "default/hostnames-a") || !strings.Contains(string(out), "33.3%") {
		t.Fatalf("unexpected output:\n%s", out)
	}
	out, err = runKubectl(t, "svctrace", "version")
	if err != nil || !strings.HasPrefix(string(out), "svctrace ") {
		t.Fatalf("kubectl svctrace version: %v %s", err, out)
	}
}

// TestSnapshotReadsLikeTheLiveNode takes a snapshot node-side and checks that trace and check on
// it answer exactly as on the live node.
func TestSnapshotReadsLikeTheLiveNode(t *testing.T) {
	needCluster(t)
	dir := t.TempDir()
	if out, err := kubectlInNode(t, "svctrace", "snapshot", dir, "--node", harness.NodeName); err != nil {
		t.Fatalf("snapshot: %v %s", err, out)
	}
	for _, args := range [][]string{
		{"trace", "default/hostnames", "--from", "pod/default/client", "-o", "json"},
		{"trace", harness.NodeIP + ":30081", "--from", harness.ExternalIP, "-o", "json"},
		{"trace", "default/empty", "-o", "json"},
	} {
		live, err := kubectlInNode(t, append([]string{"svctrace"}, append(args, "--node", harness.NodeName)...)...)
		if err != nil {
			t.Fatal(err)
		}
		offline, err := runKubectl(t, append([]string{"svctrace"}, append(args, "--snapshot", dir)...)...)
		if err != nil {
			t.Fatal(err)
		}
		// kube-proxy may rewrite KUBE-SERVICES (in map order) between the snapshot and the live
		// read when other tests change Services: compare everything but rule line numbers.
		var a, b trace.Result
		if err := json.Unmarshal(live, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(offline, &b); err != nil {
			t.Fatal(err)
		}
		stripLines(a.Hops)
		stripLines(b.Hops)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%v: live and snapshot differ\nlive:\n%s\nsnapshot:\n%s", args, live, offline)
		}
	}
}
