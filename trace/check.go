package trace

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Finding kinds of `check`, a fixed vocabulary.
const (
	StaleEndpoint        = "StaleEndpoint"
	MissingEndpoint      = "MissingEndpoint"
	StaleService         = "StaleService"
	MissingService       = "MissingService"
	WrongShare           = "WrongShare"
	NotReadyEndpoint     = "NotReadyEndpoint"
	NoEndpoints          = "NoEndpoints"
	LocalPolicyBlackhole = "LocalPolicyBlackhole"
	OrphanChain          = "OrphanChain"
)

// CheckScope selects the Services to check; empty fields match everything.
type CheckScope struct {
	Namespace, Name string
}

func (s CheckScope) has(svc *corev1.Service) bool {
	return s.Has(svc.Namespace, svc.Name)
}

// Has reports whether the Service namespace/name is in scope.
func (s CheckScope) Has(namespace, name string) bool {
	return (s.Namespace == "" || s.Namespace == namespace) && (s.Name == "" || s.Name == name)
}

// CheckResult is what `check` found on one node.
type CheckResult struct {
	Node string `json:"node"`
	Mode string `json:"mode"`
	// Checked counts the Service ports compared, once per address family of a dual-stack Service.
	Checked int `json:"checked"`
	// ReportedBy is "agent" when the node was not read: its svctrace agent's Node condition
	// said it is healthy (check --all-nodes).
	ReportedBy string    `json:"reportedBy,omitempty"`
	Findings   []Finding `json:"findings"`
}

// Usable returns the endpoints kube-proxy sends new connections to, as it decides for a node
// (pkg/proxy/topology.go, CategorizeEndpoints): the ready ones, or, when none is ready, those still
// serving while terminating. local keeps only the node's own (internal or external traffic policy
// Local). For cluster-wide traffic, topology hints narrow the ready endpoints as kube-proxy 1.34+
// does: node hints (trafficDistribution PreferSameNode) when every ready endpoint has them and
// one is for this node; otherwise zone hints (PreferClose, topology-aware routing) when every
// ready endpoint has them and one is for the node's zone.
func Usable(eps []Endpoint, node, zone string, local bool) []Endpoint {
	if local {
		return usable(eps, node, true)
	}
	hint := topologyHint(eps, node, zone)
	out := make([]Endpoint, 0, len(eps))
	for _, e := range eps {
		if e.Ready && (hint == nil || hint(e)) {
			out = append(out, e)
		}
	}
	if len(out) > 0 {
		return out
	}
	return usable(eps, node, false) // none ready: the serving-terminating ones, hints aside
}

// topologyHint returns which ready endpoints the hints keep for this node, nil for all.
func topologyHint(eps []Endpoint, node, zone string) func(Endpoint) bool {
	ready, allNode, forNode, allZone, forZone := false, true, false, true, false
	for _, e := range eps {
		if !e.Ready {
			continue
		}
		ready = true
		if len(e.Nodes) == 0 {
			allNode = false
		} else if slices.Contains(e.Nodes, node) {
			forNode = true
		}
		if len(e.Zones) == 0 {
			allZone = false
		} else if zone != "" && slices.Contains(e.Zones, zone) {
			forZone = true
		}
	}
	switch {
	case !ready:
		return nil
	case allNode && forNode:
		return func(e Endpoint) bool { return slices.Contains(e.Nodes, node) }
	case allZone && forZone:
		return func(e Endpoint) bool { return slices.Contains(e.Zones, zone) }
	}
	return nil
}

// sameFamily keeps the endpoints of addr's address family.
func sameFamily(eps []Endpoint, addr netip.Addr) []Endpoint {
	if !slices.ContainsFunc(eps, func(e Endpoint) bool { return e.Addr.Addr().Is4() != addr.Is4() }) {
		return eps // the common case: all of them
	}
	var out []Endpoint
	for _, e := range eps {
		if e.Addr.Addr().Is4() == addr.Is4() {
			out = append(out, e)
		}
	}
	return out
}

