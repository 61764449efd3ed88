package ipvsadm

import (
	"context"
	"net/netip"
	"sync"

	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/iptables"
	"github.com/svctrace/svctrace/trace/ipvs"
)

// Scoped is a live IPVS-mode dataplane for walks of a few packets (trace): the iptables rules and
// the ipsets whole, every virtual server from one netlink listing, and the real servers of only
// the virtual servers the packets are addressed to, read before each walk. On a node with 10,000
// Services that is one request per packet where the whole table is seconds of /proc/net/ip_vs.
//
// A packet meets IPVS at INPUT with the destination it arrived with (a rule that DNATs it first
// keeps it from IPVS), so the virtual server of its protocol, destination and port is the only
// one its walk can ask for; any other is an error of the walk, not a guess.
type Scoped struct {
	*iptables.Dataplane
	// reals reads a virtual server's real servers into it (and clears Unread).
	reals func(vs *ipvs.VirtualServer) error
	// mu makes walks one at a time: a walk may fill a virtual server the next one reads.
	mu sync.Mutex
	// Reads counts the real-server reads made.
	Reads int
}

// NewScoped returns dp (whose IPVS table lists virtual servers with Unread real servers) reading
// the real servers of a walked packet's virtual server with reals first.
func NewScoped(dp *iptables.Dataplane, reals func(vs *ipvs.VirtualServer) error) *Scoped {
	return &Scoped{Dataplane: dp, reals: reals}
}

// Walk implements trace.Dataplane.
func (s *Scoped) Walk(ctx context.Context, p trace.Packet, node *trace.NodeContext) (*trace.Walk, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if vs := s.IPVS.Find(p.Protocol.String(), netip.AddrPortFrom(p.Dst, p.DstPort)); vs != nil && vs.Unread {
		s.Reads++
		if err := s.reals(vs); err != nil {
			return nil, err
		}
	}
	return s.Dataplane.Walk(ctx, p, node)
}
