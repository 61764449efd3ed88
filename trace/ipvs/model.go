// Package ipvs models what kube-proxy's IPVS mode programs besides iptables rules: the IPVS
// virtual servers with their schedulers and real servers, and the ipsets its iptables rules match.
// trace/iptables evaluates the rules with the sets and hands packets for a virtual server to it.
package ipvs

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
)

// Table is a node's IPVS state.
type Table struct {
	Services []*VirtualServer
	// Partial says Services holds only the virtual servers looked up (a live read for walks
	// alone asks the kernel for the packet's): Looked lists the keys asked (Key), whether one
	// was found or not, and Choose refuses a key not asked rather than take it for none.
	Partial bool
	Looked  map[string]bool
	// Bound lists the addresses read from the node's kube-ipvs0 interface, where kube-proxy
	// binds every virtual server address: what makes them the node's own. Addresses lists them
	// with the virtual servers' (all of them but for a Partial table).
	Bound []netip.Addr

	// byAddr indexes Services for Find and addrs lists their addresses; built on first use (a
	// big node has 20,000 of them) and again when Services has grown, under mu: walks run on
	// several goroutines.
	mu      sync.Mutex
	indexed int
	byAddr  map[string]*VirtualServer
	addrs   []netip.Addr
}

func (t *Table) index() (map[string]*VirtualServer, []netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byAddr == nil || t.indexed != len(t.Services) {
		t.byAddr = make(map[string]*VirtualServer, len(t.Services))
		t.addrs = nil
		seen := map[netip.Addr]bool{}
		for _, a := range t.Bound {
			if a.IsValid() && !seen[a] {
				seen[a] = true
				t.addrs = append(t.addrs, a)
			}
		}
		for _, s := range t.Services {
			t.byAddr[Key(s.Protocol, s.Addr)] = s
			if a := s.Addr.Addr(); a.IsValid() && !seen[a] {
				seen[a] = true
				t.addrs = append(t.addrs, a)
			}
		}
		t.indexed = len(t.Services)
	}
	return t.byAddr, t.addrs
}

// VirtualServer is one IPVS service.
type VirtualServer struct {
	Protocol string // tcp, udp, sctp
	Addr     netip.AddrPort
	// FWMark is set for firewall-mark services (kube-proxy does not use them).
	FWMark    uint32
	Scheduler string
	// Persistent is the persistence timeout in seconds (session affinity); 0 when none, and
	// negative when the virtual server is persistent for a time the input did not give in
	// seconds (/proc/net/ip_vs prints it in kernel ticks).
	Persistent int
	Reals      []*RealServer
}

// RealServer is one backend of a virtual server.
type RealServer struct {
	Addr                  netip.AddrPort
	Forward               string // masq, route, tunnel
	Weight                int
	ActiveConn, InActConn int
	// Connections counts every connection IPVS scheduled to it since it was added (netlink
	// statistics); -1 when the source did not say (ipvsadm text, /proc).
	Connections int64
}

// Key names a virtual server by protocol, address and port, as Find and Looked do.
func Key(proto string, addr netip.AddrPort) string { return proto + " " + addr.String() }

// Find returns the virtual server for proto, address and port.
func (t *Table) Find(proto string, addr netip.AddrPort) *VirtualServer {
	if t == nil {
		return nil
	}
	byAddr, _ := t.index()
	return byAddr[Key(proto, addr)]
}

// Addresses lists every virtual server address and the Bound ones: in IPVS mode kube-proxy binds
// them to the kube-ipvs0 dummy interface, so they are local to the node.
func (t *Table) Addresses() []netip.Addr {
	if t == nil {
		return nil
	}
	_, addrs := t.index()
	return addrs
}

// ExactSchedulers split new connections by weight alone, independent of live state.
var ExactSchedulers = map[string]bool{"rr": true, "wrr": true}

// Share returns each real server's share of new connections: weight over total weight, with
// weight 0 (draining) taking none. exact is false for schedulers whose choice depends on live
// connection counts or on a hash of the packet (lc, wlc, sed, nq, sh, dh, mh, ...).
func (s *VirtualServer) Share() (shares []float64, exact bool) {
	total := 0
	for _, r := range s.Reals {
		if r.Weight > 0 {
			total += r.Weight
		}
	}
	shares = make([]float64, len(s.Reals))
	for i, r := range s.Reals {
		if r.Weight > 0 && total > 0 {
			shares[i] = float64(r.Weight) / float64(total)
		}
	}
	return shares, ExactSchedulers[s.Scheduler]
}

// DependsOn says, for people, what a non-exact scheduler's choice depends on.
func DependsOn(scheduler string) string {
	switch scheduler {
	case "lc", "wlc", "sed", "nq", "lblc", "lblcr", "fo", "ovf":
		return "the real servers' current connection counts (ActiveConn/InActConn)"
	case "sh", "dh", "mh":
		return "a hash of the packet's addresses, so each client always lands on the same real server"
	}
	return "state svctrace cannot see"
}

