//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os"
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

// TestRepairWithKubeProxyStopped: kube-proxy stops after a sync and the API changes behind its
// back — an endpoint leaves a Service (its pod relabelled, still alive), a new pod joins it, a
// Service is deleted, a UDP Service loses an endpoint. `repair --apply` on the node must make real
// connections reach exactly the API's endpoints, while connections running through the repair all
// succeed; UDP conntrack entries to the removed endpoint go, others stay; and kube-proxy, started
// again, rewrites the repaired chains with exactly the same rules.
func TestRepairWithKubeProxyStopped(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	app := func(name string) map[string]string { return map[string]string{"app": name} }
	for _, p := range []harness.PodSpec{
		{Namespace: "default", Name: "rep-1", IP: "10.244.1.71", Labels: app("rep"), Ports: []string{"8080"}},
		{Namespace: "default", Name: "rep-2", IP: "10.244.1.72", Labels: app("rep"), Ports: []string{"8080"}},
		{Namespace: "default", Name: "rep-g", IP: "10.244.1.74", Labels: app("rep-gone"), Ports: []string{"8080"}},
		{Namespace: "default", Name: "rep-u1", IP: "10.244.1.77", Labels: app("rep-udp"), Ports: []string{"5353/udp"}},
		{Namespace: "default", Name: "rep-u2", IP: "10.244.1.78", Labels: app("rep-udp"), Ports: []string{"5353/udp"}},
	} {
		if _, err := cluster.AddPod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	vip := map[string]string{}
	for _, name := range []string{"rep", "rep-gone", "rep-udp"} {
		port := harness.TCPPort("http", 80, 8080)
		if name == "rep-udp" {
			port = harness.TCPPort("dns", 53, 5353)
			port.Protocol = corev1.ProtocolUDP
		}
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec: corev1.ServiceSpec{Selector: app(name), Ports: []corev1.ServicePort{port}}}
		created, err := cluster.CreateService(ctx, svc)
		if err != nil {
			t.Fatal(err)
		}
		vip[name] = created.Spec.ClusterIP
	}
	if err := cluster.WaitEndpointIPs(ctx, "default", "rep", "10.244.1.71", "10.244.1.72"); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitEndpointIPs(ctx, "default", "rep-udp", "10.244.1.77", "10.244.1.78"); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.WaitDump(ctx, "iptables", func(d string) bool {
		return strings.Contains(d, "10.244.1.72:8080") && strings.Contains(d, "10.244.1.74:8080") && strings.Contains(d, "10.244.1.78:5353")
	}); err != nil {
		t.Fatal(err)
	}

	cluster.StopKubeProxy()
	defer func() {
		if err := cluster.StartKubeProxy("iptables"); err == nil {
			_, _ = cluster.WaitDump(context.Background(), "iptables", harness.ScenarioProgrammed)
		}
	}()
	relabel := func(pod, to string) {
		patch := []byte(`{"metadata":{"labels":{"app":"` + to + `"}}}`)
		if _, err := cluster.Client.CoreV1().Pods("default").Patch(ctx, pod, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	relabel("rep-2", "rep-old")
	relabel("rep-u2", "rep-udp-old")
	if _, err := cluster.AddPod(ctx, harness.PodSpec{Namespace: "default", Name: "rep-3", IP: "10.244.1.73", Labels: app("rep"), Ports: []string{"8080"}}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.CoreV1().Services("default").Delete(ctx, "rep-gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitEndpointIPs(ctx, "default", "rep", "10.244.1.71", "10.244.1.73"); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitEndpointIPs(ctx, "default", "rep-udp", "10.244.1.77"); err != nil {
		t.Fatal(err)
	}

	// The plan: exactly the three changed Service ports.
	out, _, code := kubectl(t, true, "svctrace", "repair", "-n", "default", "--node", harness.NodeName, "-o", "json")
	var plan trace.RepairPlan
	if err := json.Unmarshal(out, &plan); err != nil || code != 1 {
		t.Fatalf("dry run: exit %d %v\n%s", code, err, out)
	}
	if got := strings.Join(plan.Services, " "); got != "default/rep-gone:http default/rep-udp:dns default/rep:http" {
		t.Fatalf("planned services: %s", got)
	}

	// UDP flows through the stale rules (to both rep-udp pods) and to an unrelated Service. A
	// UDP entry that saw one answer expires 30 s after its last packet, which a slow run can
	// outlast (entries of earlier tests did, and once looked like an over-broad delete: 180
	// before, 30 after — exactly this test's own). So the node's UDP timeout is raised for the
	// test, earlier entries to these addresses are cleared first, and the entries are compared
	// one by one, not counted.
	client := cluster.Pod("default", harness.ClientPod).NetNS
	timeout, err := harness.NS(harness.NodeNS, "sysctl", "-n", "net.netfilter.nf_conntrack_udp_timeout")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := harness.NS(harness.NodeNS, "sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=600"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_, _ = harness.NS(harness.NodeNS, "sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout="+strings.TrimSpace(string(timeout)))
		_, _ = harness.NS(harness.NodeNS, "conntrack", "-D", "-p", "udp", "--orig-dst", "10.96.10.53")
	}()
	for _, dst := range []string{vip["rep-udp"], "10.96.10.53"} {
		_, _ = harness.NS(harness.NodeNS, "conntrack", "-D", "-p", "udp", "--orig-dst", dst)
	}
	for _, target := range []string{vip["rep-udp"] + ":53", "10.96.10.53:53"} {
		if _, err := harness.NS(client, cluster.Netprobe, "probe", "-udp", "-n", "30", target); err != nil {
			t.Fatal(err)
		}
	}
	// udpFlows lists the entries from dst answered by replySrc, as their tuples (no timers).
	udpFlows := func(dst, replySrc string) []string {
		out, _ := harness.NS(harness.NodeNS, "conntrack", "-L", "-p", "udp", "--orig-dst", dst, "--reply-src", replySrc)
		var flows []string
		for _, l := range strings.Split(string(out), "\n") {
			var keep []string
			for _, f := range strings.Fields(l) {
				if strings.Contains(f, "=") && !strings.HasPrefix(f, "packets=") && !strings.HasPrefix(f, "bytes=") {
					keep = append(keep, f)
				}
			}
			if len(keep) > 0 {
				flows = append(flows, strings.Join(keep, " "))
			}
		}
		sort.Strings(flows)
		return flows
	}
	udpEntries := func(dst, replySrc string) int { return len(udpFlows(dst, replySrc)) }
	if udpEntries(vip["rep-udp"], "10.244.1.78") == 0 || udpEntries(vip["rep-udp"], "10.244.1.77") == 0 {
		t.Fatal("the UDP probes left no conntrack entries to both rep-udp pods")
	}
	dnsBefore := append(udpFlows("10.96.10.53", "10.244.1.51"), udpFlows("10.96.10.53", "10.244.2.52")...)
	if len(dnsBefore) == 0 {
		t.Fatal("the UDP probes to the dns Service left no conntrack entries")
	}

	// Connections keep going through the Service while the repair runs.
	during := make(chan probeResult, 1)
	go func() {
		out, err := harness.NS(client, cluster.Netprobe, "probe", "-n", "400", "-interval", "10ms", "-timeout", "2s", vip["rep"]+":80")
		var r probeResult
		if err == nil {
			err = json.Unmarshal(out, &r)
		}
		if err != nil {
			r.Failures = map[string]int{err.Error(): 1}
		}
		during <- r
	}()
	stale := natTable(t, false)
	time.Sleep(time.Second)
	stateDir := filepath.Join(t.TempDir(), "state")
	apply := []string{"svctrace", "repair", "-A", "--node", harness.NodeName, "--apply", "--state-dir", stateDir}
	_, stderr, code := kubectl(t, true, apply...)
	if code != 0 {
		t.Fatalf("repair --apply: exit %d\n%s", code, stderr)
	}
	r := <-during
	if len(r.Failures) > 0 {
		t.Errorf("connections failed while the repair ran: %v (answers %v)", r.Failures, r.Backends)
	}
	repairedNat := natTable(t, false)

	// --undo of the saved state brings back the stale table exactly; repairing again gives the
	// same table as the first repair.
	undo(t, string(stderr))
	if now := natTable(t, false); now != stale {
		t.Fatalf("after --undo the nat table is not the stale one:\n%s", lineDiff(stale, now))
	}
	if _, stderr, code := kubectl(t, true, apply...); code != 0 {
		t.Fatalf("repair --apply again: exit %d\n%s", code, stderr)
	}
	if now := natTable(t, false); now != repairedNat {
		t.Fatalf("the second repair wrote another nat table than the first:\n%s", lineDiff(repairedNat, now))
	}

	// Afterwards: exactly the API's endpoints.
	after := probe(t, flow{clientNS: client, addr: vip["rep"] + ":80"}, 150)
	var got []string
	for answer := range after.Backends {
		got = append(got, strings.Fields(answer)[0])
	}
	sort.Strings(got)
	if strings.Join(got, ",") != "rep-1,rep-3" || len(after.Failures) > 0 {
		t.Errorf("after the repair connections reach %v (failures %v), want rep-1 and rep-3", got, after.Failures)
	}
	if n := udpEntries(vip["rep-udp"], "10.244.1.78"); n != 0 {
		t.Errorf("%d UDP conntrack entries to the removed endpoint remain", n)
	}
	if udpEntries(vip["rep-udp"], "10.244.1.77") == 0 {
		t.Error("the repair deleted the UDP conntrack entries of the remaining endpoint")
	}
	if now := append(udpFlows("10.96.10.53", "10.244.1.51"), udpFlows("10.96.10.53", "10.244.2.52")...); strings.Join(now, "\n") != strings.Join(dnsBefore, "\n") {
		t.Errorf("unrelated UDP conntrack entries changed: %d now, %d before\nnow:\n%s\nbefore:\n%s", len(now), len(dnsBefore), strings.Join(now, "\n"), strings.Join(dnsBefore, "\n"))
	}
	if out, code := checkInNode(t, "-n", "default", "-o", "json"); code != 0 {
		t.Errorf("check after the repair: exit %d, findings %v", code, checkFindings(t, out))
	}

	// kube-proxy, started again with the same API, writes the repaired chains exactly as repaired.
	repaired := chainsOf(t, plan)
	syncs := strings.Count(kubeProxyLog(t), "SyncProxyRules complete")
	if err := cluster.StartKubeProxy("iptables"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(kubeProxyLog(t), "SyncProxyRules complete") <= syncs {
		if time.Now().After(deadline) {
			t.Fatal("kube-proxy did not sync after its restart")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if again := chainsOf(t, plan); again != repaired {
		t.Errorf("kube-proxy's sync changed the repaired chains\nrepaired:\n%s\nkube-proxy:\n%s", repaired, again)
	}
	// The whole nat table, chain by chain, is what kube-proxy itself writes (KUBE-SERVICES and
	// KUBE-NODEPORTS compared as sets: kube-proxy writes Services in map order).
	if byKubeProxy, byRepair := natTable(t, true), sortShared(repairedNat); byKubeProxy != byRepair {
		t.Errorf("the repaired nat table is not the one kube-proxy writes:\n%s", lineDiff(byRepair, byKubeProxy))
	}
}

// natTable is the node's nat table as iptables-save prints it without counters, chain by chain
// (declarations without their counters); with shared, KUBE-SERVICES and KUBE-NODEPORTS sorted.
func natTable(t *testing.T, shared bool) string {
	t.Helper()
	return natTableOf(t, harness.IptablesSave, shared)
}

// natTableOf is natTable read with this -save command (ip6tables-save for IPv6's).
func natTableOf(t *testing.T, save string, shared bool) string {
	t.Helper()
	out, err := harness.NS(harness.NodeNS, save, "-t", "nat")
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, "#"), l == "":
		case strings.HasPrefix(l, ":"):
			keep = append(keep, strings.Fields(l)[0])
		default:
			keep = append(keep, l)
		}
	}
	table := strings.Join(keep, "\n")
	if shared {
		return sortShared(table)
	}
	return table
}

// sortShared sorts the rules of KUBE-SERVICES and KUBE-NODEPORTS in a natTable listing.
func sortShared(table string) string {
	lines := strings.Split(table, "\n")
	for _, c := range []string{"KUBE-SERVICES", "KUBE-NODEPORTS"} {
		var idx []int
		var rules []string
		for i, l := range lines {
			if strings.HasPrefix(l, "-A "+c+" ") {
				idx = append(idx, i)
				rules = append(rules, l)
			}
		}
		sort.Strings(rules)
		for k, i := range idx {
			lines[i] = rules[k]
		}
	}
	return strings.Join(lines, "\n")
}

// lineDiff lists the lines only in a (-) and only in b (+).
func lineDiff(a, b string) string {
	count := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(b, "\n") {
		count[l]--
	}
	var out []string
	for l, n := range count {
		switch {
		case n > 0:
			out = append(out, "- "+l)
		case n < 0:
			out = append(out, "+ "+l)
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return "(the same lines, in another order)"
	}
	return strings.Join(out, "\n")
}

func kubeProxyLog(t *testing.T) string {
	data, err := os.ReadFile(filepath.Join(cluster.Dir, "kube-proxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// chainsOf prints the node's current rules of every chain the plan touched: per-service chains
// in order, the shared ones (whose order kube-proxy does not keep: it writes Services in map
// order) sorted; chains that do not exist are said to be absent.
func chainsOf(t *testing.T, plan trace.RepairPlan) string {
	t.Helper()
	var b strings.Builder
	for _, tr := range plan.IPTables {
		out, err := harness.NS(harness.NodeNS, harness.IptablesSave, "-t", tr.Table)
		if err != nil {
			t.Fatal(err)
		}
		dump := string(out)
		for _, c := range tr.After {
			var rules []string
			declared := strings.Contains(dump, "\n:"+c.Chain+" ")
			for _, l := range strings.Split(dump, "\n") {
				if strings.HasPrefix(l, "-A "+c.Chain+" ") {
					rules = append(rules, l)
				}
			}
			if !strings.HasPrefix(c.Chain, "KUBE-S") || c.Chain == "KUBE-SERVICES" {
				sort.Strings(rules)
			}
			if !declared {
				b.WriteString(tr.Table + " " + c.Chain + ": absent\n")
				continue
			}
			b.WriteString(tr.Table + " " + c.Chain + ":\n  " + strings.Join(rules, "\n  ") + "\n")
		}
	}
	return b.String()
}
