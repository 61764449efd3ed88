package trace

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// ModeLeftover is the finding kind for kube-proxy state of a mode other than the one kube-proxy
// runs in on the node: what a switch between modes left behind.
const ModeLeftover = "ModeLeftover"

// Leftover is one group of such state: the kube-proxy chains of one iptables table in one
// backend, kube-proxy's nftables table of one family, or IPVS objects. It carries what repair
// removes and what it puts back on undo.
type Leftover struct {
	// Mode is the mode that wrote it: iptables (also IPVS mode's iptables rules), nftables, ipvs.
	Mode string `json:"mode"`
	// Backend is the iptables command family (a key of repair's Backends) for iptables state.
	Backend string `json:"backend,omitempty"`
	// Table is the iptables table (nat, filter, mangle), the nftables family (ip, ip6), or
	// "ipvs".
	Table string `json:"table"`
	// Chains are kube-proxy's chains in the table with their rules (iptables-save form).
	Chains []ChainRules `json:"chains,omitempty"`
	// Jumps are the rules in built-in chains that jump to them.
	Jumps []Jump `json:"jumps,omitempty"`
	// NftJSON is the nftables table as `nft -j list table` printed it (to put it back on undo).
	NftJSON string `json:"nftJSON,omitempty"`
	// Objects name what is there, for people (IPVS: the kube-ipvs0 device, virtual servers).
	Objects []string `json:"objects,omitempty"`
	// IPVS is IPVS mode's kernel state, read on the node itself: what repair removes and puts
	// back (nil when it was seen from afar, through a pod: then only reported).
	IPVS *IPVSState `json:"ipvs,omitempty"`
}

// IPVSState is what kube-proxy's IPVS mode keeps in the kernel besides iptables rules: the
// kube-ipvs0 dummy device holding the Services' addresses, the virtual servers, and its ipsets.
type IPVSState struct {
	// Device is "kube-ipvs0" when it is there; Up says whether it was up (kube-proxy leaves it
	// down); Addresses are the prefixes on it ("10.96.0.1/32").
	Device    string   `json:"device,omitempty"`
	Up        bool     `json:"up,omitempty"`
	Addresses []string `json:"addresses,omitempty"`
	// VirtualServers are kube-proxy's: on an address of kube-ipvs0, or on a node port of one of
	// its node-port ipsets.
	VirtualServers []IPVSService `json:"virtualServers,omitempty"`
	// IPSets are kube-proxy's ipsets, as `ipset save` prints them.
	IPSets []IPSetState `json:"ipsets,omitempty"`
}

// IPVSService is one virtual server with its real servers, as the kernel reports it.
type IPVSService struct {
	Protocol  string     `json:"protocol"`
	Address   string     `json:"address"` // ADDRESS:PORT
	Scheduler string     `json:"scheduler"`
	Flags     uint32     `json:"flags,omitempty"` // IP_VS_SVC_F_* but the kernel's HASHED
	Timeout   uint32     `json:"timeout,omitempty"`
	Netmask   uint32     `json:"netmask,omitempty"`
	Reals     []IPVSDest `json:"reals,omitempty"`
}

// IPVSDest is one real server.
type IPVSDest struct {
	Address string `json:"address"` // ADDRESS:PORT
	Weight  int    `json:"weight"`
	Forward string `json:"forward"` // masq, route, tunnel, local
}

// IPSetState is one ipset: the rest of its `create NAME` line and one member a line.
type IPSetState struct {
	Name    string   `json:"name"`
	Create  string   `json:"create"`
	Members []string `json:"members,omitempty"`
}

// KubeProxyIPSets are the ipsets kube-proxy's IPVS mode creates (pkg/proxy/ipvs, 1.36); for IPv6
// their names start with KUBE-6- instead of KUBE-.
var KubeProxyIPSets = []string{"KUBE-LOOP-BACK", "KUBE-CLUSTER-IP", "KUBE-EXTERNAL-IP", "KUBE-EXTERNAL-IP-LOCAL",
	"KUBE-LOAD-BALANCER", "KUBE-LOAD-BALANCER-FW", "KUBE-LOAD-BALANCER-LOCAL", "KUBE-LOAD-BALANCER-SOURCE-IP",
	"KUBE-LOAD-BALANCER-SOURCE-CIDR", "KUBE-NODE-PORT-TCP", "KUBE-NODE-PORT-LOCAL-TCP", "KUBE-NODE-PORT-UDP",
	"KUBE-NODE-PORT-LOCAL-UDP", "KUBE-NODE-PORT-SCTP-HASH", "KUBE-NODE-PORT-LOCAL-SCTP-HASH",
	"KUBE-HEALTH-CHECK-NODE-PORT", "KUBE-IPVS-IPS"}

