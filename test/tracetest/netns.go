package tracetest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
)

var netnsSeq atomic.Int32

// NftNetns loads a ruleset (what `nft -j -f` reads: nftjson.Importable of a recorded
// `nft -j list ruleset`) into a new network namespace, deleted when the test ends, and returns
// the namespace open and its name. It skips the test when not run as root.
func NftNetns(t *testing.T, importable []byte) (*os.File, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads a recorded ruleset into a network namespace")
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
