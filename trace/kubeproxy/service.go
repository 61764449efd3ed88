package kubeproxy

import (
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/svctrace/svctrace/trace"
)

// defaultAffinitySeconds is the API's default ClientIP affinity timeout.
const defaultAffinitySeconds = 10800

// ServicePorts lists the IPv4 Service ports of the cluster as kube-proxy on node sees them:
// policies, addresses and the endpoints it would use there (every Service, in scope or not).
func ServicePorts(cl *trace.Cluster, node string) []*ServicePort { return FamilyPorts(cl, node, false) }

// FamilyPorts is ServicePorts for one IP family: IPv6 when v6 (kube-proxy runs one proxier per
// family, each seeing only its family's addresses and endpoints).
func FamilyPorts(cl *trace.Cluster, node string, v6 bool) []*ServicePort {
	zone := cl.Zone(node)
	fam := func(a netip.Addr) bool { return a.Is4() != v6 && !a.Is4In6() }
	var out []*ServicePort
	for _, svc := range cl.Services {
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		var vip netip.Addr
		for _, ip := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
			if a, err := netip.ParseAddr(ip); err == nil && fam(a) {
				vip = a
				break
			}
		}
		if !vip.IsValid() {
			continue // headless, or not of this family
		}
		accessible := svc.Spec.Type == corev1.ServiceTypeLoadBalancer || svc.Spec.Type == corev1.ServiceTypeNodePort ||
			svc.Spec.Type == corev1.ServiceTypeClusterIP && len(svc.Spec.ExternalIPs) > 0
		extLocal := accessible && svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
		intLocal := svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal
		affinity := 0
		if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
			affinity = defaultAffinitySeconds
			if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
				affinity = int(*c.ClientIP.TimeoutSeconds)
			}
		}
		var ext, lbs []netip.Addr
		for _, ip := range svc.Spec.ExternalIPs {
			if a, err := netip.ParseAddr(ip); err == nil && fam(a) {
				ext = append(ext, a)
			}
		}
		var ranges []netip.Prefix
		if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
			for _, in := range svc.Status.LoadBalancer.Ingress {
				if in.IPMode != nil && *in.IPMode == corev1.LoadBalancerIPModeProxy {
					continue
				}
				if a, err := netip.ParseAddr(in.IP); err == nil && fam(a) {
					lbs = append(lbs, a)
				}
			}
			for _, r := range svc.Spec.LoadBalancerSourceRanges {
				if p, err := netip.ParsePrefix(strings.TrimSpace(r)); err == nil && fam(p.Addr()) {
					ranges = append(ranges, p.Masked())
				}
			}
		}
		for _, sp := range svc.Spec.Ports {
			name := svc.Namespace + "/" + svc.Name
			if sp.Name != "" {
				name += ":" + sp.Name
			}
			proto := strings.ToLower(string(sp.Protocol))
			if proto == "" {
				proto = "tcp"
			}
			s := &ServicePort{Name: name, Protocol: proto, ClusterIP: vip, Port: int(sp.Port), ExternalIPs: ext, LoadBalancerIPs: lbs,
				SourceRanges: ranges, InternalLocal: intLocal, ExternalLocal: extLocal, AffinitySeconds: affinity}
			if svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
				s.NodePort = int(sp.NodePort)
			}
			if extLocal && svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
				s.HealthCheckNodePort = int(svc.Spec.HealthCheckNodePort)
			}
			var eps []trace.Endpoint
			for _, e := range cl.Endpoints(svc, sp) {
				if fam(e.Addr.Addr()) {
					eps = append(eps, e)
				}
			}
			usesCluster := !intLocal || s.externallyAccessible()
			usesLocal := intLocal || extLocal && s.externallyAccessible()
			if usesCluster {
				s.Cluster = endpointStrings(trace.Usable(eps, node, zone, false))
				s.HasEndpoints = len(s.Cluster) > 0
			}
			if usesLocal {
				s.Local = endpointStrings(trace.Usable(eps, node, "", true))
				for _, e := range eps {
					s.HasEndpoints = s.HasEndpoints || e.Ready || e.Serving && e.Terminating
				}
			}
			onNode := map[string]bool{}
			for _, e := range eps {
				if e.NodeName == node {
					onNode[e.Addr.String()] = true
				}
			}
			seen := map[string]bool{}
			for _, set := range [][]string{s.Cluster, s.Local} {
				for _, ep := range set {
					if !seen[ep] {
						seen[ep] = true
						s.Reachable = append(s.Reachable, ep)
					}
				}
			}
			SortEndpoints(s.Reachable)
			for _, ep := range s.Reachable {
				if onNode[ep] {
					s.OnNode = append(s.OnNode, ep)
				}
			}
			out = append(out, s)
		}
	}
	return out
}

func endpointStrings(eps []trace.Endpoint) []string {
	out := make([]string, 0, len(eps))
	for _, e := range eps {
		out = append(out, e.Addr.String())
	}
	SortEndpoints(out)
	return out
}
