package nftables

import (
	"net/netip"
	"strings"

	"github.com/svctrace/svctrace/trace"
)

// Entries implements trace.Lister: the keys of kube-proxy's service-ips and no-endpoint-services
// maps (address . protocol . port).
func (d *Dataplane) Entries() []trace.Entry {
	var out []trace.Entry
	for _, t := range d.Rules.Tables {
		if t.Name != "kube-proxy" {
			continue
		}
		for _, m := range []string{"service-ips", "no-endpoint-services"} {
			s := t.Sets[m]
			if s == nil {
				continue
			}
			for _, e := range s.Elems {
				key := e.Key
				if mm, ok := key.(map[string]any); ok {
					key = mm["concat"]
				}
				parts, ok := key.([]any)
				if !ok || len(parts) != 3 {
					continue
				}
				ip, _ := parts[0].(string)
				proto, _ := parts[1].(string)
				port, _ := parts[2].(float64)
				a, err1 := netip.ParseAddr(ip)
				p, err2 := trace.ParseProtocol(proto)
				if err1 != nil || err2 != nil {
					continue
				}
				name := e.Comment
				if target, ok := strings.CutPrefix(FormatExpr(e.Data), "goto "); ok {
					if ref := trace.ServiceFromNftChain(target); ref != nil {
						name = ref.String()
					}
				}
				out = append(out, trace.Entry{Addr: netip.AddrPortFrom(a, uint16(port)), Protocol: p, Where: t.Family + " kube-proxy map " + m, Name: name})
			}
		}
	}
	return out
}
