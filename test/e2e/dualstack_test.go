//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/svctrace/svctrace/test/e2e/harness"
	"github.com/svctrace/svctrace/trace"
)

// dualFlows are the dual-stack Service's paths, over IPv6 and IPv4, from the dual-stack client
// pod, from the node itself and from outside to its node port on an IPv6 address of the node:
// in iptables mode the one facing the outside, which the Node object does not list (node ports
// are on every local address: the trace, run on the node, must know its machine's addresses);
// in nftables mode its primary IPv6 address, where kube-proxy's default nodePortAddresses
// (primary) puts node ports.
func dualFlows(mode string, pods ...string) []flow {
	client := cluster.Pod("default", harness.DualClient).NetNS
	v6 := net.JoinHostPort(harness.DualClusterIP6, "80")
	nodeAddr := harness.NodeExtIP6
	if mode == "nftables" {
		nodeAddr = harness.NodeIP6
	}
	np6 := net.JoinHostPort(nodeAddr, fmt.Sprint(harness.DualNodePort))
	return []flow{
		{name: "IPv6 cluster IP from a dual-stack pod", traceArgs: []string{v6, "--from", "pod/default/" + harness.DualClient},
			clientNS: client, addr: v6, wantVerdict: "DNAT", wantPods: pods},
		{name: "IPv6 cluster IP from the node", traceArgs: []string{v6, "--from", "node"},
			clientNS: harness.NodeNS, addr: v6, wantVerdict: "DNAT", wantPods: pods},
		{name: "IPv6 node port from outside", traceArgs: []string{np6, "--from", harness.ExternalIP6},
			clientNS: harness.ExternalNS, addr: np6, wantVerdict: "DNAT", wantPods: pods},
		{name: "IPv4 cluster IP of the same Service", traceArgs: []string{"default/" + harness.DualService, "--from", "pod/default/" + harness.DualClient},
			clientNS: client, addr: harness.DualClusterIP + ":80", wantVerdict: "DNAT", wantPods: pods},
	}
}

