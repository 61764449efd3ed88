// Package recorded loads the nodes recorded from the real kube-proxy (dataplane/snapshot/demo*,
// see their READMEs) and the hand-written old-layout fixture (trace/iptables/testdata/README.md)
// for the tests of the engine and of the repair planners. It reads files, so it stays out of
// trace/; the dataplane packages' own tests do not use it (it imports them).
package recorded

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/svctrace/svctrace/dataplane/ipvsadm"
	"github.com/svctrace/svctrace/dataplane/nftjson"
	"github.com/svctrace/svctrace/dataplane/xtables"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/iptables"
	"github.com/svctrace/svctrace/trace/ipvs"
	"github.com/svctrace/svctrace/trace/nftables"
)

// Root is the repository's directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// IPVSDir is kube-proxy v1.36.3 in IPVS mode inside the QEMU guest (see its README).
func IPVSDir() string { return filepath.Join(Root(), "dataplane/snapshot/demo-ipvs") }

func read(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// IPTables loads a recorded iptables-mode node: dir's iptables-save.txt and objects.yaml.
func IPTables(t testing.TB, dir string) (*iptables.Dataplane, *trace.Cluster) {
	t.Helper()
	rs, err := xtables.Parse(read(t, filepath.Join(dir, "iptables-save.txt")))
	if err != nil {
		t.Fatal(err)
	}
	dp := &iptables.Dataplane{V4: rs}
	// A dual-stack node's recording has its ip6tables-save too.
	if data, err := os.ReadFile(filepath.Join(dir, "ip6tables-save.txt")); err == nil {
		if dp.V6, err = xtables.Parse(data); err != nil || !dp.V6.IPv6 {
			t.Fatalf("%s/ip6tables-save.txt: %v (IPv6 %v)", dir, err, dp.V6 != nil && dp.V6.IPv6)
		}
	}
	return dp, tracetest.LoadObjects(t, filepath.Join(dir, "objects.yaml"))
}

// IPVS loads the recorded IPVS node with the IPVS table in the named form (ipvsadm-Sn.txt,
// ipvsadm-Ln.txt or proc-net-ip_vs.txt).
func IPVS(t testing.TB, table string) (*iptables.Dataplane, *trace.Cluster) {
	t.Helper()
	parse := ipvsadm.ParseList
	if table == "ipvsadm-Sn.txt" {
		parse = ipvsadm.ParseSave
	}
	tab, err := parse(read(t, filepath.Join(IPVSDir(), table)))
	if err != nil {
		t.Fatal(err)
	}
	return IPVSNode(t, tab), tracetest.LoadObjects(t, filepath.Join(IPVSDir(), "objects.yaml"))
}

// IPVSNode is the recorded IPVS node's iptables rules and sets with the given IPVS table.
func IPVSNode(t testing.TB, tab *ipvs.Table) *iptables.Dataplane {
	t.Helper()
	rs, err := xtables.Parse(read(t, filepath.Join(IPVSDir(), "iptables-save.txt")))
	if err != nil {
		t.Fatal(err)
	}
	sets, err := ipvsadm.ParseIPSet(read(t, filepath.Join(IPVSDir(), "ipset-save.txt")))
	if err != nil {
		t.Fatal(err)
	}
	return &iptables.Dataplane{V4: rs, Sets: sets, IPVS: tab}
}

// OldLayout reads the hand-written v1.20-layout fixture (origin in trace/iptables/testdata/README.md).
func OldLayout(t testing.TB) *iptables.Ruleset {
	t.Helper()
	rs, err := xtables.Parse(read(t, filepath.Join(Root(), "trace/iptables/testdata/v1.20-layout.iptables")))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// Nftables loads a recorded nftables-mode node: dir's nft.json and objects.yaml.
func Nftables(t testing.TB, dir string) (*nftables.Dataplane, *trace.Cluster) {
	t.Helper()
	rs, err := nftjson.Parse(read(t, filepath.Join(dir, "nft.json")))
	if err != nil {
		t.Fatal(err)
	}
	return &nftables.Dataplane{Rules: rs}, tracetest.LoadObjects(t, filepath.Join(dir, "objects.yaml"))
}
