//go:build !linux

package xtables

import "github.com/svctrace/svctrace/trace/iptables"

// legacyEntries needs Linux's legacy iptables.
func legacyEntries() int { return 0 }

// ReadKernel needs Linux's legacy iptables.
func ReadKernel() (*iptables.Ruleset, *Dump, error) {
	return nil, nil, &UnsupportedError{What: "only Linux has legacy iptables tables"}
}
