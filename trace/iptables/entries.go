package iptables

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/kubeproxy/naming"
)

// Entries implements trace.Lister: the destination address and port of every KUBE-SERVICES rule
// (nat: traffic handled; filter: REJECT/DROP for services without usable endpoints), or, in
// IPVS mode, every virtual server.
func (d *Dataplane) Entries() []trace.Entry {
	var out []trace.Entry
	if d.IPVS != nil {
		for _, vs := range d.IPVS.Services {
			p, err := trace.ParseProtocol(vs.Protocol)
			if err == nil && vs.Addr.IsValid() {
				out = append(out, trace.Entry{Addr: vs.Addr, Protocol: p, Where: fmt.Sprintf("IPVS %s %s", strings.ToUpper(vs.Protocol), vs.Addr)})
			}
		}
		return out
	}
	for _, rs := range []*Ruleset{d.V4, d.V6} {
		if rs == nil {
			continue
		}
		for _, table := range []string{"nat", "filter"} {
			t := rs.Tables[table]
			if t == nil || t.Chains["KUBE-SERVICES"] == nil {
				continue
			}
			for _, r := range t.Chains["KUBE-SERVICES"].Rules {
				if !r.Dst.Set || r.Dst.Neg || !r.DPort.Set || r.DPort.Lo != r.DPort.Hi || r.Proto == 0 || r.Dst.Prefix.Bits() != r.Dst.Prefix.Addr().BitLen() {
					continue
				}
				name := naming.RuleComment(r.Text)
				for _, suffix := range []string{" cluster IP", " external IP", " loadbalancer IP", " has no endpoints", " has no local endpoints"} {
					name = strings.TrimSuffix(name, suffix)
				}
				out = append(out, trace.Entry{Addr: netip.AddrPortFrom(r.Dst.Prefix.Addr(), r.DPort.Lo), Protocol: trace.Protocol(r.Proto),
					Where: fmt.Sprintf("%s KUBE-SERVICES line %d", table, r.Line), Name: name})
			}
		}
	}
	return out
}

// serviceChainPrefixes are the chains kube-proxy creates per Service port or endpoint, in any
// layout it ever wrote.
var serviceChainPrefixes = append(append([]string(nil), naming.ServiceChainPrefixes...), naming.OldLocalChainPrefix)

// OrphanChains lists kube-proxy's per-service chains in the nat table that no rule jumps to:
// left over from deleted Services or endpoints until kube-proxy's next cleanup.
func (d *Dataplane) OrphanChains() []string {
	var out []string
	for _, rs := range []*Ruleset{d.V4, d.V6} {
		if rs == nil || rs.Tables["nat"] == nil {
			continue
		}
		t := rs.Tables["nat"]
		used := map[*Chain]bool{}
		for _, c := range t.Order {
			for _, r := range c.Rules {
				if r.JumpChain != nil {
					used[r.JumpChain] = true
				}
			}
		}
		for _, c := range t.Order {
			for _, p := range serviceChainPrefixes {
				if strings.HasPrefix(c.Name, p) && !used[c] {
					out = append(out, c.Name)
				}
			}
		}
	}
	return out
}

// RuleCounters returns the packet and byte counters of the rule on a dump line (iptables-save -c).
// For a DNAT rule they count new connections: only a connection's first packet traverses nat.
func (d *Dataplane) RuleCounters(line int) (Counters, bool) {
	for _, rs := range []*Ruleset{d.V4, d.V6} {
		if rs == nil || !rs.Counters {
			continue
		}
		if r, ok := rs.RuleAt(line); ok && r.HasCounters {
			return r.Counters, true
		}
	}
	return Counters{}, false
}

// HopPackets implements trace.HopCounter.
func (d *Dataplane) HopPackets(h *trace.Hop) (uint64, bool) {
	if h.Line <= 0 {
		return 0, false
	}
	c, ok := d.RuleCounters(h.Line)
	return c.Packets, ok
}
