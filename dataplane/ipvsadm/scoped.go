package ipvsadm

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/iptables"
	"github.com/svctrace/svctrace/trace/ipvs"
)

// Scoped is a live IPVS-mode dataplane for walks of a few packets (trace): the iptables rules
// whole (in IPVS mode they are few), and of the rest only what the packets touch, read as the
// walks need it: the virtual server a packet is addressed to with its real servers, and the
// ipset lookups its path makes, each asked of the kernel. On a node with 10,000 Services that
// is a few requests where the whole IPVS table is seconds of /proc/net/ip_vs (or 0.7 s of one
// netlink listing under emulation) and `ipset save` prints 500 KB.
//
// A packet meets IPVS at INPUT with the destination it arrived with (a rule that DNATs it first
// keeps it from IPVS), so the virtual server of its protocol, destination and port is the only
// one its walk can ask for; the table is Partial, so any other is an error of the walk, not a
// guess. Which addresses are the node's own (every virtual server's) is the table's Bound
// addresses, kube-ipvs0's, read once.
type Scoped struct {
	*iptables.Dataplane
	reads ScopedReads
	// mu makes walks one at a time: a walk reads what it misses into the table and the sets.
	mu sync.Mutex
	// Services counts the virtual servers asked for (found or not), Tests the ipset lookups
	// asked of the kernel.
	Services, Tests int
	// Fallback says why every ipset was read whole, when they were.
	Fallback string
}

// ScopedReads are how a Scoped dataplane reads what its walks need.
type ScopedReads struct {
	// Service reads the virtual server of a protocol, address and port with its real servers;
	// nil when there is none.
	Service func(proto string, addr netip.AddrPort) (*ipvs.VirtualServer, error)
	// Member asks whether values form a member of a Partial set (TestMember).
	Member func(set *ipvs.Set, values []string) (bool, error)
	// AllSets reads every ipset whole (`ipset save`): the walks' sets after a Member failed.
	AllSets func() (ipvs.Sets, error)
}

// maxSetRounds bounds the walks of one packet: each round tests what the last walk looked up
// and did not know; a new round is needed only where an answer sent the packet elsewhere.
const maxSetRounds = 16

// NewScoped returns dp, whose sets may be Partial, with a Partial IPVS table of no virtual
// servers yet and the addresses bound to kube-ipvs0, reading what a walk misses with reads.
func NewScoped(dp *iptables.Dataplane, bound []netip.Addr, reads ScopedReads) *Scoped {
	dp.IPVS = &ipvs.Table{Partial: true, Looked: map[string]bool{}, Bound: bound}
	return &Scoped{Dataplane: dp, reads: reads}
}

// Walk implements trace.Dataplane.
func (s *Scoped) Walk(ctx context.Context, p trace.Packet, node *trace.NodeContext) (*trace.Walk, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	proto, addr := p.Protocol.String(), netip.AddrPortFrom(p.Dst, p.DstPort)
	if key := ipvs.Key(proto, addr); !s.IPVS.Looked[key] {
		s.Services++
		vs, err := s.reads.Service(proto, addr)
		if err != nil {
			return nil, err
		}
		if vs != nil {
			s.IPVS.Services = append(s.IPVS.Services, vs)
		}
		s.IPVS.Looked[key] = true
	}
	for round := 0; ; round++ {
		w, err := s.Dataplane.Walk(ctx, p, node)
		var miss *iptables.MissingError
		if !errors.As(err, &miss) {
			return w, err
		}
		if round == maxSetRounds {
			return nil, fmt.Errorf("ipsets: the packet's path still needs lookups not made after %d rounds: %w", maxSetRounds, err)
		}
		if err := s.test(miss.Queries); err != nil {
			if err := s.fallBack(err); err != nil {
				return nil, err
			}
		}
	}
}

// test asks the kernel about each lookup not asked before.
func (s *Scoped) test(queries []iptables.SetQuery) error {
	for _, q := range queries {
		set := s.Sets[q.Set]
		key := strings.Join(q.Values, ",")
		if set == nil || !set.Partial {
			return fmt.Errorf("ipset %s: a lookup of %s in a set that is not read in part", q.Set, key)
		}
		if _, asked := set.Tested[key]; asked {
			continue
		}
		in, err := s.reads.Member(set, q.Values)
		s.Tests++
		if err != nil {
			return fmt.Errorf("ipset test %s %s: %w", q.Set, key, err)
		}
		set.Tested[key] = in
	}
	return nil
}

// fallBack reads every set whole after a failed lookup (a set gone between the listing and the
// test: kube-proxy synced), for this walk and the next.
func (s *Scoped) fallBack(why error) error {
	sets, err := s.reads.AllSets()
	if err != nil {
		return fmt.Errorf("%v; reading every ipset instead failed too: %w", why, err)
	}
	s.Sets, s.Fallback = sets, why.Error()
	return nil
}
