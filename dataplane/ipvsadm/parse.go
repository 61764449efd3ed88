// Package ipvsadm reads kube-proxy's IPVS-mode state: `ipvsadm -Sn` and `ipvsadm -Ln` text,
// /proc/net/ip_vs (hexadecimal addresses), live virtual servers over netlink, and `ipset save`.
package ipvsadm

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/svctrace/svctrace/trace/ipvs"
)

// ParseSave reads `ipvsadm -Sn` (or -S -n) output: "-A -t VIP:PORT -s rr [-p T]" and
// "-a -t VIP:PORT -r RIP:PORT -m -w W" lines.
func ParseSave(data []byte) (*ipvs.Table, error) {
	t := &ipvs.Table{}
	byKey := map[string]*ipvs.VirtualServer{}
	sc := lines(data)
	n := 0
	for sc.Scan() {
		n++
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		bad := func(msg string) error { return fmt.Errorf("ipvsadm -Sn, line %d: %s (%q)", n, msg, sc.Text()) }
		if len(f) < 3 || (f[0] != "-A" && f[0] != "-a") {
			return nil, bad("expected -A or -a with a service")
		}
		proto, addr, err := serviceOf(f[1], f[2])
		if err != nil {
			return nil, bad(err.Error())
		}
		opts := map[string]string{}
		flags := map[string]bool{}
		for i := 3; i < len(f); i++ {
			switch f[i] {
			case "-s", "-p", "-r", "-w", "-x", "-y", "-M", "-b":
				if i+1 >= len(f) {
					if f[i] == "-p" {
						opts["-p"] = "300" // ipvsadm's default persistence timeout
						continue
					}
					return nil, bad(f[i] + " needs a value")
				}
				opts[f[i]] = f[i+1]
				i++
			default:
				flags[f[i]] = true
			}
		}
		if f[0] == "-A" {
			vs := &ipvs.VirtualServer{Protocol: proto, Addr: addr, Scheduler: opts["-s"]}
			if f[1] == "-f" {
				vs.FWMark = uint32(addr.Port())
				vs.Addr = netip.AddrPort{}
			}
			if p, ok := opts["-p"]; ok {
				if vs.Persistent, err = strconv.Atoi(p); err != nil {
					return nil, bad("bad persistence timeout")
				}
			}
			t.Services = append(t.Services, vs)
			byKey[f[1]+" "+f[2]] = vs
			continue
		}
		vs := byKey[f[1]+" "+f[2]]
		if vs == nil {
			return nil, bad("real server for a virtual server not defined before it")
		}
		rip, err := netip.ParseAddrPort(opts["-r"])
		if err != nil {
			if a, err2 := netip.ParseAddr(opts["-r"]); err2 == nil {
				rip = netip.AddrPortFrom(a, addr.Port())
			} else {
				return nil, bad("bad real server address")
			}
		}
		rs := &ipvs.RealServer{Addr: rip, Forward: "masq", Weight: 1, Connections: -1}
		switch {
		case flags["-g"]:
			rs.Forward = "route"
		case flags["-i"]:
			rs.Forward = "tunnel"
		}
		if w, ok := opts["-w"]; ok {
			if rs.Weight, err = strconv.Atoi(w); err != nil {
				return nil, bad("bad weight")
			}
		}
		vs.Reals = append(vs.Reals, rs)
	}
	return t, scanError(sc.Err(), "ipvsadm -Sn", n)
}

func serviceOf(flag, value string) (string, netip.AddrPort, error) {
	proto := map[string]string{"-t": "tcp", "-u": "udp", "--sctp-service": "sctp", "-f": "fwmark"}[flag]
	if proto == "" {
		return "", netip.AddrPort{}, fmt.Errorf("unknown service kind %s", flag)
	}
	if proto == "fwmark" {
		m, err := strconv.ParseUint(value, 0, 32)
		return proto, netip.AddrPortFrom(netip.Addr{}, uint16(m)), err
	}
	ap, err := netip.ParseAddrPort(value)
	if err != nil {
		return "", ap, fmt.Errorf("bad address %q", value)
	}
	return proto, ap, nil
}

// ParseList reads `ipvsadm -Ln` output (which adds ActiveConn and InActConn) or /proc/net/ip_vs
// (the same table with hexadecimal addresses and ports; the kernel's header line tells them apart).
func ParseList(data []byte) (*ipvs.Table, error) {
	return parseList(bytes.NewReader(data), nil)
}

