package trace

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// StaleFlow is the finding kind for tracked connections still translated to a backend that is
// no longer a serving endpoint of the Service port they were sent to.
const StaleFlow = "StaleFlow"

// StaleTCPNote starts a repair plan's note on the stale TCP flows it leaves alone.
const StaleTCPNote = "stale TCP flows left alone"

// maxFlowClients bounds the client addresses a StaleFlow finding lists.
const maxFlowClients = 5

// StaleFlows is the detail of a StaleFlow finding: the conntrack entries of one Service address
// whose replies come from one former endpoint.
type StaleFlows struct {
	Protocol string `json:"protocol"`
	// Dst is the address and port the clients sent to (cluster IP, node address and node port,
	// load-balancer or external IP); Backend is where conntrack still translates it.
	Dst     string `json:"dst"`
	Backend string `json:"backend"`
	// Pod is the pod that had the backend address, when the API still has it; Terminating says
	// it is being deleted.
	Pod         *PodRef `json:"pod,omitempty"`
	Terminating bool    `json:"terminating,omitempty"`
	Entries     int     `json:"entries"`
	// Established and Closing count TCP entries by state (long-lived, or on their way out).
	Established int `json:"established,omitempty"`
	Closing     int `json:"closing,omitempty"`
	// Clients are the first few client addresses, sorted; Zone is the conntrack zone (0 is the
	// default).
	Clients []string `json:"clients"`
	Zone    uint16   `json:"zone,omitempty"`
}

// closingStates are TCP states of a connection being torn down.
var closingStates = map[string]bool{"FIN_WAIT": true, "CLOSE_WAIT": true, "LAST_ACK": true, "TIME_WAIT": true, "CLOSE": true}

// CheckFlows joins a node's conntrack table with the API: every group of entries (Service
// address, protocol, zone, backend) whose backend is not a serving endpoint of the Service port
// now is one StaleFlow finding. Like kube-proxy's own conntrack cleanup, it ignores traffic
// policies and topology (a change of those does not break existing flows) and counts serving
// terminating endpoints as current. Entries to a backend the dataplane still programs for that
// address are left to the stale-rule findings (StaleEndpoint): the rules, not only the flows,
// are wrong there. Entries that were not translated, or whose destination no Service has, are
// not Service traffic and are skipped.
func CheckFlows(ctx context.Context, dp Dataplane, cl *Cluster, node *NodeContext, scope CheckScope, conns []Conn) ([]Finding, error) {
	local := map[netip.Addr]bool{}
	for _, a := range node.Local {
		local[a] = true
	}
	type key struct {
		dst     netip.AddrPort
		proto   Protocol
		zone    uint16
		backend netip.AddrPort
	}
	type group struct {
		ref     *ServiceRef
		entries []Conn
	}
	groups := map[key]*group{}
	// serving caches each Service port's serving endpoints, by address family.
	serving := map[string]map[netip.AddrPort]bool{}
	for _, c := range conns {
		if !c.Backend.IsValid() || !c.Dst.IsValid() || c.Backend == c.Dst {
			continue
		}
		dst := c.Dst.Addr()
		m := cl.Lookup(dst, c.Dst.Port(), c.Protocol, local[dst] || dst.IsLoopback())
		if m == nil || !scope.has(m.Service) {
			continue
		}
		ref := &ServiceRef{Namespace: m.Service.Namespace, Name: m.Service.Name, Port: m.Port.Name, Type: string(m.Kind)}
		sk := ref.String() + "/" + c.Protocol.String()
		if dst.Is4() {
			sk += "/4"
		}
		set, ok := serving[sk]
		if !ok {
			set = map[netip.AddrPort]bool{}
			for _, e := range sameFamily(cl.Endpoints(m.Service, m.Port), dst) {
				if e.Ready || e.Serving {
					set[e.Addr] = true
				}
			}
			serving[sk] = set
		}
		if set[c.Backend] {
			continue
		}
		k := key{c.Dst, c.Protocol, c.Zone, c.Backend}
		g := groups[k]
		if g == nil {
			g = &group{ref: ref}
			groups[k] = g
		}
		g.entries = append(g.entries, c)
	}
	keys := make([]key, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if c := a.dst.Compare(b.dst); c != 0 {
			return c < 0
		}
		if a.proto != b.proto {
			return a.proto < b.proto
		}
		if a.zone != b.zone {
			return a.zone < b.zone
		}
		return a.backend.Compare(b.backend) < 0
	})
	// programmed caches, per Service address, the backends the dataplane sends new connections
	// to (walked once, from the first stale entry's client).
	programmed := map[key]map[netip.AddrPort]bool{}
	var out []Finding
	for _, k := range keys {
		g := groups[k]
		pk := key{dst: k.dst, proto: k.proto}
		set, ok := programmed[pk]
		if !ok {
			c := g.entries[0]
			pkt := Packet{Src: c.Client, SrcPort: c.ClientPort, Dst: k.dst.Addr(), DstPort: k.dst.Port(), Protocol: k.proto}
			if local[c.Client] || c.Client.IsLoopback() {
				pkt.Origin = FromLocalProcess
			}
			w, err := dp.Walk(ctx, pkt, node)
			if err != nil {
				return nil, err
			}
			set = map[netip.AddrPort]bool{}
			for _, p := range w.Paths {
				if p.Verdict.Kind == DNAT {
					set[p.Verdict.Backend] = true
				}
			}
			programmed[pk] = set
		}
		if set[k.backend] {
			continue
		}
		out = append(out, staleFlowFinding(cl, node.Name, g.ref, k.dst, k.proto, k.zone, k.backend, g.entries))
	}
	return out, nil
}

