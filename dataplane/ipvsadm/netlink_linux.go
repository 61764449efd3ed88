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

// open opens a netlink handle to this network namespace's IPVS.
func open() (*mobyipvs.Handle, error) {
	h, err := mobyipvs.New("")
	if err != nil {
		return nil, fmt.Errorf("cannot talk to IPVS over netlink (is the ip_vs module loaded?): %w", err)
	}
	return h, nil
}

// ReadNetlink reads the IPVS table of this node's network namespace over netlink.
func ReadNetlink() (*ipvs.Table, error) {
	t := &ipvs.Table{}
	err := eachService(func(s *mobyipvs.Service, addr netip.AddrPort, dests []*mobyipvs.Destination) {
		vs := &ipvs.VirtualServer{Protocol: protoName(s.Protocol), Addr: addr, FWMark: s.FWMark, Scheduler: s.SchedName}
		if s.Flags&ipvsPersistentFlag != 0 {
			vs.Persistent = int(s.Timeout)
		}
		for _, d := range dests {
			vs.Reals = append(vs.Reals, &ipvs.RealServer{Addr: addrPortOf(d.Address, d.Port), Forward: fwdName(d.ConnectionFlags),
				Weight: d.Weight, ActiveConn: d.ActiveConnections, InActConn: d.InactiveConnections, Connections: int64(d.Stats.Connections)})
		}
		t.Services = append(t.Services, vs)
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// eachService calls fn with every virtual server of this network namespace, its address and its
// real servers, over netlink.
func eachService(fn func(s *mobyipvs.Service, addr netip.AddrPort, dests []*mobyipvs.Destination)) error {
	h, err := open()
	if err != nil {
		return err
	}
	defer h.Close()
	svcs, err := h.GetServices()
	if err != nil {
		return fmt.Errorf("list IPVS services: %w", err)
	}
	for _, s := range svcs {
		addr := addrPortOf(s.Address, s.Port)
		dests, err := h.GetDestinations(s)
		if err != nil {
			return fmt.Errorf("list real servers of %s: %w", addr, err)
		}
		fn(s, addr, dests)
	}
	return nil
}

func addrPortOf(ip []byte, port uint16) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), port)
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
