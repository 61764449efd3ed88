//go:build !linux

package xtables

// localVersion is empty off Linux: there is no iptables to ask.
func localVersion(bool) string { return "" }
