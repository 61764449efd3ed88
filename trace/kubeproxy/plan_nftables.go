package kubeproxy

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/kubeproxy/naming"
	"github.com/svctrace/svctrace/trace/nftables"
)

// IsNftServiceChain reports whether a chain of kube-proxy's table is one of its per-Service
// chains: kube-proxy's own test (only they have a "/" in their names).
func IsNftServiceChain(name string) bool { return strings.Contains(name, "/") }

// NodeNftObjects reads kube-proxy's per-Service objects out of the node's table. Bad lists the
// chains and elements it could not render in nft's syntax: repair never writes those back.
func NodeNftObjects(t *nftables.Table) (*NftObjects, []string) {
	o := NewNftObjects()
	var bad []string
	for name, c := range t.Chains {
		if !IsNftServiceChain(name) {
			continue
		}
		rules := make([]string, 0, len(c.Rules))
		for _, r := range c.Rules {
			text, ok := nftables.CanonRule(r)
			if !ok {
				bad = append(bad, fmt.Sprintf("chain %s: %s", name, text))
			}
			rules = append(rules, text)
		}
		o.Chains[name] = rules
		o.Owner[name] = nftChainOwner(name)
	}
	for name, s := range t.Sets {
		if strings.HasPrefix(name, "affinity-") {
			o.Affinity[name] = s.Timeout
			o.Owner[name] = nftChainOwner(name)
		}
	}
	for _, cn := range NftContainers {
		s := t.Sets[cn]
		if s == nil {
			continue
		}
		for _, e := range s.Elems {
			k, v, ok := nftables.CanonElem(e)
			if !ok {
				bad = append(bad, fmt.Sprintf("%s element %s", cn, k))
				continue
			}
			owner := e.Comment
			if target, ok := strings.CutPrefix(v, "goto "); ok && IsNftServiceChain(target) {
				owner = nftChainOwner(target)
			}
			o.elem(cn, k, v, owner, e.Comment)
		}
	}
	// A cluster IP belongs to the Service whose addresses the maps send somewhere (the first of
	// its keys in order: the same owner on every read).
	for _, cn := range []string{NftServiceIPs, NftNoEndpointServices} {
		for _, k := range unionKeys(o.Elems[cn], nil) {
			ip, _, _ := strings.Cut(k, " . ")
			if _, ok := o.Elems[NftClusterIPs][ip]; ok && o.Owner[ElemID(NftClusterIPs, ip)] == "" {
				o.Owner[ElemID(NftClusterIPs, ip)] = o.Owner[ElemID(cn, k)]
			}
		}
	}
	o.ownHairpins()
	sort.Strings(bad)
	return o, bad
}

// ownHairpins records who claims the hairpin set's elements (a local endpoint's address twice,
// protocol and port): the Service ports whose endpoint chains send to that endpoint.
func (o *NftObjects) ownHairpins() {
	elems := o.Elems[NftHairpin]
	if len(elems) == 0 {
		return
	}
	for owner, backends := range nftOldBackends(o) {
		for _, b := range backends {
			ap, err := netip.ParseAddrPort(b.ep)
			if err != nil {
				continue
			}
			key := hairpinKey(ap, b.proto)
			if _, ok := elems[key]; ok {
				id := ElemID(NftHairpin, key)
				o.Claims[id] = append(o.Claims[id], owner)
			}
		}
	}
	for id := range o.Claims {
		sort.Strings(o.Claims[id])
	}
}

// nftChainOwner is the Service port ("ns/name:port") a per-Service chain or set is named after.
func nftChainOwner(name string) string {
	if rest, ok := strings.CutPrefix(name, "affinity-"); ok {
		name = "endpoint-" + rest
	}
	ns, svc, port, ok := naming.NftChainService(name)
	if !ok {
		return ""
	}
	if port != "" {
		return ns + "/" + svc + ":" + port
	}
	return ns + "/" + svc
}