// TestDualStack: the e2e cluster is dual-stack (IPv4 and IPv6 service and pod ranges, kube-proxy
// with both cluster CIDRs, node addresses of both families). A PreferDualStack NodePort Service
// over two dual-stack pods is traced over IPv6 and IPv4 and each prediction is compared with real
// connections; check compares both families. In iptables mode kube-proxy stops after a sync, a
// pod is replaced, and `repair dual --apply` rewrites both families' rules. In nftables mode the
// three API changes of the acceptance happen in both families (a pod replaced, a dual-stack
// Service deleted, another made NodePort) and `repair -A --apply` repairs them. Each time real
// IPv6 and IPv4 connections reach exactly the API's endpoints (the new IPv6 node port too), check
// is clean, `--undo` brings back the stale rules exactly, a second apply writes the same, and
// kube-proxy, restarted, writes exactly the repaired rules (the ip6tables nat table; the ip and
// ip6 kube-proxy tables).
func TestDualStack(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	dualStateDir = filepath.Join(t.TempDir(), "state")
	if _, err := cluster.SetupDualStack(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, name := range []string{harness.DualService, "dual-gone", "dual-np"} {
			_ = cluster.Client.CoreV1().Services("default").Delete(context.Background(), name, metav1.DeleteOptions{})
		}
		for _, p := range []string{"ds-1", "ds-2", "ds-3", "ds-4", harness.DualClient} {
			_ = cluster.DeletePod(context.Background(), "default", p)
		}
		restartKubeProxy(t, harness.KubeProxyConfig{Mode: "iptables"}, harness.ScenarioProgrammed)
	})
	ip6save := harness.IP6TablesSave()
	eventually(t, ctx, 60*time.Second, "kube-proxy's IPv6 rules for the dual-stack Service", func() (bool, string) {
		out, _ := harness.NS(harness.NodeNS, ip6save)
		return harness.DualStackProgrammed(string(out)), string(out)
	})
	for _, f := range dualFlows("iptables", "ds-1", "ds-2") {
		t.Run("iptables/"+f.name, func(t *testing.T) { traceAndProbe(t, f, "iptables", 60) })
	}
	if out, code := checkInNode(t, "default/"+harness.DualService, "-o", "json"); code != 0 || checkedPorts(t, out) != 2 {
		t.Errorf("check of the dual-stack Service: exit %d, %d ports checked (want 2: one per family), findings %v", code, checkedPorts(t, out), checkFindings(t, out))
	}

	// iptables mode: ds-2 replaced by ds-3 while kube-proxy is stopped.
	cluster.StopKubeProxy()
	replacePod(ctx, t, "ds-2", harness.PodSpec{Namespace: "default", Name: "ds-3", IP: "10.244.1.163", IP6: "fd00:10:244:1::163", Labels: map[string]string{"app": "ds"}, Ports: []string{"8080"}},
		"10.244.1.161", "10.244.1.163", "fd00:10:244:1::161", "fd00:10:244:1::163")
	one := []string{"default/" + harness.DualService}
	plan := dualPlan(t, one, "default/dual:http")
	writes6 := false
	for _, tr := range plan.IPTables {
		writes6 = writes6 || tr.IPv6() && strings.Contains(tr.Input, "[fd00:10:244:1::163]:8080")
	}
	if !writes6 {
		t.Fatalf("the plan writes no ip6tables rule for the new IPv6 endpoint: %+v", plan.IPTables)
	}
	stale6 := natTableOf(t, ip6save, false)
	stderr := dualApply(t, one, "ip6tables")
	repaired6 := natTableOf(t, ip6save, false)
	dualReach(t, "iptables", "ds-1", "ds-3")
	dualUndo(t, stderr, func() string { return natTableOf(t, ip6save, false) }, stale6, repaired6, one)
	syncs := strings.Count(kubeProxyLog(t), "SyncProxyRules complete")
	if err := cluster.StartKubeProxy("iptables"); err != nil {
		t.Fatal(err)
	}
	waitSync(ctx, t, syncs)
	if byKubeProxy := natTableOf(t, ip6save, true); byKubeProxy != sortShared(repaired6) {
		t.Errorf("the repaired ip6tables nat table is not the one kube-proxy writes:\n%s", lineDiff(sortShared(repaired6), byKubeProxy))
	}

	// nftables mode: the acceptance's three API changes, in both families, while kube-proxy is
	// stopped: ds-3 replaced by ds-4, dual-gone deleted, dual-np made a NodePort Service; then
	// repair -A.
	for name, ips := range map[string][]string{"dual-gone": {"10.96.0.71", "fd00:10:96::71"}, "dual-np": {"10.96.0.72", "fd00:10:96::72"}} {
		s := harness.DualStackService()
		s.Name, s.Spec.Type, s.Spec.ClusterIP, s.Spec.ClusterIPs = name, corev1.ServiceTypeClusterIP, ips[0], ips
		s.Spec.Ports[0].NodePort = 0
		if _, err := cluster.CreateService(ctx, s); err != nil {
			t.Fatal(err)
		}
		if err := cluster.WaitEndpoints(ctx, "default", name, 4); err != nil {
			t.Fatal(err)
		}
	}
	restartKubeProxy(t, harness.KubeProxyConfig{Mode: "nftables"}, func(d string) bool {
		return harness.ScenarioProgrammed(d) && strings.Contains(d, "fd00:10:244:1::163") && strings.Contains(d, "fd00:10:96::71") && strings.Contains(d, "fd00:10:96::72")
	})
	for _, f := range dualFlows("nftables", "ds-1", "ds-3") {
		t.Run("nftables/"+f.name, func(t *testing.T) { traceAndProbe(t, f, "nftables", 60) })
	}
	cluster.StopKubeProxy()
	replacePod(ctx, t, "ds-3", harness.PodSpec{Namespace: "default", Name: "ds-4", IP: "10.244.1.164", IP6: "fd00:10:244:1::164", Labels: map[string]string{"app": "ds"}, Ports: []string{"8080"}},
		"10.244.1.161", "10.244.1.164", "fd00:10:244:1::161", "fd00:10:244:1::164")
	if err := cluster.Client.CoreV1().Services("default").Delete(ctx, "dual-gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	np, err := cluster.Client.CoreV1().Services("default").Patch(ctx, "dual-np", types.MergePatchType, []byte(`{"spec":{"type":"NodePort"}}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitEndpointIPs(ctx, "default", "dual-np", "10.244.1.161", "10.244.1.164", "fd00:10:244:1::161", "fd00:10:244:1::164"); err != nil {
		t.Fatal(err)
	}
	all := []string{"-A"}
	plan = dualPlan(t, all, "default/dual-gone:http default/dual-np:http default/dual:http")
	families := map[string]bool{}
	for _, c := range plan.Nftables {
		families[c.Family] = true
	}
	if !families["ip"] || !families["ip6"] {
		t.Fatalf("the nftables plan changes the families %v, want ip and ip6", families)
	}
	both := func() string { return nftShape(t, "ip") + nftShape(t, "ip6") }
	stale := both()
	stale6 = nftShape(t, "ip6")
	stderr = dualApply(t, all, "nft --check accepts")
	repaired := both()
	repaired6 = nftShape(t, "ip6")
	nodePort := fmt.Sprint(np.Spec.Ports[0].NodePort)
	for _, want := range []string{"fd00:10:244:1::164", "fd00:10:244:1::163", "fd00:10:96::71", nodePort} {
		if d := lineDiff(stale6, repaired6); !strings.Contains(d, want) {
			t.Errorf("the ip6 table's change does not mention %s:\n%s", want, d)
		}
	}
	dualReach(t, "nftables", "ds-1", "ds-4")
	np6 := net.JoinHostPort(harness.NodeIP6, nodePort)
	reached := probe(t, flow{name: "dual-np's new IPv6 node port", clientNS: harness.ExternalNS, addr: np6}, 60)
	if got := backendPods(reached); got != "ds-1,ds-4" || len(reached.Failures) > 0 {
		t.Errorf("dual-np's new IPv6 node port %s after the repair: connections reach %s (failures %v)", np6, got, reached.Failures)
	}
	dualUndo(t, stderr, both, stale, repaired, all)
	syncs = strings.Count(kubeProxyLog(t), "SyncProxyRules complete")
	if err := cluster.StartKubeProxy("nftables"); err != nil {
		t.Fatal(err)
	}
	waitSync(ctx, t, syncs)
	if byKubeProxy := both(); byKubeProxy != repaired {
		t.Errorf("the repaired ip and ip6 kube-proxy tables are not the ones kube-proxy writes:\n%s", lineDiff(repaired, byKubeProxy))
	}
}

