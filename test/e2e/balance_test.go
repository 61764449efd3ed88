//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/test/e2e/harness"
)

// balanceInNode runs `kubectl svctrace balance` node-side on a snapshot of conntrack.
func balanceInNode(t *testing.T, svc string) (diagnosis, message string, code int) {
	t.Helper()
	out, _, code := kubectl(t, true, "svctrace", "balance", svc, "--duration", "0", "--node", harness.NodeName, "-o", "json")
	var res struct {
		Diagnosis, Message string
		Backends           []struct {
			Backend        string
			Connections    int
			NewConnections *int
		}
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// The per-backend counts go with the message, for a failure's reader.
	for _, b := range res.Backends {
		res.Message += fmt.Sprintf(" [%s: %d in conntrack", b.Backend, b.Connections)
		if b.NewConnections != nil {
			res.Message += fmt.Sprintf(", %d by the dataplane's counter", *b.NewConnections)
		}
		res.Message += "]"
	}
	return res.Diagnosis, res.Message, code
}

func probeFrom(t *testing.T, pod string, args ...string) {
	t.Helper()
	if _, err := harness.NS(cluster.Pod("default", pod).NetNS, append([]string{cluster.Netprobe, "probe"}, args...)...); err != nil {
		t.Fatal(err)
	}
}

// TestBalanceNamesTheStickyClient: many short connections are Balanced; add one keep-alive client
// sending hundreds of requests over one connection and balance reports ConnectionStickiness,
// naming it.
func TestBalanceNamesTheStickyClient(t *testing.T) {
	needCluster(t)
	// Byte accounting for the node's conntrack, and no entries left from other tests.
	if _, err := harness.NS(harness.NodeNS, "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1"); err != nil {
		t.Fatal(err)
	}
	flush := func() { _, _ = harness.NS(harness.NodeNS, "conntrack", "-D", "-d", "10.96.10.10") }

	flush()
	probeFrom(t, "multi-1", "-n", "90", "10.96.10.10:80")
	if d, msg, code := balanceInNode(t, "default/hostnames"); d != "Balanced" || code != 0 {
		t.Fatalf("short connections only: %s (exit %d): %s", d, code, msg)
	}

	flush()
	probeFrom(t, harness.ClientPod, "-n", "1", "-requests", "600", "10.96.10.10:80")
	probeFrom(t, "multi-1", "-n", "90", "10.96.10.10:80")
	d, msg, code := balanceInNode(t, "default/hostnames")
	if d != "ConnectionStickiness" || code != 1 || !strings.Contains(msg, harness.ClientPodIP+" (pod default/client") {
		t.Fatalf("with a keep-alive client: %s (exit %d): %s", d, code, msg)
	}
}