// parseList is ParseList reading from r as it goes; persistent is called (when not nil) at
// each persistent virtual server whose timeout the text does not say (/proc's), as soon as its
// line is read.
func parseList(r io.Reader, persistent func()) (*ipvs.Table, error) {
	t := &ipvs.Table{}
	var cur *ipvs.VirtualServer
	n := 0
	// proc: the kernel wrote it (/proc/net/ip_vs), as its header line says. An IPv4 address
	// in hexadecimal is recognised anyway; an IPv6 one is not, since "[...]:0050" reads as
	// decimal port 50 too.
	proc := false
	sc := scanner(r)
	for sc.Scan() {
		n++
		line := sc.Text()
		f := strings.Fields(line)
		bad := func(msg string) error { return fmt.Errorf("IPVS table, line %d: %s (%q)", n, msg, line) }
		switch {
		case len(f) == 0 || strings.HasPrefix(line, "IP Virtual Server") || strings.HasPrefix(line, "Prot ") || len(f) > 1 && f[1] == "RemoteAddress:Port":
			proc = proc || line == procRealsHeader
		case f[0] == "TCP" || f[0] == "UDP" || f[0] == "SCTP" || f[0] == "FWM":
			if len(f) < 3 {
				return nil, bad("a service line needs an address and a scheduler")
			}
			cur = &ipvs.VirtualServer{Protocol: lowerProtocol[f[0]], Scheduler: f[2]}
			if f[0] == "FWM" {
				base := 10
				if proc {
					base = 16
				}
				m, err := strconv.ParseUint(f[1], base, 32)
				if err != nil {
					return nil, bad("bad firewall mark")
				}
				cur.Protocol, cur.FWMark = "fwmark", uint32(m)
			} else {
				addr, err := addrPort(f[1], proc)
				if err != nil {
					return nil, bad(err.Error())
				}
				cur.Addr = addr
			}
			for i := 3; i+1 < len(f); i++ {
				if f[i] == "persistent" {
					cur.Persistent, _ = strconv.Atoi(f[i+1])
					if len(f) > i+2 && len(f[i+2]) == 8 { // /proc prints jiffies and a netmask; ipvsadm seconds
						cur.Persistent = 0
					}
				}
			}
			if cur.Persistent == 0 && strings.Contains(line, "persistent") {
				cur.Persistent = PersistentUnknown
			}
			if cur.Persistent == PersistentUnknown && persistent != nil {
				persistent()
			}
			t.Services = append(t.Services, cur)
		case f[0] == "->":
			if cur == nil {
				return nil, bad("real server before any service")
			}
			if len(f) < 6 {
				return nil, bad("a real server line needs address, forward, weight, ActiveConn and InActConn")
			}
			addr, err := addrPort(f[1], proc)
			if err != nil {
				return nil, bad(err.Error())
			}
			rs := &ipvs.RealServer{Addr: addr, Forward: lowerForward(f[2]), Connections: -1}
			var e1, e2, e3 error
			rs.Weight, e1 = strconv.Atoi(f[3])
			rs.ActiveConn, e2 = strconv.Atoi(f[4])
			rs.InActConn, e3 = strconv.Atoi(f[5])
			if e1 != nil || e2 != nil || e3 != nil {
				return nil, bad("weight and connection counts must be numbers")
			}
			cur.Reals = append(cur.Reals, rs)
		default:
			return nil, bad("unrecognised line")
		}
	}
	return t, scanError(sc.Err(), "IPVS table", n)
}

// lowerProtocol is a service line's protocol as the table names it.
var lowerProtocol = map[string]string{"TCP": "tcp", "UDP": "udp", "SCTP": "sctp", "FWM": "fwm"}

// lowerForward is a real server's forwarding method in lower case, without a new string for the
// methods ipvsadm and the kernel print.
func lowerForward(s string) string {
	switch s {
	case "Masq":
		return "masq"
	case "Route":
		return "route"
	case "Tunnel":
		return "tunnel"
	case "Local":
		return "local"
	}
	return strings.ToLower(s)
}

// procRealsHeader is the kernel's third header line of /proc/net/ip_vs (ipvsadm pads it).
const procRealsHeader = "  -> RemoteAddress:Port Forward Weight ActiveConn InActConn"

// PersistentUnknown is the persistence timeout of a persistent virtual server read from
// /proc/net/ip_vs, which prints it in jiffies, a unit userspace cannot convert
// (FillPersistence puts the seconds in from netlink).
const PersistentUnknown = -1

