package trace

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Cluster is the API's view: Services, EndpointSlices, Pods and Nodes, indexed for the joins a
// trace needs. A nil *Cluster means "no API objects": the trace still runs on the dataplane alone.
type Cluster struct {
	Services []*corev1.Service
	Slices   []*discoveryv1.EndpointSlice
	Pods     []*corev1.Pod
	Nodes    []*corev1.Node

	svcByIP     map[netip.Addr][]addrUse
	svcByName   map[string]*corev1.Service
	slicesBySvc map[string][]*discoveryv1.EndpointSlice
	podByIP     map[netip.Addr]*corev1.Pod
	nodeByName  map[string]*corev1.Node
}

// AddressKind says which of a Service's addresses a packet was sent to.
type AddressKind string

// Address kinds, as the output's service.type reports them.
const (
	ClusterIPAddr    AddressKind = "ClusterIP"
	ExternalIPAddr   AddressKind = "ExternalIP"
	LoadBalancerAddr AddressKind = "LoadBalancer"
	NodePortAddr     AddressKind = "NodePort"
)

type addrUse struct {
	svc  *corev1.Service
	kind AddressKind
}

// NewCluster indexes the objects. Objects may be in any order; nil entries are skipped.
func NewCluster(svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice, pods []*corev1.Pod, nodes []*corev1.Node) *Cluster {
	c := &Cluster{Services: svcs, Slices: slices, Pods: pods, Nodes: nodes,
		svcByIP: map[netip.Addr][]addrUse{}, svcByName: map[string]*corev1.Service{},
		slicesBySvc: map[string][]*discoveryv1.EndpointSlice{}, podByIP: map[netip.Addr]*corev1.Pod{},
		nodeByName: map[string]*corev1.Node{}}
	add := func(s string, svc *corev1.Service, kind AddressKind) {
		if a, err := netip.ParseAddr(s); err == nil {
			c.svcByIP[a] = append(c.svcByIP[a], addrUse{svc, kind})
		}
	}
	for _, s := range svcs {
		if s == nil {
			continue
		}
		c.svcByName[s.Namespace+"/"+s.Name] = s
		ips := s.Spec.ClusterIPs
		if len(ips) == 0 && s.Spec.ClusterIP != "" {
			ips = []string{s.Spec.ClusterIP}
		}
		for _, ip := range ips {
			add(ip, s, ClusterIPAddr)
		}
		for _, ip := range s.Spec.ExternalIPs {
			add(ip, s, ExternalIPAddr)
		}
		for _, in := range s.Status.LoadBalancer.Ingress {
			add(in.IP, s, LoadBalancerAddr)
		}
	}
	for _, sl := range slices {
		if sl == nil {
			continue
		}
		name := sl.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		key := sl.Namespace + "/" + name
		c.slicesBySvc[key] = append(c.slicesBySvc[key], sl)
	}
	for _, p := range pods {
		if p == nil || p.Spec.HostNetwork {
			continue
		}
		for _, ip := range p.Status.PodIPs {
			if a, err := netip.ParseAddr(ip.IP); err == nil {
				c.podByIP[a] = p
			}
		}
		if a, err := netip.ParseAddr(p.Status.PodIP); err == nil {
			c.podByIP[a] = p
		}
	}
	for _, n := range nodes {
		if n != nil {
			c.nodeByName[n.Name] = n
		}
	}
	return c
}

// Service returns the Service by namespace and name.
func (c *Cluster) Service(ns, name string) *corev1.Service {
	if c == nil {
		return nil
	}
	return c.svcByName[ns+"/"+name]
}

// Node returns the Node by name.
func (c *Cluster) Node(name string) *corev1.Node {
	if c == nil {
		return nil
	}
	return c.nodeByName[name]
}

// NodeWithAddress returns the one Node whose InternalIP or ExternalIP is among addrs (a
// machine's own addresses), with that address; ok is false when none or several are.
func (c *Cluster) NodeWithAddress(addrs []netip.Addr) (name string, addr netip.Addr, ok bool) {
	if c == nil {
		return "", netip.Addr{}, false
	}
	mine := map[netip.Addr]bool{}
	for _, a := range addrs {
		if !a.IsLoopback() {
			mine[a.Unmap()] = true
		}
	}
	for _, n := range c.Nodes {
		for _, na := range n.Status.Addresses {
			if na.Type != corev1.NodeInternalIP && na.Type != corev1.NodeExternalIP {
				continue
			}
			if a, err := netip.ParseAddr(na.Address); err == nil && mine[a] {
				if name != "" && name != n.Name {
					return "", netip.Addr{}, false
				}
				name, addr = n.Name, a
			}
		}
	}
	return name, addr, name != ""
}

// PodByIP returns the (non-hostNetwork) pod that owns the address.
func (c *Cluster) PodByIP(a netip.Addr) *corev1.Pod {
	if c == nil {
		return nil
	}
	return c.podByIP[a]
}

// ServicePortMatch is a Service port a destination belongs to.
type ServicePortMatch struct {
	Service *corev1.Service
	Port    corev1.ServicePort
	Kind    AddressKind
}

// Lookup finds the Service port that owns dst:port/proto. local says whether dst is an address of
// the node (then node ports count too).
func (c *Cluster) Lookup(dst netip.Addr, port uint16, proto Protocol, local bool) *ServicePortMatch {
	if c == nil {
		return nil
	}
	for _, u := range c.svcByIP[dst] {
		for _, sp := range u.svc.Spec.Ports {
			if uint16(sp.Port) == port && protoOf(sp.Protocol) == proto {
				return &ServicePortMatch{Service: u.svc, Port: sp, Kind: u.kind}
			}
		}
	}
	if !local {
		return nil
	}
	for _, s := range c.Services {
		for _, sp := range s.Spec.Ports {
			if sp.NodePort != 0 && uint16(sp.NodePort) == port && protoOf(sp.Protocol) == proto {
				return &ServicePortMatch{Service: s, Port: sp, Kind: NodePortAddr}
			}
		}
	}
	return nil
}

