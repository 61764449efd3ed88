package main

import (
	"fmt"

	"github.com/moby/ipvs"
)

// ipvsServices lists the IPVS virtual servers in one netlink request, the same request a live
// IPVS trace makes (dataplane/ipvsadm.ReadServices), and prints how many: the IPVS bench's bare
// timing of that read as a process of its own, which no ipvsadm command makes (ipvsadm -Ln asks
// for each virtual server's real servers too).
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
