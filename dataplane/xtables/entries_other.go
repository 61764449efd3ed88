//go:build !linux

package xtables

// legacyEntries needs Linux's legacy iptables.
func legacyEntries() int { return 0 }
