package dataplane

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/dataplane/noderun"
)

// tableRunner answers commands from a table; commands of a tool it lists answer "exit 1", others
// "not installed".
type tableRunner map[string]string

func (t tableRunner) Run(_ context.Context, argv ...string) ([]byte, error) {
	if out, ok := t[strings.Join(argv, " ")]; ok {
		return []byte(out), nil
	}
	if _, installed := t[argv[0]]; installed {
		return nil, &noderun.Error{Argv: argv, ExitStatus: 1, Stderr: "table does not exist"}
	}
	return nil, fmt.Errorf("%s: %w", argv[0], noderun.ErrNotFound)
}

// TestReadNamesTheModeAndWarns: a node with kube-proxy's nftables table and also its iptables
// chains (a mode switch in progress) is read as nftables, with those chains as a leftover and a
// warning that says so; the recorded iptables node reads as iptables with its backend and source
// named, and no leftovers.
func TestReadNamesTheModeAndWarns(t *testing.T) {
	nft, err := os.ReadFile("snapshot/demo-nftables/nft.json")
	if err != nil {
		t.Fatal(err)
	}
	dump, err := os.ReadFile("snapshot/demo/iptables-save.txt")
	if err != nil {
		t.Fatal(err)
	}
	both := tableRunner{
		"nft": "", "nft list tables": "table ip kube-proxy\n", "nft -j list ruleset": string(nft),
		"iptables --version": "iptables v1.8.9 (nf_tables)", "iptables-nft-save": "",
		"iptables-nft-save -t mangle": "*mangle\n:KUBE-PROXY-CANARY - [0:0]\nCOMMIT\n", "iptables-legacy-save": "",
	}
	n, err := Read(context.Background(), both, ReadOptions{})
	if err != nil || n.Dataplane.Mode() != "nftables" || len(n.Warnings) != 1 || !strings.Contains(n.Warnings[0], "(iptables-nft mangle; read as nftables mode)") || n.Files["nft.json"] == nil ||
		len(n.Leftovers) != 1 || n.Leftovers[0].Chains[0].Chain != "KUBE-PROXY-CANARY" || n.ModeFrom != "detected" {
		t.Fatalf("node with both: %+v, %v", n, err)
	}
	xt := tableRunner{
		"iptables --version": "iptables v1.8.9 (nf_tables)", "iptables-nft-save": "",
		"iptables-nft-save -t mangle": "*mangle\n:KUBE-PROXY-CANARY - [0:0]\nCOMMIT\n", "iptables-nft-save -c": string(dump),
		"iptables-legacy-save": "",
	}
	n, err = Read(context.Background(), xt, ReadOptions{})
	if err != nil || n.Dataplane.Mode() != "iptables" || n.Backend != "iptables-nft-save" || len(n.Warnings) != 0 || !strings.Contains(n.Source, "iptables-nft-save") || len(n.Leftovers) != 0 {
		t.Fatalf("iptables node: %+v, %v", n, err)
	}
}
