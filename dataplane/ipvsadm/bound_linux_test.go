package ipvsadm

import (
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/test/netnstest"
)

// TestBoundAddressesInNetns: in a network namespace, no kube-ipvs0 means no addresses (and no
// error); with one (a veth renamed: this kernel has no dummy device) holding IPv4 and IPv6
// addresses, beside another interface with its own, BoundAddresses lists kube-ipvs0's, all of
// them and only them.
func TestBoundAddressesInNetns(t *testing.T) {
	if !netnstest.Inside(t) {
		return
	}
	if got, err := BoundAddresses(); err != nil || len(got) != 0 {
		t.Fatalf("without kube-ipvs0: %v, %v", got, err)
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "link", "add", "kube-ipvs0", "type", "veth", "peer", "name", "other0")
	var batch strings.Builder
	var want []netip.Addr
	for i := range 300 {
		a := netip.AddrFrom4([4]byte{10, 96, byte(i / 250), byte(1 + i%250)})
		fmt.Fprintf(&batch, "address add %s/32 dev kube-ipvs0\n", a)
		want = append(want, a)
	}
	v6 := netip.MustParseAddr("fd00:10:96::a")
	fmt.Fprintf(&batch, "address add %s/128 dev kube-ipvs0 nodad\naddress add 192.0.2.1/24 dev other0\n", v6)
	want = append(want, v6)
	cmd := exec.Command("ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v: %s", err, out)
	}
	got, err := BoundAddresses()
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, netip.Addr.Compare)
	slices.SortFunc(want, netip.Addr.Compare)
	if !slices.Equal(got, want) {
		t.Errorf("kube-ipvs0's addresses: %d, want %d (first %v, want %v)", len(got), len(want), got[:min(3, len(got))], want[:3])
	}
}