// replacePod deletes a pod of the dual-stack Service and adds another, and waits for the
// EndpointSlices to list exactly ips.
func replacePod(ctx context.Context, t *testing.T, old string, add harness.PodSpec, ips ...string) {
	t.Helper()
	if err := cluster.DeletePod(ctx, "default", old); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.AddPod(ctx, add); err != nil {
		t.Fatal(err)
	}
	sort.Strings(ips)
	if err := cluster.WaitEndpointIPs(ctx, "default", harness.DualService, ips...); err != nil {
		t.Fatal(err)
	}
}

// dualPlan is the dry run's plan for target (the dual-stack Service, or -A), which must touch
// exactly the Service ports services.
func dualPlan(t *testing.T, target []string, services string) trace.RepairPlan {
	t.Helper()
	out, _, code := kubectl(t, true, append(append([]string{"svctrace", "repair"}, target...), "--node", harness.NodeName, "-o", "json")...)
	var plan trace.RepairPlan
	if err := json.Unmarshal(out, &plan); err != nil || code != 1 {
		t.Fatalf("dry run: exit %d %v\n%s", code, err, out)
	}
	if got := strings.Join(plan.Services, " "); got != services {
		t.Fatalf("planned services %q, want %q", got, services)
	}
	return plan
}

// dualStateDir is where TestDualStack's repairs save their state.
var dualStateDir string

