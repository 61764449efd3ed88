package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Node2Name is a second node that exists only as an API object: its pods are wired to node1's
// namespace (so they are reachable), but kube-proxy on node1 sees them as remote endpoints.
const Node2Name = "node2"

// Node1Zone is node1's topology.kubernetes.io/zone (node2 is in zone-b).
const Node1Zone = "zone-a"

func (c *Cluster) createNodes(ctx context.Context) error {
	t := time.Now()
	// Each node in its own zone, for topology-aware routing (trafficDistribution).
	if err := c.AddNode(ctx, NodeName, NodeIP, Node1PodCIDR, Node1Zone, NodeIP6, Node1PodCIDR6); err != nil {
		return err
	}
	if err := c.AddNode(ctx, Node2Name, "172.31.250.6", Node2PodCIDR, "zone-b", Node2IP6, Node2PodCIDR6); err != nil {
		return err
	}
	c.Phase("node objects", t)
	return nil
}

// AddNode creates a ready Node object (node1 also gets its external address). Nodes other than
// node1 exist only in the API: their pods are wired into node1's namespace. ip6 and podCIDR6, when
// given, make it a dual-stack node.
func (c *Cluster) AddNode(ctx context.Context, name, ip, podCIDR, zone, ip6, podCIDR6 string) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name, corev1.LabelTopologyZone: zone}},
		Spec:       corev1.NodeSpec{PodCIDR: podCIDR, PodCIDRs: []string{podCIDR}},
	}
	if podCIDR6 != "" {
		node.Spec.PodCIDRs = append(node.Spec.PodCIDRs, podCIDR6)
	}
	created, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	created.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
	if ip6 != "" {
		created.Status.Addresses = append(created.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip6})
	}
	created.Status.Addresses = append(created.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: name})
	if name == NodeName {
		created.Status.Addresses = append(created.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: NodeExtIP})
	}
	created.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(), Reason: "E2E", Message: "harness node"}}
	if _, err := c.Client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("node %s status: %w", name, err)
	}
	return nil
}

// CleanupKubeProxyRules runs `kube-proxy --cleanup` in the node namespace: kube-proxy removes its
// rules of every mode, so that the next kube-proxy's first sync is the only one a dump shows.
func (c *Cluster) CleanupKubeProxyRules() error {
	_, err := NS(NodeNS, filepath.Join(c.BinDir, "kube-proxy"), "--cleanup", "--v=0")
	return err
}

// PodSpec describes a pod the harness wires up.
type PodSpec struct {
	Namespace, Name string
	IP              string
	// IP6, when set, gives the pod an IPv6 address too (dual-stack; not with Bridge).
	IP6    string
	Node   string // defaults to node1
	Labels map[string]string
	// Ports the pod serves, "8080" or "53/udp".
	Ports []string
	// NotReady leaves the pod's Ready condition false.
	NotReady bool
	// Bridge, when set, puts the pod's host-side interface into this bridge in the node
	// namespace (created on first use), the way bridge CNIs such as kubenet wire pods; otherwise
	// the pod has its own routed veth.
	Bridge string
}

