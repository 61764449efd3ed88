package harness

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The IPVS scenario: pods that live inside the VM (node vm1), one that only exists on node2, and
// Services over them.
var VMPods = []PodSpec{
	{Namespace: "ipvs", Name: "vm-a", IP: "10.244.3.11", Node: VMNodeName, Labels: map[string]string{"app": "vmweb", "mix": "yes"}, Ports: []string{"8080"}},
	{Namespace: "ipvs", Name: "vm-b", IP: "10.244.3.12", Node: VMNodeName, Labels: map[string]string{"app": "vmweb"}, Ports: []string{"8080"}},
	{Namespace: "ipvs", Name: "vm-c", IP: "10.244.3.13", Node: VMNodeName, Labels: map[string]string{"app": "vmweb"}, Ports: []string{"8080"}},
	{Namespace: "ipvs", Name: "remote-z", IP: "10.244.2.77", Node: Node2Name, Labels: map[string]string{"mix": "yes", "far": "yes"}, Ports: []string{"8080"}},
	{Namespace: "ipvs", Name: "vmclient", IP: "10.244.3.99", Node: VMNodeName, Labels: map[string]string{"role": "client"}},
	// vm-d serves but no Service selects it: the repair test hands it to vmweb in edited objects.
	{Namespace: "ipvs", Name: "vm-d", IP: "10.244.3.14", Node: VMNodeName, Labels: map[string]string{"app": "vmweb-next"}, Ports: []string{"8080"}},
}

// VMClusterIPs pins the IPVS scenario's cluster IPs.
var VMClusterIPs = map[string]string{"vmweb": "10.96.30.10", "vmweb-np": "10.96.30.20", "vmmix-local": "10.96.30.21", "vmempty": "10.96.30.30", "vmsticky": "10.96.30.40", "vmfar-local": "10.96.30.60"}

// VMServices are the IPVS scenario's Services.
func VMServices() []*corev1.Service {
	mk := func(name string, typ corev1.ServiceType, sel map[string]string, nodePort int32) *corev1.Service {
		p := TCPPort("http", 80, 8080)
		p.NodePort = nodePort
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ipvs", Name: name},
			Spec: corev1.ServiceSpec{Type: typ, Selector: sel, Ports: []corev1.ServicePort{p}, ClusterIP: VMClusterIPs[name]}}
	}
	web := mk("vmweb", corev1.ServiceTypeClusterIP, map[string]string{"app": "vmweb"}, 0)
	np := mk("vmweb-np", corev1.ServiceTypeNodePort, map[string]string{"app": "vmweb"}, 30200)
	mix := mk("vmmix-local", corev1.ServiceTypeNodePort, map[string]string{"mix": "yes"}, 30201)
	mix.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	empty := mk("vmempty", corev1.ServiceTypeNodePort, map[string]string{"app": "nothing"}, 30202)
	sticky := mk("vmsticky", corev1.ServiceTypeClusterIP, map[string]string{"app": "vmweb"}, 0)
	sticky.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	far := mk("vmfar-local", corev1.ServiceTypeNodePort, map[string]string{"far": "yes"}, 30203)
	far.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	return []*corev1.Service{web, np, mix, empty, sticky, far}
}

// VMEndpointCounts is how many endpoints each IPVS scenario Service ends with.
var VMEndpointCounts = map[string]int{"vmweb": 3, "vmweb-np": 3, "vmmix-local": 2, "vmempty": 0, "vmsticky": 3, "vmfar-local": 1}

// SetupIPVSScenario creates the VM's Node, the scenario's Pod objects and Services.
func (c *Cluster) SetupIPVSScenario(ctx context.Context) error {
	if err := c.CreateVMNode(ctx); err != nil {
		return err
	}
	for _, p := range VMPods {
		if err := c.AddAPIPod(ctx, p); err != nil {
			return err
		}
	}
	for _, s := range VMServices() {
		if _, err := c.CreateService(ctx, s); err != nil {
			return err
		}
	}
	for name, n := range VMEndpointCounts {
		if err := c.WaitEndpoints(ctx, "ipvs", name, n); err != nil {
			return err
		}
	}
	return nil
}

// VMExternalIP is the external client's address inside the VM.
const VMExternalIP = "198.51.100.10"

// IPVSScript is the guest's scenario: wire the pods and an external client inside the VM, run
// kube-proxy in IPVS mode until it has programmed every scenario Service, print the dumps
// between markers, then run the extra commands (each printed as its own section).
func IPVSScript(extra map[string]string) string {
	return ipvsScript(extra, 0)
}

// IPVSScaleScript is IPVSScript for a cluster populated with PopulateScale: it waits until
// kube-proxy has programmed services virtual servers (plus the scenario's).
func IPVSScaleScript(extra map[string]string, services int) string {
	return ipvsScript(extra, services)
}

