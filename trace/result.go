package trace

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/svctrace/svctrace/trace/kubeproxy/naming"
)

// APIVersion is the version of the machine-readable output contract.
const APIVersion = "svctrace/v1"

// Result is a trace, shaped as the output contract (DESIGN.md) promises machines.
type Result struct {
	APIVersion string        `json:"apiVersion"`
	Kind       string        `json:"kind"`
	Node       string        `json:"node"`
	Mode       string        `json:"mode"`
	Packet     PacketInfo    `json:"packet"`
	Service    *ServiceRef   `json:"service"`
	Backends   []Backend     `json:"backends"`
	Verdicts   []VerdictInfo `json:"verdicts"`
	Hops       []*Hop        `json:"hops"`
	Findings   []Finding     `json:"findings"`
	// AffinitySeconds is set when the Service pins clients to the backend of their first connection.
	AffinitySeconds int `json:"affinitySeconds,omitempty"`
	// Notes say what the evaluation assumed where it could not decide.
	Notes []string `json:"notes,omitempty"`
}

// PacketInfo is the traced packet.
type PacketInfo struct {
	Src      string `json:"src"`
	Dst      string `json:"dst"`
	Port     uint16 `json:"port"`
	Protocol string `json:"protocol"`
	// From says what the source stands for: pod, node, external, or an address.
	From string `json:"from,omitempty"`
}

// ServiceRef names the Service port the packet was addressed to.
type ServiceRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Port      string `json:"port"`
	Type      string `json:"type"`
}

// String renders "ns/name:port".
func (s *ServiceRef) String() string {
	if s.Port == "" {
		return s.Namespace + "/" + s.Name
	}
	return s.Namespace + "/" + s.Name + ":" + s.Port
}

// PodRef names a pod.
type PodRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// Backend is one DNAT destination with the share of new connections it receives.
type Backend struct {
	IP               string  `json:"ip"`
	Port             uint16  `json:"port"`
	Probability      float64 `json:"probability"`
	Masquerade       bool    `json:"masquerade"`
	MasqueradeReason string  `json:"masqueradeReason,omitempty"`
	Pod              *PodRef `json:"pod"`
	// Ready is the endpoint's readiness as the API says; nil when the API does not list it.
	Ready *bool  `json:"ready"`
	Node  string `json:"node"`
}

// VerdictInfo is the share of new connections that end in one verdict.
type VerdictInfo struct {
	Verdict     VerdictKind `json:"verdict"`
	Probability float64     `json:"probability"`
	Reason      string      `json:"reason,omitempty"`
}

// Hop is a node of the path tree: a rule the packet passed, with the share of traffic that
// passes it and the hops that follow.
type Hop struct {
	Table       string  `json:"table,omitempty"`
	Chain       string  `json:"chain,omitempty"`
	Line        int     `json:"line,omitempty"`
	Rule        string  `json:"rule,omitempty"`
	Action      string  `json:"action"`
	Probability float64 `json:"probability"`
	Branch      float64 `json:"branch"`
	Note        string  `json:"note,omitempty"`
	Detail      bool    `json:"detail,omitempty"`
	// Verdict is set on leaves.
	Verdict  *VerdictInfo `json:"verdict,omitempty"`
	Backend  *Backend     `json:"backend,omitempty"`
	Children []*Hop       `json:"children,omitempty"`
}

// Severity orders findings.
type Severity string

// Severities, as the contract spells them.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
	SeverityInfo    Severity = "info"
)

// Rank orders severities: info < warning < error.
func (s Severity) Rank() int {
	switch s {
	case SeverityError:
		return 2
	case SeverityWarning:
		return 1
	}
	return 0
}

// Finding is something wrong or noteworthy, in the shape every command shares.
type Finding struct {
	Kind     string   `json:"kind"`
	Severity Severity `json:"severity"`
	Service  string   `json:"service"`
	Node     string   `json:"node"`
	Message  string   `json:"message"`
	Evidence []string `json:"evidence"`
	// Flows details a StaleFlow finding.
	Flows *StaleFlows `json:"flows,omitempty"`
}

