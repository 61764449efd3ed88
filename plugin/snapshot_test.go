package plugin

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/dataplane/snapshot"
)

// A several-node set (the layout snapshot --all-nodes writes, built here from the recorded demo
// node twice): commands read one node with --node; check without --node checks every node.
func TestSnapshotSetIsReadNodeByNode(t *testing.T) {
	dir := t.TempDir()
	dump, err := os.ReadFile("../dataplane/snapshot/demo/iptables-save.txt")
	if err != nil {
		t.Fatal(err)
	}
	objects, err := os.ReadFile("../dataplane/snapshot/demo/objects.yaml")
	if err != nil {
		t.Fatal(err)
	}
	write := func(p, s string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "objects.yaml"), string(objects))
	write(filepath.Join(dir, "snapshot.yaml"), "apiVersion: svctrace/v1\nkind: SnapshotSet\nnodes: [node1, node2]\nobjects: objects.yaml\n")
	for _, n := range []string{"node1", "node2"} {
		d := snapshot.NodeDir(dir, n)
		write(filepath.Join(d, "iptables-save.txt"), string(dump))
		write(filepath.Join(d, "snapshot.yaml"), "apiVersion: svctrace/v1\nkind: Snapshot\nnode: "+n+"\nmode: iptables\ndataplane: [iptables-save.txt]\n")
	}
	if _, stderr, code := run(t, "trace", "default/hostnames", "--snapshot", dir); code != ExitUsage || !strings.Contains(stderr, "holds 2 nodes: choose one with --node (node1, node2)") {
		t.Errorf("no --node: exit %d %q", code, stderr)
	}
	if out, stderr, code := run(t, "trace", "default/hostnames", "--snapshot", dir, "--node", "node2", "-o", "json"); code != ExitOK || !strings.Contains(out, `"node": "node2"`) {
		t.Errorf("--node node2: exit %d %s %s", code, stderr, out)
	}
	if _, stderr, code := run(t, "trace", "default/hostnames", "--snapshot", dir, "--node", "node9"); code == ExitOK || !strings.Contains(stderr, `has no node "node9"`) {
		t.Errorf("--node node9: exit %d %q", code, stderr)
	}
	// node2 holds node1's rules, so it has findings; --fail-on none keeps the exit code at 0.
	out, stderr, code := run(t, "check", "-A", "--snapshot", dir, "-o", "json", "--fail-on", "none")
	var rep struct{ Nodes []struct{ Node string } }
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != ExitOK || len(rep.Nodes) != 2 || rep.Nodes[1].Node != "node2" {
		t.Errorf("check over the set: exit %d %v %s %+v", code, err, stderr, rep.Nodes)
	}
}
