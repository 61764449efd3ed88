package kubeproxy

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// This file writes what kube-proxy's nftables mode (1.31 to 1.36: the same objects, checked
// against a node recorded from v1.36.3) programs for the Service ports of one family in its
// `kube-proxy` table: the per-Service chains, the affinity sets, and the elements of its shared
// sets and maps. It follows pkg/proxy/nftables/proxier.go (syncProxyRules,
// writeServiceToEndpointDNATs, writeServiceToEndpointJumps). Rules are in the form
// nftables.CanonRule renders the node's rules in, so the two compare as text.

// The shared sets and maps whose elements kube-proxy writes per Service port.
const (
	NftClusterIPs          = "cluster-ips"
	NftServiceIPs          = "service-ips"
	NftServiceNodePorts    = "service-nodeports"
	NftNoEndpointServices  = "no-endpoint-services"
	NftNoEndpointNodePorts = "no-endpoint-nodeports"
	NftFirewallIPs         = "firewall-ips"
	NftHairpin             = "hairpin-connections"
)

// NftContainers are the shared sets and maps repair writes elements of, in the order a
// transaction names them.
var NftContainers = []string{NftClusterIPs, NftServiceIPs, NftServiceNodePorts, NftNoEndpointServices, NftNoEndpointNodePorts, NftFirewallIPs, NftHairpin}

// NftStaticChains are the chains kube-proxy's nftables mode creates besides its per-Service
// ones, its base chains among them, as v1.36.3 names them.
var NftStaticChains = []string{"filter-prerouting-pre-dnat", "filter-output-pre-dnat", "filter-input", "filter-forward", "filter-output",
	"nat-prerouting", "nat-output", "nat-postrouting", "services", "service-endpoints-check", "nodeport-endpoints-check",
	"firewall-check", "masquerading", "cluster-ips-check", "reject-chain"}

// nftNameMax is knftables' NameLengthMax; kube-proxy keeps 16 of it for prefixes.
const nftNameMax = 256

// nftHashName is kube-proxy's hashAndTruncate.
func nftHashName(name string) string {
	h := sha256.Sum256([]byte(name))
	name = base32.StdEncoding.EncodeToString(h[:])[:8] + "-" + name
	if max := nftNameMax - 16; len(name) > max {
		name = name[:max-3] + "..."
	}
	return name
}

// portName is the Service port's name ("" for an unnamed port).
func (s *ServicePort) portName() string {
	_, port, _ := strings.Cut(strings.SplitN(s.Name, "/", 2)[1], ":")
	return port
}

func (s *ServicePort) nftBase() string {
	ns, rest, _ := strings.Cut(s.Name, "/")
	name, _, _ := strings.Cut(rest, ":")
	return nftHashName(fmt.Sprintf("%s/%s/%s/%s", ns, name, s.Protocol, s.portName()))
}

func (s *ServicePort) nftEndpointBase(ep string) string {
	ap := netip.MustParseAddrPort(ep)
	ip := strings.ReplaceAll(ap.Addr().String(), ":", ".")
	ns, rest, _ := strings.Cut(s.Name, "/")
	name, _, _ := strings.Cut(rest, ":")
	return nftHashName(fmt.Sprintf("%s/%s/%s/%s__%s/%d", ns, name, s.Protocol, s.portName(), ip, ap.Port()))
}

// NftServiceChain and the others are the port's chain names in nftables mode.
func (s *ServicePort) NftServiceChain() string  { return "service-" + s.nftBase() }
func (s *ServicePort) NftLocalChain() string    { return "local-" + s.nftBase() }
func (s *ServicePort) NftExternalChain() string { return "external-" + s.nftBase() }
func (s *ServicePort) NftFirewallChain() string { return "firewall-" + s.nftBase() }

// NftEndpointChain and NftAffinitySet are an endpoint's chain and affinity set (ClientIP affinity).
func (s *ServicePort) NftEndpointChain(ep string) string { return "endpoint-" + s.nftEndpointBase(ep) }
func (s *ServicePort) NftAffinitySet(ep string) string   { return "affinity-" + s.nftEndpointBase(ep) }

// NftLayout is what kube-proxy's nftables rules depend on besides the Services: read from the
// node's own table (DetectNftLayout).
type NftLayout struct {
	// Family is "ip" or "ip6".
	Family string
	// MasqueradeMark is kube-proxy's masquerade bit (0x4000 unless --iptables-masquerade-bit).
	MasqueradeMark uint32
	// LocalMatch is the local-traffic detector's match for pod traffic, in canonical form
	// ("ip saddr 10.244.0.0/16", `iifname "veth*"`); "" when there is none.
	LocalMatch string
	// NodeIP is the node's address of this family (LoadBalancerSourceRanges containing it let the
	// node reach the LB IP).
	NodeIP netip.Addr
}

