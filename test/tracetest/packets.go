package tracetest

import (
	"net/netip"

	"github.com/svctrace/svctrace/trace"
)

// PacketsTo are packets to every address:port a recorded node programs (a Lister's entries) and
// to the standard scenario's node ports, load balancer and an unused cluster IP, each from a pod,
// the node itself, an allowed and a refused outside client: the walks a scoped read must make as
// a whole ruleset does.
func PacketsTo(entries []trace.Entry) []trace.Packet {
	entries = append(entries,
		trace.Entry{Addr: netip.MustParseAddrPort(NodeIP + ":30080"), Protocol: trace.TCP},
		trace.Entry{Addr: netip.MustParseAddrPort(NodeIP + ":30081"), Protocol: trace.TCP},
		trace.Entry{Addr: netip.MustParseAddrPort(LBIP + ":80"), Protocol: trace.TCP},
		trace.Entry{Addr: netip.MustParseAddrPort("10.96.99.99:80"), Protocol: trace.TCP})
	var pkts []trace.Packet
	for _, e := range entries {
		for _, src := range []struct {
			ip     string
			origin trace.Origin
		}{{ClientPodIP, 0}, {NodeIP, trace.FromLocalProcess}, {ExternalIP, 0}, {"198.51.100.11", 0}} {
			pkts = append(pkts, trace.Packet{Src: netip.MustParseAddr(src.ip), Dst: e.Addr.Addr(), DstPort: e.Addr.Port(), Protocol: e.Protocol, Origin: src.origin})
		}
	}
	return pkts
}
