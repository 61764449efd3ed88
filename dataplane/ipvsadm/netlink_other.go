//go:build !linux

package ipvsadm

import (
	"errors"

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

// ReadServices needs Linux, as ReadNetlink does.
func ReadServices() (*ipvs.Table, func(*ipvs.VirtualServer) error, error) {
	_, err := ReadNetlink()
	return nil, nil, err
}

// TestMember needs Linux, as ReadNetlink does.
func TestMember(*ipvs.Set, []string) (bool, error) {
	_, err := ReadNetlink()
	return false, err
}
