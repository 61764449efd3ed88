package ipvsadm_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/test/recorded"
	"github.com/svctrace/svctrace/trace"
)

// TestUnknownPersistenceIsSaid: the recorded node's session-affinity Service (vmsticky) walked
// on its /proc/net/ip_vs, whose persistence timeout is in kernel ticks, says that a client sticks
// to its first real server for a time not known in seconds, and claims no number of seconds; on
// ipvsadm -Ln of the same moment it has its 10,800 seconds and no such note. Before, the /proc
// walk said nothing of the affinity at all.
func TestUnknownPersistenceIsSaid(t *testing.T) {
	p := trace.Packet{Src: netip.MustParseAddr("10.244.3.99"), Dst: netip.MustParseAddr("10.96.30.40"), DstPort: 80, Protocol: trace.TCP}
	for _, tc := range []struct {
		file    string
		seconds int
		note    bool
	}{{"proc-net-ip_vs.txt", 0, true}, {"ipvsadm-Ln.txt", 10800, false}} {
		dp, cl := recorded.IPVS(t, tc.file)
		w, err := dp.Walk(context.Background(), p, cl.NodeContextFor("vm1", nil))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		said := false
		for _, n := range w.Notes {
			said = said || strings.Contains(n, "10.96.30.40:80 rr is persistent") && strings.Contains(n, "kernel ticks")
		}
		if said != tc.note {
			t.Errorf("%s: notes %q; want the unknown persistence said: %v", tc.file, w.Notes, tc.note)
		}
		if len(w.Paths) != 3 {
			t.Fatalf("%s: %d paths, want vmsticky's 3 real servers", tc.file, len(w.Paths))
		}
		for _, path := range w.Paths {
			if path.AffinitySeconds != tc.seconds {
				t.Errorf("%s: affinity of %d s, want %d", tc.file, path.AffinitySeconds, tc.seconds)
			}
		}
	}
}