// AddPod creates the pod's network namespace and server, and its Pod object with a running,
// ready status (there is no kubelet; the harness plays its part).
func (c *Cluster) AddPod(ctx context.Context, s PodSpec) (*Pod, error) {
	if s.Node == "" {
		s.Node = NodeName
	}
	if s.IP6 != "" && s.Bridge != "" {
		return nil, fmt.Errorf("pod %s/%s: IPv6 pods are routed, not bridged", s.Namespace, s.Name)
	}
	idx := len(c.pods) + 1
	p := &Pod{Namespace: s.Namespace, Name: s.Name, IP: s.IP, IP6: s.IP6, Node: s.Node, NetNS: fmt.Sprintf("svct-p%d", idx), hostVeth: fmt.Sprintf("vp%d", idx)}
	if err := run("ip", "netns", "add", p.NetNS); err != nil {
		return nil, err
	}
	c.netns = append(c.netns, p.NetNS)
	hostIf := p.hostVeth
	if s.Bridge != "" {
		hostIf = s.Bridge
		if err := c.ensureBridge(s.Bridge); err != nil {
			return nil, err
		}
	}
	cmds := [][]string{
		{"ip", "link", "add", p.hostVeth, "netns", NodeNS, "type", "veth", "peer", "name", "eth0", "netns", p.NetNS},
		{"ip", "netns", "exec", p.NetNS, "ip", "link", "set", "lo", "up"},
		{"ip", "netns", "exec", p.NetNS, "ip", "addr", "add", s.IP + "/32", "dev", "eth0"},
		{"ip", "netns", "exec", p.NetNS, "ip", "link", "set", "eth0", "up"},
		{"ip", "netns", "exec", p.NetNS, "ip", "route", "add", "169.254.1.1", "dev", "eth0"},
		{"ip", "netns", "exec", p.NetNS, "ip", "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"},
	}
	if s.Bridge != "" {
		cmds = append(cmds, []string{"ip", "netns", "exec", NodeNS, "ip", "link", "set", p.hostVeth, "master", s.Bridge})
	}
	cmds = append(cmds,
		[]string{"ip", "netns", "exec", NodeNS, "ip", "link", "set", p.hostVeth, "up"},
		[]string{"ip", "netns", "exec", NodeNS, "sysctl", "-qw", "net.ipv4.conf." + hostIf + ".proxy_arp=1"},
		// Answer proxy ARP at once (the default waits up to 0.8s, longer than a probe's patience).
		[]string{"ip", "netns", "exec", NodeNS, "sysctl", "-qw", "net.ipv4.neigh." + hostIf + ".proxy_delay=0"},
		[]string{"ip", "netns", "exec", NodeNS, "ip", "route", "add", s.IP + "/32", "dev", hostIf},
	)
	if s.IP6 != "" {
		// The pod's IPv6 gateway is the host end's link-local fe80::1, as Calico does.
		cmds = append(cmds,
			[]string{"ip", "netns", "exec", NodeNS, "ip", "-6", "addr", "add", "fe80::1/64", "dev", p.hostVeth, "nodad"},
			[]string{"ip", "netns", "exec", p.NetNS, "ip", "-6", "addr", "add", s.IP6 + "/128", "dev", "eth0", "nodad"},
			[]string{"ip", "netns", "exec", p.NetNS, "ip", "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0"},
			[]string{"ip", "netns", "exec", NodeNS, "ip", "-6", "route", "add", s.IP6 + "/128", "dev", p.hostVeth},
		)
	}
	if err := runAll(cmds); err != nil {
		return nil, err
	}
	if err := c.spawn("pod-"+s.Namespace+"-"+s.Name, p.NetNS, c.Netprobe, append([]string{"serve", s.Name}, s.Ports...)...); err != nil {
		return nil, err
	}
	if err := c.ensureNamespace(ctx, s.Namespace); err != nil {
		return nil, err
	}
	var ports []corev1.ContainerPort
	for _, pp := range s.Ports {
		num, proto, _ := strings.Cut(pp, "/")
		n, _ := strconv.Atoi(num)
		cp := corev1.ContainerPort{ContainerPort: int32(n), Protocol: corev1.ProtocolTCP}
		if proto == "udp" {
			cp.Protocol = corev1.ProtocolUDP
		}
		ports = append(ports, cp)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, Labels: s.Labels},
		Spec:       corev1.PodSpec{NodeName: s.Node, Containers: []corev1.Container{{Name: "netprobe", Image: "svctrace.local/netprobe", Ports: ports}}},
	}
	created, err := c.Client.CoreV1().Pods(s.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create pod %s/%s: %w", s.Namespace, s.Name, err)
	}
	if err := c.setPodStatus(ctx, created, podIPs(s.IP, s.IP6), !s.NotReady); err != nil {
		return nil, err
	}
	c.pods[s.Namespace+"/"+s.Name] = p
	return p, nil
}

func podIPs(ips ...string) []corev1.PodIP {
	var out []corev1.PodIP
	for _, ip := range ips {
		if ip != "" {
			out = append(out, corev1.PodIP{IP: ip})
		}
	}
	return out
}

func (c *Cluster) setPodStatus(ctx context.Context, pod *corev1.Pod, ips []corev1.PodIP, ready bool) error {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	now := metav1.Now()
	pod.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		PodIP:     ips[0].IP,
		PodIPs:    ips,
		HostIP:    NodeIP,
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: status, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: status, LastTransitionTime: now},
		},
	}
	_, err := c.Client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("pod %s/%s status: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// SetPodReady flips a pod's Ready condition, as a kubelet would after a probe.
func (c *Cluster) SetPodReady(ctx context.Context, ns, name string, ready bool) error {
	pod, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	return c.setPodStatus(ctx, pod, pod.Status.PodIPs, ready)
}

// DeletePod removes the Pod object and stops its server; its namespace stays until Stop (a dead
// pod whose address nobody answers on).
func (c *Cluster) DeletePod(ctx context.Context, ns, name string) error {
	zero := int64(0)
	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		return err
	}
	c.StopProcess("pod-" + ns + "-" + name)
	return nil
}