func usable(eps []Endpoint, node string, local bool) []Endpoint {
	pick := func(ok func(Endpoint) bool) []Endpoint {
		out := make([]Endpoint, 0, len(eps))
		for _, e := range eps {
			if ok(e) && (!local || e.NodeName == node) {
				out = append(out, e)
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	if r := pick(func(e Endpoint) bool { return e.Ready }); len(r) > 0 {
		return r
	}
	return pick(func(e Endpoint) bool { return e.Serving && e.Terminating })
}

// Check compares what the node's dataplane does with what the API says it should do: for every
// Service port in scope, which backends its cluster IP and node port reach, with what shares;
// then the dataplane's own entries for Services the API does not have.
func Check(ctx context.Context, dp Dataplane, cl *Cluster, node *NodeContext, scope CheckScope) (*CheckResult, error) {
	res := &CheckResult{Node: node.Name, Mode: dp.Mode(), Findings: []Finding{}}
	// Per family (IPv6's at [1]): a pod source in the node's pod range (or the cluster range the
	// rules name), an external source, and the node's address for node ports. Each family's
	// cluster IP of a dual-stack Service is checked with its own.
	var src, external, nodeIP [2]netip.Addr
	src[0], src[1] = netip.MustParseAddr("10.244.255.254"), netip.MustParseAddr("fd00:ffff::fffe")
	external[0], external[1] = netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::a")
	for fam, v6 := range []bool{false, true} {
		if p, ok := cl.PodCIDROfFamily(node.Name, v6); ok {
			src[fam] = lastUsable(p)
		} else if h, isHinted := dp.(interface{ ClusterCIDR() (netip.Prefix, bool) }); isHinted {
			if p, ok := h.ClusterCIDR(); ok && p.Addr().Is4() != v6 {
				src[fam] = lastUsable(p)
			}
		}
		for _, a := range node.Local {
			if a.Is4() != v6 && !a.IsLoopback() && !a.IsLinkLocalUnicast() {
				nodeIP[fam] = a
				break
			}
		}
	}
	zone := cl.Zone(node.Name)
	known := map[string]bool{}
	// Node ports are served on node addresses (in IPVS mode, one virtual server each).
	nodePorts := map[string]bool{}
	// One job per Service port, run on all cores (Dataplane.Walk may be called concurrently);
	// their findings are kept in this order.
	var jobs []func(*CheckResult) error
	svcs := append([]*corev1.Service(nil), cl.Services...)
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].Namespace+"/"+svcs[i].Name < svcs[j].Namespace+"/"+svcs[j].Name })
	for _, svc := range svcs {
		for _, ip := range serviceIPs(svc) {
			for _, sp := range svc.Spec.Ports {
				known[fmt.Sprintf("%s/%s", netip.AddrPortFrom(ip, uint16(sp.Port)), protoOf(sp.Protocol))] = true
			}
		}
		for _, sp := range svc.Spec.Ports {
			if sp.NodePort != 0 {
				nodePorts[fmt.Sprintf("%d/%s", sp.NodePort, protoOf(sp.Protocol))] = true
			}
		}
		if !scope.has(svc) || svc.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
			continue
		}
		vips := svc.Spec.ClusterIPs
		if len(vips) == 0 {
			vips = []string{svc.Spec.ClusterIP}
		}
		for _, ip := range vips {
			vip, err := netip.ParseAddr(ip)
			if err != nil {
				continue
			}
			fam := 0
			if !vip.Is4() {
				fam = 1
			}
			if f, ok := dp.(interface{ HasFamily(v6 bool) bool }); ok && !f.HasFamily(fam == 1) {
				continue // that family's rules were not read
			}
			for _, sp := range svc.Spec.Ports {
				res.Checked++
				jobs = append(jobs, func(r *CheckResult) error {
					ref := &ServiceRef{Namespace: svc.Namespace, Name: svc.Name, Port: sp.Name, Type: string(ClusterIPAddr)}
					// Each address family has its own proxier in kube-proxy, which sees only that
					// family's EndpointSlices: a dual-stack Service's IPv6 endpoints are not the IPv4
					// address's.
					eps := sameFamily(cl.Endpoints(svc, sp), vip)
					itpLocal := svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal
					want := Usable(eps, node.Name, zone, itpLocal)
					q := Query{Node: node, Packet: Packet{Src: src[fam], Dst: vip, DstPort: uint16(sp.Port), Protocol: protoOf(sp.Protocol)}}
					if err := compare(ctx, r, dp, cl, q, ref, eps, want, itpLocal, "cluster IP"); err != nil {
						return err
					}
					if sp.NodePort != 0 && nodeIP[fam].IsValid() {
						etpLocal := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
						want := Usable(eps, node.Name, zone, etpLocal)
						q := Query{Node: node, Packet: Packet{Src: external[fam], Dst: nodeIP[fam], DstPort: uint16(sp.NodePort), Protocol: protoOf(sp.Protocol)}}
						nref := *ref
						nref.Type = string(NodePortAddr)
						return compare(ctx, r, dp, cl, q, &nref, eps, want, etpLocal, "node port")
					}
					return nil
				})
			}
		}
	}
	found, err := runChecks(jobs, node.Name)
	if err != nil {
		return nil, err
	}
	res.Findings = append(res.Findings, found...)
	if l, ok := dp.(Lister); ok {
		seen := map[string]bool{}
		for _, e := range l.Entries() {
			key := fmt.Sprintf("%s/%s", e.Addr, e.Protocol)
			if known[key] || seen[key] || !inScope(scope, e.Name) || nodePorts[fmt.Sprintf("%d/%s", e.Addr.Port(), e.Protocol)] && !cl.isServiceIP(e.Addr.Addr()) {
				continue
			}
			seen[key] = true
			name := e.Name
			if name == "" {
				name = e.Addr.String()
			}
			res.Findings = append(res.Findings, Finding{Kind: StaleService, Severity: SeverityError, Service: name, Node: node.Name,
				Message:  fmt.Sprintf("the node still handles %s %s, which no Service in the API has: rules for a deleted Service or port; restart kube-proxy on %s, or run `svctrace repair` there", e.Protocol, e.Addr, node.Name),
				Evidence: []string{e.Where}})
		}
	}
	if o, ok := dp.(interface{ OrphanChains() []string }); ok && scope == (CheckScope{}) {
		for _, c := range o.OrphanChains() {
			res.Findings = append(res.Findings, Finding{Kind: OrphanChain, Severity: SeverityInfo, Node: node.Name,
				Message:  fmt.Sprintf("chain %s is not referenced by any rule; kube-proxy removes such chains on a later full sync (on large clusters, only every few minutes)", c),
				Evidence: []string{"nat " + c}})
		}
	}
	return res, nil
}

