//go:build !linux

package iptables

// localVersion is empty off Linux: there is no iptables to ask.
func localVersion(bool) string { return "" }