// NftObjects are kube-proxy's per-Service objects in one family's table: per-Service chains with
// their rules, affinity sets with their timeout, and the shared containers' elements (key →
// value, "" for sets). Owner names the Service port ("ns/name:port") each chain, set and element
// belongs to; Comments are the elements' comments (written, not compared, as kube-proxy does).
type NftObjects struct {
	Chains   map[string][]string
	Affinity map[string]int
	Elems    map[string]map[string]string
	Comments map[string]map[string]string
	Owner    map[string]string
	// Claims, of a node's objects, are the Service ports whose endpoint chains send to a
	// hairpin element's endpoint (by element ID, sorted): kube-proxy writes those elements
	// without a comment, and Services that share a pod share them.
	Claims map[string][]string
}

// NewNftObjects is an empty set of objects.
func NewNftObjects() *NftObjects {
	o := &NftObjects{Chains: map[string][]string{}, Affinity: map[string]int{}, Elems: map[string]map[string]string{},
		Comments: map[string]map[string]string{}, Owner: map[string]string{}, Claims: map[string][]string{}}
	for _, c := range NftContainers {
		o.Elems[c] = map[string]string{}
		o.Comments[c] = map[string]string{}
	}
	return o
}

// ElemID names an element for Owner: "container key".
func ElemID(container, key string) string { return container + " " + key }

func (o *NftObjects) elem(container, key, value, owner, comment string) {
	o.Elems[container][key] = value
	if comment != "" {
		o.Comments[container][key] = comment
	}
	o.Owner[ElemID(container, key)] = owner
}

// shared adds a set element several ports may need (a cluster IP, a hairpin endpoint): it
// belongs to a Service only while no other Service needs it ("" then).
func (o *NftObjects) shared(container, key, owner string) {
	id := ElemID(container, key)
	if prev, ok := o.Owner[id]; ok && ServiceOf(prev) != ServiceOf(owner) {
		owner = ""
	}
	o.elem(container, key, "", owner, "")
}

// ServiceOf is the Service ("ns/name") of a Service port name ("ns/name:port").
func ServiceOf(port string) string {
	svc, _, _ := strings.Cut(port, ":")
	return svc
}

func (o *NftObjects) chain(name, owner string, rules ...string) {
	o.Chains[name] = append(o.Chains[name], rules...)
	o.Owner[name] = owner
}