// DetectNftLayout reads what kube-proxy's per-Service rules depend on off its table: the
// masquerade mark (the masquerading chain) and the local-traffic detector (the cluster IPs'
// masquerade rule, or a Local-policy Service's "short-circuit pod traffic" rule).
func DetectNftLayout(t *nftables.Table, node *trace.NodeContext) (NftLayout, error) {
	l := NftLayout{Family: t.Family}
	for _, name := range []string{"masquerading", "services", "service-endpoints-check"} {
		if t.Chains[name] == nil {
			return l, fmt.Errorf("kube-proxy's chain %s is missing from the %s kube-proxy table: kube-proxy has not set this node up; restart it rather than repair single Services", name, t.Family)
		}
	}
	for _, r := range t.Chains["masquerading"].Rules {
		text, _ := nftables.CanonRule(r)
		var mark uint32
		if _, err := fmt.Sscanf(text, "meta mark & 0x%x != 0x00000000", &mark); err == nil && mark != 0 {
			l.MasqueradeMark = mark
			break
		}
	}
	if l.MasqueradeMark == 0 {
		return l, fmt.Errorf("the masquerading chain of the %s kube-proxy table has no masquerade-mark rule svctrace knows", t.Family)
	}
	detector := ""
	for _, r := range t.Chains["services"].Rules {
		if r.Comment != "masquerade clusterIP traffic from outside cluster" {
			continue
		}
		text, _ := nftables.CanonRule(r)
		rest, ok := strings.CutPrefix(text, l.Family+" daddr @cluster-ips ")
		cond, _, ok2 := strings.Cut(rest, " meta mark set ")
		if !ok || !ok2 || !strings.Contains(cond, " != ") {
			return l, fmt.Errorf("this kube-proxy detects local traffic in a way svctrace cannot reproduce (%q)", text)
		}
		detector = strings.Replace(cond, " != ", " ", 1)
	}
	if detector == "" {
		names := make([]string, 0, len(t.Chains))
		for name := range t.Chains {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if !strings.HasPrefix(name, "external-") {
				continue
			}
			for _, r := range t.Chains[name].Rules {
				if r.Comment == "short-circuit pod traffic" && detector == "" {
					text, _ := nftables.CanonRule(r)
					detector, _, _ = strings.Cut(text, " goto ")
				}
			}
		}
	}
	l.LocalMatch = detector
	for _, a := range node.Local {
		if a.Is4() == (l.Family == "ip") && !a.IsLoopback() {
			l.NodeIP = a
			break
		}
	}
	return l, nil
}

