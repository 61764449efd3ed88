package nftables_test

import (
	"net/netip"
	"testing"

	"github.com/svctrace/svctrace/trace/nftables"
)

// TestParseKeyInvertsCanonicalKeys: every element key of every named set of the recorded node
// (both families, kube-proxy's and the other tables') read back from its canonical text is the
// same key; what is not one exact key is refused.
func TestParseKeyInvertsCanonicalKeys(t *testing.T) {
	d, _ := load(t)
	n := 0
	for _, tab := range d.Rules.Tables {
		for _, s := range tab.Sets {
			for _, e := range s.Elems {
				k, ok := nftables.CanonicalKey(e.Key)
				if !ok {
					continue // a prefix or a range: no single key
				}
				v, ok := nftables.ParseKey(k)
				if !ok {
					t.Errorf("%s %s: key %q was not parsed", tab.Name, s.Name, k)
					continue
				}
				if back, _ := nftables.CanonicalKey(v); back != k {
					t.Errorf("%s %s: key %q parsed back as %q", tab.Name, s.Name, k, back)
				}
				n++
			}
		}
	}
	if n < 20 {
		t.Fatalf("only %d keys in the recorded node", n)
	}
	v, ok := nftables.ParseKey("fd00::1 . udp . 53")
	if list, _ := v.([]any); !ok || len(list) != 3 || list[0] != netip.MustParseAddr("fd00::1") || list[1] != "udp" || list[2] != uint64(53) {
		t.Errorf("ParseKey(fd00::1 . udp . 53) = %#v, %v", v, ok)
	}
	for _, bad := range []string{"", "10.0.0.0/8", "10.0.0.1-10.0.0.9", "10.0.0.1 . ", "tcp . icmp", "1 .  . 2"} {
		if v, ok := nftables.ParseKey(bad); ok {
			t.Errorf("ParseKey(%q) = %#v, not refused", bad, v)
		}
	}
}
