package plugin

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// conntrackFile writes `conntrack -L -o extended` lines for the demo's hostnames Service: 60 short
// connections spread over its three pods and, when heavy, one long keep-alive connection from the
// client pod to hostnames-b.
func conntrackFile(t *testing.T, heavy bool) string {
	var b strings.Builder
	for i := 0; i < 60; i++ {
		fmt.Fprintf(&b, "ipv4 2 tcp 6 100 TIME_WAIT src=10.244.1.41 dst=10.96.10.10 sport=%d dport=80 packets=5 bytes=300 src=10.244.1.1%d dst=10.244.1.41 sport=9376 dport=%d packets=4 bytes=250 [ASSURED] mark=0 use=1\n", 40000+i, 1+i%3, 40000+i)
	}
	if heavy {
		b.WriteString("ipv4 2 tcp 6 431999 ESTABLISHED src=10.244.1.99 dst=10.96.10.10 sport=50000 dport=80 packets=1200 bytes=80000 src=10.244.1.12 dst=10.244.1.99 sport=9376 dport=50000 packets=1200 bytes=90000 [ASSURED] mark=0 use=1\n")
	}
	p := filepath.Join(t.TempDir(), "conntrack.txt")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBalanceOffline(t *testing.T) {
	out, stderr, code := run(t, "balance", "--demo", "default/hostnames", "--conntrack", conntrackFile(t, false))
	if code != ExitOK || !strings.Contains(out, "Balanced:") {
		t.Fatalf("exit %d %s\n%s", code, stderr, out)
	}
	out, _, code = run(t, "balance", "--demo", "default/hostnames", "--conntrack", conntrackFile(t, true))
	if code != ExitFindings || !strings.Contains(out, "ConnectionStickiness:") || !strings.Contains(out, "10.244.1.99 (pod default/client)") || !strings.Contains(out, "MaxConnectionAge") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if _, stderr, code := run(t, "balance", "--demo", "default/hostnames"); code != ExitUsage || !strings.Contains(stderr, "needs --conntrack") {
		t.Errorf("offline without --conntrack: exit %d %q", code, stderr)
	}
}