// runChecks runs the jobs on all cores, each with a CheckResult of its own for node, and returns
// their findings in the jobs' order, or the first error in that order.
func runChecks(jobs []func(*CheckResult) error, node string) ([]Finding, error) {
	results := make([]CheckResult, len(jobs))
	errs := make([]error, len(jobs))
	InParallel(len(jobs), 1, func(i int) bool {
		results[i].Node = node
		errs[i] = jobs[i](&results[i])
		return errs[i] != nil // the jobs after a failed one do not change the answer
	})
	var out []Finding
	for i := range jobs {
		if errs[i] != nil {
			return nil, errs[i]
		}
		out = append(out, results[i].Findings...)
	}
	return out, nil
}

func inScope(s CheckScope, name string) bool {
	if s == (CheckScope{}) {
		return true
	}
	ns, rest, ok := strings.Cut(name, "/")
	if !ok {
		return false // unnamed entries are reported only when checking everything
	}
	svc, _, _ := strings.Cut(rest, ":")
	return (s.Namespace == "" || s.Namespace == ns) && (s.Name == "" || s.Name == svc)
}

func serviceIPs(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	add := func(s string) {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a)
		}
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, ip := range ips {
		add(ip)
	}
	for _, ip := range svc.Spec.ExternalIPs {
		add(ip)
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		add(in.IP)
	}
	return out
}