// dualApply repairs target on the node; its log must show wantLog (the IPv6 step). check is
// clean after it, and compares the dual-stack Service in both families.
func dualApply(t *testing.T, target []string, wantLog string) string {
	t.Helper()
	_, stderr, code := kubectl(t, true, append(append([]string{"svctrace", "repair"}, target...), "--node", harness.NodeName, "--apply", "--state-dir", dualStateDir)...)
	if code != 0 || !strings.Contains(stderr, wantLog) {
		t.Fatalf("repair --apply: exit %d (want 0 and %q in the log)\n%s", code, wantLog, stderr)
	}
	if out, code := checkInNode(t, "-A", "-o", "json"); code != 0 {
		t.Errorf("check -A after the repair: exit %d, findings %v", code, checkFindings(t, out))
	}
	if out, code := checkInNode(t, "default/"+harness.DualService, "-o", "json"); code != 0 || checkedPorts(t, out) != 2 {
		t.Errorf("check after the repair: exit %d, %d ports checked, findings %v", code, checkedPorts(t, out), checkFindings(t, out))
	}
	return stderr
}

// dualReach: real connections over IPv6 (from the pod, the node and outside) and IPv4 reach
// exactly these pods.
func dualReach(t *testing.T, mode string, pods ...string) {
	t.Helper()
	for _, f := range dualFlows(mode, pods...) {
		r := probe(t, f, 60)
		if got := backendPods(r); got != strings.Join(pods, ",") || len(r.Failures) > 0 {
			t.Errorf("%s after the repair: connections reach %s (failures %v), want %v", f.name, got, r.Failures, pods)
		}
	}
}

// backendPods are the pods a probe's connections reached, sorted and joined by commas.
func backendPods(r probeResult) string {
	var got []string
	for answer := range r.Backends {
		got = append(got, strings.Fields(answer)[0])
	}
	sort.Strings(got)
	return strings.Join(got, ",")
}

// dualUndo runs the --undo the apply's log names: read() must give stale back; repairing target
// again must give repaired.
func dualUndo(t *testing.T, applyStderr string, read func() string, stale, repaired string, target []string) {
	t.Helper()
	undo(t, applyStderr)
	if now := read(); now != stale {
		t.Fatalf("after --undo the rules are not the stale ones:\n%s", lineDiff(stale, now))
	}
	if _, stderr, code := kubectl(t, true, append(append([]string{"svctrace", "repair"}, target...), "--node", harness.NodeName, "--apply", "--state-dir", dualStateDir)...); code != 0 {
		t.Fatalf("repair --apply again: exit %d\n%s", code, stderr)
	}
	if now := read(); now != repaired {
		t.Fatalf("the second repair wrote other rules than the first:\n%s", lineDiff(repaired, now))
	}
}

// checkedPorts is check's count of Service ports compared, over its nodes.
func checkedPorts(t *testing.T, out []byte) int {
	t.Helper()
	var doc struct {
		Nodes []trace.CheckResult `json:"nodes"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("check output: %v\n%s", err, out)
	}
	n := 0
	for _, r := range doc.Nodes {
		n += r.Checked
	}
	return n
}

// waitSync waits for kube-proxy's first sync after a restart: its log says so once more.
func waitSync(ctx context.Context, t *testing.T, before int) {
	t.Helper()
	eventually(t, ctx, 60*time.Second, "kube-proxy's sync after its restart", func() (bool, string) {
		return strings.Count(kubeProxyLog(t), "SyncProxyRules complete") > before, ""
	})
}