// Query is one trace request.
type Query struct {
	Packet Packet
	Node   *NodeContext
	// From describes the source for people ("pod", "node", "external", or an address).
	From string
}

// Run walks the packet through the dataplane and joins the paths with the cluster (nil for none).
func Run(ctx context.Context, dp Dataplane, cl *Cluster, q Query) (*Result, error) {
	w, err := dp.Walk(ctx, q.Packet, q.Node)
	if err != nil {
		return nil, err
	}
	p := q.Packet
	res := &Result{APIVersion: APIVersion, Kind: "Trace", Node: q.Node.Name, Mode: dp.Mode(),
		Packet:   PacketInfo{Src: p.Src.String(), Dst: p.Dst.String(), Port: p.DstPort, Protocol: p.Protocol.String(), From: q.From},
		Backends: []Backend{}, Verdicts: []VerdictInfo{}, Findings: []Finding{}, Notes: w.Notes}

	var match *ServicePortMatch
	if cl != nil {
		match = cl.Lookup(p.Dst, p.DstPort, p.Protocol, q.Node.IsLocal(p.Dst))
		if match != nil {
			res.Service = &ServiceRef{Namespace: match.Service.Namespace, Name: match.Service.Name, Port: match.Port.Name, Type: string(match.Kind)}
		}
	}
	if res.Service == nil {
		res.Service = serviceFromComments(w.Paths, q.Node.IsLocal(p.Dst))
	}
	var endpoints map[netip.AddrPort]Endpoint
	if match != nil {
		endpoints = map[netip.AddrPort]Endpoint{}
		for _, e := range cl.Endpoints(match.Service, match.Port) {
			endpoints[e.Addr] = e
		}
	}

	backends := map[string]*Backend{}
	verdicts := map[string]*VerdictInfo{}
	for _, path := range w.Paths {
		if path.AffinitySeconds > 0 {
			res.AffinitySeconds = path.AffinitySeconds
		}
		vk := string(path.Verdict.Kind) + "\x00" + path.Verdict.Reason
		if v := verdicts[vk]; v != nil {
			v.Probability += path.Probability
		} else {
			verdicts[vk] = &VerdictInfo{Verdict: path.Verdict.Kind, Probability: path.Probability, Reason: path.Verdict.Reason}
		}
		if path.Verdict.Kind != DNAT {
			continue
		}
		bk := fmt.Sprintf("%s/%v", path.Verdict.Backend, path.Masquerade)
		if b := backends[bk]; b != nil {
			b.Probability += path.Probability
			continue
		}
		b := &Backend{IP: path.Verdict.Backend.Addr().String(), Port: path.Verdict.Backend.Port(), Probability: path.Probability,
			Masquerade: path.Masquerade, MasqueradeReason: path.MasqueradeReason}
		annotateBackend(b, path.Verdict.Backend, cl, endpoints)
		backends[bk] = b
	}
	for _, b := range backends {
		res.Backends = append(res.Backends, *b)
	}
	sort.Slice(res.Backends, func(i, j int) bool {
		if res.Backends[i].Probability != res.Backends[j].Probability {
			return res.Backends[i].Probability > res.Backends[j].Probability
		}
		return res.Backends[i].IP+fmt.Sprint(res.Backends[i].Port) < res.Backends[j].IP+fmt.Sprint(res.Backends[j].Port)
	})
	for _, v := range verdicts {
		res.Verdicts = append(res.Verdicts, *v)
	}
	sort.Slice(res.Verdicts, func(i, j int) bool { return res.Verdicts[i].Probability > res.Verdicts[j].Probability })
	res.Hops = buildTree(w.Paths, res.Backends)
	res.Findings = traceFindings(res, cl, match, endpoints, w)
	return res, nil
}

