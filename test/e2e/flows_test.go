//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svctrace/svctrace/dataplane/conntrack"
	"github.com/svctrace/svctrace/test/e2e/harness"
	"github.com/svctrace/svctrace/trace"
)

// The stale-flows scenario, in namespace "flows": a UDP Service whose only endpoint goes away
// while a client keeps sending to it (kubernetes#139628: kube-proxy 1.36 skips its conntrack
// cleanup for a Service left with no endpoints, so the client's flow stays pinned to the dead
// pod), next to a second UDP flow and a long-lived TCP connection that must not be touched.
const (
	flowsNS     = "flows"
	flowsDNSVIP = "10.96.21.10"
	flowsUDPVIP = "10.96.21.11"
	flowsWebVIP = "10.96.21.12"
)

// flowsPods are one mode's pods: the dns endpoint that goes (old), the one that comes (new),
// the second UDP Service's, the TCP Service's and the client.
type flowsPods struct{ old, new, udp, web, client harness.PodSpec }

func flowsPodsFor(mode string) flowsPods {
	base := 131
	if mode == "nftables" {
		base = 141
	}
	ip := func(i int) string { return "10.244.1." + strconv.Itoa(base+i) }
	name := func(n string) string { return n + "-" + mode }
	return flowsPods{
		old:    harness.PodSpec{Namespace: flowsNS, Name: name("dns-old"), IP: ip(0), Labels: map[string]string{"app": "dns-" + mode}, Ports: []string{"5353/udp"}},
		new:    harness.PodSpec{Namespace: flowsNS, Name: name("dns-new"), IP: ip(1), Labels: map[string]string{"app": "dns-" + mode}, Ports: []string{"5353/udp"}},
		udp:    harness.PodSpec{Namespace: flowsNS, Name: name("statsd"), IP: ip(2), Labels: map[string]string{"app": "statsd-" + mode}, Ports: []string{"5353/udp"}},
		web:    harness.PodSpec{Namespace: flowsNS, Name: name("web"), IP: ip(3), Labels: map[string]string{"app": "web-" + mode}, Ports: []string{"8080"}},
		client: harness.PodSpec{Namespace: flowsNS, Name: name("client"), IP: ip(4), Labels: map[string]string{"role": "client"}},
	}
}

func flowsServices(mode string) []*corev1.Service {
	mk := func(name, vip string, port corev1.ServicePort) *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: flowsNS, Name: name},
			Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": name + "-" + mode}, ClusterIP: vip, Ports: []corev1.ServicePort{port}},
		}
	}
	udp := func(port, target int32) corev1.ServicePort {
		p := harness.TCPPort("dns", port, target)
		p.Protocol = corev1.ProtocolUDP
		return p
	}
	return []*corev1.Service{
		mk("dns", flowsDNSVIP, udp(53, 5353)),
		mk("statsd", flowsUDPVIP, udp(53, 5353)),
		mk("web", flowsWebVIP, harness.TCPPort("http", 80, 8080)),
	}
}

// TestStaleFlows: check reports the UDP flow kube-proxy left pinned to a deleted pod (with its
// client and old backend) and no other flow; repair --apply deletes exactly that flow, counted
// before and after; the second UDP flow's and the TCP connection's conntrack entries are the same
// before and after. In both modes kube-proxy is then stopped and a new endpoint added: repair
// also programs the new endpoint and the client's next datagrams reach it within 1 s.
func TestStaleFlows(t *testing.T) {
	needCluster(t)
	t.Cleanup(func() { restartKubeProxy(t, harness.KubeProxyConfig{Mode: "iptables"}, harness.ScenarioProgrammed) })
	for _, mode := range []string{"iptables", "nftables"} {
		t.Run(mode, func(t *testing.T) { staleFlows(t, mode) })
	}
}

