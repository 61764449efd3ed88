package xtables

import (
	"fmt"

	"github.com/coreos/go-iptables/iptables"
)

// localVersion asks go-iptables for this machine's iptables version ("v1.8.9").
func localVersion(ipv6 bool) string {
	family := iptables.ProtocolIPv4
	if ipv6 {
		family = iptables.ProtocolIPv6
	}
	ipt, err := iptables.New(iptables.IPFamily(family))
	if err != nil {
		return ""
	}
	a, b, c := ipt.GetIptablesVersion()
	return fmt.Sprintf("v%d.%d.%d", a, b, c)
}
