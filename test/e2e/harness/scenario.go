package harness

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LBIP is the load balancer ingress address the scenario assigns (TEST-NET-3; it exists only as a
// destination the node's rules capture).
const LBIP = "203.0.113.100"

// ClientPod is the scenario's client pod on node1; no Service selects it.
const ClientPod = "client"

// ClientPodIP is its address.
const ClientPodIP = "10.244.1.99"

// ScenarioPods are the pods the standard scenario creates.
var ScenarioPods = []PodSpec{
	{Namespace: "default", Name: "hostnames-a", IP: "10.244.1.11", Labels: map[string]string{"app": "hostnames"}, Ports: []string{"9376"}},
	{Namespace: "default", Name: "hostnames-b", IP: "10.244.1.12", Labels: map[string]string{"app": "hostnames"}, Ports: []string{"9376"}},
	{Namespace: "default", Name: "hostnames-c", IP: "10.244.1.13", Labels: map[string]string{"app": "hostnames"}, Ports: []string{"9376"}},
	{Namespace: "default", Name: "hostnames-d", IP: "10.244.1.14", Labels: map[string]string{"app": "hostnames"}, Ports: []string{"9376"}, NotReady: true},
	{Namespace: "default", Name: "web-1", IP: "10.244.1.21", Labels: map[string]string{"app": "web"}, Ports: []string{"8080"}},
	{Namespace: "default", Name: "web-2", IP: "10.244.2.21", Node: Node2Name, Labels: map[string]string{"app": "web"}, Ports: []string{"8080"}},
	{Namespace: "default", Name: "remote-1", IP: "10.244.2.31", Node: Node2Name, Labels: map[string]string{"app": "remote"}, Ports: []string{"8080"}},
	{Namespace: "default", Name: "multi-1", IP: "10.244.1.41", Labels: map[string]string{"app": "multi"}, Ports: []string{"8080", "9090"}},
	{Namespace: "default", Name: "multi-2", IP: "10.244.1.42", Labels: map[string]string{"app": "multi"}, Ports: []string{"8080", "9090"}},
	{Namespace: "default", Name: "dns-1", IP: "10.244.1.51", Labels: map[string]string{"app": "dns"}, Ports: []string{"5353/udp"}},
	{Namespace: "default", Name: "dns-2", IP: "10.244.2.52", Node: Node2Name, Labels: map[string]string{"app": "dns"}, Ports: []string{"5353/udp"}},
	{Namespace: "default", Name: ClientPod, IP: ClientPodIP, Labels: map[string]string{"role": "client"}},
}

func svc(name string, typ corev1.ServiceType, selector string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec:       corev1.ServiceSpec{Type: typ, Selector: map[string]string{"app": selector}, Ports: ports},
	}
}

func withNodePort(p corev1.ServicePort, np int32) corev1.ServicePort { p.NodePort = np; return p }

// ScenarioClusterIPs pins each scenario Service's cluster IP, so recorded fixtures and the README's
// examples stay the same from one recording to the next.
var ScenarioClusterIPs = map[string]string{
	"hostnames": "10.96.10.10", "web-nodeport": "10.96.10.20", "web-local": "10.96.10.21", "web-lb": "10.96.10.22",
	"empty": "10.96.10.30", "sticky": "10.96.10.40", "multi": "10.96.10.50", "dns": "10.96.10.53",
	"remote-local": "10.96.10.60", "remote-itp": "10.96.10.61",
}

// ScenarioServices are the standard scenario's Services, one per behaviour the tests cover.
func ScenarioServices() []*corev1.Service {
	out := scenarioServices()
	for _, s := range out {
		s.Spec.ClusterIP = ScenarioClusterIPs[s.Name]
	}
	return out
}