func staleFlows(t *testing.T, mode string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p := flowsPodsFor(mode)
	for _, s := range []harness.PodSpec{p.old, p.udp, p.web, p.client} {
		if _, err := cluster.AddPod(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	svcs := flowsServices(mode)
	for _, s := range svcs {
		if _, err := cluster.CreateService(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	procs := []string{"flows-" + mode + "-dns", "flows-" + mode + "-statsd", "flows-" + mode + "-tcp"}
	t.Cleanup(func() {
		for _, n := range procs {
			cluster.StopProcess(n)
		}
		for _, s := range svcs {
			_ = cluster.Client.CoreV1().Services(flowsNS).Delete(context.Background(), s.Name, metav1.DeleteOptions{})
		}
		for _, s := range []harness.PodSpec{p.old, p.new, p.udp, p.web, p.client} {
			_ = cluster.DeletePod(context.Background(), flowsNS, s.Name)
		}
	})
	if err := cluster.WaitEndpointIPs(ctx, flowsNS, "dns", p.old.IP); err != nil {
		t.Fatal(err)
	}
	restartKubeProxy(t, harness.KubeProxyConfig{Mode: mode}, func(dump string) bool {
		return harness.ScenarioProgrammed(dump) && strings.Contains(dump, p.old.IP) && strings.Contains(dump, p.udp.IP) && strings.Contains(dump, p.web.IP)
	})
	client := cluster.Pod(flowsNS, p.client.Name)
	for i, args := range [][]string{
		{"stream", "-udp", "-sport", "41001", flowsDNSVIP + ":53"},
		{"stream", "-udp", "-sport", "41002", flowsUDPVIP + ":53"},
		{"stream", "-interval", "500ms", flowsWebVIP + ":80"},
	} {
		if err := cluster.SpawnInPod(client, procs[i], cluster.Netprobe, args...); err != nil {
			t.Fatal(err)
		}
	}
	for i, backend := range []string{p.old.Name, p.udp.Name, p.web.Name} {
		eventually(t, ctx, 10*time.Second, procs[i]+" answered by "+backend, func() (bool, string) {
			log := cluster.ReadLog(procs[i])
			return strings.Contains(log, " "+backend+" "), lastLines(log, 3)
		})
	}
	// The dns endpoint goes: kube-proxy programs "no endpoints" and, the Service being left
	// with none, keeps the client's flow (kubernetes#139628).
	if err := cluster.DeletePod(ctx, flowsNS, p.old.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.WaitDump(ctx, mode, func(d string) bool { return !strings.Contains(d, p.old.IP) }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // kube-proxy's conntrack cleanup runs after its sync
	before := flowTable(t)
	dnsFlow := func(conns []trace.Conn) (trace.Conn, bool) {
		return findFlow(conns, p.client.IP, 41001, flowsDNSVIP+":53")
	}
	if c, ok := dnsFlow(before); !ok || c.Backend.Addr().String() != p.old.IP {
		t.Fatalf("the client's flow is not pinned to the deleted pod after kube-proxy's sync (kubernetes#139628 fixed in this kube-proxy?): %+v %v", c, ok)
	}
	// kube-proxy stops, and the API gets a new endpoint it does not program.
	cluster.StopKubeProxy()
	if _, err := cluster.AddPod(ctx, p.new); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitEndpointIPs(ctx, flowsNS, "dns", p.new.IP); err != nil {
		t.Fatal(err)
	}

	out, code := checkInNode(t, "-A", "-o", "json", "--node", harness.NodeName)
	var doc struct{ Findings []trace.Finding }
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("check output: %v\n%s", err, out)
	}
	var stale []trace.Finding
	mine := map[string]bool{p.old.IP: true, p.new.IP: true, p.udp.IP: true, p.web.IP: true}
	for _, f := range doc.Findings {
		// Earlier tests' closed TCP connections to pods they deleted are StaleFlow findings too
		// (info, until conntrack forgets them; the iptables run's, for the nftables run): only
		// this run's backends count here.
		if f.Kind == trace.StaleFlow && f.Flows != nil && mine[strings.Split(f.Flows.Backend, ":")[0]] {
			stale = append(stale, f)
		}
	}
	if code != 1 || len(stale) != 1 {
		t.Fatalf("check -A: exit %d, want 1 and one StaleFlow finding, got %+v\n%s", code, stale, out)
	}
	if f := stale[0]; f.Service != flowsNS+"/dns:dns" || f.Severity != trace.SeverityError || f.Flows == nil ||
		f.Flows.Backend != p.old.IP+":5353" || f.Flows.Protocol != "udp" || f.Flows.Dst != flowsDNSVIP+":53" ||
		len(f.Flows.Clients) != 1 || f.Flows.Clients[0] != p.client.IP || f.Flows.Entries != 1 {
		t.Errorf("the StaleFlow finding: %+v %+v", f, f.Flows)
	}

	table, _ := checkInNode(t, flowsNS+"/dns", "--node", harness.NodeName)
	t.Logf("check %s/dns:\n%s", flowsNS, table)

	others := func(conns []trace.Conn) string {
		u, uok := findFlow(conns, p.client.IP, 41002, flowsUDPVIP+":53")
		var tcp []string
		for _, c := range conns {
			if c.Client.String() == p.client.IP && c.Dst.String() == flowsWebVIP+":80" && c.State == "ESTABLISHED" {
				tcp = append(tcp, fmt.Sprintf("%d->%s", c.ClientPort, c.Backend))
			}
		}
		return fmt.Sprintf("udp %v %s; tcp %v", uok, u.Backend, tcp)
	}
	othersBefore := others(flowTable(t))
	if !strings.Contains(othersBefore, "udp true "+p.udp.IP) || !strings.Contains(othersBefore, "->"+p.web.IP+":8080") {
		t.Fatalf("the other flows are not there to begin with: %s", othersBefore)
	}
	rout, rerr, rcode := kubectl(t, true, "svctrace", "repair", flowsNS+"/dns", "--node", harness.NodeName, "--apply")
	repaired := time.Now()
	if rcode != 0 || !strings.Contains(string(rout)+rerr, "udp to "+flowsDNSVIP+":53 via "+p.old.IP+":5353 in zone 0: 1 before, 0 after") {
		t.Fatalf("repair --apply: exit %d\n%s\n%s", rcode, rout, rerr)
	}
	// The client's next datagrams go to the new endpoint (within 1 s of the repair).
	eventually(t, ctx, 3*time.Second, "the dns client answered by "+p.new.Name, func() (bool, string) {
		log := cluster.ReadLog(procs[0])
		return strings.Contains(log, " "+p.new.Name+" "), lastLines(log, 3)
	})
	first := firstAnswer(t, cluster.ReadLog(procs[0]), p.new.Name)
	t.Logf("first answer from %s %v after repair exited", p.new.Name, first.Sub(repaired))
	if first.Sub(repaired) > time.Second {
		t.Errorf("the first answer from %s came %v after the repair, want within 1s", p.new.Name, first.Sub(repaired))
	}
	after := flowTable(t)
	if c, ok := dnsFlow(after); ok && c.Backend.Addr().String() == p.old.IP {
		t.Errorf("the stale flow is still there after the repair: %+v", c)
	}
	if got := others(after); got != othersBefore {
		t.Errorf("the other flows changed: before %s, after %s", othersBefore, got)
	}
	if log := cluster.ReadLog(procs[2]); strings.Contains(log, "connection ended") {
		t.Errorf("the long-lived TCP connection ended: %s", lastLines(log, 3))
	}
}

// flowTable reads node1's conntrack table.
func flowTable(t *testing.T) []trace.Conn {
	t.Helper()
	out, err := harness.NS(harness.NodeNS, "conntrack", "-L", "-o", "extended")
	if err != nil {
		t.Fatal(err)
	}
	conns, err := conntrack.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	return conns
}

func findFlow(conns []trace.Conn, client string, port uint16, dst string) (trace.Conn, bool) {
	for _, c := range conns {
		if c.Client.String() == client && c.ClientPort == port && c.Dst.String() == dst {
			return c, true
		}
	}
	return trace.Conn{}, false
}

// firstAnswer is the time of the first line of a `netprobe stream` log answered by name.
func firstAnswer(t *testing.T, log, name string) time.Time {
	t.Helper()
	for _, l := range strings.Split(log, "\n") {
		ts, rest, ok := strings.Cut(l, " ")
		if !ok || !strings.HasPrefix(rest, name+" ") {
			continue
		}
		n, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			t.Fatalf("stream log line %q", l)
		}
		return time.Unix(0, n)
	}
	t.Fatalf("no answer from %s in %s", name, lastLines(log, 5))
	return time.Time{}
}
