package main

import (
	"fmt"

	"github.com/moby/ipvs"
)

// ipvsServices lists the IPVS virtual servers in one netlink request, and prints how many: the
// IPVS bench's bare timing, as a process of its own, of the listing a live IPVS trace made until
// it asked for the packet's virtual server alone. No ipvsadm command makes that request alone
// (ipvsadm -Ln asks for each virtual server's real servers too).
func ipvsServices() error {
	h, err := ipvs.New("")
	if err != nil {
		return err
	}
	defer h.Close()
	svcs, err := h.GetServices()
	if err != nil {
		return err
	}
	fmt.Println(len(svcs), "virtual servers")
	return nil
}
