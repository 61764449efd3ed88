//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svctrace/svctrace/test/e2e/harness"
	"github.com/svctrace/svctrace/trace"
)

// The options scenario: Services with the policies kube-proxy's endpoint selection depends on, in
// namespace "opts", and a client pod wired through a bridge the way bridge CNIs wire pods.
const (
	optsNS        = "opts"
	optsBridge    = "svctbr0"
	optsBClient   = "bclient"
	optsBClientIP = "10.244.1.98"
	// node3 exists only in the API, in node1's zone: topology hints tell PreferClose (same
	// zone: node1 and node3) from PreferSameNode (node1 only).
	optsNode3     = "node3"
	optsExtIP     = "203.0.113.50"
	optsVIPPrefix = "10.96.20."
)

// proxyConfig is one kube-proxy configuration TestKubeProxyOptions runs.
type proxyConfig struct {
	name string
	cfg  harness.KubeProxyConfig
	// bridged: pod traffic counts as local only from the bridge, so the pod flows start at the
	// bridged client.
	bridged bool
	// policies also runs the Service-policy flows (they do not depend on kube-proxy's flags).
	policies     bool
	iptablesOnly bool
}

var proxyConfigs = []proxyConfig{
	{name: "defaults", policies: true},
	{name: "masqueradeAll", cfg: harness.KubeProxyConfig{MasqueradeAll: true}},
	{name: "detectLocalMode NodeCIDR", cfg: harness.KubeProxyConfig{DetectLocalMode: "NodeCIDR"}},
	{name: "detectLocalMode InterfaceNamePrefix", cfg: harness.KubeProxyConfig{DetectLocalMode: "InterfaceNamePrefix", PodInterfacePrefix: "vp"}},
	{name: "detectLocalMode BridgeInterface", cfg: harness.KubeProxyConfig{DetectLocalMode: "BridgeInterface", PodBridge: optsBridge}, bridged: true},
	{name: "nodePortAddresses CIDR", cfg: harness.KubeProxyConfig{NodePortAddresses: []string{harness.NodeIP + "/32"}}},
	{name: "nodePortAddresses primary", cfg: harness.KubeProxyConfig{NodePortAddresses: []string{"primary"}}},
	{name: "localhostNodePorts false", cfg: harness.KubeProxyConfig{NoLocalhostNodePorts: true}, iptablesOnly: true},
}

// optsServices are the policy Services, all but term on the topo pods (one on each node).
func optsServices() []*corev1.Service {
	local := corev1.ServiceInternalTrafficPolicyLocal
	preferDual := corev1.IPFamilyPolicyPreferDualStack
	mk := func(name, app, vip string, edit func(*corev1.Service)) *corev1.Service {
		s := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: optsNS, Name: name},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": app}, ClusterIP: optsVIPPrefix + vip,
				Ports: []corev1.ServicePort{harness.TCPPort("http", 80, 8080)}},
		}
		if edit != nil {
			edit(s)
		}
		return s
	}
	return []*corev1.Service{
		mk("zonal", "topo", "10", func(s *corev1.Service) {
			s.Spec.TrafficDistribution = ptr(corev1.ServiceTrafficDistributionPreferClose)
		}),
		mk("near", "topo", "11", func(s *corev1.Service) {
			s.Spec.TrafficDistribution = ptr(corev1.ServiceTrafficDistributionPreferSameNode)
		}),
		mk("term", "term", "12", nil),
		mk("itp-local", "topo", "13", func(s *corev1.Service) { s.Spec.InternalTrafficPolicy = &local }),
		mk("extip", "topo", "14", func(s *corev1.Service) { s.Spec.ExternalIPs = []string{optsExtIP} }),
		mk("dual", "topo", "15", func(s *corev1.Service) { s.Spec.IPFamilyPolicy = &preferDual }),
	}
}

func ptr[T any](v T) *T { return &v }