// ensureBridge creates a pod bridge in the node namespace once.
func (c *Cluster) ensureBridge(name string) error {
	if _, err := NS(NodeNS, "ip", "link", "show", name); err == nil {
		return nil
	}
	return runAll([][]string{
		{"ip", "netns", "exec", NodeNS, "ip", "link", "add", name, "type", "bridge"},
		{"ip", "netns", "exec", NodeNS, "ip", "link", "set", name, "up"},
	})
}

// DeletePodGracefully deletes the Pod object with its grace period: with no kubelet to confirm,
// it stays terminating (its endpoint serving but not ready) until DeletePod.
func (c *Cluster) DeletePodGracefully(ctx context.Context, ns, name string) error {
	return c.Client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{})
}

// Pod returns a pod the harness wired.
func (c *Cluster) Pod(ns, name string) *Pod { return c.pods[ns+"/"+name] }

func (c *Cluster) ensureNamespace(ctx context.Context, ns string) error {
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// CreateService creates the Service (its namespace too) and returns it as stored.
func (c *Cluster) CreateService(ctx context.Context, svc *corev1.Service) (*corev1.Service, error) {
	if err := c.ensureNamespace(ctx, svc.Namespace); err != nil {
		return nil, err
	}
	out, err := c.Client.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	if len(svc.Status.LoadBalancer.Ingress) > 0 {
		out.Status = svc.Status
		if out, err = c.Client.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, out, metav1.UpdateOptions{}); err != nil {
			return nil, fmt.Errorf("service %s/%s status: %w", svc.Namespace, svc.Name, err)
		}
	}
	return out, nil
}

