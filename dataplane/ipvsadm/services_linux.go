package ipvsadm

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	mobyipvs "github.com/moby/ipvs"

	"github.com/svctrace/svctrace/trace"
)

// svcHashed is IP_VS_SVC_F_HASHED: the kernel sets it on every virtual server it holds.
const svcHashed = 0x2

// Services reads every virtual server of this network namespace with its real servers, in the
// detail needed to create it again. With no IPVS here (the ip_vs module not loaded: no
// /proc/net/ip_vs) there are none, and nothing is loaded to find that out.
func Services() ([]trace.IPVSService, error) {
	if _, err := os.Stat("/proc/net/ip_vs"); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	var out []trace.IPVSService
	err := eachService(func(s *mobyipvs.Service, addr netip.AddrPort, dests []*mobyipvs.Destination) {
		if s.FWMark != 0 {
			return // kube-proxy never marks; a firewall-mark service is someone else's
		}
		v := trace.IPVSService{Protocol: protoName(s.Protocol), Address: addr.String(), Scheduler: s.SchedName,
			Flags: s.Flags &^ svcHashed, Timeout: s.Timeout, Netmask: s.Netmask}
		for _, d := range dests {
			v.Reals = append(v.Reals, trace.IPVSDest{Address: addrPortOf(d.Address, d.Port).String(), Weight: d.Weight, Forward: fwdName(d.ConnectionFlags)})
		}
		out = append(out, v)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteServices deletes these virtual servers (their real servers go with them), and nothing
// else: no flush.
func DeleteServices(vs []trace.IPVSService) error {
	return forServices(vs, func(h *mobyipvs.Handle, v trace.IPVSService, s *mobyipvs.Service) error {
		if err := h.DelService(s); err != nil {
			return fmt.Errorf("delete virtual server %s %s: %w", v.Protocol, v.Address, err)
		}
		return nil
	})
}

// EnsureServices creates those of these virtual servers, and of their real servers, that are
// not there; those that are there are left as they are.
func EnsureServices(vs []trace.IPVSService) error {
	return forServices(vs, func(h *mobyipvs.Handle, v trace.IPVSService, s *mobyipvs.Service) error {
		if !h.IsServicePresent(s) {
			if err := h.NewService(s); err != nil {
				return fmt.Errorf("create virtual server %s %s: %w", v.Protocol, v.Address, err)
			}
		}
		have, err := h.GetDestinations(s)
		if err != nil {
			return fmt.Errorf("list real servers of %s: %w", v.Address, err)
		}
		for _, r := range v.Reals {
			d, err := dest(r, s.AddressFamily)
			if err != nil {
				return err
			}
			if hasDest(have, d) {
				continue
			}
			if err := h.NewDestination(s, d); err != nil {
				return fmt.Errorf("add real server %s to %s %s: %w", r.Address, v.Protocol, v.Address, err)
			}
		}
		return nil
	})
}

// forServices calls fn for each of vs with a netlink handle and the virtual server as netlink
// names it; none opens no handle.
func forServices(vs []trace.IPVSService, fn func(h *mobyipvs.Handle, v trace.IPVSService, s *mobyipvs.Service) error) error {
	if len(vs) == 0 {
		return nil
	}
	h, err := open()
	if err != nil {
		return err
	}
	defer h.Close()
	for _, v := range vs {
		s, err := service(v)
		if err != nil {
			return err
		}
		if err := fn(h, v, s); err != nil {
			return err
		}
	}
	return nil
}

func hasDest(have []*mobyipvs.Destination, d *mobyipvs.Destination) bool {
	for _, h := range have {
		if h.Address.Equal(d.Address) && h.Port == d.Port {
			return true
		}
	}
	return false
}

func service(v trace.IPVSService) (*mobyipvs.Service, error) {
	ap, err := netip.ParseAddrPort(v.Address)
	if err != nil {
		return nil, fmt.Errorf("virtual server %q: %w", v.Address, err)
	}
	proto := protoNumbers[v.Protocol]
	if proto == 0 {
		return nil, fmt.Errorf("virtual server %s: protocol %q", v.Address, v.Protocol)
	}
	family := uint16(syscall.AF_INET)
	if ap.Addr().Is6() {
		family = syscall.AF_INET6
	}
	return &mobyipvs.Service{Address: net.IP(ap.Addr().AsSlice()), Port: ap.Port(), Protocol: proto, AddressFamily: family,
		SchedName: v.Scheduler, Flags: v.Flags, Timeout: v.Timeout, Netmask: v.Netmask}, nil
}

func dest(r trace.IPVSDest, family uint16) (*mobyipvs.Destination, error) {
	ap, err := netip.ParseAddrPort(r.Address)
	if err != nil {
		return nil, fmt.Errorf("real server %q: %w", r.Address, err)
	}
	fwd, ok := forwardFlags[r.Forward]
	if !ok {
		return nil, fmt.Errorf("real server %s: forwarding %q", r.Address, r.Forward)
	}
	return &mobyipvs.Destination{Address: net.IP(ap.Addr().AsSlice()), Port: ap.Port(), Weight: r.Weight, ConnectionFlags: fwd, AddressFamily: family}, nil
}

var protoNumbers = map[string]uint16{"tcp": syscall.IPPROTO_TCP, "udp": syscall.IPPROTO_UDP, "sctp": 132}

var forwardFlags = map[string]uint32{"masq": mobyipvs.ConnFwdMasq, "tunnel": mobyipvs.ConnFwdTunnel, "route": mobyipvs.ConnFwdDirectRoute, "local": mobyipvs.ConnFwdLocalNode}