func protoOf(p corev1.Protocol) Protocol {
	switch p {
	case corev1.ProtocolUDP:
		return UDP
	case corev1.ProtocolSCTP:
		return SCTP
	}
	return TCP
}

// Endpoint is one endpoint of a Service port as the API lists it.
type Endpoint struct {
	Addr                        netip.AddrPort
	Ready, Serving, Terminating bool
	NodeName                    string
	Pod                         *corev1.Pod
	// Zones and Nodes are the topology hints (forZones, forNodes) the EndpointSlice controller
	// set, if any.
	Zones, Nodes []string
}

// Endpoints lists the API's endpoints of a Service port, sorted by address.
func (c *Cluster) Endpoints(svc *corev1.Service, sp corev1.ServicePort) []Endpoint {
	if c == nil {
		return nil
	}
	sls := c.slicesBySvc[svc.Namespace+"/"+svc.Name]
	n := 0
	for _, sl := range sls {
		for _, ep := range sl.Endpoints {
			n += len(ep.Addresses)
		}
	}
	if n == 0 {
		return nil
	}
	out := make([]Endpoint, 0, n)
	for _, sl := range sls {
		var port *int32
		for _, p := range sl.Ports {
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			proto := corev1.ProtocolTCP
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			if name == sp.Name && proto == protoOrTCP(sp.Protocol) {
				port = p.Port
			}
		}
		if port == nil {
			continue
		}
		for _, ep := range sl.Endpoints {
			for _, a := range ep.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				ap := netip.AddrPortFrom(ip, uint16(*port))
				e := Endpoint{Addr: ap, Ready: ep.Conditions.Ready == nil || *ep.Conditions.Ready,
					Terminating: ep.Conditions.Terminating != nil && *ep.Conditions.Terminating}
				e.Serving = e.Ready
				if ep.Conditions.Serving != nil {
					e.Serving = *ep.Conditions.Serving
				}
				if ep.NodeName != nil {
					e.NodeName = *ep.NodeName
				}
				if ep.Hints != nil {
					for _, z := range ep.Hints.ForZones {
						e.Zones = append(e.Zones, z.Name)
					}
					for _, n := range ep.Hints.ForNodes {
						e.Nodes = append(e.Nodes, n.Name)
					}
				}
				e.Pod = c.podByIP[ip]
				out = append(out, e)
			}
		}
	}
	// By address; an address listed twice (in two slices) counts once, as first listed.
	slices.SortStableFunc(out, func(a, b Endpoint) int { return a.Addr.Compare(b.Addr) })
	return slices.CompactFunc(out, func(a, b Endpoint) bool { return a.Addr == b.Addr })
}

func protoOrTCP(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// NodeContextFor builds the evaluation context for a node from its Node object plus any extra
// local addresses the user named.
func (c *Cluster) NodeContextFor(name string, extra []netip.Addr) *NodeContext {
	n := &NodeContext{Name: name, Local: append([]netip.Addr(nil), extra...)}
	if node := c.Node(name); node != nil {
		for _, a := range node.Status.Addresses {
			if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil && !n.IsLocal(ip) {
				n.Local = append(n.Local, ip)
			}
		}
		cidrs := node.Spec.PodCIDRs
		if len(cidrs) == 0 && node.Spec.PodCIDR != "" {
			cidrs = []string{node.Spec.PodCIDR}
		}
		for _, c := range cidrs {
			if p, err := netip.ParsePrefix(c); err == nil {
				n.PodCIDRs = append(n.PodCIDRs, p.Masked())
			}
		}
	}
	return n
}

// PodCIDR returns the node's first pod CIDR, if the Node object has one.
func (c *Cluster) PodCIDR(node string) (netip.Prefix, bool) {
	n := c.Node(node)
	if n == nil {
		return netip.Prefix{}, false
	}
	cidr := n.Spec.PodCIDR
	if len(n.Spec.PodCIDRs) > 0 {
		cidr = n.Spec.PodCIDRs[0]
	}
	p, err := netip.ParsePrefix(cidr)
	return p, err == nil
}

// PodCIDROfFamily is the node's pod range of one family (IPv6's when v6): a dual-stack node has
// one of each.
func (c *Cluster) PodCIDROfFamily(node string, v6 bool) (netip.Prefix, bool) {
	n := c.Node(node)
	if n == nil {
		return netip.Prefix{}, false
	}
	for _, cidr := range append([]string{n.Spec.PodCIDR}, n.Spec.PodCIDRs...) {
		if p, err := netip.ParsePrefix(cidr); err == nil && p.Addr().Is4() != v6 {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// ServicesFor lists the Services that own an address (as cluster, external or load balancer IP).
func (c *Cluster) ServicesFor(a netip.Addr) []*corev1.Service {
	if c == nil {
		return nil
	}
	var out []*corev1.Service
	for _, u := range c.svcByIP[a] {
		out = append(out, u.svc)
	}
	return out
}

// isServiceIP reports whether a is a cluster, external or load balancer IP of some Service.
func (c *Cluster) isServiceIP(a netip.Addr) bool {
	return c != nil && len(c.svcByIP[a]) > 0
}

// Zone returns the node's topology.kubernetes.io/zone label.
func (c *Cluster) Zone(node string) string {
	if n := c.Node(node); n != nil {
		return n.Labels[corev1.LabelTopologyZone]
	}
	return ""
}