func annotateBackend(b *Backend, ap netip.AddrPort, cl *Cluster, endpoints map[netip.AddrPort]Endpoint) {
	if e, ok := endpoints[ap]; ok {
		ready := e.Ready
		b.Ready = &ready
		b.Node = e.NodeName
	}
	if pod := cl.PodByIP(ap.Addr()); pod != nil {
		b.Pod = &PodRef{Namespace: pod.Namespace, Name: pod.Name}
		if b.Node == "" {
			b.Node = pod.Spec.NodeName
		}
	}
}

// serviceFromComments recovers the Service from kube-proxy's rule comments when there are no API
// objects: "ns/name:port cluster IP", "... external IP", "... loadbalancer IP", or a bare
// "ns/name:port" on a node port rule; in nftables mode, from its chain names.
func serviceFromComments(paths []Path, local bool) *ServiceRef {
	for _, p := range paths {
		for _, s := range p.Steps {
			if ref := ServiceFromNftChain(strings.TrimPrefix(strings.TrimPrefix(s.Action, "goto "), "jump ")); ref != nil {
				ref.Type = string(ClusterIPAddr)
				if local {
					ref.Type = string(NodePortAddr)
				}
				return ref
			}
			if s.Chain != "KUBE-SERVICES" && s.Chain != "KUBE-NODEPORTS" {
				continue
			}
			c := naming.RuleComment(s.Rule)
			if c == "" {
				continue
			}
			typ := string(NodePortAddr)
			for suffix, kind := range map[string]AddressKind{" cluster IP": ClusterIPAddr, " external IP": ExternalIPAddr, " loadbalancer IP": LoadBalancerAddr} {
				if strings.HasSuffix(c, suffix) {
					c, typ = strings.TrimSuffix(c, suffix), string(kind)
				}
			}
			ns, rest, ok := strings.Cut(c, "/")
			if !ok || strings.Contains(rest, " ") {
				continue
			}
			name, port, _ := strings.Cut(rest, ":")
			return &ServiceRef{Namespace: ns, Name: name, Port: port, Type: typ}
		}
	}
	return nil
}

// ServiceFromNftChain is the Service port a kube-proxy nftables chain is named for, or nil.
func ServiceFromNftChain(chain string) *ServiceRef {
	ns, name, port, ok := naming.NftChainService(chain)
	if !ok {
		return nil
	}
	return &ServiceRef{Namespace: ns, Name: name, Port: port}
}

// buildTree merges the paths into a tree: paths that share their first steps share hops.
func buildTree(paths []Path, backends []Backend) []*Hop {
	byAddr := map[string]*Backend{}
	for i := range backends {
		b := &backends[i]
		byAddr[fmt.Sprintf("%s/%v", netip.AddrPortFrom(netip.MustParseAddr(b.IP), b.Port), b.Masquerade)] = b
	}
	root := &Hop{}
	index := map[*Hop]map[string]*Hop{}
	for _, p := range paths {
		cur := root
		for _, s := range p.Steps {
			kids := index[cur]
			if kids == nil {
				kids = map[string]*Hop{}
				index[cur] = kids
			}
			k := s.Key()
			h := kids[k]
			if h == nil {
				h = &Hop{Table: s.Table, Chain: s.Chain, Line: s.Line, Rule: s.Rule, Action: s.Action, Branch: s.Branch, Note: s.Note, Detail: s.Detail}
				kids[k] = h
				cur.Children = append(cur.Children, h)
			}
			h.Probability += p.Probability
			cur = h
		}
		leaf := &Hop{Action: "verdict", Probability: p.Probability, Branch: 1,
			Verdict: &VerdictInfo{Verdict: p.Verdict.Kind, Probability: p.Probability, Reason: p.Verdict.Reason}}
		if p.Verdict.Kind == DNAT {
			leaf.Backend = byAddr[fmt.Sprintf("%s/%v", p.Verdict.Backend, p.Masquerade)]
		}
		cur.Children = append(cur.Children, leaf)
	}
	sortHops(root.Children)
	return root.Children
}