// IsKubeProxyIPSet says whether name is one of kube-proxy's ipsets (either family).
func IsKubeProxyIPSet(name string) bool {
	if rest, ok := strings.CutPrefix(name, "KUBE-6-"); ok {
		name = "KUBE-" + rest
	}
	return slices.Contains(KubeProxyIPSets, name)
}

// IPVSDevice is the dummy device kube-proxy's IPVS mode binds Service addresses to.
const IPVSDevice = "kube-ipvs0"

// Owner says which virtual servers are kube-proxy's by this state: on an address of kube-ipvs0,
// or on one of the node ports of its node-port ipsets. Built once, for a whole list.
func (s *IPVSState) Owner() func(IPVSService) bool {
	addrs := map[netip.Addr]bool{}
	for _, a := range s.Addresses {
		if p, err := netip.ParsePrefix(a); err == nil {
			addrs[p.Addr()] = true
		}
	}
	ports := map[string]bool{} // "tcp:30080"
	for _, set := range s.IPSets {
		name := strings.Replace(set.Name, "KUBE-6-", "KUBE-", 1)
		if !strings.HasPrefix(name, "KUBE-NODE-PORT-") {
			continue
		}
		for _, m := range set.Members {
			switch {
			case strings.HasSuffix(name, "-TCP"), strings.HasSuffix(name, "-UDP"):
				if _, err := strconv.ParseUint(m, 10, 16); err == nil {
					ports[strings.ToLower(name[len(name)-3:])+":"+m] = true
				}
			default: // SCTP: ADDRESS,sctp:PORT
				if _, pp, ok := strings.Cut(m, ","); ok {
					ports[pp] = true
				}
			}
		}
	}
	return func(v IPVSService) bool {
		ap, err := netip.ParseAddrPort(v.Address)
		return err == nil && (addrs[ap.Addr()] || ports[v.Protocol+":"+strconv.Itoa(int(ap.Port()))])
	}
}

// Lines are the state in one sorted line per object (device, address, virtual server, real
// server, ipset, member): two states are the same when their lines are, and one holds part of
// another when its lines are a subset.
func (s *IPVSState) Lines() []string {
	var out []string
	if s.Device != "" {
		out = append(out, fmt.Sprintf("device %s up=%v", s.Device, s.Up))
	}
	for _, a := range s.Addresses {
		out = append(out, "address "+a)
	}
	for _, v := range s.VirtualServers {
		out = append(out, fmt.Sprintf("virtual %s %s scheduler=%s flags=%#x timeout=%d netmask=%#x", v.Protocol, v.Address, v.Scheduler, v.Flags, v.Timeout, v.Netmask))
		for _, r := range v.Reals {
			out = append(out, fmt.Sprintf("real %s %s %s weight=%d forward=%s", v.Protocol, v.Address, r.Address, r.Weight, r.Forward))
		}
	}
	for _, set := range s.IPSets {
		out = append(out, fmt.Sprintf("ipset %s %s", set.Name, set.Create))
		for _, m := range set.Members {
			out = append(out, fmt.Sprintf("member %s %s", set.Name, m))
		}
	}
	slices.Sort(out)
	return out
}

// Summary names the state for people: the device, the virtual servers, the ipsets.
func (s *IPVSState) Summary() []string {
	var out []string
	if s.Device != "" {
		out = append(out, fmt.Sprintf("the %s device (%s)", s.Device, countOf(len(s.Addresses), "address")))
	}
	if n := len(s.VirtualServers); n > 0 {
		reals := 0
		for _, v := range s.VirtualServers {
			reals += len(v.Reals)
		}
		out = append(out, fmt.Sprintf("%s (%s)", countOf(n, "virtual server"), countOf(reals, "real server")))
	}
	if n := len(s.IPSets); n > 0 {
		members := 0
		for _, set := range s.IPSets {
			members += len(set.Members)
		}
		out = append(out, fmt.Sprintf("%s (%s)", countOf(n, "ipset"), countOf(members, "member")))
	}
	return out
}

// Jump is a rule in a built-in chain (position counted from 1) that jumps to a kube-proxy chain.
type Jump struct {
	Chain    string `json:"chain"`
	Position int    `json:"position"`
	Rule     string `json:"rule"`
}

// Where names a leftover for people: "iptables-legacy nat", "ip kube-proxy", "IPVS".
func (l Leftover) Where() string {
	switch {
	case l.IsIPTables():
		return l.Backend + " " + l.Table
	case l.Mode == "nftables":
		return l.Table + " kube-proxy"
	}
	return "IPVS"
}

// IsIPTables says whether it is iptables chains (of iptables mode, or IPVS mode's).
func (l Leftover) IsIPTables() bool { return l.Backend != "" }

// Removable says whether repair removes it: all but IPVS state seen through a pod.
func (l Leftover) Removable() bool { return l.IsIPTables() || l.Mode != "ipvs" || l.IPVS != nil }

