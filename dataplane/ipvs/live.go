package ipvs

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"syscall"

	mobyipvs "github.com/moby/ipvs"

	dpexec "github.com/svctrace/svctrace/dataplane/exec"
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

// HasKubeIPVS reports whether kube-proxy runs in IPVS mode here: its kube-ipvs0 interface exists.
func HasKubeIPVS(ctx context.Context, r dpexec.Runner) bool {
	out, err := r.Run(ctx, "ip", "-o", "link", "show", "kube-ipvs0")
	return err == nil && strings.Contains(string(out), "kube-ipvs0")
}

// ReadIPSets runs `ipset save` and parses it; it returns the text too, for snapshots.
func ReadIPSets(ctx context.Context, r dpexec.Runner) (ipvs.Sets, []byte, error) {
	out, err := r.Run(ctx, "ipset", "save")
	if err != nil {
		return nil, nil, err
	}
	sets, err := ParseIPSet(out)
	return sets, out, err
}

// FormatList writes the table the way `ipvsadm -Ln` prints it, so that ParseList reads it back
// (snapshots of a node read over netlink).
func FormatList(t *ipvs.Table) []byte {
	var b strings.Builder
	b.WriteString("IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
	for _, s := range t.Services {
		fmt.Fprintf(&b, "%s  %s %s", strings.ToUpper(s.Protocol), s.Addr, s.Scheduler)
		if s.Persistent > 0 {
			fmt.Fprintf(&b, " persistent %d", s.Persistent)
		}
		b.WriteString("\n")
		for _, r := range s.Reals {
			fwd := map[string]string{"masq": "Masq", "route": "Route", "tunnel": "Tunnel", "local": "Local"}[r.Forward]
			if fwd == "" {
				fwd = "Masq"
			}
			fmt.Fprintf(&b, "  -> %-28s %-7s %-6d %-10d %d\n", r.Addr, fwd, r.Weight, r.ActiveConn, r.InActConn)
		}
	}
	return []byte(b.String())
}