// Sets holds ipsets by name.
type Sets map[string]*Set

// Set is one ipset: its type ("hash:ip,port") and members as ipset prints them.
type Set struct {
	Name string
	Type string
	// Family is the address family of a set of addresses ("inet", "inet6"); empty for one
	// without (bitmap:port).
	Family  string
	Members map[string]bool
	// List keeps the members split by dimension, for the net dimensions matched by prefix.
	List [][]string
	// Partial says the members were not read (a read for walks alone asks the kernel about the
	// packet's values instead): Tested holds the values asked about so far, joined as Members'
	// keys, each found or not, and Lookup says which are known.
	Partial bool
	Tested  map[string]bool
}

// Lookup is Contains for a set that may be Partial: known is false when the set's members were
// not read and the values were not tested.
func (s *Set) Lookup(values []string) (in, known bool) {
	if !s.Partial {
		return s.Contains(values), true
	}
	in, known = s.Tested[strings.Join(values, ",")]
	return in, known
}

// Contains reports whether the values (one per dimension, formatted as ipset prints members:
// "10.96.0.1", "tcp:80", "30080") form a member. Net dimensions match by containment.
func (s *Set) Contains(values []string) bool {
	if s.Members[strings.Join(values, ",")] {
		return true
	}
	if !strings.Contains(s.Type, "net") {
		return false
	}
	for _, m := range s.List {
		if len(m) != len(values) {
			continue
		}
		ok := true
		for i := range m {
			if m[i] == values[i] {
				continue
			}
			p, err1 := netip.ParsePrefix(m[i])
			a, err2 := netip.ParseAddr(values[i])
			if err1 != nil || err2 != nil || !p.Contains(a) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// Dimensions lists what each dimension of the set's type holds: ip, port, net, mark, ...
func (s *Set) Dimensions() []string {
	_, dims, _ := strings.Cut(s.Type, ":")
	return strings.Split(dims, ",")
}

// Value formats one dimension of a packet as ipset prints members.
func Value(dim string, addr netip.Addr, proto string, port uint16, bitmap bool) string {
	switch dim {
	case "port":
		if bitmap {
			return strconv.Itoa(int(port))
		}
		return fmt.Sprintf("%s:%d", proto, port)
	}
	return addr.String()
}

// Choice is what IPVS does with a new connection to a virtual server: where it is, how long a
// client sticks to its real server, and each real server it may pick with its share.
type Choice struct {
	// Where names the virtual server as a step shows it ("TCP 10.96.30.10:80 rr"); Addr is its
	// address alone.
	Where, Addr string
	// Persistent is the persistence timeout in seconds, 0 for none, negative for an unknown
	// time (see VirtualServer.Persistent).
	Persistent int
	// Note says what the shares depend on when they are not exact, and that a client sticks to
	// its first real server for a time not known in seconds; empty when neither.
	Note string
	// Picks are the real servers with a share above zero; none means the connection is refused.
	Picks []Pick
}

// Pick is one real server a connection may go to.
type Pick struct {
	Real  *RealServer
	Share float64
	// Action and Note are the step's words for it.
	Action, Note string
}

// Choose is IPVS's decision for a new connection to addr: nil when no virtual server has it. It
// is an error to choose for a virtual server whose real servers were not read.
func (t *Table) Choose(proto string, addr netip.AddrPort) (*Choice, error) {
	vs := t.Find(proto, addr)
	if vs == nil {
		if t.Partial && !t.Looked[Key(proto, addr)] {
			return nil, fmt.Errorf("IPVS virtual server %s %s was not read", strings.ToUpper(proto), addr)
		}
		return nil, nil
	}
	c := &Choice{Where: fmt.Sprintf("%s %s %s", strings.ToUpper(vs.Protocol), vs.Addr, vs.Scheduler), Addr: fmt.Sprint(vs.Addr), Persistent: vs.Persistent}
	shares, exact := vs.Share()
	var notes []string
	if !exact {
		notes = append(notes, fmt.Sprintf("IPVS %s: scheduler %s chooses by %s; the shares shown are the weights", c.Where, vs.Scheduler, DependsOn(vs.Scheduler)))
	}
	if vs.Persistent < 0 {
		notes = append(notes, fmt.Sprintf("IPVS %s is persistent (session affinity): a client's later connections go to the real server of its first, for a time this input does not give in seconds (/proc/net/ip_vs prints it in kernel ticks)", c.Where))
	}
	c.Note = strings.Join(notes, "; ")
	for i, s := range shares {
		if s <= 0 {
			continue
		}
		rs := vs.Reals[i]
		p := Pick{Real: rs, Share: s, Action: fmt.Sprintf("DNAT to %s (%s, weight %d)", rs.Addr, rs.Forward, rs.Weight)}
		if rs.ActiveConn+rs.InActConn > 0 {
			p.Note = fmt.Sprintf("%d active, %d inactive connections now", rs.ActiveConn, rs.InActConn)
		}
		c.Picks = append(c.Picks, p)
	}
	return c, nil
}