// KubeProxyLeftoverChains are, per table, the fixed chains kube-proxy's own cleanup of its
// iptables rules removes (pkg/proxy/iptables/cleanup.go and pkg/proxy/ipvs/cleanup.go, 1.36),
// besides the per-Service chains: never the kubelet's (KUBE-FIREWALL, KUBE-KUBELET-CANARY,
// KUBE-IPTABLES-HINT).
var KubeProxyLeftoverChains = map[string][]string{
	"nat":    {"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ", "KUBE-PROXY-CANARY", "KUBE-NODE-PORT", "KUBE-LOAD-BALANCER"},
	"filter": {"KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL", "KUBE-PROXY-CANARY", "KUBE-NODE-PORT", "KUBE-SOURCE-RANGES-FIREWALL", "KUBE-IPVS-FILTER", "KUBE-IPVS-OUT-FILTER"},
	"mangle": {"KUBE-PROXY-CANARY"},
}

// IPVSOnlyChains are the chains of KubeProxyLeftoverChains that IPVS mode writes and iptables
// mode does not: on an iptables-mode node, what an IPVS-mode kube-proxy left (they use its
// ipsets, so they go before the ipsets do).
var IPVSOnlyChains = map[string][]string{
	"nat":    {"KUBE-NODE-PORT", "KUBE-LOAD-BALANCER"},
	"filter": {"KUBE-NODE-PORT", "KUBE-SOURCE-RANGES-FIREWALL", "KUBE-IPVS-FILTER", "KUBE-IPVS-OUT-FILTER"},
}

// BuiltinChains are the built-in chains of each table kube-proxy jumps from.
var BuiltinChains = map[string][]string{
	"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	"filter": {"INPUT", "FORWARD", "OUTPUT"},
	"mangle": {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
}

// LeftoverFindings are check's findings for the leftovers of a node whose kube-proxy runs in
// mode (known says whether kube-proxy itself said so, or it was only inferred).
func LeftoverFindings(node, mode string, known bool, leftovers []Leftover) []Finding {
	var out []Finding
	for _, l := range leftovers {
		what := ""
		switch {
		case l.IsIPTables():
			what = fmt.Sprintf("kube-proxy's iptables chains in the %s table of %s (%s, %s in built-in chains)", l.Table, l.Backend, countOf(len(l.Chains), "chain"), countOf(len(l.Jumps), "jump"))
		case l.Mode == "nftables":
			what = fmt.Sprintf("kube-proxy's nftables table (%s kube-proxy, %s)", l.Table, countOf(strings.Count(l.NftJSON, `"rule":`), "rule"))
		default:
			what = "kube-proxy's IPVS state (" + strings.Join(l.Objects, ", ") + ")"
		}
		how := "kube-proxy reports that it runs in " + mode + " mode"
		if !known {
			how = "svctrace read the node as " + mode + " mode (kube-proxy was not asked: run it on the node, or pass --mode)"
		}
		fix := "`repair -A --apply` on the node removes it (undoable); kube-proxy removes it too when it restarts"
		switch {
		case !l.Removable():
			fix = "`repair -A --apply` run on the node itself removes it (undoable)"
		case l.Mode == "ipvs" && mode != "nftables":
			fix = "`repair -A --apply` on the node removes it (undoable); kube-proxy in " + mode + " mode never does (only nftables mode and `kube-proxy --cleanup` do)"
		}
		var ev []string
		for _, c := range l.Chains {
			ev = append(ev, fmt.Sprintf("chain %s (%s)", c.Chain, countOf(len(c.Rules), "rule")))
		}
		for _, j := range l.Jumps {
			ev = append(ev, fmt.Sprintf("%s rule %d: %s", j.Chain, j.Position, j.Rule))
		}
		ev = append(ev, l.Objects...)
		if len(ev) > 10 {
			ev = append(ev[:10], fmt.Sprintf("… %d more", len(ev)-10))
		}
		// Hooked state sees packets: iptables chains jumped to from a built-in chain, an
		// nftables table (its base chains are hooked), IPVS (kube-ipvs0 takes the addresses).
		sev, hooked := SeverityWarning, "it sees no packet (nothing jumps to it)"
		if len(l.Jumps) > 0 || !l.IsIPTables() {
			sev, hooked = SeverityError, "it is hooked in, so packets go through it besides the current rules"
		}
		out = append(out, Finding{Kind: ModeLeftover, Severity: sev, Node: node, Service: "",
			Message:  fmt.Sprintf("%s is left from %s mode; %s; %s. %s", what, l.Mode, hooked, how, fix),
			Evidence: nonNilStrings(ev)})
	}
	return out
}

func countOf(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	if strings.HasSuffix(what, "s") {
		return fmt.Sprintf("%d %ses", n, what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
