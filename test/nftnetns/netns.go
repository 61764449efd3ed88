// Package nftnetns loads recorded nftables rulesets into throwaway network namespaces for tests
// that read them back over netlink or with nft.
package nftnetns

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/svctrace/svctrace/dataplane/nftjson"
	"github.com/svctrace/svctrace/trace/nftables"
)

var netnsSeq atomic.Int32

// Load loads a recorded `nft -j list ruleset` (the file dump) into a new network namespace,
// deleted when the test ends, and returns the namespace open and its name. It skips the test when
// not run as root.
func Load(t *testing.T, dump string) (*os.File, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads a recorded ruleset into a network namespace")
	}
	data, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	importable, err := nftjson.Importable(data)
	if err != nil {
		t.Fatal(err)
	}
	ns := fmt.Sprintf("svct-test-%d-%d", os.Getpid(), netnsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	load := exec.Command("ip", "netns", "exec", ns, "nft", "-j", "-f", "-")
	load.Stdin = bytes.NewReader(importable)
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("nft -j -f: %v: %s", err, strings.TrimSpace(string(out)))
	}
	f, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, ns
}

// List returns what nft lists in a network namespace, parsed and as printed.
func List(t *testing.T, ns string) (*nftables.Ruleset, []byte) {
	t.Helper()
	listed, err := exec.Command("ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset").Output()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := nftjson.Parse(listed)
	if err != nil {
		t.Fatal(err)
	}
	return rs, listed
}
