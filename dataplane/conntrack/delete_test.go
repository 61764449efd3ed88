package conntrack

import (
	"strings"
	"testing"

	"github.com/svctrace/svctrace/trace"
)

// TestFilterNamesTheFamily: conntrack reads addresses as IPv4 unless told the family, so a flush
// of entries sent to an IPv6 backend (a dual-stack Service's) says -f ipv6, and an IPv4 one does
// not.
func TestFilterNamesTheFamily(t *testing.T) {
	for _, tc := range []struct {
		flush trace.ConntrackFlush
		want  string
	}{
		{trace.ConntrackFlush{Protocol: "udp", Dst: "[fd00:10:96::70]:53", Backend: "fd00:10:244:1::162"},
			"conntrack -D -p udp --orig-dst fd00:10:96::70 --orig-port-dst 53 -f ipv6 --reply-src fd00:10:244:1::162"},
		{trace.ConntrackFlush{Protocol: "udp", Dst: "10.96.0.10:53", Backend: "10.244.1.162"},
			"conntrack -D -p udp --orig-dst 10.96.0.10 --orig-port-dst 53 --reply-src 10.244.1.162"},
	} {
		argv, err := filter("-D", tc.flush)
		if err != nil || strings.Join(argv, " ") != tc.want {
			t.Errorf("filter(%+v) = %q, %v; want %q", tc.flush, argv, err, tc.want)
		}
	}
}
