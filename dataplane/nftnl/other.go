//go:build !linux

package nftnl

import (
	"errors"
	"os"

	"github.com/svctrace/svctrace/trace/nftables"
)

// errNotLinux: nf_tables is Linux's. Elsewhere (kubectl svctrace on a laptop) nodes are read
// through the API, and rulesets from files.
var errNotLinux = errors.New("reading nftables over netlink needs Linux")

// Reader reads nf_tables over netlink: only on Linux.
type Reader struct{}

// Open needs Linux.
func Open(*os.File) (*Reader, error) { return nil, errNotLinux }

// Close implements the Linux Reader's.
func (*Reader) Close() error { return nil }

// Tables needs Linux.
func (*Reader) Tables() ([]nftables.Object, error) { return nil, errNotLinux }

// Read needs Linux.
func (*Reader) Read(string, string, []nftables.Object, map[nftables.Object]any) (*nftables.Ruleset, error) {
	return nil, errNotLinux
}

// ReadTable needs Linux.
func (*Reader) ReadTable(string, string) (*nftables.Table, error) { return nil, errNotLinux }

// SetWhere needs Linux.
func (*Reader) SetWhere(string, string, string, func(target, comment string) bool) (*nftables.Set, error) {
	return nil, errNotLinux
}

// ChainNames needs Linux.
func (*Reader) ChainNames(string, string) ([]string, error) { return nil, errNotLinux }

// SetHeader needs Linux.
func (*Reader) SetHeader(string, string, string) (int, bool, error) { return 0, false, errNotLinux }

// HasChain needs Linux.
func (*Reader) HasChain(string, string, string) (bool, error) { return false, errNotLinux }
