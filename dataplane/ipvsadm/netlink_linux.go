package ipvsadm

import (
	"fmt"
	"net/netip"
	"syscall"

	mobyipvs "github.com/moby/ipvs"

	"github.com/svctrace/svctrace/trace/ipvs"
)

// ipvsPersistentFlag is IP_VS_SVC_F_PERSISTENT.
const ipvsPersistentFlag = 0x1

// ReadNetlink reads the IPVS table of this node's network namespace over netlink.
func ReadNetlink() (*ipvs.Table, error) {
	h, err := mobyipvs.New("")
	if err != nil {
		return nil, fmt.Errorf("cannot talk to IPVS over netlink (is the ip_vs module loaded?): %w", err)
	}
	defer h.Close()
	svcs, err := h.GetServices()
	if err != nil {
		return nil, fmt.Errorf("list IPVS services: %w", err)
	}
	t := &ipvs.Table{}
	for _, s := range svcs {
		addr, _ := netip.AddrFromSlice(s.Address)
		vs := &ipvs.VirtualServer{Protocol: protoName(s.Protocol), Addr: netip.AddrPortFrom(addr.Unmap(), s.Port), FWMark: s.FWMark, Scheduler: s.SchedName}
		if s.Flags&ipvsPersistentFlag != 0 {
			vs.Persistent = int(s.Timeout)
		}
		dests, err := h.GetDestinations(s)
		if err != nil {
			return nil, fmt.Errorf("list real servers of %s: %w", vs.Addr, err)
		}
		for _, d := range dests {
			a, _ := netip.AddrFromSlice(d.Address)
			vs.Reals = append(vs.Reals, &ipvs.RealServer{Addr: netip.AddrPortFrom(a.Unmap(), d.Port), Forward: fwdName(d.ConnectionFlags),
				Weight: d.Weight, ActiveConn: d.ActiveConnections, InActConn: d.InactiveConnections, Connections: int64(d.Stats.Connections)})
		}
		t.Services = append(t.Services, vs)
	}
	return t, nil
}

func protoName(p uint16) string {
	switch p {
	case syscall.IPPROTO_TCP:
		return "tcp"
	case syscall.IPPROTO_UDP:
		return "udp"
	case 132:
		return "sctp"
	}
	return fmt.Sprintf("proto-%d", p)
}

func fwdName(flags uint32) string {
	switch flags & mobyipvs.ConnFwdMask {
	case mobyipvs.ConnFwdMasq:
		return "masq"
	case mobyipvs.ConnFwdTunnel:
		return "tunnel"
	case mobyipvs.ConnFwdDirectRoute:
		return "route"
	case mobyipvs.ConnFwdLocalNode:
		return "local"
	}
	return "bypass"
}
