package iptables

import (
	"fmt"

	goipt "github.com/coreos/go-iptables/iptables"
)

// localVersion asks go-iptables for this machine's iptables version ("v1.8.9").
func localVersion(ipv6 bool) string {
	family := goipt.ProtocolIPv4
	if ipv6 {
		family = goipt.ProtocolIPv6
	}
	ipt, err := goipt.New(goipt.IPFamily(family))
	if err != nil {
		return ""
	}
	a, b, c := ipt.GetIptablesVersion()
	return fmt.Sprintf("v%d.%d.%d", a, b, c)
}