// addrPort reads "10.96.0.1:443", "[fd00::1]:443", or, as the kernel prints them (proc),
// "0A600001:01BB" and "[fd00:0000:...:0001]:01BB".
func addrPort(s string, proc bool) (netip.AddrPort, error) {
	if !proc {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			return ap, nil
		}
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 || len(s)-i-1 != 4 {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	h, p := s[:i], s[i+1:]
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	var a netip.Addr
	switch {
	case len(h) > 2 && h[0] == '[' && h[len(h)-1] == ']':
		a, err = netip.ParseAddr(h[1 : len(h)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
		}
	case len(h) == 8:
		raw, err := hex.DecodeString(h)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
		}
		a = netip.AddrFrom4([4]byte(raw))
	default:
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}

// ServiceKey names a virtual server the same way whichever listing it came from.
type ServiceKey struct {
	Protocol string
	Addr     netip.AddrPort
	FWMark   uint32
}

// KeyOf is vs's ServiceKey.
func KeyOf(vs *ipvs.VirtualServer) ServiceKey {
	return ServiceKey{vs.Protocol, vs.Addr, vs.FWMark}
}

// FillPersistence puts the persistence timeouts, in seconds, that /proc/net/ip_vs left unknown
// into t, from timeouts (every persistent virtual server's, as netlink lists them). It returns
// false when a virtual server of t is not in timeouts: the table changed between the two reads.
func FillPersistence(t *ipvs.Table, timeouts map[ServiceKey]int) bool {
	for _, vs := range t.Services {
		if vs.Persistent != PersistentUnknown {
			continue
		}
		s, ok := timeouts[KeyOf(vs)]
		if !ok {
			return false
		}
		vs.Persistent = s
	}
	return true
}

// NeedsPersistence reports whether t has a persistence timeout FillPersistence has to fill in.
func NeedsPersistence(t *ipvs.Table) bool {
	for _, vs := range t.Services {
		if vs.Persistent == PersistentUnknown {
			return true
		}
	}
	return false
}

// ParseIPSet reads `ipset save` output ("create NAME TYPE ..." and "add NAME MEMBER" lines) or
// `ipset list` output ("Name:", "Type:", ..., "Members:" and one member a line).
func ParseIPSet(data []byte) (ipvs.Sets, error) {
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("Name: ")) {
		return parseIPSetList(data)
	}
	sets := ipvs.Sets{}
	sc := lines(data)
	n := 0
	for sc.Scan() {
		n++
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch {
		case f[0] == "create" && len(f) >= 3:
			sets[f[1]] = &ipvs.Set{Name: f[1], Type: f[2], Family: family(f[3:]), Members: map[string]bool{}}
		case f[0] == "add" && len(f) >= 3:
			s := sets[f[1]]
			if s == nil {
				return nil, fmt.Errorf("ipset save, line %d: member of set %s before its create line", n, f[1])
			}
			s.Members[f[2]] = true
			s.List = append(s.List, strings.Split(f[2], ","))
		default:
			return nil, fmt.Errorf("ipset save, line %d: unrecognised line (%q)", n, sc.Text())
		}
	}
	return sets, scanError(sc.Err(), "ipset save", n)
}

func parseIPSetList(data []byte) (ipvs.Sets, error) {
	sets := ipvs.Sets{}
	var cur *ipvs.Set
	members := false
	n := 0
	sc := lines(data)
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			members = false
		case strings.HasPrefix(line, "Name: "):
			cur = &ipvs.Set{Name: strings.TrimPrefix(line, "Name: "), Members: map[string]bool{}}
			sets[cur.Name] = cur
			members = false
		case cur == nil:
			return nil, fmt.Errorf("ipset list, line %d: %q before any Name: line", n, line)
		case strings.HasPrefix(line, "Type: "):
			cur.Type = strings.TrimPrefix(line, "Type: ")
		case strings.HasPrefix(line, "Header: "):
			cur.Family = family(strings.Fields(line)[1:])
		case line == "Members:":
			members = true
		case members:
			m, _, _ := strings.Cut(line, " ") // members may carry "timeout N" and the like
			cur.Members[m] = true
			cur.List = append(cur.List, strings.Split(m, ","))
		}
	}
	return sets, scanError(sc.Err(), "ipset list", n)
}

// family is the value of "family" among a set's create options or header fields.
func family(fields []string) string {
	for i := 0; i+1 < len(fields); i++ {
		if fields[i] == "family" {
			return fields[i+1]
		}
	}
	return ""
}

// scanError names the line a scanner stopped at: one longer than lines allows.
func scanError(err error, what string, n int) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, bufio.ErrTooLong) {
		return fmt.Errorf("%s, line %d: longer than 1 MiB, which no %s line is", what, n+1, what)
	}
	return fmt.Errorf("%s, line %d: %w", what, n+1, err)
}

// lines scans text line by line, allowing lines up to 1 MiB.
func lines(data []byte) *bufio.Scanner { return scanner(bytes.NewReader(data)) }

// scanner scans r line by line, allowing lines up to 1 MiB.
func scanner(r io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	return sc
}
