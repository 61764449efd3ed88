package kubeproxy

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// This file writes, for one Service port, the rules kube-proxy's iptables mode (1.30 to 1.36, which write the same text)
// writes for it on a node, in the form iptables-save prints them back, so that what svctrace
// writes is what kube-proxy would write and its next sync is a no-op. It follows
// pkg/proxy/iptables/proxier.go (syncProxyRules, writeServiceToEndpointRules); the test compares
// it with dumps recorded from the real kube-proxy v1.36.3.

// Per-service chain prefixes kube-proxy owns.
const (
	svcPrefix = "KUBE-SVC-"
	svlPrefix = "KUBE-SVL-"
	extPrefix = "KUBE-EXT-"
	fwPrefix  = "KUBE-FW-"
	sepPrefix = "KUBE-SEP-"
)

// portProtoHash is kube-proxy's chain-name hash of a service port name and protocol.
func portProtoHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return base32.StdEncoding.EncodeToString(h[:])[:16]
}

// ServicePort is one Service port as kube-proxy sees it on one node.
type ServicePort struct {
	// Name is kube-proxy's service port name: "namespace/name" or "namespace/name:port".
	Name string
	// Protocol is "tcp", "udp" or "sctp".
	Protocol    string
	ClusterIP   netip.Addr
	Port        int
	NodePort    int
	ExternalIPs []netip.Addr
	// LoadBalancerIPs are the status' ingress IPs (VIP mode).
	LoadBalancerIPs     []netip.Addr
	SourceRanges        []netip.Prefix
	HealthCheckNodePort int
	InternalLocal       bool
	ExternalLocal       bool
	// AffinitySeconds is set for ClientIP session affinity.
	AffinitySeconds int
	// Cluster and Local are the endpoints ("ip:port", sorted) kube-proxy uses for Cluster and
	// Local policy on this node, Reachable their union (one SEP chain each); HasEndpoints says
	// whether any endpoint is usable anywhere.
	Cluster, Local, Reachable []string
	HasEndpoints              bool
	// OnNode are the reachable endpoints on this node (the nftables hairpin set holds them).
	OnNode []string
}

// Chain names of the service port.
func (s *ServicePort) hash() string { return portProtoHash(s.Name + s.Protocol) }
func (s *ServicePort) SVC() string  { return svcPrefix + s.hash() }
func (s *ServicePort) SVL() string  { return svlPrefix + s.hash() }
func (s *ServicePort) EXT() string  { return extPrefix + s.hash() }
func (s *ServicePort) FW() string   { return fwPrefix + s.hash() }
func (s *ServicePort) SEP(ep string) string {
	return sepPrefix + portProtoHash(s.Name+s.Protocol+ep)
}

// Key identifies the service port across the API and the rules: "ns/name:port/proto".
func (s *ServicePort) Key() string { return s.Name + "/" + s.Protocol }

// externallyAccessible is kube-proxy's ExternallyAccessible: node port, external IPs or LB IPs.
func (s *ServicePort) externallyAccessible() bool {
	return s.NodePort != 0 || len(s.ExternalIPs) > 0 || len(s.LoadBalancerIPs) > 0
}

// Layout is what kube-proxy's rules depend on besides the Service: its flags and the cluster's
// size, read from the node's own rules where they show.
type Layout struct {
	// LargeCluster drops the per-endpoint comments (more than 1000 endpoints in the cluster).
	LargeCluster bool
	// LocalCIDR is the pod range of the local-traffic detector (detectLocalMode ClusterCIDR or
	// NodeCIDR), LocalIface its input interface (BridgeInterface "cbr0", InterfaceNamePrefix
	// "veth+"); neither set: no detector.
	LocalCIDR  netip.Prefix
	LocalIface string
	// MasqueradeAll is --masquerade-all.
	MasqueradeAll bool
	// LocalhostNodePorts adds the 127.0.0.0/8 node-port rules.
	LocalhostNodePorts bool
	// NFAcct adds kube-proxy's nfacct counter match to them: kube-proxy does only where the
	// kernel has nfacct and the counters exist, which its own rules show.
	NFAcct bool
	// NodeIP is the node's primary address (loadBalancerSourceRanges that contain it let the
	// node reach the LB IP).
	NodeIP netip.Addr
	// IPv6 writes ip6tables rules: ICMPv6 rejects and 128-bit affinity masks.
	IPv6 bool
}