// WaitEndpoints waits until the EndpointSlice controller lists want endpoints (ready or not) for
// the Service.
func (c *Cluster) WaitEndpoints(ctx context.Context, ns, name string, want int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		slices, err := c.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
		n := 0
		if err == nil {
			for _, s := range slices.Items {
				n += len(s.Endpoints)
			}
		}
		if n == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("service %s/%s has %d endpoints, want %d (err %v)", ns, name, n, want, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TCPPort is a Service port.
func TCPPort(name string, port, target int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, TargetPort: intstr.FromInt32(target), Protocol: corev1.ProtocolTCP}
}

// KubeProxyConfig is a kube-proxy configuration the harness can run. The zero value but Mode is
// the harness's default: the ClusterCIDR local-traffic detector, node ports on every local
// address, localhost node ports in iptables mode.
type KubeProxyConfig struct {
	Mode          string // iptables or nftables
	MasqueradeAll bool
	// DetectLocalMode is ClusterCIDR (""), NodeCIDR, BridgeInterface or InterfaceNamePrefix; the
	// last two use PodBridge and PodInterfacePrefix.
	DetectLocalMode, PodBridge, PodInterfacePrefix string
	// NodePortAddresses is --nodeport-addresses: CIDRs or "primary".
	NodePortAddresses []string
	// NoLocalhostNodePorts is --iptables-localhost-nodeports=false.
	NoLocalhostNodePorts bool
}

// StartKubeProxy runs kube-proxy in the node namespace in the given mode (iptables or nftables)
// with the harness's default configuration.
func (c *Cluster) StartKubeProxy(mode string) error {
	return c.StartKubeProxyWith(KubeProxyConfig{Mode: mode})
}

// StartKubeProxyWith runs kube-proxy in the node namespace with the configuration.
func (c *Cluster) StartKubeProxyWith(cfg KubeProxyConfig) error {
	// One kube-proxy per node: a second one would be orphaned here and keep syncing behind
	// the tests' back.
	c.StopKubeProxy()
	args := []string{
		"--kubeconfig=" + c.Kubeconfig, "--hostname-override=" + NodeName, "--proxy-mode=" + cfg.Mode,
		"--cluster-cidr=" + ClusterCIDR + "," + ClusterCIDR6, "--conntrack-max-per-core=0",
		"--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256",
		"--v=2",
	}
	if cfg.Mode == "iptables" {
		// nftables mode has no such flag; its default minimum (1s) is short enough.
		args = append(args, "--iptables-min-sync-period=0s")
	}
	if cfg.MasqueradeAll {
		args = append(args, "--masquerade-all")
	}
	if cfg.DetectLocalMode != "" {
		args = append(args, "--detect-local-mode="+cfg.DetectLocalMode)
	}
	if cfg.PodBridge != "" {
		args = append(args, "--pod-bridge-interface="+cfg.PodBridge)
	}
	if cfg.PodInterfacePrefix != "" {
		args = append(args, "--pod-interface-name-prefix="+cfg.PodInterfacePrefix)
	}
	if len(cfg.NodePortAddresses) > 0 {
		args = append(args, "--nodeport-addresses="+strings.Join(cfg.NodePortAddresses, ","))
	}
	if cfg.NoLocalhostNodePorts {
		args = append(args, "--iptables-localhost-nodeports=false")
	}
	return c.spawn("kube-proxy", NodeNS, filepath.Join(c.BinDir, "kube-proxy"), args...)
}

// StopKubeProxy stops kube-proxy; the rules it wrote stay.
func (c *Cluster) StopKubeProxy() { c.StopProcess("kube-proxy") }

// WaitDump polls the node's dataplane dump until ok accepts it, for up to a minute.
func (c *Cluster) WaitDump(ctx context.Context, mode string, ok func(dump string) bool) (string, error) {
	return c.WaitDumpFor(ctx, mode, ok, time.Minute)
}

// WaitDumpFor is WaitDump for up to patience (a node of 10,000 Services takes kube-proxy longer
// than the scenario's, and each dump of it takes seconds).
func (c *Cluster) WaitDumpFor(ctx context.Context, mode string, ok func(dump string) bool, patience time.Duration) (string, error) {
	deadline := time.Now().Add(patience)
	for {
		dump, err := c.Dump(mode)
		if err == nil && ok(dump) {
			return dump, nil
		}
		if time.Now().After(deadline) {
			return dump, fmt.Errorf("kube-proxy did not program the expected %s rules in time (err %v); its log: %s", mode, err, c.logTail("kube-proxy"))
		}
		if !c.alive("kube-proxy") {
			return dump, fmt.Errorf("kube-proxy exited: %s", c.logTail("kube-proxy"))
		}
		select {
		case <-ctx.Done():
			return dump, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Dump reads the node's dataplane: iptables-save -c (all tables) or nft -j list ruleset.
func (c *Cluster) Dump(mode string) (string, error) {
	var out []byte
	var err error
	if mode == "nftables" {
		out, err = NS(NodeNS, "nft", "-j", "list", "ruleset")
	} else {
		out, err = NS(NodeNS, IptablesSave, "-c")
	}
	return string(out), err
}

// IptablesSave is the iptables-save the node uses (kube-proxy picks the backend that has rules;
// on this machine both variants exist).
var IptablesSave = "iptables-save"

// WaitEndpointIPs waits until the Service's EndpointSlices list exactly these addresses.
func (c *Cluster) WaitEndpointIPs(ctx context.Context, ns, name string, ips ...string) error {
	want := strings.Join(ips, ",")
	deadline := time.Now().Add(30 * time.Second)
	for {
		slices, err := c.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
		var got []string
		if err == nil {
			for _, s := range slices.Items {
				for _, e := range s.Endpoints {
					got = append(got, e.Addresses...)
				}
			}
		}
		sort.Strings(got)
		if strings.Join(got, ",") == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("service %s/%s has endpoints %v, want %s (err %v)", ns, name, got, want, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// SpawnInPod starts a process in a pod's network namespace (stopped with the harness, or by
// StopProcess(name)); its output goes to the harness's NAME.log, which ReadLog returns.
func (c *Cluster) SpawnInPod(pod *Pod, name, bin string, args ...string) error {
	return c.spawn(name, pod.NetNS, bin, args...)
}

// ReadLog returns what a process the harness started has written so far.
func (c *Cluster) ReadLog(name string) string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, name+".log"))
	return string(b)
}

// SpawnInNode starts a process in the node namespace (stopped with the harness, or by
// StopProcess(name)); its output goes to the harness's NAME.log, which LogTail shows.
func (c *Cluster) SpawnInNode(name, bin string, args ...string) error {
	return c.spawn(name, NodeNS, bin, args...)
}

// LogTail is the end of a process's log.
func (c *Cluster) LogTail(name string) string { return c.logTail(name) }

// KubeconfigFor writes a kubeconfig for the API server that authenticates with token.
func (c *Cluster) KubeconfigFor(name, token string) (string, error) {
	path := filepath.Join(c.Dir, name+".kubeconfig")
	return path, os.WriteFile(path, []byte(kubeconfigText(name, token)), 0o600)
}

// kubeconfigText is a kubeconfig for the harness's API server as user with token (namespace
// default).
func kubeconfigText(user, token string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://%s:%s
    insecure-skip-tls-verify: true
users:
- name: %[3]s
  user:
    token: %[4]s
contexts:
- name: e2e
  context:
    cluster: e2e
    user: %[3]s
    namespace: default
current-context: e2e
`, APIHostAddr, apiPort, user, token)
}

// Spawn starts a process in the root namespace, stopped with the harness.
func (c *Cluster) Spawn(name, bin string, args ...string) error {
	return c.spawn(name, "", bin, args...)
}