func lastUsable(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := range b {
		for j := 7; j >= 0; j-- {
			if i*8+(7-j) >= p.Bits() {
				b[i] |= 1 << j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	if a.Is4() && p.Bits() < 31 {
		a = a.Prev()
	}
	return a
}

// compare walks one Service address and turns every difference from the API into a finding. It
// uses the paths directly, not the rendered trace: a full-node check walks 10,000 of them.
func compare(ctx context.Context, res *CheckResult, dp Dataplane, cl *Cluster, q Query, ref *ServiceRef, eps, want []Endpoint, local bool, what string) error {
	// The walk for the shares needs no steps; the evidence of a finding walks again with them.
	w, err := dp.Walk(WithoutSteps(ctx), q.Packet, q.Node)
	if err != nil {
		return err
	}
	var stepped *Walk
	add := func(kind string, sev Severity, msg string, ev ...string) {
		res.Findings = append(res.Findings, Finding{Kind: kind, Severity: sev, Service: ref.String(), Node: res.Node, Message: msg, Evidence: ev})
	}
	target := fmt.Sprintf("%s %s:%d", what, q.Packet.Dst, q.Packet.DstPort)
	if what == "node port" {
		target = fmt.Sprintf("node port %d", q.Packet.DstPort)
	}
	// eps and want are sorted by address (Cluster.Endpoints): looked up without maps, which
	// were a good part of checking 20,000 addresses.
	byAddr := func(list []Endpoint, ap netip.AddrPort) (Endpoint, bool) {
		i, ok := slices.BinarySearchFunc(list, ap, func(e Endpoint, ap netip.AddrPort) int { return e.Addr.Compare(ap) })
		if !ok {
			return Endpoint{}, false
		}
		return list[i], true
	}
	// got is each backend's share of new connections, by address.
	var got backendShares
	share := map[VerdictKind]float64{}
	example := map[VerdictKind]Verdict{}
	for _, p := range w.Paths {
		if p.Verdict.Kind == DNAT {
			got = append(got, backendShare{p.Verdict.Backend, p.Probability})
		}
		share[p.Verdict.Kind] += p.Probability
		example[p.Verdict.Kind] = p.Verdict
	}
	got = got.merged()
	// first is the verdict most new connections get.
	var first Verdict
	for k, v := range share {
		if first.Kind == "" || v > share[first.Kind] {
			first = example[k]
		}
	}
	evidence := func(ap netip.AddrPort) string {
		if stepped == nil {
			if stepped, err = dp.Walk(ctx, q.Packet, q.Node); err != nil {
				stepped = &Walk{} // the error is returned below
			}
		}
		for _, p := range stepped.Paths {
			if p.Verdict.Backend != ap {
				continue
			}
			for i := len(p.Steps) - 1; i >= 0; i-- {
				st := p.Steps[i]
				if strings.HasPrefix(st.Action, "DNAT to "+ap.String()) {
					if st.Line > 0 {
						return fmt.Sprintf("%s %s line %d: %s", st.Table, st.Chain, st.Line, st.Rule)
					}
					return fmt.Sprintf("%s %s: %s", st.Table, st.Chain, st.Action)
				}
			}
		}
		return "DNAT to " + ap.String()
	}
	for _, g := range got {
		ap := g.addr
		if _, ok := byAddr(want, ap); ok {
			continue
		}
		e, listed := byAddr(eps, ap)
		switch {
		case !listed:
			add(StaleEndpoint, SeverityError, fmt.Sprintf("%.0f%% of new connections to %s go to %s, which the API no longer lists: they fail. kube-proxy on %s has not caught up; restart it, or run `svctrace repair` there", 100*g.share, target, ap, res.Node), evidence(ap))
		case !e.Ready && !(e.Serving && e.Terminating):
			add(NotReadyEndpoint, SeverityWarning, fmt.Sprintf("%.0f%% of new connections to %s go to %s, which is not ready", 100*g.share, target, ap), evidence(ap))
		case local && e.NodeName != res.Node:
			if what == "node port" && len(want) == 0 {
				add(LocalPolicyBlackhole, SeverityWarning, fmt.Sprintf("externalTrafficPolicy is Local and node %s has no local endpoint, yet its %s still sends new connections to %s on %s; clients that reach this node (e.g. through a load balancer whose health check is stale) are not answered with their source kept", res.Node, target, ap, e.NodeName), evidence(ap))
			} else {
				add(StaleEndpoint, SeverityError, fmt.Sprintf("%s sends %.0f%% of new connections to %s on node %s, though the traffic policy is Local", target, 100*g.share, ap, e.NodeName), evidence(ap))
			}
		default:
			add(StaleEndpoint, SeverityError, fmt.Sprintf("%.0f%% of new connections to %s go to %s, which kube-proxy should not use now", 100*g.share, target, ap), evidence(ap))
		}
	}
	for _, e := range want {
		if _, ok := got.of(e.Addr); !ok {
			name := e.Addr.String()
			if e.Pod != nil {
				name += " (pod " + e.Pod.Namespace + "/" + e.Pod.Name + ")"
			}
			how := "no rule sends new connections to it"
			if len(got) == 0 {
				how = fmt.Sprintf("the node's verdict is %s (%s)", first.Kind, first.Reason)
			}
			kind := MissingEndpoint
			if len(got) == 0 && first.Kind == Accept {
				kind = MissingService
			}
			add(kind, SeverityError, fmt.Sprintf("the API lists %s as a usable endpoint of %s, but on %s %s", name, target, res.Node, how))
			if kind == MissingService {
				break
			}
		}
	}
	if len(want) == 0 && len(got) == 0 && (first.Kind == Reject || first.Kind == Drop) {
		add(NoEndpoints, SeverityInfo, fmt.Sprintf("%s has no usable endpoints for this node: new connections get %s", target, first.Kind), first.Reason)
	}
	// Shares: every wanted endpoint the same share, as kube-proxy programs them.
	if len(want) > 1 && len(got) == len(want) {
		expect := 1 / float64(len(want))
		for _, g := range got {
			ap := g.addr
			if math.Abs(g.share-expect) > 0.01 {
				add(WrongShare, SeverityWarning, fmt.Sprintf("%s sends %.1f%% of new connections to %s, expected %.1f%% (an equal split over %d endpoints)", target, 100*g.share, ap, 100*expect, len(want)), evidence(ap))
			}
		}
	}
	return err // of the walk for evidence, if it failed
}

// backendShare is a backend's share of new connections.
type backendShare struct {
	addr  netip.AddrPort
	share float64
}

type backendShares []backendShare

// merged sorts the shares by address and adds up those of the same backend.
func (b backendShares) merged() backendShares {
	slices.SortStableFunc(b, func(x, y backendShare) int { return x.addr.Compare(y.addr) })
	out := b[:0]
	for _, s := range b {
		if n := len(out); n > 0 && out[n-1].addr == s.addr {
			out[n-1].share += s.share
			continue
		}
		out = append(out, s)
	}
	return out
}

// of returns a backend's share, if it has one.
func (b backendShares) of(ap netip.AddrPort) (float64, bool) {
	i, ok := slices.BinarySearchFunc(b, ap, func(s backendShare, ap netip.AddrPort) int { return s.addr.Compare(ap) })
	if !ok {
		return 0, false
	}
	return b[i].share, true
}
