package trace

import (
	"strings"
	"testing"
)

// TestLeftoverFindings: hooked leftovers (jumped to from a built-in chain, an nftables table) are
// errors, unhooked chains warnings; the message says whether kube-proxy named its mode, and that
// IPVS state seen through a pod is removed on the node itself, and that kube-proxy's iptables
// mode never removes IPVS state.
func TestLeftoverFindings(t *testing.T) {
	ls := []Leftover{
		{Mode: "iptables", Backend: "iptables-nft", Table: "nat", Chains: []ChainRules{{Chain: "KUBE-SERVICES", Exists: true}}, Jumps: []Jump{{Chain: "PREROUTING", Position: 1, Rule: "-A PREROUTING -j KUBE-SERVICES"}}},
		{Mode: "iptables", Backend: "iptables-legacy", Table: "mangle", Chains: []ChainRules{{Chain: "KUBE-PROXY-CANARY", Exists: true}}},
		{Mode: "nftables", Table: "ip6", NftJSON: `{"rule": 1}`},
		{Mode: "ipvs", Table: "ipvs", Objects: []string{"the kube-ipvs0 device"}},
	}
	fs := LeftoverFindings("node1", "nftables", true, ls)
	if len(fs) != 4 {
		t.Fatalf("%d findings", len(fs))
	}
	for i, want := range []Severity{SeverityError, SeverityWarning, SeverityError, SeverityError} {
		if fs[i].Severity != want || fs[i].Kind != ModeLeftover || fs[i].Node != "node1" {
			t.Errorf("finding %d: %+v", i, fs[i])
		}
	}
	if !strings.Contains(fs[0].Message, "iptables chains in the nat table of iptables-nft (1 chain, 1 jump in built-in chains)") || !strings.Contains(fs[0].Message, "kube-proxy reports that it runs in nftables mode") {
		t.Errorf("message: %s", fs[0].Message)
	}
	if !strings.Contains(fs[3].Message, "run on the node itself removes it") {
		t.Errorf("IPVS message: %s", fs[3].Message)
	}
	local := Leftover{Mode: "ipvs", Table: "ipvs", Objects: []string{"the kube-ipvs0 device (1 address)"}, IPVS: &IPVSState{Device: IPVSDevice, Addresses: []string{"10.96.0.1/32"}}}
	if g := LeftoverFindings("node1", "iptables", true, []Leftover{local}); !local.Removable() || !strings.Contains(g[0].Message, "kube-proxy in iptables mode never does") {
		t.Errorf("IPVS state on an iptables node: %s", g[0].Message)
	}
	if g := LeftoverFindings("node1", "iptables", false, ls[2:3]); !strings.Contains(g[0].Message, "kube-proxy was not asked") {
		t.Errorf("inferred mode: %s", g[0].Message)
	}
}
