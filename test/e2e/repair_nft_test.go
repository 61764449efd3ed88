//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
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

// TestRepairNftables: kube-proxy in nftables mode stops after a sync and the API changes behind
// its back — an endpoint leaves a Service and a new pod joins it, the Service becomes a NodePort,
// another Service is deleted, a UDP Service loses an endpoint. `repair -A --apply` must leave the
// kube-proxy table exactly as kube-proxy itself writes it after a restart (chains' rule lists and
// sets' and maps' elements, from nft's own JSON, handles ignored); real connections, to the
// cluster IP and the new node port, reach exactly the API's endpoints; the UDP entries to the
// removed endpoint go and no other; --undo brings back the stale table exactly; repairing the
// three Services one by one (each plan read over netlink from that Service's objects alone)
// writes the same table as repair -A but for the removed endpoints' hairpin elements.
func TestRepairNftables(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const ns = "nftrep"
	app := func(name string) map[string]string { return map[string]string{"app": name} }
	pods := []harness.PodSpec{
		{Namespace: ns, Name: "nrep-1", IP: "10.244.1.151", Labels: app("nrep"), Ports: []string{"8080"}},
		{Namespace: ns, Name: "nrep-2", IP: "10.244.1.152", Labels: app("nrep"), Ports: []string{"8080"}},
		{Namespace: ns, Name: "nrep-g", IP: "10.244.1.154", Labels: app("nrep-gone"), Ports: []string{"8080"}},
		{Namespace: ns, Name: "nrep-u1", IP: "10.244.1.157", Labels: app("nrep-udp"), Ports: []string{"5353/udp"}},
		{Namespace: ns, Name: "nrep-u2", IP: "10.244.1.158", Labels: app("nrep-udp"), Ports: []string{"5353/udp"}},
	}
	newPod := harness.PodSpec{Namespace: ns, Name: "nrep-3", IP: "10.244.1.153", Labels: app("nrep"), Ports: []string{"8080"}}
	for _, p := range pods {
		if _, err := cluster.AddPod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	vip := map[string]string{}
	for _, name := range []string{"nrep", "nrep-gone", "nrep-udp"} {
		port := harness.TCPPort("http", 80, 8080)
		if name == "nrep-udp" {
			port = harness.TCPPort("dns", 53, 5353)
			port.Protocol = corev1.ProtocolUDP
		}
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.ServiceSpec{Selector: app(name), Ports: []corev1.ServicePort{port}}}
		created, err := cluster.CreateService(ctx, svc)
		if err != nil {
			t.Fatal(err)
		}
		vip[name] = created.Spec.ClusterIP
	}
	t.Cleanup(func() {
		for _, name := range []string{"nrep", "nrep-gone", "nrep-udp"} {
			_ = cluster.Client.CoreV1().Services(ns).Delete(context.Background(), name, metav1.DeleteOptions{})
		}
		for _, p := range append(pods, newPod) {
			_ = cluster.DeletePod(context.Background(), ns, p.Name)
		}
		restartKubeProxy(t, harness.KubeProxyConfig{Mode: "iptables"}, harness.ScenarioProgrammed)
	})
	if err := cluster.WaitEndpointIPs(ctx, ns, "nrep", "10.244.1.151", "10.244.1.152"); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitEndpointIPs(ctx, ns, "nrep-udp", "10.244.1.157", "10.244.1.158"); err != nil {
		t.Fatal(err)
	}
	restartKubeProxy(t, harness.KubeProxyConfig{Mode: "nftables"}, func(d string) bool {
		return harness.ScenarioProgrammed(d) && strings.Contains(d, "10.244.1.152") && strings.Contains(d, "10.244.1.154") && strings.Contains(d, "10.244.1.158")
	})

	cluster.StopKubeProxy()
	relabel := func(pod, to string) {
		patch := []byte(`{"metadata":{"labels":{"app":"` + to + `"}}}`)
		if _, err := cluster.Client.CoreV1().Pods(ns).Patch(ctx, pod, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	relabel("nrep-2", "nrep-old")
	relabel("nrep-u2", "nrep-udp-old")
	if _, err := cluster.AddPod(ctx, newPod); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.CoreV1().Services(ns).Delete(ctx, "nrep-gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	np, err := cluster.Client.CoreV1().Services(ns).Patch(ctx, "nrep", types.MergePatchType, []byte(`{"spec":{"type":"NodePort"}}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nodePort := np.Spec.Ports[0].NodePort
	if err := cluster.WaitEndpointIPs(ctx, ns, "nrep", "10.244.1.151", "10.244.1.153"); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitEndpointIPs(ctx, ns, "nrep-udp", "10.244.1.157"); err != nil {
		t.Fatal(err)
	}

	out, _, code := kubectl(t, true, "svctrace", "repair", "-A", "--node", harness.NodeName, "-o", "json")
	var plan trace.RepairPlan
	if err := json.Unmarshal(out, &plan); err != nil || code != 1 {
		t.Fatalf("dry run: exit %d %v\n%s", code, err, out)
	}
	for _, want := range []string{ns + "/nrep-gone:http", ns + "/nrep-udp:dns", ns + "/nrep:http"} {
		if !strings.Contains(" "+strings.Join(plan.Services, " ")+" ", " "+want+" ") {
			t.Errorf("planned services %v lack %s", plan.Services, want)
		}
	}

	// UDP flows through the stale table, to both nrep-udp pods.
	client := cluster.Pod("default", harness.ClientPod).NetNS
	for _, dst := range []string{vip["nrep-udp"]} {
		_, _ = harness.NS(harness.NodeNS, "conntrack", "-D", "-p", "udp", "--orig-dst", dst)
	}
	if _, err := harness.NS(client, cluster.Netprobe, "probe", "-udp", "-n", "30", vip["nrep-udp"]+":53"); err != nil {
		t.Fatal(err)
	}
	udpEntries := func(replySrc string) int {
		out, _ := harness.NS(harness.NodeNS, "conntrack", "-L", "-p", "udp", "--orig-dst", vip["nrep-udp"], "--reply-src", replySrc)
		return strings.Count(string(out), "udp ")
	}
	if udpEntries("10.244.1.157") == 0 || udpEntries("10.244.1.158") == 0 {
		t.Fatal("the UDP probes left no conntrack entries to both nrep-udp pods")
	}

	stale := nftShape(t, "ip")
	stateDir := filepath.Join(t.TempDir(), "state")
	apply := []string{"svctrace", "repair", "-A", "--node", harness.NodeName, "--apply", "--state-dir", stateDir}
	_, stderr, code := kubectl(t, true, apply...)
	if code != 0 || !strings.Contains(stderr, "nft --check accepts the transaction") {
		t.Fatalf("repair --apply: exit %d\n%s", code, stderr)
	}
	repaired := nftShape(t, "ip")
	diff := lineDiff(stale, repaired)
	t.Logf("the repair changed the kube-proxy table:\n%s", diff)
	for _, want := range []string{"10.244.1.153", "10.244.1.154", fmt.Sprintf("%d", nodePort), "nrep-gone"} {
		if !strings.Contains(diff, want) {
			t.Errorf("the table's change does not mention %s", want)
		}
	}
	if n := udpEntries("10.244.1.158"); n != 0 {
		t.Errorf("%d UDP conntrack entries to the removed endpoint remain", n)
	}
	if udpEntries("10.244.1.157") == 0 {
		t.Error("the repair deleted the UDP conntrack entries of the remaining endpoint")
	}
	reach := func(what, addr string, clientNS string) {
		r := probe(t, flow{clientNS: clientNS, addr: addr}, 120)
		var got []string
		for answer := range r.Backends {
			got = append(got, strings.Fields(answer)[0])
		}
		sort.Strings(got)
		if strings.Join(got, ",") != "nrep-1,nrep-3" || len(r.Failures) > 0 {
			t.Errorf("%s: connections reach %v (failures %v), want nrep-1 and nrep-3", what, got, r.Failures)
		}
	}
	reach("cluster IP", vip["nrep"]+":80", client)
	reach("new node port from outside", fmt.Sprintf("%s:%d", harness.NodeIP, nodePort), harness.ExternalNS)
	if out, code := checkInNode(t, "-A", "-o", "json"); code != 0 {
		t.Errorf("check after the repair: exit %d, findings %v", code, checkFindings(t, out))
	}

	// --undo brings back the stale table exactly; repairing again gives the same table.
	undo(t, stderr)
	if now := nftShape(t, "ip"); now != stale {
		t.Fatalf("after --undo the kube-proxy table is not the stale one:\n%s", lineDiff(stale, now))
	}
	// The same repair Service by Service (the deleted one too): each plan is made from that
	// Service's objects alone, read over netlink, and together they write exactly what repair -A
	// wrote, the removed endpoints' hairpin elements (which name no Service) included: they go
	// with the Service whose endpoint chains sent to those pods.
	for _, svc := range []string{"nrep", "nrep-gone", "nrep-udp"} {
		_, stderr, code := kubectl(t, true, "svctrace", "repair", ns+"/"+svc, "--node", harness.NodeName, "--apply", "--state-dir", stateDir, "-v", "1")
		if code != 0 || !strings.Contains(stderr, "over netlink for the plan") || strings.Contains(stderr, "reading the whole ruleset") {
			t.Fatalf("repair %s/%s --apply: exit %d\n%s", ns, svc, code, stderr)
		}
	}
	if now := nftShape(t, "ip"); now != repaired {
		t.Fatalf("repairing Service by Service wrote another table than repair -A:\n%s", lineDiff(repaired, now))
	}
	if _, stderr, code := kubectl(t, true, apply...); code != 0 {
		t.Fatalf("repair -A --apply after the Services' repairs: exit %d\n%s", code, stderr)
	}
	if now := nftShape(t, "ip"); now != repaired {
		t.Fatalf("the second repair wrote another table than the first:\n%s", lineDiff(repaired, now))
	}

	// kube-proxy, started again with the same API, has nothing other to write.
	syncs := strings.Count(kubeProxyLog(t), "SyncProxyRules complete")
	if err := cluster.StartKubeProxy("nftables"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(kubeProxyLog(t), "SyncProxyRules complete") <= syncs {
		if time.Now().After(deadline) {
			t.Fatal("kube-proxy did not sync after its restart")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if byKubeProxy := nftShape(t, "ip"); byKubeProxy != repaired {
		t.Errorf("the repaired table is not the one kube-proxy writes:\n%s", lineDiff(repaired, byKubeProxy))
	}
}

// nftShape is node1's kube-proxy table of a family (ip or ip6) from nft's own JSON, compared the
// way the acceptance asks: each chain's rules in order, each set's and map's definition and its
// elements as a set (sorted), handles left out. One line per rule or element, prefixed by its
// chain or set.
func nftShape(t *testing.T, family string) string {
	t.Helper()
	out, err := harness.NS(harness.NodeNS, "nft", "-j", "list", "table", family, "kube-proxy")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Nftables []map[string]map[string]any `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	var lines, elems []string
	for _, obj := range doc.Nftables {
		for kind, o := range obj {
			delete(o, "handle")
			switch kind {
			case "rule":
				b, _ := json.Marshal(map[string]any{"expr": o["expr"], "comment": o["comment"]})
				lines = append(lines, fmt.Sprintf("chain %v #%s", o["chain"], b))
			case "chain":
				b, _ := json.Marshal(o)
				elems = append(elems, "chain "+string(b))
			case "set", "map":
				items, _ := o["elem"].([]any)
				delete(o, "elem")
				b, _ := json.Marshal(o)
				elems = append(elems, kind+" "+string(b))
				for _, it := range items {
					e, _ := json.Marshal(it)
					elems = append(elems, fmt.Sprintf("%s %v elem %s", kind, o["name"], e))
				}
			}
		}
	}
	// Rules keep their order within a chain (a stable sort by chain); elements and the
	// definitions of chains and sets are compared as sets.
	sort.SliceStable(lines, func(i, j int) bool {
		return strings.SplitN(lines[i], " #", 2)[0] < strings.SplitN(lines[j], " #", 2)[0]
	})
	sort.Strings(elems)
	return strings.Join(append(elems, lines...), "\n")
}
