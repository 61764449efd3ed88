package kubeproxy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/iptables"
	"github.com/svctrace/svctrace/trace/ipvs"
)

// PlanIPVS computes the netlink operations that make the real servers of the node's virtual
// servers those kube-proxy's IPVS mode would choose now, for the Services in scope: a stale real
// server goes to weight 0 (no new connections) and is deleted once idle (UDP at once), missing
// ones are added with weight 1, wrong weights are set. Virtual servers of Services the API no
// longer has lose their real servers the same way (scope: everything). Nothing is flushed and no
// virtual server is created or deleted: those also need kube-ipvs0 addresses and ipset entries,
// which are kube-proxy's.
func PlanIPVS(d *iptables.Dataplane, cl *trace.Cluster, node *trace.NodeContext, scope trace.CheckScope) (*trace.RepairPlan, error) {
	plan := &trace.RepairPlan{APIVersion: trace.APIVersion, Kind: "RepairPlan", Node: node.Name, Mode: d.Mode(), Changes: []trace.RepairChange{}, Services: []string{}}
	if d.IPVS == nil {
		return nil, fmt.Errorf("internal: PlanIPVS is for IPVS mode")
	}
	type owner struct {
		port     *ServicePort
		external bool
	}
	owners := map[string]owner{}
	key := func(proto string, a netip.AddrPort) string { return proto + " " + a.String() }
	nodePorts := map[string]owner{}
	for _, p := range ServicePorts(cl, node.Name) {
		owners[key(p.Protocol, netip.AddrPortFrom(p.ClusterIP, uint16(p.Port)))] = owner{p, false}
		for _, a := range append(append([]netip.Addr(nil), p.ExternalIPs...), p.LoadBalancerIPs...) {
			owners[key(p.Protocol, netip.AddrPortFrom(a, uint16(p.Port)))] = owner{p, true}
		}
		if p.NodePort != 0 {
			nodePorts[fmt.Sprintf("%s %d", p.Protocol, p.NodePort)] = owner{p, true}
		}
	}
	touched := map[string]bool{}
	vss := append([]*ipvs.VirtualServer(nil), d.IPVS.Services...)
	sort.Slice(vss, func(i, j int) bool { return key(vss[i].Protocol, vss[i].Addr) < key(vss[j].Protocol, vss[j].Addr) })
	for _, vs := range vss {
		if vs.FWMark != 0 {
			continue
		}
		o, ok := owners[key(vs.Protocol, vs.Addr)]
		if !ok && node.IsLocal(vs.Addr.Addr()) {
			o, ok = nodePorts[fmt.Sprintf("%s %d", vs.Protocol, vs.Addr.Port())]
		}
		var want []string
		name := ""
		if ok {
			ns, rest, _ := strings.Cut(o.port.Name, "/")
			svc, _, _ := strings.Cut(rest, ":")
			if !scope.Has(ns, svc) {
				continue
			}
			name = o.port.Name
			local := o.port.InternalLocal
			if o.external {
				local = o.port.ExternalLocal
			}
			// kube-proxy's IPVS syncEndpoint: node-local endpoints when the policy is Local and
			// there are some, else the cluster's (kubernetes#97081).
			want = o.port.Cluster
			if local && len(o.port.Local) > 0 {
				want = o.port.Local
			}
		} else if scope != (trace.CheckScope{}) {
			continue // a virtual server of no Service: only a whole-node repair touches it
		} else {
			name = vs.Protocol + " " + vs.Addr.String()
		}
		wanted := map[string]bool{}
		for _, w := range want {
			wanted[w] = true
		}
		have := map[string]*ipvs.RealServer{}
		for _, rs := range vs.Reals {
			have[rs.Addr.String()] = rs
		}
		add := func(op, real string, weight int, idle bool, detail string) {
			plan.IPVS = append(plan.IPVS, trace.IPVSOp{Op: op, Protocol: vs.Protocol, Virtual: vs.Addr.String(), Real: real, Weight: weight, WhenIdle: idle})
			plan.Changes = append(plan.Changes, trace.RepairChange{Service: name, Op: op, Detail: detail})
			touched[name] = true
		}
		for _, rs := range vs.Reals {
			r := rs.Addr.String()
			if wanted[r] {
				if rs.Weight != 1 {
					add("set-weight", r, 1, false, fmt.Sprintf("%s %s: real server %s weight %d -> 1", vs.Protocol, vs.Addr, r, rs.Weight))
				}
				continue
			}
			if vs.Protocol == "udp" {
				add("delete-real", r, 0, false, fmt.Sprintf("%s %s: delete real server %s", vs.Protocol, vs.Addr, r))
				plan.Conntrack = append(plan.Conntrack, trace.ConntrackFlush{Protocol: "udp", Dst: vs.Addr.String(), Backend: rs.Addr.Addr().String()})
				plan.Changes = append(plan.Changes, trace.RepairChange{Service: name, Op: "flush-conntrack", Detail: fmt.Sprintf("delete UDP conntrack entries to %s that were sent to %s", vs.Addr, rs.Addr.Addr())})
				continue
			}
			if rs.Weight != 0 {
				add("set-weight", r, 0, false, fmt.Sprintf("%s %s: real server %s weight %d -> 0 (no new connections)", vs.Protocol, vs.Addr, r, rs.Weight))
			}
			add("delete-real", r, 0, true, fmt.Sprintf("%s %s: delete real server %s once it has no connections (now %d active, %d inactive)", vs.Protocol, vs.Addr, r, rs.ActiveConn, rs.InActConn))
		}
		for _, w := range want {
			if have[w] == nil {
				add("add-real", w, 1, false, fmt.Sprintf("%s %s: add real server %s, weight 1", vs.Protocol, vs.Addr, w))
			}
		}
	}
	for n := range touched {
		plan.Services = append(plan.Services, n)
	}
	sort.Strings(plan.Services)
	if !plan.Empty() {
		plan.Notes = append(plan.Notes, "kube-proxy owns these virtual servers: its next sync sets their real servers from the API again (and, with the same API, sets the same)")
	}
	return plan, nil
}
