package harness

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// The dual-stack scenario: one PreferDualStack NodePort Service over two pods that have an IPv4
// and an IPv6 address, and a dual-stack client pod. Its addresses are pinned, like the standard
// scenario's, so that recordings of it stay the same.
const (
	DualService    = "dual"
	DualClusterIP  = "10.96.0.70"
	DualClusterIP6 = "fd00:10:96::70"
	DualNodePort   = 30100
	DualClient     = "ds-client"
)

// DualStackPods are the dual-stack scenario's pods: two behind the Service, one client.
var DualStackPods = []PodSpec{
	{Namespace: "default", Name: "ds-1", IP: "10.244.1.161", IP6: "fd00:10:244:1::161", Labels: map[string]string{"app": "ds"}, Ports: []string{"8080"}},
	{Namespace: "default", Name: "ds-2", IP: "10.244.1.162", IP6: "fd00:10:244:1::162", Labels: map[string]string{"app": "ds"}, Ports: []string{"8080"}},
	{Namespace: "default", Name: DualClient, IP: "10.244.1.169", IP6: "fd00:10:244:1::169", Labels: map[string]string{"role": "ds-client"}},
}

// DualStackService is the scenario's Service: both families, IPv4 first.
func DualStackService() *corev1.Service {
	prefer := corev1.IPFamilyPolicyPreferDualStack
	s := svc(DualService, corev1.ServiceTypeNodePort, "ds", withNodePort(TCPPort("http", 80, 8080), DualNodePort))
	s.Spec.IPFamilyPolicy = &prefer
	s.Spec.ClusterIP = DualClusterIP
	s.Spec.ClusterIPs = []string{DualClusterIP, DualClusterIP6}
	return s
}

// SetupDualStack adds the dual-stack scenario and waits for its EndpointSlices (one per family).
func (c *Cluster) SetupDualStack(ctx context.Context) (*corev1.Service, error) {
	for _, p := range DualStackPods {
		if _, err := c.AddPod(ctx, p); err != nil {
			return nil, err
		}
	}
	s, err := c.CreateService(ctx, DualStackService())
	if err != nil {
		return nil, err
	}
	if len(s.Spec.ClusterIPs) != 2 || s.Spec.ClusterIPs[1] != DualClusterIP6 {
		return nil, fmt.Errorf("service %s/%s got cluster IPs %v, want %s and %s: is the API server dual-stack?", s.Namespace, s.Name, s.Spec.ClusterIPs, DualClusterIP, DualClusterIP6)
	}
	if err := c.WaitEndpoints(ctx, "default", DualService, 4); err != nil {
		return nil, err
	}
	return s, nil
}

// DualStackProgrammed reports whether an ip6tables-save or nft dump has the dual-stack Service's
// IPv6 rules (both endpoints).
func DualStackProgrammed(dump string) bool {
	return strings.Contains(dump, "fd00:10:244:1::161") && strings.Contains(dump, "fd00:10:244:1::162")
}

// Dump6 is ip6tables-save of the node (without counters).
func (c *Cluster) Dump6() (string, error) {
	out, err := NS(NodeNS, IP6TablesSave())
	return string(out), err
}

// IP6TablesSave is the ip6tables-save of the backend IptablesSave names.
func IP6TablesSave() string { return "ip6" + IptablesSave[2:] }
