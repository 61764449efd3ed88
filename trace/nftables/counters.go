package nftables

import (
	"strconv"
	"strings"

	"github.com/svctrace/svctrace/trace"
)

// HopPackets implements trace.HopCounter: the packets counted by a `counter` statement in the rule
// the hop names (its table, chain and "# handle N"). kube-proxy writes no counters; rules that an
// operator or another version added them to are read.
func (d *Dataplane) HopPackets(h *trace.Hop) (uint64, bool) {
	i := strings.LastIndex(h.Rule, " # handle ")
	if i < 0 {
		return 0, false
	}
	handle, err := strconv.Atoi(h.Rule[i+len(" # handle "):])
	if err != nil {
		return 0, false
	}
	for _, t := range d.Rules.Tables {
		if t.Family+" "+t.Name != h.Table {
			continue
		}
		c := t.Chains[h.Chain]
		if c == nil {
			return 0, false
		}
		for _, r := range c.Rules {
			if r.Handle != handle {
				continue
			}
			for _, s := range r.Exprs {
				if m, ok := s["counter"].(map[string]any); ok {
					if p, ok := m["packets"].(float64); ok {
						return uint64(p), true
					}
				}
			}
			return 0, false
		}
	}
	return 0, false
}