func scenarioServices() []*corev1.Service {
	local := corev1.ServiceExternalTrafficPolicyLocal
	internalLocal := corev1.ServiceInternalTrafficPolicyLocal
	var out []*corev1.Service
	out = append(out, svc("hostnames", corev1.ServiceTypeClusterIP, "hostnames", TCPPort("default", 80, 9376)))
	out = append(out, svc("web-nodeport", corev1.ServiceTypeNodePort, "web", withNodePort(TCPPort("http", 80, 8080), 30080)))
	wl := svc("web-local", corev1.ServiceTypeNodePort, "web", withNodePort(TCPPort("http", 80, 8080), 30081))
	wl.Spec.ExternalTrafficPolicy = local
	out = append(out, wl)
	lb := svc("web-lb", corev1.ServiceTypeLoadBalancer, "web", withNodePort(TCPPort("http", 80, 8080), 30082))
	lb.Spec.LoadBalancerSourceRanges = []string{ExternalIP + "/32"}
	lb.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: LBIP}}
	out = append(out, lb)
	out = append(out, svc("empty", corev1.ServiceTypeNodePort, "nothing", withNodePort(TCPPort("http", 80, 8080), 30090)))
	sticky := svc("sticky", corev1.ServiceTypeClusterIP, "hostnames", TCPPort("default", 80, 9376))
	sticky.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	out = append(out, sticky)
	out = append(out, svc("multi", corev1.ServiceTypeClusterIP, "multi", TCPPort("http", 80, 8080), TCPPort("metrics", 9090, 9090)))
	dns := svc("dns", corev1.ServiceTypeClusterIP, "dns", TCPPort("dns", 53, 5353))
	dns.Spec.Ports[0].Protocol = corev1.ProtocolUDP
	out = append(out, dns)
	rl := svc("remote-local", corev1.ServiceTypeNodePort, "remote", withNodePort(TCPPort("http", 80, 8080), 30083))
	rl.Spec.ExternalTrafficPolicy = local
	out = append(out, rl)
	itp := svc("remote-itp", corev1.ServiceTypeClusterIP, "remote", TCPPort("http", 80, 8080))
	itp.Spec.InternalTrafficPolicy = &internalLocal
	out = append(out, itp)
	return out
}

// ScenarioEndpointCounts is how many endpoints (ready or not) each scenario Service ends with.
var ScenarioEndpointCounts = map[string]int{
	"hostnames": 4, "web-nodeport": 2, "web-local": 2, "web-lb": 2, "empty": 0, "sticky": 4,
	"multi": 2, "dns": 2, "remote-local": 1, "remote-itp": 1,
}

// Scenario is the standard scenario, running.
type Scenario struct {
	Services map[string]*corev1.Service
}

// SetupScenario creates the standard pods and Services and waits for their EndpointSlices.
func (c *Cluster) SetupScenario(ctx context.Context) (*Scenario, error) {
	t := time.Now()
	for _, p := range ScenarioPods {
		if _, err := c.AddPod(ctx, p); err != nil {
			return nil, err
		}
	}
	// A second address for the external client, outside the load balancer's source ranges.
	if err := run("ip", "netns", "exec", ExternalNS, "ip", "addr", "add", "198.51.100.11/24", "dev", "eth0"); err != nil {
		return nil, err
	}
	c.Phase(fmt.Sprintf("%d pods", len(ScenarioPods)), t)
	t = time.Now()
	sc := &Scenario{Services: map[string]*corev1.Service{}}
	for _, s := range ScenarioServices() {
		out, err := c.CreateService(ctx, s)
		if err != nil {
			return nil, err
		}
		sc.Services[s.Name] = out
	}
	for name, n := range ScenarioEndpointCounts {
		if err := c.WaitEndpoints(ctx, "default", name, n); err != nil {
			return nil, err
		}
	}
	c.Phase(fmt.Sprintf("%d services with endpoint slices", len(sc.Services)), t)
	return sc, nil
}

// ScenarioProgrammed reports whether an iptables or nft dump has rules for every scenario Service:
// iptables comments name them "default/NAME:PORT", nftables chains "…-default/NAME/PROTO/PORT".
func ScenarioProgrammed(dump string) bool {
	for name := range ScenarioEndpointCounts {
		if !strings.Contains(dump, "default/"+name+":") && !strings.Contains(dump, "default/"+name+"/") {
			return false
		}
	}
	return true
}
