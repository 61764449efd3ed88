package kubeproxy_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/test/recorded"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
)

// recordedIPTablesNodes are the iptables-mode nodes in testdata, each recorded from a real, synced
// kube-proxy (see its README): other versions, and v1.36.3 with other local-traffic detectors.
var recordedIPTablesNodes = []string{
	"testdata/kube-proxy-v1.33.13",
	"testdata/kube-proxy-v1.30.14",
	"testdata/kube-proxy-v1.36.3-interface-name-prefix",
	"testdata/kube-proxy-v1.36.3-masquerade-all-bridge",
}

// TestRecordedSyncedNodesCheckClean: every node recorded from a real, synced kube-proxy (v1.36.3
// in each mode and with other detectors, v1.33.13 and v1.30.14 in iptables mode) agrees with the
// API objects recorded with it: check reports no error on any.
func TestRecordedSyncedNodesCheckClean(t *testing.T) {
	snap := filepath.Join(recorded.Root(), "dataplane/snapshot")
	type node struct {
		dp   trace.Dataplane
		cl   *trace.Cluster
		name string
	}
	nodes := map[string]func() node{
		"v1.36.3 iptables": func() node { dp, cl := recorded.IPTables(t, filepath.Join(snap, "demo")); return node{dp, cl, "node1"} },
		"v1.36.3 nftables": func() node {
			dp, cl := recorded.Nftables(t, filepath.Join(snap, "demo-nftables"))
			return node{dp, cl, "node1"}
		},
		"v1.36.3 ipvs": func() node { dp, cl := recorded.IPVS(t, "ipvsadm-Ln.txt"); return node{dp, cl, "vm1"} },
	}
	for _, dir := range recordedIPTablesNodes {
		nodes[strings.TrimPrefix(dir, "testdata/kube-proxy-")+" iptables"] = func() node {
			dp, cl := recorded.IPTables(t, dir)
			return node{dp, cl, "node1"}
		}
	}
	for name, load := range nodes {
		t.Run(name, func(t *testing.T) {
			n := load()
			res, err := trace.Check(context.Background(), n.dp, n.cl, n.cl.NodeContextFor(n.name, nil), trace.CheckScope{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Checked == 0 {
				t.Fatal("no Service port was checked")
			}
			if errs := tracetest.FindingKinds(res, trace.SeverityError); len(errs) != 0 {
				t.Errorf("errors on a synced node: %v", errs)
			}
		})
	}
}