func ipvsScript(extra map[string]string, scale int) string {
	var b strings.Builder
	b.WriteString("set -u\nexport PATH=/usr/sbin:/usr/bin:/sbin:/bin\n")
	b.WriteString("sysctl -qw net.ipv4.conf.all.proxy_arp=0\nip route add 169.254.1.1/32 dev eth0 2>/dev/null\n")
	i := 0
	for _, p := range VMPods {
		if p.Node != VMNodeName {
			continue
		}
		i++
		ns, veth := "p"+p.Name, fmt.Sprintf("vp%d", i)
		fmt.Fprintf(&b, `ip netns add %[1]s
ip link add %[2]s type veth peer name eth0 netns %[1]s
ip -n %[1]s link set lo up
ip -n %[1]s addr add %[3]s/32 dev eth0
ip -n %[1]s link set eth0 up
ip -n %[1]s route add 169.254.1.1 dev eth0
ip -n %[1]s route add default via 169.254.1.1 dev eth0
ip link set %[2]s up
sysctl -qw net.ipv4.conf.%[2]s.proxy_arp=1 net.ipv4.neigh.%[2]s.proxy_delay=0
ip route add %[3]s/32 dev %[2]s
`, ns, veth, p.IP)
		if len(p.Ports) > 0 {
			fmt.Fprintf(&b, "ip netns exec %s /bin/netprobe serve %s %s >/dev/null 2>&1 &\n", ns, p.Name, strings.Join(p.Ports, " "))
		}
	}
	fmt.Fprintf(&b, `ip netns add ext
ip link add ext0 type veth peer name eth0 netns ext
ip addr add 198.51.100.1/24 dev ext0
ip link set ext0 up
ip -n ext link set lo up
ip -n ext addr add %[1]s/24 dev eth0
ip -n ext link set eth0 up
ip -n ext route add default via 198.51.100.1
ip link add %[8]s type bridge
ip addr add 10.244.3.254/24 dev %[8]s
ip link set %[8]s up
ip netns add bclient
ip link add vb0 type veth peer name eth0 netns bclient
ip link set vb0 master %[8]s up
ip -n bclient link set lo up
ip -n bclient addr add %[9]s/24 dev eth0
ip -n bclient link set eth0 up
ip -n bclient route add default via 10.244.3.254
started=$SECONDS
%[7]s >/tmp/kube-proxy.log 2>&1 &
# One listing per round: under TCG, ipvsadm takes seconds at 10,000 services.
for i in $(seq 1 900); do
	ipvsadm -Sn >/tmp/ipvs.txt 2>/dev/null
	n=0
	for vip in %[4]s; do grep -q -- "-t $vip:80 " /tmp/ipvs.txt && n=$((n+1)); done
	if [ $n -eq %[5]d ] && [ $(grep -c '^-A' /tmp/ipvs.txt) -ge %[6]d ]; then break; fi
	sleep 1
done
# kube-proxy's sync creates the virtual servers, then fills the ipsets (one ipset command per
# entry: at 10,000 Services, under TCG, many minutes), and last writes the iptables rules that
# match the sets. Wait for those rules: a recording taken before them has kube-proxy's bare
# chains alone, and a trace of it never looks at a set.
for i in $(seq 1 2400); do
	iptables-save -t nat | grep -q -- '--match-set KUBE-CLUSTER-IP' && break
	sleep 1
done
echo "==BEGIN kube-proxy-synced=="; echo $((SECONDS - started)); echo "==END kube-proxy-synced=="
sleep 3
echo "==BEGIN iptables-save==";  iptables-save -c; echo "==END iptables-save=="
echo "==BEGIN ipset-save==";  ipset save; echo "==END ipset-save=="
echo "==BEGIN ipvsadm-Sn==";  ipvsadm -Sn; echo "==END ipvsadm-Sn=="
echo "==BEGIN ipvsadm-Ln==";  ipvsadm -Ln; echo "==END ipvsadm-Ln=="
echo "==BEGIN proc-net-ip_vs==";  cat /proc/net/ip_vs; echo "==END proc-net-ip_vs=="
echo "==BEGIN kube-proxy-log==";  tail -20 /tmp/kube-proxy.log; echo "==END kube-proxy-log=="
`, VMExternalIP, VMNodeName, ClusterCIDR, strings.Join(vmVIPs(), " "), len(VMClusterIPs), scale, vmKubeProxy(), VMBridge, VMBridgedClient)
	// In name order: a test can make steps run last (after the probes) by their names.
	names := make([]string, 0, len(extra))
	for name := range extra {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(&b, "echo \"==BEGIN %s==\"; %s; echo \"==END %s==\"\n", name, extra[name], name)
	}
	return b.String()
}

// vmKubeProxy is the guest's kube-proxy command line, with extra flags.
func vmKubeProxy(flags ...string) string {
	return strings.Join(append([]string{"/bin/kube-proxy", "--kubeconfig=/kubeconfig", "--hostname-override=" + VMNodeName,
		"--proxy-mode=ipvs", "--cluster-cidr=" + ClusterCIDR, "--conntrack-max-per-core=0", "--ipvs-min-sync-period=0s",
		"--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256", "--v=2"}, flags...), " ")
}

// IPVSRestart is a guest step: kube-proxy restarted with extra flags, and waited for until the
// shell test ready passes; the step then prints what the shell command show prints (the rules or
// virtual servers the test looks at).
func IPVSRestart(flags []string, ready, show string) string {
	return "kill $(pidof kube-proxy); while pidof kube-proxy >/dev/null; do sleep 0.2; done; " +
		vmKubeProxy(flags...) + " >/tmp/kube-proxy-restarted.log 2>&1 & " +
		"for i in $(seq 120); do " + ready + " && break; sleep 1; done; sleep 2; " + show
}

// VMBridge and VMBridgedClient: a client namespace wired through a bridge, as bridge CNIs wire
// pods (kube-proxy's BridgeInterface detector).
const (
	VMBridge        = "svctbr0"
	VMBridgedClient = "10.244.3.98"
)

func vmVIPs() []string {
	var out []string
	for _, ip := range VMClusterIPs {
		out = append(out, ip)
	}
	return out
}