// sortHops puts siblings in rule order, the order the kernel tries them.
func sortHops(hs []*Hop) {
	sort.SliceStable(hs, func(i, j int) bool {
		if hs[i].Verdict != nil || hs[j].Verdict != nil {
			return hs[j].Verdict != nil && hs[i].Verdict == nil
		}
		if hs[i].Line != hs[j].Line {
			return hs[i].Line < hs[j].Line
		}
		return hs[i].Action < hs[j].Action
	})
	for _, h := range hs {
		sortHops(h.Children)
	}
}

func traceFindings(res *Result, cl *Cluster, match *ServicePortMatch, endpoints map[netip.AddrPort]Endpoint, w *Walk) []Finding {
	out := []Finding{}
	svc := ""
	if res.Service != nil {
		svc = res.Service.String()
	}
	add := func(kind string, sev Severity, msg string, ev ...string) {
		out = append(out, Finding{Kind: kind, Severity: sev, Service: svc, Node: res.Node, Message: msg, Evidence: ev})
	}
	if cl == nil {
		add("NoAPIObjects", SeverityInfo, "no API objects were given, so backends are not matched to pods and the dataplane is not compared with the API; pass --objects FILE or reach the API server")
	}
	for _, n := range w.Notes {
		if strings.Contains(n, "assumed not to match") {
			add("UnevaluatedMatch", SeverityWarning, n)
		}
	}
	for _, v := range res.Verdicts {
		if v.Verdict == Reject && strings.HasSuffix(v.Reason, "has no endpoints") {
			add("NoEndpoints", SeverityInfo, fmt.Sprintf("%s has no endpoints: new connections are rejected", svc), v.Reason)
		}
	}
	if cl == nil {
		return out
	}
	if match != nil {
		for _, b := range res.Backends {
			ap := netip.AddrPortFrom(netip.MustParseAddr(b.IP), b.Port)
			e, ok := endpoints[ap]
			switch {
			case !ok:
				add("StaleEndpoint", SeverityError, fmt.Sprintf("%.1f%% of new connections are DNAT'ed to %s, which the API no longer lists as an endpoint of %s; they will fail", 100*b.Probability, ap, svc), "DNAT to "+ap.String())
			case !e.Ready && !e.Serving:
				add("NotReadyEndpoint", SeverityWarning, fmt.Sprintf("%.1f%% of new connections go to %s, which is not ready", 100*b.Probability, ap), "DNAT to "+ap.String())
			}
		}
		dnat := false
		for _, v := range res.Verdicts {
			dnat = dnat || v.Verdict == DNAT
		}
		ready := 0
		for _, e := range endpoints {
			if e.Ready {
				ready++
			}
		}
		loopbackNodePort := res.Mode == "nftables" && match != nil && match.Kind == NodePortAddr && netip.MustParseAddr(res.Packet.Dst).IsLoopback()
		if !dnat && ready > 0 && len(res.Verdicts) > 0 && res.Verdicts[0].Verdict == Accept && loopbackNodePort {
			add("LoopbackNodePort", SeverityInfo, fmt.Sprintf("kube-proxy's nftables mode does not serve node ports on localhost (by design, unlike iptables mode): %s:%d reaches no Service on node %s; use a node address", res.Packet.Dst, res.Packet.Port, res.Node))
		} else if !dnat && ready > 0 && len(res.Verdicts) > 0 && res.Verdicts[0].Verdict == Accept {
			add("MissingService", SeverityError, fmt.Sprintf("the API has %d ready endpoints for %s, but no rule on node %s handles %s:%d", ready, svc, res.Node, res.Packet.Dst, res.Packet.Port))
		}
	} else if res.Service != nil {
		add("StaleService", SeverityError, fmt.Sprintf("the node still has rules for %s, which the API does not have", svc))
	}
	return out
}