// planNftFamily computes one family's change: what differs between the node's objects and
// kube-proxy's for the Services in scope (and those the API no longer has).
func planNftFamily(plan *trace.RepairPlan, t *nftables.Table, cl *trace.Cluster, node *trace.NodeContext, scope trace.CheckScope) error {
	layout, err := DetectNftLayout(t, node)
	if err != nil {
		return err
	}
	want := NewNftObjects()
	ports := map[string]*ServicePort{}
	localPolicy := false
	for _, p := range FamilyPorts(cl, node.Name, t.Family == "ip6") {
		want.AddNftService(p, layout)
		ports[p.Name] = p
		localPolicy = localPolicy || p.ExternalLocal && p.HasEndpoints && p.externallyAccessible()
	}
	if layout.LocalMatch == "" && localPolicy {
		plan.Notes = append(plan.Notes, fmt.Sprintf("the %s table shows no local-traffic detector (none configured, or --masquerade-all with no Local-policy Service before): Local-policy external chains are written without the pod short-circuit", t.Family))
	}
	have, bad := NodeNftObjects(t)
	all := scope.Namespace == "" && scope.Name == ""
	// A hairpin element belongs, for this plan, to the first Service port in scope whose endpoint
	// chains send to it (a replaced pod's element goes with its Service's repair), and to none
	// when no such port is in scope: the same whether the node was read whole or for the scope.
	for id, claims := range have.Claims {
		for _, c := range claims {
			if ns, name, _ := strings.Cut(ServiceOf(c), "/"); scope.Has(ns, name) {
				have.Owner[id] = c
				break
			}
		}
	}
	inScope := func(id string) bool {
		owner, ok := want.Owner[id]
		if !ok {
			owner = have.Owner[id]
		}
		if owner == "" {
			return all
		}
		ns, rest, _ := strings.Cut(ServiceOf(owner), "/")
		return scope.Has(ns, rest)
	}
	touched := map[string]bool{}
	note := func(id string) {
		owner, ok := want.Owner[id]
		if !ok {
			owner = have.Owner[id]
		}
		if owner != "" {
			touched[owner] = true
		}
	}
	var change trace.NftChange
	change.Family = t.Family
	first := len(plan.Changes)
	// People read the changes by Service: chains, sets, then elements of each.
	defer func() {
		mine := plan.Changes[first:]
		sort.SliceStable(mine, func(i, j int) bool { return mine[i].Service < mine[j].Service })
	}()
	where := t.Family + " kube-proxy"

	// Chains.
	for _, name := range unionKeys(want.Chains, have.Chains) {
		if !inScope(name) {
			continue
		}
		after, keep := want.Chains[name]
		before, existed := have.Chains[name]
		if keep && existed && slices.Equal(before, after) {
			continue
		}
		for _, b := range bad {
			if strings.HasPrefix(b, "chain "+name+": ") {
				return fmt.Errorf("refusing to rewrite %s: it holds a rule svctrace cannot write back (%s)", name, strings.TrimPrefix(b, "chain "+name+": "))
			}
		}
		change.Before.Chains = append(change.Before.Chains, trace.ChainRules{Chain: name, Exists: existed, Rules: nonNil(before)})
		change.After.Chains = append(change.After.Chains, trace.ChainRules{Chain: name, Exists: keep, Rules: nonNil(after)})
		plan.Changes = append(plan.Changes, describeChange(where, name, ownerOf(want, have, name), before, existed, after, keep)...)
		note(name)
	}
	// Affinity sets.
	for _, name := range unionKeys(want.Affinity, have.Affinity) {
		if !inScope(name) {
			continue
		}
		after, keep := want.Affinity[name]
		before, existed := have.Affinity[name]
		if keep == existed && after == before {
			continue
		}
		change.Before.Sets = append(change.Before.Sets, trace.NftSet{Name: name, Exists: existed, Timeout: before})
		change.After.Sets = append(change.After.Sets, trace.NftSet{Name: name, Exists: keep, Timeout: after})
		op, detail := "add-set", fmt.Sprintf("create affinity set %s (timeout %ds)", name, after)
		if !keep {
			op, detail = "delete-set", "delete affinity set "+name
		} else if existed {
			op, detail = "add-set", fmt.Sprintf("recreate affinity set %s with timeout %ds (was %ds)", name, after, before)
		}
		plan.Changes = append(plan.Changes, trace.RepairChange{Service: ownerOf(want, have, name), Op: op, Table: where, Detail: detail})
		note(name)
	}
	// Elements.
	for _, cn := range NftContainers {
		for _, key := range unionKeys(want.Elems[cn], have.Elems[cn]) {
			id := ElemID(cn, key)
			if !inScope(id) {
				continue
			}
			after, keep := want.Elems[cn][key]
			before, existed := have.Elems[cn][key]
			if keep == existed && after == before {
				continue
			}
			change.Before.Elements = append(change.Before.Elements, trace.NftElement{Set: cn, Key: key, Exists: existed, Value: before, Comment: have.Comments[cn][key]})
			change.After.Elements = append(change.After.Elements, trace.NftElement{Set: cn, Key: key, Exists: keep, Value: after, Comment: want.Comments[cn][key]})
			if existed {
				plan.Changes = append(plan.Changes, trace.RepairChange{Service: ownerOf(want, have, id), Op: "delete-element", Table: where, Chain: cn, Detail: elemText(key, before)})
			}
			if keep {
				plan.Changes = append(plan.Changes, trace.RepairChange{Service: ownerOf(want, have, id), Op: "add-element", Table: where, Chain: cn, Detail: elemText(key, after)})
			}
			note(id)
		}
	}
	if len(change.Before.Chains)+len(change.Before.Sets)+len(change.Before.Elements) > 0 {
		plan.Nftables = append(plan.Nftables, change)
	}

	// UDP conntrack entries of the endpoints the node sends to and the API no longer has.
	old := nftOldBackends(have)
	var owners []string
	for o := range old {
		owners = append(owners, o)
	}
	sort.Strings(owners)
	for _, o := range owners {
		ns, rest, _ := strings.Cut(ServiceOf(o), "/")
		if !scope.Has(ns, rest) {
			continue
		}
		p := ports[o]
		for _, ob := range old[o] {
			if ob.proto != "udp" || p != nil && slices.Contains(p.Reachable, ob.ep) {
				continue
			}
			ip, _, _ := strings.Cut(ob.ep, ":")
			if ap, err := netip.ParseAddrPort(ob.ep); err == nil {
				ip = ap.Addr().String()
			}
			for _, dst := range nftUDPAddresses(p, o, have) {
				plan.Conntrack = append(plan.Conntrack, trace.ConntrackFlush{Protocol: "udp", Dst: dst, Backend: ip})
				plan.Changes = append(plan.Changes, trace.RepairChange{Service: o, Op: "flush-conntrack", Detail: fmt.Sprintf("delete UDP conntrack entries to %s that were sent to %s", dst, ip)})
			}
			touched[o] = true
		}
	}
	for o := range touched {
		if !slices.Contains(plan.Services, o) {
			plan.Services = append(plan.Services, o)
		}
	}
	return nil
}

