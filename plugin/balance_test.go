package plugin

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/test/tracetest"
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
	// The demo carries the balance e2e scenario's recorded conntrack table: the keep-alive
	// client shows without --conntrack.
	if out, stderr, code := run(t, "balance", "--demo", "default/hostnames"); code != ExitFindings || !strings.Contains(out, "ConnectionStickiness:") || !strings.Contains(out, "10.244.1.99 (pod default/client)") {
		t.Errorf("the demo's own conntrack: exit %d %q\n%s", code, stderr, out)
	}
	// Dump files without a conntrack table still need --conntrack.
	// The IPVS demo carries one too, recorded in the guest: the same skew through IPVS.
	if out, stderr, code := run(t, "balance", "--demo=ipvs", "ipvs/vmweb"); code != ExitFindings || !strings.Contains(out, "ConnectionStickiness:") || !strings.Contains(out, "10.244.3.99 (pod ipvs/vmclient)") {
		t.Errorf("the IPVS demo's own conntrack: exit %d %q\n%s", code, stderr, out)
	}
	if _, stderr, code := run(t, "balance", "--dataplane", "../dataplane/snapshot/demo/iptables-save.txt", "--objects", "../dataplane/snapshot/demo/objects.yaml", "--node", "node1", "default/hostnames"); code != ExitUsage || !strings.Contains(stderr, "needs --conntrack") {
		t.Errorf("offline without --conntrack: exit %d %q", code, stderr)
	}
}

// nft counter statements, where present, count new connections per backend; kube-proxy writes
// none. The fixture is the recorded nftables demo with counters added to its endpoint rules.
func TestBalanceReadsNftCounters(t *testing.T) {
	const fixture = "../dataplane/snapshot/demo-nftables"
	doc := tracetest.ReadNftDump(t, fixture+"/nft.json")
	counted := 0
	for _, o := range doc.Nftables {
		r, ok := o["rule"].(map[string]any)
		if !ok {
			continue
		}
		exprs := r["expr"].([]any)
		for i, e := range exprs {
			if _, dnat := e.(map[string]any)["dnat"]; dnat {
				counted++
				c := map[string]any{"counter": map[string]any{"packets": 10 * counted, "bytes": 600 * counted}}
				r["expr"] = append(exprs[:i:i], append([]any{c}, exprs[i:]...)...)
				break
			}
		}
	}
	out := doc.Encode(t)
	path := filepath.Join(t.TempDir(), "nft.json")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	ct := filepath.Join(t.TempDir(), "empty.txt")
	_ = os.WriteFile(ct, nil, 0o644)
	balance := func(svc string) map[string]*uint64 {
		out, stderr, _ := run(t, "balance", svc, "--dataplane", path, "--objects", fixture+"/objects.yaml", "--node", "node1", "--conntrack", ct, "-o", "json")
		var res struct {
			Backends []struct {
				Backend        string
				NewConnections *uint64
			}
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("%v: %s %s", err, out, stderr)
		}
		m := map[string]*uint64{}
		for _, b := range res.Backends {
			m[b.Backend] = b.NewConnections
		}
		return m
	}
	// sticky: one DNAT rule per endpoint chain, so each backend has its own count.
	got := balance("default/sticky")
	if len(got) != 3 {
		t.Fatalf("sticky backends: %v", got)
	}
	seen := map[uint64]bool{}
	for b, n := range got {
		if n == nil || *n == 0 || *n%10 != 0 || seen[*n] {
			t.Errorf("sticky backend %s: counter %v, want its own rule's", b, n)
		} else {
			seen[*n] = true
		}
	}
	// hostnames: one `dnat to numgen random mod 3 map` rule for all three: no per-backend count.
	for b, n := range balance("default/hostnames") {
		if n != nil {
			t.Errorf("hostnames backend %s got counter %d from a rule shared by all backends", b, *n)
		}
	}
}
