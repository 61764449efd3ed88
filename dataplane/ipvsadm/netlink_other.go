//go:build !linux

package ipvsadm

import (
	"errors"
	"net/netip"

	"github.com/svctrace/svctrace/trace/ipvs"
)

// ReadNetlink needs Linux: IPVS lives in the Linux kernel. Elsewhere, read a node's IPVS table
// from `ipvsadm -Ln` output or a snapshot.
func ReadNetlink() (*ipvs.Table, error) {
	return nil, errors.New("reading IPVS over netlink needs Linux: run svctrace on the node, or pass ipvsadm -Ln output with --dataplane")
}

// ReadTable needs Linux, as ReadNetlink does.
func ReadTable() (*ipvs.Table, error) {
	return ReadNetlink()
}

// ReadService needs Linux, as ReadNetlink does.
func ReadService(string, netip.AddrPort) (*ipvs.VirtualServer, error) {
	_, err := ReadNetlink()
	return nil, err
}

// BoundAddresses needs Linux, as ReadNetlink does.
func BoundAddresses() ([]netip.Addr, error) {
	_, err := ReadNetlink()
	return nil, err
}

// TestMember needs Linux, as ReadNetlink does.
func TestMember(*ipvs.Set, []string) (bool, error) {
	_, err := ReadNetlink()
	return false, err
}
