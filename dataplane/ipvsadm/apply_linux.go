package ipvsadm

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/moby/ipvs"

	"github.com/svctrace/svctrace/trace"
)

// ApplyOp runs one operation over netlink. It never flushes and never touches a virtual server
// or real server the operation does not name. A delete of a real server that still has
// connections (WhenIdle) is not done: the real server stays at weight 0, and the returned
// sentence says so.
func ApplyOp(op trace.IPVSOp) (string, error) {
	h, err := open()
	if err != nil {
		return "", err
	}
	defer h.Close()
	svc, dest, err := target(op)
	if err != nil {
		return "", err
	}
	if svc, err = h.GetService(svc); err != nil {
		return "", fmt.Errorf("virtual server %s %s: %w", op.Protocol, op.Virtual, err)
	}
	switch op.Op {
	case "add-real":
		err = h.NewDestination(svc, dest)
	case "set-weight":
		err = h.UpdateDestination(svc, dest)
	case "delete-real":
		if op.WhenIdle {
			busy, berr := connections(h, svc, dest)
			if berr != nil {
				return "", berr
			}
			if busy > 0 {
				return fmt.Sprintf("real server %s of %s %s still has %d connection(s): left at weight 0, receiving no new ones; run repair again to delete it", op.Real, op.Protocol, op.Virtual, busy), nil
			}
		}
		err = h.DelDestination(svc, dest)
	default:
		err = fmt.Errorf("unknown IPVS operation %q", op.Op)
	}
	if err != nil {
		return "", fmt.Errorf("%s %s on %s %s: %w", op.Op, op.Real, op.Protocol, op.Virtual, err)
	}
	return "", nil
}

func connections(h *ipvs.Handle, svc *ipvs.Service, dest *ipvs.Destination) (int, error) {
	dests, err := h.GetDestinations(svc)
	if err != nil {
		return 0, err
	}
	for _, d := range dests {
		if d.Address.Equal(dest.Address) && d.Port == dest.Port {
			return d.ActiveConnections + d.InactiveConnections, nil
		}
	}
	return 0, nil
}

func target(op trace.IPVSOp) (*ipvs.Service, *ipvs.Destination, error) {
	vip, err := netip.ParseAddrPort(op.Virtual)
	if err != nil {
		return nil, nil, fmt.Errorf("virtual server %q: %w", op.Virtual, err)
	}
	real, err := netip.ParseAddrPort(op.Real)
	if err != nil {
		return nil, nil, fmt.Errorf("real server %q: %w", op.Real, err)
	}
	proto := map[string]uint16{"tcp": syscall.IPPROTO_TCP, "udp": syscall.IPPROTO_UDP, "sctp": 132}[op.Protocol]
	if proto == 0 {
		return nil, nil, fmt.Errorf("protocol %q", op.Protocol)
	}
	family := uint16(syscall.AF_INET)
	if vip.Addr().Is6() {
		family = syscall.AF_INET6
	}
	svc := &ipvs.Service{Address: net.IP(vip.Addr().AsSlice()), Port: vip.Port(), Protocol: proto, AddressFamily: family}
	dest := &ipvs.Destination{Address: net.IP(real.Addr().AsSlice()), Port: real.Port(), Weight: op.Weight,
		ConnectionFlags: ipvs.ConnectionFlagMasq, AddressFamily: family}
	return svc, dest, nil
}
