// Package netnstest runs a test inside a throwaway network namespace, so that what it writes
// with real tools (iptables, ipset, ip) touches that namespace only.
package netnstest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"testing"
)

// inside marks the test binary re-run inside the namespace.
const inside = "SVCTRACE_TEST_IN_NETNS"

// Inside reports whether the test runs inside its namespace. Called first thing in a test: the
// first time it runs the test's binary again, in a new network namespace, for this test alone,
// fails the test if that run does not pass, and returns false (the caller returns); in that run
// it returns true. It skips the test when not run as root.
func Inside(t *testing.T) bool {
	t.Helper()
	if os.Getenv(inside) != "" {
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: writes in a network namespace")
	}
	ns := fmt.Sprintf("svct-%d-%s", os.Getpid(), regexp.MustCompile(`[^A-Za-z0-9]`).ReplaceAllString(t.Name(), ""))
	if len(ns) > 32 {
		ns = ns[:32]
	}
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), inside+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("in the namespace: %v\n%s", err, out)
	}
	return false
}
