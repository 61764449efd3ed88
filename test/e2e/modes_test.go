//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/svctrace/svctrace/test/e2e/harness"
)

// TestKubeProxyNftablesMode switches the node's kube-proxy to nftables mode, checks what it
// programmed, compares svctrace's predictions with real connections as in iptables mode, and
// switches back.
func TestKubeProxyNftablesMode(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster.StopKubeProxy()
	t.Cleanup(func() {
		cluster.StopKubeProxy()
		if err := cluster.StartKubeProxy("iptables"); err != nil {
			t.Fatal(err)
		}
		if _, err := cluster.WaitDump(context.Background(), "iptables", harness.ScenarioProgrammed); err != nil {
			t.Fatal(err)
		}
		// kube-proxy removes the other mode's rules when it starts, but not necessarily before
		// it has programmed its own: wait for the nftables table to go, so that the tests after
		// this one find a node in one mode.
		deadline := time.Now().Add(20 * time.Second)
		for {
			out, _ := harness.NS(harness.NodeNS, "nft", "list", "tables")
			if !strings.Contains(string(out), "kube-proxy") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("kube-proxy in iptables mode left the nftables table behind:\n%s", out)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	if err := cluster.StartKubeProxy("nftables"); err != nil {
		t.Fatal(err)
	}
	dump, err := cluster.WaitDump(ctx, "nftables", harness.ScenarioProgrammed)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(dump), &doc); err != nil {
		t.Fatalf("nft -j list ruleset is not JSON: %v", err)
	}
	tables := 0
	for _, o := range doc.Nftables {
		if raw, ok := o["table"]; ok && strings.Contains(string(raw), `"kube-proxy"`) {
			tables++
		}
	}
	if tables == 0 {
		t.Fatal("no kube-proxy table in the nft ruleset")
	}
	for name, ip := range harness.ScenarioClusterIPs {
		if harness.ScenarioEndpointCounts[name] > 0 && name != "remote-itp" && !strings.Contains(dump, ip) {
			t.Errorf("the nft ruleset does not mention %s's cluster IP %s", name, ip)
		}
	}
	// kube-proxy cleaned up its iptables rules when it started in nftables mode, so svctrace
	// must find the nftables table on the live node.
	checkFlows(t, "nftables")
}
