//go:build linux

package nftnl

import (
	"errors"
	"fmt"

	gn "github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ChainNames lists the names of a table's chains, without their rules: one dump of the family's
// chain headers, of which only the table and the name are decoded (10,000 chains in about 0.02 s,
// where their rules take seconds).
func (r *Reader) ChainNames(fam, table string) ([]string, error) {
	f, err := family(fam)
	if err != nil {
		return nil, err
	}
	replies, err := r.request(f, unix.NFT_MSG_GETCHAIN, netlink.Request|netlink.Dump, nil)
	if err != nil {
		return nil, fmt.Errorf("listing the chains of %s %s: %w", fam, table, err)
	}
	var out []string
	for _, m := range replies {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return nil, fmt.Errorf("listing the chains of %s %s: %w", fam, table, err)
		}
		var tab, name string
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_CHAIN_TABLE:
				tab = ad.String()
			case unix.NFTA_CHAIN_NAME:
				name = ad.String()
			}
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("listing the chains of %s %s: %w", fam, table, err)
		}
		if tab == table && name != "" {
			out = append(out, name)
		}
	}
	return out, nil
}

// SetHeader reads whether a named set exists and its timeout in seconds (not its elements).
func (r *Reader) SetHeader(fam, table, name string) (timeout int, ok bool, err error) {
	f, err := family(fam)
	if err != nil {
		return 0, false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s, err := r.c.GetSetByName(&gn.Table{Name: table, Family: f}, name)
	if errors.Is(err, unix.ENOENT) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("set %s %s %s: %w", fam, table, name, err)
	}
	return int(s.Timeout.Seconds()), true, nil
}

// HasChain reports whether a table has a chain (one request for its header).
func (r *Reader) HasChain(fam, table, name string) (bool, error) {
	f, err := family(fam)
	if err != nil {
		return false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	_, err = r.c.ListChain(&gn.Table{Name: table, Family: f}, name)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("chain %s %s %s: %w", fam, table, name, err)
	}
	return true, nil
}