func ownerOf(want, have *NftObjects, id string) string {
	if o, ok := want.Owner[id]; ok && o != "" {
		return o
	}
	return have.Owner[id]
}

func elemText(key, value string) string {
	if value == "" {
		return key
	}
	return key + " : " + value
}

func unionKeys[V any](a, b map[string]V) []string {
	out := make([]string, 0, len(a)+len(b))
	for k := range a {
		out = append(out, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

type oldBackend struct{ proto, ep string }

var (
	nftMapTarget = regexp.MustCompile(`(\d+) : ([0-9a-fA-F.:]+) \. (\d+)`)
	nftDnatTo    = regexp.MustCompile(`^meta l4proto (\w+) dnat to (\S+)$`)
	nftDnatMap   = regexp.MustCompile(`^meta l4proto (\w+) dnat `)
)

// hairpinKey is the hairpin set's key of a local endpoint.
func hairpinKey(ep netip.AddrPort, proto string) string {
	return fmt.Sprintf("%s . %s . %s . %d", ep.Addr(), ep.Addr(), proto, ep.Port())
}

// nftOldBackends lists, per Service port, the endpoints the node's chains send to now.
func nftOldBackends(have *NftObjects) map[string][]oldBackend {
	out := map[string][]oldBackend{}
	for name, rules := range have.Chains {
		owner := have.Owner[name]
		if owner == "" {
			continue
		}
		for _, r := range rules {
			if m := nftDnatTo.FindStringSubmatch(r); m != nil {
				ep := strings.Trim(m[2], "[]")
				if ap, err := netip.ParseAddrPort(m[2]); err == nil {
					ep = ap.String()
				}
				out[owner] = appendNew(out[owner], oldBackend{m[1], ep})
				continue
			}
			if m := nftDnatMap.FindStringSubmatch(r); m != nil {
				for _, t := range nftMapTarget.FindAllStringSubmatch(r, -1) {
					a, err := netip.ParseAddr(t[2])
					if err != nil {
						continue
					}
					out[owner] = appendNew(out[owner], oldBackend{m[1], netip.AddrPortFrom(a, parseUint16(t[3])).String()})
				}
			}
		}
	}
	return out
}

func appendNew(list []oldBackend, b oldBackend) []oldBackend {
	if slices.Contains(list, b) {
		return list
	}
	return append(list, b)
}

func parseUint16(s string) uint16 {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
		if n > 65535 {
			return 0
		}
	}
	return uint16(n)
}

// nftUDPAddresses are the addresses a UDP port's clients use (conntrack's original destination):
// from the API, or for a port the API no longer has, from the node's map elements that send to it.
func nftUDPAddresses(p *ServicePort, owner string, have *NftObjects) []string {
	if p != nil {
		return udpAddresses(p, owner, nil)
	}
	var out []string
	for _, cn := range []string{NftServiceIPs, NftServiceNodePorts} {
		for k := range have.Elems[cn] {
			if have.Owner[ElemID(cn, k)] != owner {
				continue
			}
			parts := strings.Split(k, " . ")
			switch {
			case cn == NftServiceIPs && len(parts) == 3:
				if a, err := netip.ParseAddr(parts[0]); err == nil {
					out = append(out, netip.AddrPortFrom(a, parseUint16(parts[2])).String())
				}
			case cn == NftServiceNodePorts && len(parts) == 2:
				out = append(out, "*:"+parts[1])
			}
		}
	}
	sort.Strings(out)
	return out
}

// NftOwnerMaps are the shared maps whose elements say which Service they belong to (the chain
// they jump to, or their comment): a plan of some Services reads them whole. The other
// containers, the cluster-IP and hairpin sets, are read by key (NftScopeProbes).
var NftOwnerMaps = []string{NftServiceIPs, NftServiceNodePorts, NftNoEndpointServices, NftNoEndpointNodePorts, NftFirewallIPs}

// NftChainInScope reports whether a per-Service chain or affinity set is named after a Service
// in scope.
func NftChainInScope(name string, scope trace.CheckScope) bool {
	owner := nftChainOwner(name)
	if owner == "" {
		return false
	}
	ns, svc, _ := strings.Cut(ServiceOf(owner), "/")
	return scope.Has(ns, svc)
}

// NftCommentInScope reports whether a map element's comment names a Service port ("ns/name:port",
// as kube-proxy comments the no-endpoint maps' elements) of a Service in scope.
func NftCommentInScope(comment string, scope trace.CheckScope) bool {
	ns, name, ok := strings.Cut(ServiceOf(comment), "/")
	return ok && name != "" && scope.Has(ns, name)
}

// NftScopeProbes names what a plan of the Services in scope needs of a table beyond kube-proxy's
// static chains, the Services' chains and the NftOwnerMaps, which t must hold already: the
// affinity sets (kube-proxy's for these Services now, and those of the endpoint chains the node
// has), and the keys of the cluster-IP and hairpin sets (kube-proxy's for these Services now, and
// the cluster IPs the node's maps send to these Services). Reading exactly these, the plan is the
// one the whole table gives for that scope.
func NftScopeProbes(t *nftables.Table, cl *trace.Cluster, node *trace.NodeContext, scope trace.CheckScope) (trace.NftState, error) {
	var out trace.NftState
	layout, err := DetectNftLayout(t, node)
	if err != nil {
		return out, err
	}
	want := NewNftObjects()
	for _, p := range FamilyPorts(cl, node.Name, t.Family == "ip6") {
		if ns, name, _ := strings.Cut(ServiceOf(p.Name), "/"); scope.Has(ns, name) {
			want.AddNftService(p, layout)
		}
	}
	have, _ := NodeNftObjects(t)
	sets := map[string]bool{}
	for name := range want.Affinity {
		sets[name] = true
	}
	for name := range have.Chains {
		if rest, ok := strings.CutPrefix(name, "endpoint-"); ok && NftChainInScope(name, scope) {
			sets["affinity-"+rest] = true
		}
	}
	for _, name := range unionKeys(sets, nil) {
		out.Sets = append(out.Sets, trace.NftSet{Name: name})
	}
	keys := map[string]map[string]bool{NftClusterIPs: {}, NftHairpin: {}}
	for cn, m := range keys {
		for k := range want.Elems[cn] {
			m[k] = true
		}
	}
	for _, cn := range []string{NftServiceIPs, NftNoEndpointServices} {
		for k := range have.Elems[cn] {
			if owner := have.Owner[ElemID(cn, k)]; owner != "" {
				if ns, name, _ := strings.Cut(ServiceOf(owner), "/"); scope.Has(ns, name) {
					ip, _, _ := strings.Cut(k, " . ")
					keys[NftClusterIPs][ip] = true
				}
			}
		}
	}
	// The hairpin elements of the endpoints the node's chains for these Services send to.
	for owner, backends := range nftOldBackends(have) {
		if ns, name, _ := strings.Cut(ServiceOf(owner), "/"); !scope.Has(ns, name) {
			continue
		}
		for _, b := range backends {
			if ap, err := netip.ParseAddrPort(b.ep); err == nil {
				keys[NftHairpin][hairpinKey(ap, b.proto)] = true
			}
		}
	}
	for _, cn := range []string{NftClusterIPs, NftHairpin} {
		for _, k := range unionKeys(keys[cn], nil) {
			out.Elements = append(out.Elements, trace.NftElement{Set: cn, Key: k})
		}
	}
	return out, nil
}
