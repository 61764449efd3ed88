package ipvsadm

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"

	mobyipvs "github.com/moby/ipvs"
	"github.com/vishvananda/netlink"

	"github.com/svctrace/svctrace/trace"
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
		vs := virtualServer(s, addr)
		vs.Reals = realServers(dests)
		t.Services = append(t.Services, vs)
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// ReadService reads one virtual server of this network namespace, by protocol, address and
// port, with its real servers, over netlink: two requests, whatever the size of the table. It
// returns nil when there is none. A Scoped dataplane asks for the packet's.
func ReadService(proto string, addr netip.AddrPort) (*ipvs.VirtualServer, error) {
	want, err := service(trace.IPVSService{Protocol: proto, Address: addr.String()})
	if err != nil {
		return nil, err
	}
	h, err := open()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	s, err := h.GetService(want)
	if errors.Is(err, syscall.ESRCH) {
		return nil, nil // the kernel's answer when it has no such virtual server
	}
	if err != nil {
		return nil, fmt.Errorf("read IPVS virtual server %s %s: %w", strings.ToUpper(proto), addr, err)
	}
	vs := virtualServer(s, addrPortOf(s.Address, s.Port))
	if vs.Protocol != proto || vs.Addr != addr {
		return nil, fmt.Errorf("read IPVS virtual server %s %s: the kernel answered with %s %s", strings.ToUpper(proto), addr, strings.ToUpper(vs.Protocol), vs.Addr)
	}
	dests, err := h.GetDestinations(s)
	if err != nil {
		return nil, fmt.Errorf("list real servers of %s: %w", vs.Addr, err)
	}
	vs.Reals = realServers(dests)
	return vs, nil
}

// BoundAddresses lists the addresses of kube-proxy's kube-ipvs0 interface in this network
// namespace (every virtual server address but the node's own): none without that interface.
func BoundAddresses() ([]netip.Addr, error) {
	link, err := netlink.LinkByName(kubeIPVSLink)
	if err != nil {
		var missing netlink.LinkNotFoundError
		if errors.As(err, &missing) {
			return nil, nil
		}
		return nil, fmt.Errorf("read interface %s: %w", kubeIPVSLink, err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("read the addresses of %s: %w", kubeIPVSLink, err)
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}

// kubeIPVSLink is the dummy interface kube-proxy's IPVS mode binds virtual server addresses to.
const kubeIPVSLink = "kube-ipvs0"

// virtualServer is a listed virtual server, without its real servers.
func virtualServer(s *mobyipvs.Service, addr netip.AddrPort) *ipvs.VirtualServer {
	vs := &ipvs.VirtualServer{Protocol: serviceProto(s), Addr: addr, FWMark: s.FWMark, Scheduler: s.SchedName}
	if s.Flags&ipvsPersistentFlag != 0 {
		vs.Persistent = int(s.Timeout)
	}
	return vs
}

// realServers converts a virtual server's listed destinations.
func realServers(dests []*mobyipvs.Destination) []*ipvs.RealServer {
	out := make([]*ipvs.RealServer, 0, len(dests))
	for _, d := range dests {
		out = append(out, &ipvs.RealServer{Addr: addrPortOf(d.Address, d.Port), Forward: fwdName(d.ConnectionFlags),
			Weight: d.Weight, ActiveConn: d.ActiveConnections, InActConn: d.InactiveConnections, Connections: int64(d.Stats.Connections)})
	}
	return out
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

// ReadTable reads the IPVS table of this network namespace for a trace or a check: the kernel's
// own listing, /proc/net/ip_vs, in one read, and when a virtual server is persistent, the
// timeouts (which /proc prints in jiffies) from one netlink listing of the virtual servers. It
// has everything ReadNetlink has but the real servers' connection statistics (Connections is
// -1), which take a netlink request per virtual server: 10,000 on a big node. When the table
// changed between the two reads, it is read again over netlink.
func ReadTable() (*ipvs.Table, error) {
	f, err := os.Open(procIPVS)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no IPVS in this network namespace: %s is missing (is the ip_vs module loaded?)", procIPVS)
		}
		return nil, fmt.Errorf("read the IPVS table: %w", err)
	}
	defer f.Close()
	// The kernel prints the table a page per read, walking its hash table from the start each
	// time (seconds at 10,000 Services): the lines are parsed as they come, a chunk at a time on
	// another core, and the netlink listing of the timeouts starts at the first persistent
	// virtual server.
	pr, stop := readAhead(f, readAheadChunk)
	defer stop()
	listing := sync.OnceValues(persistenceTimeouts)
	var started sync.Once
	t, err := parseList(pr, func() { started.Do(func() { go listing() }) })
	if err != nil {
		return nil, fmt.Errorf("%s: %w", procIPVS, err)
	}
	if !NeedsPersistence(t) {
		return t, nil
	}
	timeouts, err := listing() // (started at the first persistent line; this waits for it)
	if err != nil {
		return nil, err
	}
	if !FillPersistence(t, timeouts) {
		return ReadNetlink()
	}
	return t, nil
}

// procIPVS is the kernel's listing of this network namespace's IPVS table.
const procIPVS = "/proc/net/ip_vs"

// persistenceTimeouts lists the persistent virtual servers' timeouts, in seconds, over netlink
// (one request).
func persistenceTimeouts() (map[ServiceKey]int, error) {
	h, err := open()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	svcs, err := h.GetServices()
	if err != nil {
		return nil, fmt.Errorf("list IPVS services: %w", err)
	}
	out := map[ServiceKey]int{}
	for _, s := range svcs {
		if s.Flags&ipvsPersistentFlag != 0 {
			out[ServiceKey{serviceProto(s), addrPortOf(s.Address, s.Port), s.FWMark}] = int(s.Timeout)
		}
	}
	return out, nil
}

// serviceProto is a virtual server's protocol as the parsers name it: "fwmark" for a
// firewall-mark service, which has none.
func serviceProto(s *mobyipvs.Service) string {
	if s.FWMark != 0 {
		return "fwmark"
	}
	return protoName(s.Protocol)
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