// staleFlowFinding describes one group of stale entries.
func staleFlowFinding(cl *Cluster, nodeName string, ref *ServiceRef, dst netip.AddrPort, proto Protocol, zone uint16, backend netip.AddrPort, entries []Conn) Finding {
	d := &StaleFlows{Protocol: proto.String(), Dst: dst.String(), Backend: backend.String(), Entries: len(entries), Zone: zone}
	clients := map[netip.Addr]bool{}
	for _, c := range entries {
		clients[c.Client] = true
		switch {
		case c.State == "ESTABLISHED":
			d.Established++
		case closingStates[c.State]:
			d.Closing++
		}
	}
	all := make([]netip.Addr, 0, len(clients))
	for a := range clients {
		all = append(all, a)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Less(all[j]) })
	for i, a := range all {
		if i == maxFlowClients {
			break
		}
		d.Clients = append(d.Clients, a.String())
	}
	was := "which is no longer an endpoint"
	if p := cl.PodByIP(backend.Addr()); p != nil {
		d.Pod = &PodRef{Namespace: p.Namespace, Name: p.Name}
		d.Terminating = p.DeletionTimestamp != nil
		if d.Terminating {
			was = fmt.Sprintf("which pod %s/%s had; it is terminating and no longer serving", p.Namespace, p.Name)
		} else {
			was = fmt.Sprintf("of pod %s/%s, which is no longer a serving endpoint", p.Namespace, p.Name)
		}
	}
	sev := SeverityError
	state := ""
	if proto == TCP {
		state = fmt.Sprintf(" (%d established, %d closing)", d.Established, d.Closing)
		if d.Established == 0 {
			// Closing or half-open: they time out on their own.
			sev = SeverityInfo
		}
	}
	more := ""
	if len(all) > maxFlowClients {
		more = fmt.Sprintf(" and %d more", len(all)-maxFlowClients)
	}
	how := "`svctrace repair` deletes them"
	if proto == TCP {
		how = "`svctrace repair --stale-tcp` deletes them (the clients see their connections reset or time out, as they would once the entries expire)"
	}
	msg := fmt.Sprintf("%d %s flow(s)%s to %s are still translated to %s, %s; conntrack keeps each pinned there while its client keeps sending (clients %s%s); %s",
		len(entries), strings.ToUpper(proto.String()), state, dst, backend, was, strings.Join(d.Clients, ", "), more, how)
	var ev []string
	for i, c := range entries {
		if i == maxFlowClients {
			break
		}
		ev = append(ev, c.String())
	}
	return Finding{Kind: StaleFlow, Severity: sev, Service: ref.String(), Node: nodeName, Message: msg, Evidence: ev, Flows: d}
}

// String renders a connection as conntrack shows its two tuples, shortened.
func (c Conn) String() string {
	s := fmt.Sprintf("conntrack %s %s -> %s => %s", c.Protocol, netip.AddrPortFrom(c.Client, c.ClientPort), c.Dst, c.Backend)
	if c.State != "" {
		s += " " + c.State
	}
	if c.Zone != 0 {
		s += fmt.Sprintf(" zone=%d", c.Zone)
	}
	return s
}

// AddStaleFlows adds to the plan the deletion of every StaleFlow finding's entries: UDP and SCTP,
// and TCP only when tcp is set (a TCP client learns of a dead peer on its own; deleting its entry
// resets what might still be a working connection, so that takes an explicit choice). A flush the
// plan already has (its rules repair removes the same endpoint) is not added twice. TCP flows left
// out are named in a note.
func (p *RepairPlan) AddStaleFlows(findings []Finding, tcp bool) {
	// A planned flush covers the same entries when it names the same zone or none (any zone).
	type key struct {
		proto, dst, backend string
		zone                int
	}
	have := map[key]bool{}
	anyZone := map[key]bool{}
	for _, f := range p.Conntrack {
		if f.Zone == nil {
			anyZone[key{f.Protocol, f.Dst, f.Backend, 0}] = true
		} else {
			have[key{f.Protocol, f.Dst, f.Backend, int(*f.Zone)}] = true
		}
	}
	var leftTCP []string
	for _, f := range findings {
		d := f.Flows
		if f.Kind != StaleFlow || d == nil {
			continue
		}
		backend, err := netip.ParseAddrPort(d.Backend)
		if err != nil {
			continue
		}
		if d.Protocol == "tcp" && !tcp {
			leftTCP = append(leftTCP, fmt.Sprintf("%d to %s via %s", d.Entries, d.Dst, d.Backend))
			continue
		}
		k := key{d.Protocol, d.Dst, backend.Addr().String(), int(d.Zone)}
		if have[k] || anyZone[key{k.proto, k.dst, k.backend, 0}] {
			continue
		}
		have[k] = true
		zone := d.Zone
		p.Conntrack = append(p.Conntrack, ConntrackFlush{Protocol: d.Protocol, Dst: d.Dst, Backend: backend.Addr().String(),
			BackendPort: backend.Port(), Zone: &zone, Entries: d.Entries})
		p.Changes = append(p.Changes, RepairChange{Service: f.Service, Op: "flush-conntrack",
			Detail: fmt.Sprintf("delete %d stale %s conntrack entr%s to %s translated to %s (clients %s)", d.Entries, d.Protocol, plural(d.Entries, "y", "ies"), d.Dst, d.Backend, strings.Join(d.Clients, ", "))})
	}
	if len(leftTCP) > 0 {
		p.Notes = append(p.Notes, fmt.Sprintf("%s (--stale-tcp deletes them): %s", StaleTCPNote, strings.Join(leftTCP, "; ")))
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