// AddNftService adds what kube-proxy writes for one Service port.
func (o *NftObjects) AddNftService(s *ServicePort, l NftLayout) {
	ipX := l.Family
	proto := s.Protocol
	port := strconv.Itoa(s.Port)
	owner := s.Name
	masq := fmt.Sprintf("meta mark set meta mark | 0x%08x", l.MasqueradeMark)
	affinity := s.AffinitySeconds > 0

	for _, ep := range s.Reachable {
		if affinity {
			o.Affinity[s.NftAffinitySet(ep)] = s.AffinitySeconds
			o.Owner[s.NftAffinitySet(ep)] = owner
		}
	}
	for _, ep := range s.OnNode {
		o.shared(NftHairpin, hairpinKey(netip.MustParseAddrPort(ep), proto), owner)
	}

	usesCluster := len(s.Cluster) > 0 && (!s.InternalLocal || s.externallyAccessible())
	usesLocal := len(s.Local) > 0 && (s.InternalLocal || s.ExternalLocal && s.externallyAccessible())
	clusterChain, localChain := s.NftServiceChain(), s.NftLocalChain()
	internalChain, hasInternal := clusterChain, s.HasEndpoints
	if s.InternalLocal {
		internalChain = localChain
		hasInternal = hasInternal && len(s.Local) > 0
	}
	externalPolicyChain, hasExternal := clusterChain, s.HasEndpoints
	if s.ExternalLocal {
		externalPolicyChain = localChain
		hasExternal = hasExternal && len(s.Local) > 0
	}
	externalChain := s.NftExternalChain()
	usesExternal := s.HasEndpoints && s.externallyAccessible()
	internalVerdict, externalVerdict := "", ""
	if !s.HasEndpoints {
		internalVerdict, externalVerdict = "goto reject-chain", "goto reject-chain"
	} else {
		if !hasInternal {
			internalVerdict = "drop"
		}
		if !hasExternal {
			externalVerdict = "drop"
		}
	}
	ipKey := func(a netip.Addr) string { return a.String() + " . " + proto + " . " + port }

	o.shared(NftClusterIPs, s.ClusterIP.String(), owner)
	if hasInternal {
		o.elem(NftServiceIPs, ipKey(s.ClusterIP), "goto "+internalChain, owner, "")
	} else {
		o.elem(NftNoEndpointServices, ipKey(s.ClusterIP), internalVerdict, owner, s.Name)
	}
	for _, a := range s.ExternalIPs {
		if s.HasEndpoints {
			o.elem(NftServiceIPs, ipKey(a), "goto "+externalChain, owner, "")
		}
		if !hasExternal {
			o.elem(NftNoEndpointServices, ipKey(a), externalVerdict, owner, s.Name)
		}
	}
	usesFW := len(s.LoadBalancerIPs) > 0 && len(s.SourceRanges) > 0
	fwChain := s.NftFirewallChain()
	for _, a := range s.LoadBalancerIPs {
		if s.HasEndpoints {
			o.elem(NftServiceIPs, ipKey(a), "goto "+externalChain, owner, "")
		}
		if usesFW {
			o.elem(NftFirewallIPs, ipKey(a), "goto "+fwChain, owner, "")
		}
	}
	if !hasExternal {
		for _, a := range s.LoadBalancerIPs {
			o.elem(NftNoEndpointServices, ipKey(a), externalVerdict, owner, s.Name)
		}
	}
	if s.NodePort != 0 {
		npKey := proto + " . " + strconv.Itoa(s.NodePort)
		if s.HasEndpoints {
			o.elem(NftServiceNodePorts, npKey, "goto "+externalChain, owner, "")
		}
		if !hasExternal {
			o.elem(NftNoEndpointNodePorts, npKey, externalVerdict, owner, s.Name)
		}
	}

	if usesCluster {
		o.chain(clusterChain, owner)
	}
	if usesLocal {
		o.chain(localChain, owner)
	}
	if usesExternal {
		o.chain(externalChain, owner)
		if !s.ExternalLocal {
			o.chain(externalChain, owner, masq+` comment "masquerade"`)
		} else {
			if l.LocalMatch != "" {
				o.chain(externalChain, owner, l.LocalMatch+" goto "+clusterChain+` comment "short-circuit pod traffic"`)
			}
			o.chain(externalChain, owner,
				"fib saddr type local "+masq+` comment "masquerade local traffic"`,
				"fib saddr type local goto "+clusterChain+` comment "short-circuit local traffic"`)
		}
		if hasExternal {
			o.chain(externalChain, owner, "goto "+externalPolicyChain)
		}
	}
	if usesFW {
		var sources []string
		fromNode := false
		for _, r := range s.SourceRanges {
			// nft stores a one-address prefix as the address, and prints it so.
			if r.IsSingleIP() {
				sources = append(sources, r.Addr().String())
			} else {
				sources = append(sources, r.String())
			}
			fromNode = fromNode || l.NodeIP.IsValid() && r.Contains(l.NodeIP)
		}
		if fromNode {
			for _, a := range s.LoadBalancerIPs {
				sources = append(sources, a.String())
			}
		}
		o.chain(fwChain, owner, ipX+" saddr != "+anonSet(sources)+" drop")
	}

	endpoints := func(chain string, eps []string) {
		if !affinity {
			parts := make([]string, len(eps))
			for i, ep := range eps {
				ap := netip.MustParseAddrPort(ep)
				parts[i] = fmt.Sprintf("%d : %s . %d", i, ap.Addr(), ap.Port())
			}
			o.chain(chain, owner, fmt.Sprintf("meta l4proto %s dnat %s addr . port to numgen random mod %d map { %s }", proto, ipX, len(eps), strings.Join(parts, ", ")))
			return
		}
		parts := make([]string, len(eps))
		for i, ep := range eps {
			o.chain(chain, owner, fmt.Sprintf("%s saddr @%s goto %s", ipX, s.NftAffinitySet(ep), s.NftEndpointChain(ep)))
			parts[i] = fmt.Sprintf("%d : goto %s", i, s.NftEndpointChain(ep))
		}
		o.chain(chain, owner, fmt.Sprintf("numgen random mod %d vmap { %s }", len(eps), strings.Join(parts, ", ")))
	}
	if usesCluster {
		endpoints(clusterChain, s.Cluster)
	}
	if usesLocal {
		endpoints(localChain, s.Local)
	}
	if affinity {
		for _, ep := range s.Reachable {
			ap := netip.MustParseAddrPort(ep)
			to := ap.String()
			o.chain(s.NftEndpointChain(ep), owner,
				fmt.Sprintf("update @%s { %s saddr }", s.NftAffinitySet(ep), ipX),
				fmt.Sprintf("meta l4proto %s dnat to %s", proto, to))
		}
	}
}

// anonSet is an anonymous set as nft prints it back: a single element stands alone.
func anonSet(items []string) string {
	if len(items) == 1 {
		return items[0]
	}
	return "{ " + strings.Join(items, ", ") + " }"
}