// TableRules are the rules of one service port, by table and chain, as iptables-save prints them
// ("-A CHAIN ..."). Top-level chains (KUBE-SERVICES, KUBE-NODEPORTS, ...) hold only this port's
// rules; per-service chains are complete.
type TableRules struct {
	Nat, Filter map[string][]string
	// Chains are the per-service nat chains, in the order kube-proxy declares them.
	Chains []string
}

func (k *TableRules) add(table map[string][]string, chain string, parts ...string) {
	table[chain] = append(table[chain], "-A "+chain+" "+strings.Join(nonEmpty(parts), " "))
}

func (k *TableRules) chain(name string) {
	k.Chains = append(k.Chains, name)
	if k.Nat[name] == nil {
		k.Nat[name] = []string{}
	}
}

func nonEmpty(parts []string) []string {
	out := parts[:0:0]
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

func comment(c string) string { return `-m comment --comment "` + c + `"` }

func host(a netip.Addr) string { return netip.PrefixFrom(a, a.BitLen()).String() }

// Probability is how iptables-save prints kube-proxy's `--probability` for 1/n: kube-proxy
// writes %0.10f, the kernel keeps it as a 31-bit fraction, and it is printed with 11 digits.
func Probability(n int) string {
	p, _ := strconv.ParseFloat(fmt.Sprintf("%0.10f", 1.0/float64(n)), 64)
	return fmt.Sprintf("%.11f", math.Round(p*0x80000000)/0x80000000)
}

// SortEndpoints orders endpoints as kube-proxy does: by their "ip:port" string.
func SortEndpoints(eps []string) { sort.Strings(eps) }

// IPTablesRules writes the service port's rules.
func IPTablesRules(s *ServicePort, l Layout) *TableRules {
	k := &TableRules{Nat: map[string][]string{}, Filter: map[string][]string{}}
	p := s.Protocol
	proto := "-p " + p
	mproto := "-m " + p
	port := "--dport " + strconv.Itoa(s.Port)

	// kube-proxy's UsesClusterEndpoints and UsesLocalEndpoints.
	usesCluster := len(s.Cluster) > 0 && (!s.InternalLocal || s.externallyAccessible())
	usesLocal := len(s.Local) > 0 && (s.InternalLocal || s.ExternalLocal && s.externallyAccessible())
	internalChain := s.SVC()
	hasInternal := s.HasEndpoints
	if s.InternalLocal {
		internalChain = s.SVL()
		hasInternal = len(s.Local) > 0
	}
	externalPolicy := s.SVC()
	hasExternal := s.HasEndpoints
	if s.ExternalLocal {
		externalPolicy = s.SVL()
		hasExternal = len(s.Local) > 0
	}
	usesExt := s.HasEndpoints && s.externallyAccessible()
	lbChain := s.EXT()
	usesFW := s.HasEndpoints && len(s.LoadBalancerIPs) > 0 && len(s.SourceRanges) > 0
	if usesFW {
		lbChain = s.FW()
	}
	var intTarget, intComment, extTarget, extComment string
	reject, mask := "REJECT --reject-with icmp-port-unreachable", "255.255.255.255"
	if l.IPv6 {
		reject, mask = "REJECT --reject-with icmp6-port-unreachable", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
	}
	if !s.HasEndpoints {
		intTarget, intComment = reject, s.Name+" has no endpoints"
		extTarget, extComment = intTarget, intComment
	} else {
		if !hasInternal {
			intTarget, intComment = "DROP", s.Name+" has no local endpoints"
		}
		if !hasExternal {
			extTarget, extComment = "DROP", s.Name+" has no local endpoints"
		}
	}

	if hasInternal {
		k.add(k.Nat, "KUBE-SERVICES", "-d "+host(s.ClusterIP), proto, comment(s.Name+" cluster IP"), mproto, port, "-j "+internalChain)
	} else {
		k.add(k.Filter, "KUBE-SERVICES", "-d "+host(s.ClusterIP), proto, comment(intComment), mproto, port, "-j "+intTarget)
	}
	for _, ip := range s.ExternalIPs {
		if s.HasEndpoints {
			k.add(k.Nat, "KUBE-SERVICES", "-d "+host(ip), proto, comment(s.Name+" external IP"), mproto, port, "-j "+s.EXT())
		}
		if !hasExternal {
			k.add(k.Filter, "KUBE-EXTERNAL-SERVICES", "-d "+host(ip), proto, comment(extComment), mproto, port, "-j "+extTarget)
		}
	}
	for _, ip := range s.LoadBalancerIPs {
		if s.HasEndpoints {
			k.add(k.Nat, "KUBE-SERVICES", "-d "+host(ip), proto, comment(s.Name+" loadbalancer IP"), mproto, port, "-j "+lbChain)
		}
		if usesFW {
			k.add(k.Filter, "KUBE-PROXY-FIREWALL", "-d "+host(ip), proto, comment(s.Name+" traffic not accepted by "+s.FW()), mproto, port, "-j DROP")
		}
	}
	if !hasExternal {
		for _, ip := range s.LoadBalancerIPs {
			k.add(k.Filter, "KUBE-EXTERNAL-SERVICES", "-d "+host(ip), proto, comment(extComment), mproto, port, "-j "+extTarget)
		}
	}
	if s.NodePort != 0 {
		np := "--dport " + strconv.Itoa(s.NodePort)
		if s.HasEndpoints {
			if l.LocalhostNodePorts && s.ClusterIP.Is4() {
				acct := ""
				if l.NFAcct {
					acct = "-m nfacct --nfacct-name  localhost_nps_accepted_pkts"
				}
				k.add(k.Nat, "KUBE-NODEPORTS", "-d 127.0.0.0/8", proto, comment(s.Name), mproto, np, acct, "-j "+s.EXT())
			}
			k.add(k.Nat, "KUBE-NODEPORTS", proto, comment(s.Name), mproto, np, "-j "+s.EXT())
		}
		if !hasExternal {
			k.add(k.Filter, "KUBE-EXTERNAL-SERVICES", proto, comment(extComment), "-m addrtype --dst-type LOCAL", mproto, np, "-j "+extTarget)
		}
	}
	if s.HealthCheckNodePort != 0 {
		k.add(k.Filter, "KUBE-NODEPORTS", "-p tcp", comment(s.Name+" health check node port"), "-m tcp", "--dport "+strconv.Itoa(s.HealthCheckNodePort), "-j ACCEPT")
	}

	// Per-service chains, in kube-proxy's order: the internal chain's masquerade rule is written
	// first (into internalChain, which is declared later), then EXT, FW, SVC, SVL and the SEPs.
	var masq []string
	if hasInternal {
		switch {
		case l.MasqueradeAll:
			masq = []string{"-d " + host(s.ClusterIP), proto, comment(s.Name + " cluster IP"), mproto, port, "-j KUBE-MARK-MASQ"}
		case l.LocalCIDR.IsValid():
			masq = []string{"! -s " + l.LocalCIDR.String(), "-d " + host(s.ClusterIP), proto, comment(s.Name + " cluster IP"), mproto, port, "-j KUBE-MARK-MASQ"}
		case l.LocalIface != "":
			masq = []string{"-d " + host(s.ClusterIP), "! -i " + l.LocalIface, proto, comment(s.Name + " cluster IP"), mproto, port, "-j KUBE-MARK-MASQ"}
		}
	}
	svcRules := map[string][]string{}
	if masq != nil {
		k.add(svcRules, internalChain, masq...)
	}
	if usesExt {
		e := s.EXT()
		k.chain(e)
		if !s.ExternalLocal {
			k.add(k.Nat, e, comment("masquerade traffic for "+s.Name+" external destinations"), "-j KUBE-MARK-MASQ")
		} else {
			switch {
			case l.LocalCIDR.IsValid():
				k.add(k.Nat, e, "-s "+l.LocalCIDR.String(), comment("pod traffic for "+s.Name+" external destinations"), "-j "+s.SVC())
			case l.LocalIface != "":
				k.add(k.Nat, e, "-i "+l.LocalIface, comment("pod traffic for "+s.Name+" external destinations"), "-j "+s.SVC())
			}
			k.add(k.Nat, e, comment("masquerade LOCAL traffic for "+s.Name+" external destinations"), "-m addrtype --src-type LOCAL", "-j KUBE-MARK-MASQ")
			k.add(k.Nat, e, comment("route LOCAL traffic for "+s.Name+" external destinations"), "-m addrtype --src-type LOCAL", "-j "+s.SVC())
		}
		if hasExternal {
			k.add(k.Nat, e, "-j "+externalPolicy)
		}
	}
	if usesFW {
		f := s.FW()
		k.chain(f)
		allowNode := false
		for _, c := range s.SourceRanges {
			k.add(k.Nat, f, "-s "+c.String(), comment(s.Name+" loadbalancer IP"), "-j "+s.EXT())
			allowNode = allowNode || l.NodeIP.IsValid() && c.Contains(l.NodeIP)
		}
		if allowNode {
			for _, ip := range s.LoadBalancerIPs {
				k.add(k.Nat, f, "-s "+host(ip), comment(s.Name+" loadbalancer IP"), "-j "+s.EXT())
			}
		}
		k.add(k.Nat, f, comment("other traffic to "+s.Name+" will be dropped by KUBE-PROXY-FIREWALL"))
	}
	writeSplit := func(chain string, eps []string) {
		k.chain(chain)
		k.Nat[chain] = append(k.Nat[chain], svcRules[chain]...)
		epComment := func(ep string) string {
			if l.LargeCluster {
				return ""
			}
			return comment(s.Name + " -> " + ep)
		}
		if s.AffinitySeconds > 0 {
			for _, ep := range eps {
				sep := s.SEP(ep)
				k.add(k.Nat, chain, epComment(ep), "-m recent --rcheck --seconds "+strconv.Itoa(s.AffinitySeconds)+" --reap --name "+sep+" --mask "+mask+" --rsource", "-j "+sep)
			}
		}
		for i, ep := range eps {
			stat := ""
			if i < len(eps)-1 {
				stat = "-m statistic --mode random --probability " + Probability(len(eps)-i)
			}
			k.add(k.Nat, chain, epComment(ep), stat, "-j "+s.SEP(ep))
		}
	}
	if usesCluster {
		writeSplit(s.SVC(), s.Cluster)
	}
	if usesLocal {
		writeSplit(s.SVL(), s.Local)
	}
	all := s.Reachable
	for _, ep := range all {
		sep := s.SEP(ep)
		k.chain(sep)
		svcComment := ""
		if !l.LargeCluster {
			svcComment = comment(s.Name)
		}
		ip, _, _ := strings.Cut(ep, ":")
		if a, err := netip.ParseAddrPort(ep); err == nil {
			ip = host(a.Addr())
		}
		k.add(k.Nat, sep, "-s "+ip, svcComment, "-j KUBE-MARK-MASQ")
		recent := ""
		if s.AffinitySeconds > 0 {
			recent = "-m recent --set --name " + sep + " --mask " + mask + " --rsource"
		}
		k.add(k.Nat, sep, proto, svcComment, recent, mproto, "-j DNAT --to-destination "+ep)
	}
	return k
}
