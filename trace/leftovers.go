package trace

import (
	"fmt"
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
}

// Jump is a rule in a built-in chain (position counted from 1) that jumps to a kube-proxy chain.
type Jump struct {
	Chain    string `json:"chain"`
	Position int    `json:"position"`
	Rule     string `json:"rule"`
}

// Where names a leftover for people: "iptables-legacy nat", "ip kube-proxy", "IPVS".
func (l Leftover) Where() string {
	switch l.Mode {
	case "nftables":
		return l.Table + " kube-proxy"
	case "ipvs":
		return "IPVS"
	}
	return l.Backend + " " + l.Table
}

// Removable says whether repair removes it (IPVS objects it only reports).
func (l Leftover) Removable() bool { return l.Mode != "ipvs" }

// KubeProxyLeftoverChains are, per table, the fixed chains kube-proxy's own cleanup of its
// iptables rules removes (pkg/proxy/iptables/cleanup.go, 1.36), besides the per-Service chains:
// never the kubelet's (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT).
var KubeProxyLeftoverChains = map[string][]string{
	"nat":    {"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ", "KUBE-PROXY-CANARY"},
	"filter": {"KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL", "KUBE-PROXY-CANARY"},
	"mangle": {"KUBE-PROXY-CANARY"},
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
		case l.Mode == "nftables":
			what = fmt.Sprintf("kube-proxy's nftables table (%s kube-proxy, %s)", l.Table, countOf(strings.Count(l.NftJSON, `"rule":`), "rule"))
		case l.Mode == "ipvs":
			what = "kube-proxy's IPVS state (" + strings.Join(l.Objects, ", ") + ")"
		default:
			what = fmt.Sprintf("kube-proxy's iptables chains in the %s table of %s (%s, %s in built-in chains)", l.Table, l.Backend, countOf(len(l.Chains), "chain"), countOf(len(l.Jumps), "jump"))
		}
		how := "kube-proxy reports that it runs in " + mode + " mode"
		if !known {
			how = "svctrace read the node as " + mode + " mode (kube-proxy was not asked: run it on the node, or pass --mode)"
		}
		fix := "`repair --apply` on the node removes it (undoable); kube-proxy removes it too when it restarts"
		if !l.Removable() {
			fix = "svctrace does not remove IPVS state: restart kube-proxy, or run `kube-proxy --cleanup` with kube-proxy stopped"
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
		if len(l.Jumps) > 0 || l.Mode != "iptables" {
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
	return fmt.Sprintf("%d %ss", n, what)
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