// setupOptionsScenario creates node3, the opts pods and Services; the cleanup removes them.
func setupOptionsScenario(ctx context.Context, t *testing.T) {
	t.Helper()
	if err := cluster.AddNode(ctx, optsNode3, "172.31.250.10", "10.244.3.0/24", harness.Node1Zone, "", ""); err != nil {
		t.Fatal(err)
	}
	topo := map[string]string{"app": "topo"}
	pods := []harness.PodSpec{
		{Namespace: optsNS, Name: "topo-1", IP: "10.244.1.81", Labels: topo, Ports: []string{"8080"}},
		{Namespace: optsNS, Name: "topo-2", IP: "10.244.2.82", Node: harness.Node2Name, Labels: topo, Ports: []string{"8080"}},
		{Namespace: optsNS, Name: "topo-3", IP: "10.244.3.83", Node: optsNode3, Labels: topo, Ports: []string{"8080"}},
		{Namespace: optsNS, Name: "term-1", IP: "10.244.1.85", Labels: map[string]string{"app": "term"}, Ports: []string{"8080"}},
		{Namespace: optsNS, Name: optsBClient, IP: optsBClientIP, Labels: map[string]string{"role": "client"}, Bridge: optsBridge},
	}
	for _, p := range pods {
		if _, err := cluster.AddPod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range optsServices() {
		if _, err := cluster.CreateService(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	// term-1 is deleted with its grace period: with no kubelet to end it, it stays terminating,
	// still serving, and kube-proxy falls back to it (the Service has no ready endpoint).
	if err := cluster.DeletePodGracefully(ctx, optsNS, "term-1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		for _, s := range optsServices() {
			_ = cluster.Client.CoreV1().Services(optsNS).Delete(ctx, s.Name, metav1.DeleteOptions{})
		}
		for _, p := range pods {
			_ = cluster.DeletePod(ctx, optsNS, p.Name)
		}
		_ = cluster.Client.CoreV1().Nodes().Delete(ctx, optsNode3, metav1.DeleteOptions{})
	})
	// The EndpointSlice controller has written every hint and the terminating condition.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, state := optsSlicesReady(ctx)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the opts EndpointSlices are not as expected: %s", state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// optsSlicesReady reports whether the EndpointSlice controller has caught up with the opts
// scenario: node hints on near's endpoints, zone hints on zonal's, term-1 terminating.
func optsSlicesReady(ctx context.Context) (bool, string) {
	slices, err := cluster.Client.DiscoveryV1().EndpointSlices(optsNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, err.Error()
	}
	var zoneHints, nodeHints, terminating, topo int
	for _, s := range slices.Items {
		svc := s.Labels["kubernetes.io/service-name"]
		for _, e := range s.Endpoints {
			switch {
			case svc == "zonal" && e.Hints != nil && len(e.Hints.ForZones) == 1:
				zoneHints++
			case svc == "near" && e.Hints != nil && len(e.Hints.ForNodes) == 1:
				nodeHints++
			case svc == "term" && e.Conditions.Terminating != nil && *e.Conditions.Terminating && e.Conditions.Serving != nil && *e.Conditions.Serving:
				terminating++
			case svc == "dual":
				topo++
			}
		}
	}
	state := fmt.Sprintf("zone hints %d/3, node hints %d/3, terminating %d/1, endpoints %d/3", zoneHints, nodeHints, terminating, topo)
	return zoneHints == 3 && nodeHints == 3 && terminating == 1 && topo == 3, state
}

// optionFlows are the connections whose fate depends on kube-proxy's flags (and, with policies,
// on the Services' policies), with what kube-proxy does under this configuration.
func optionFlows(pc proxyConfig, mode string) []flow {
	podNS, podArg := client(), "pod/default/"+harness.ClientPod
	if pc.bridged {
		podNS, podArg = cluster.Pod(optsNS, optsBClient).NetNS, "pod/"+optsNS+"/"+optsBClient
	}
	hostnames := []string{"hostnames-a", "hostnames-b", "hostnames-c"}
	web := []string{"web-1", "web-2"}
	// Node ports on every local address only in iptables mode without nodePortAddresses
	// (nftables mode defaults to the primary address); on localhost only there, and unless
	// turned off.
	allAddrs := mode == "iptables" && len(pc.cfg.NodePortAddresses) == 0
	extVerdict, extPods := "ACCEPT", []string(nil)
	if allAddrs {
		extVerdict, extPods = "DNAT", web
	}
	loVerdict, loPods := "ACCEPT", []string(nil)
	if allAddrs && !pc.cfg.NoLocalhostNodePorts {
		loVerdict, loPods = "DNAT", web
	}
	out := []flow{
		{name: "ClusterIP from a pod", traceArgs: []string{"default/hostnames", "--from", podArg},
			clientNS: podNS, addr: "10.96.10.10:80", wantVerdict: "DNAT", wantPods: hostnames},
		{name: "ClusterIP from the node", traceArgs: []string{"default/hostnames", "--from", "node"},
			clientNS: harness.NodeNS, addr: "10.96.10.10:80", wantVerdict: "DNAT", wantPods: hostnames},
		{name: "ClusterIP from outside the cluster", traceArgs: []string{"default/hostnames", "--from", harness.ExternalIP},
			clientNS: harness.ExternalNS, addr: "10.96.10.10:80", wantVerdict: "DNAT", wantPods: hostnames},
		{name: "NodePort on the InternalIP", traceArgs: []string{harness.NodeIP + ":30080", "--from", harness.ExternalIP},
			clientNS: harness.ExternalNS, addr: harness.NodeIP + ":30080", wantVerdict: "DNAT", wantPods: web},
		{name: "NodePort on another node address", traceArgs: []string{harness.NodeExtIP + ":30080", "--from", harness.ExternalIP},
			clientNS: harness.ExternalNS, addr: harness.NodeExtIP + ":30080", wantVerdict: extVerdict, wantPods: extPods},
		{name: "NodePort on localhost", traceArgs: []string{"127.0.0.1:30080", "--from", "node"},
			clientNS: harness.NodeNS, addr: "127.0.0.1:30080", wantVerdict: loVerdict, wantPods: loPods},
		{name: "NodePort with Local policy", traceArgs: []string{harness.NodeIP + ":30081", "--from", harness.ExternalIP},
			clientNS: harness.ExternalNS, addr: harness.NodeIP + ":30081", wantVerdict: "DNAT", wantPods: []string{"web-1"}},
		{name: "NodePort with Local policy from a pod", traceArgs: []string{harness.NodeIP + ":30081", "--from", podArg},
			clientNS: podNS, addr: harness.NodeIP + ":30081", wantVerdict: "DNAT", wantPods: web},
		{name: "LoadBalancer", traceArgs: []string{harness.LBIP + ":80", "--from", harness.ExternalIP},
			clientNS: harness.ExternalNS, addr: harness.LBIP + ":80", wantVerdict: "DNAT", wantPods: web},
	}
	if !pc.policies {
		return out
	}
	topo := []string{"topo-1", "topo-2", "topo-3"}
	vip := func(n string) string { return optsVIPPrefix + n + ":80" }
	return append(out,
		flow{name: "trafficDistribution PreferClose (zone hints)", traceArgs: []string{optsNS + "/zonal", "--from", podArg},
			clientNS: podNS, addr: vip("10"), wantVerdict: "DNAT", wantPods: []string{"topo-1", "topo-3"}},
		flow{name: "trafficDistribution PreferSameNode (node hints)", traceArgs: []string{optsNS + "/near", "--from", podArg},
			clientNS: podNS, addr: vip("11"), wantVerdict: "DNAT", wantPods: []string{"topo-1"}},
		flow{name: "serving-terminating fallback", traceArgs: []string{optsNS + "/term", "--from", podArg},
			clientNS: podNS, addr: vip("12"), wantVerdict: "DNAT", wantPods: []string{"term-1"}},
		flow{name: "internalTrafficPolicy Local", traceArgs: []string{optsNS + "/itp-local", "--from", podArg},
			clientNS: podNS, addr: vip("13"), wantVerdict: "DNAT", wantPods: []string{"topo-1"}},
		flow{name: "externalIPs", traceArgs: []string{optsExtIP + ":80", "--from", harness.ExternalIP},
			clientNS: harness.ExternalNS, addr: optsExtIP + ":80", wantVerdict: "DNAT", wantPods: topo},
		flow{name: "ipFamilyPolicy PreferDualStack, IPv4 (its pods have no IPv6 address)", traceArgs: []string{optsNS + "/dual", "--from", podArg},
			clientNS: podNS, addr: vip("15"), wantVerdict: "DNAT", wantPods: topo},
		flow{name: "session affinity", traceArgs: []string{"default/sticky", "--from", podArg},
			clientNS: podNS, addr: "10.96.10.40:80", wantVerdict: "DNAT", wantPods: hostnames, sticky: true},
		flow{name: "loadBalancerSourceRanges", traceArgs: []string{harness.LBIP + ":80", "--from", "198.51.100.11"},
			clientNS: harness.ExternalNS, src: "198.51.100.11", addr: harness.LBIP + ":80", wantVerdict: "DROP"},
	)
}

// optsProgrammed returns when a dump of mode holds the standard scenario and every opts Service,
// and kube-proxy has applied node1's zone. kube-proxy learns the zone from its Node informer
// concurrently with its first sync: that sync may still send zonal's traffic to all three topo
// pods, and the one after it (within the minimum sync period) uses only the zone's two. The
// expectation is written here from the scenario (topo-1 and topo-3 share node1's zone, topo-2
// does not), independently of svctrace's engine.
func optsProgrammed(mode string) func(string) bool {
	return func(dump string) bool { return optsState(mode, dump) == "" }
}

// optsState says what a dump still lacks for optsProgrammed ("" when nothing).
func optsState(mode, dump string) string {
	if !harness.ScenarioProgrammed(dump) {
		return "the standard scenario is not programmed"
	}
	for _, s := range optsServices() {
		if !strings.Contains(dump, optsNS+"/"+s.Name+":") && !strings.Contains(dump, optsNS+"/"+s.Name+"/") {
			return "no rules for " + optsNS + "/" + s.Name
		}
	}
	uses := func(ip string) bool {
		return strings.Contains(dump, "\"opts/zonal:http -> "+ip+":8080\"")
	}
	rules := ""
	if mode == "nftables" {
		// kube-proxy's nftables service chain DNATs to the endpoints itself (a numgen map of
		// address . port) unless the Service has session affinity.
		rules = nftChainRules(dump, "-opts/zonal/tcp/http")
		uses = func(ip string) bool { return strings.Contains(rules, "\""+ip+"\"") }
	}
	if !uses("10.244.1.81") || !uses("10.244.3.83") || uses("10.244.2.82") {
		return fmt.Sprintf("zonal uses topo-1 %v, topo-3 %v, topo-2 %v (want true, true, false); its nftables rules: %s",
			uses("10.244.1.81"), uses("10.244.3.83"), uses("10.244.2.82"), rules)
	}
	return ""
}

// nftChainRules returns the expressions of the rules, in an `nft -j list ruleset` dump, of the
// chains whose name ends in suffix, as JSON text.
func nftChainRules(dump, suffix string) string {
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Chain string          `json:"chain"`
				Expr  json.RawMessage `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if json.Unmarshal([]byte(dump), &doc) != nil {
		return ""
	}
	var b strings.Builder
	for _, o := range doc.Nftables {
		if o.Rule != nil && strings.HasSuffix(o.Rule.Chain, suffix) {
			b.Write(o.Rule.Expr)
		}
	}
	return b.String()
}

// TestKubeProxyOptions runs the real kube-proxy under each configuration in proxyConfigs, in
// iptables and nftables mode, and checks on each: trace predicts every real connection's
// backend and masquerade, `check -A` on the synced node reports nothing, and `repair -A` plans
// nothing (what svctrace generates is what this kube-proxy wrote, in both modes).
func TestKubeProxyOptions(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	setupOptionsScenario(ctx, t)
	t.Cleanup(func() { restartKubeProxy(t, harness.KubeProxyConfig{Mode: "iptables"}, harness.ScenarioProgrammed) })
	for _, mode := range []string{"iptables", "nftables"} {
		for _, pc := range proxyConfigs {
			if pc.iptablesOnly && mode != "iptables" {
				continue
			}
			t.Run(mode+"/"+pc.name, func(t *testing.T) {
				cfg := pc.cfg
				cfg.Mode = mode
				restartKubeProxy(t, cfg, optsProgrammed(mode))
				for _, f := range optionFlows(pc, mode) {
					t.Run(f.name, func(t *testing.T) { traceAndProbe(t, f, mode, 40) })
				}
				out, code := checkInNode(t, "-A", "-o", "json", "--node", harness.NodeName)
				if got := checkFindings(t, out); code != 0 || len(got) > 0 {
					t.Errorf("check -A on the synced node: exit %d, findings %v\n%s", code, got, out)
				}
				out, stderr, code := kubectl(t, true, "svctrace", "repair", "-A", "--node", harness.NodeName, "-o", "json")
				var plan trace.RepairPlan
				if err := json.Unmarshal(out, &plan); err != nil || code != 0 || !plan.Empty() {
					t.Errorf("repair -A on the synced node: exit %d (%v), changes %+v\n%s", code, err, plan.Changes, stderr)
				}
			})
		}
	}
}

// restartKubeProxy stops kube-proxy, has it remove its rules, starts it with cfg and waits for
// its first full sync (the dump holds every Service ok looks for).
func restartKubeProxy(t *testing.T, cfg harness.KubeProxyConfig, ok func(string) bool) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		cluster.StopKubeProxy()
		if err := cluster.CleanupKubeProxyRules(); err != nil {
			t.Fatal(err)
		}
		if err := cluster.StartKubeProxyWith(cfg); err != nil {
			t.Fatal(err)
		}
		dump, err := waitKubeProxy(cfg.Mode, ok, 20*time.Second)
		if err != nil && attempt < 3 && lostZone(cfg.Mode, dump) {
			t.Logf("kube-proxy lost node1's zone at start-up (the race described at lostZone); starting it again")
			continue
		}
		if err != nil {
			// Longer than WaitDump's own minute, whose error carries kube-proxy's log.
			dump, err = waitKubeProxy(cfg.Mode, ok, 90*time.Second)
		}
		if err != nil {
			why := ""
			if cfg.Mode != "" && strings.Contains(dump, "opts/") {
				why = "; " + optsState(cfg.Mode, dump)
			}
			t.Fatalf("%v%s", err, why)
		}
		return
	}
}

func waitKubeProxy(mode string, ok func(string) bool, d time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return cluster.WaitDump(ctx, mode, ok)
}

// lostZone tells a kube-proxy that will never apply node1's zone. kube-proxy v1.36.3 can lose it
// at start-up: config.NewNodeTopologyConfig adds its handler to the node informer, which the
// NodeManager has already started and synced, and only then does server.go attach the proxier
// with RegisterEventHandler. When the informer delivers its initial add in between, the zone is
// recorded with no proxier to tell, and every later event with the same zone is skipped as "no
// change": the first sync logs "node is missing label" and no sync follows (seen about once in
// 60 starts, both modes possible). A kube-proxy that had the race the other way round (the add
// arriving during its first sync) syncs again within its minimum sync period, so 20 s without
// the zone after that log line is this race, not slowness.
func lostZone(mode, dump string) bool {
	return strings.HasPrefix(optsState(mode, dump), "zonal uses") &&
		strings.Contains(cluster.LogSinceStart("kube-proxy"), "since node is missing label")
}
