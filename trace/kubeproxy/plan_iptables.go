package kubeproxy

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/iptables"
	"github.com/svctrace/svctrace/trace/kubeproxy/naming"
)

// topChains are kube-proxy's shared chains that hold rules of every Service port: repair rewrites
// them completely, keeping every rule that is not one of the repaired ports'.
var topChains = map[string][]string{
	"nat":    {"KUBE-SERVICES", "KUBE-NODEPORTS"},
	"filter": {"KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-PROXY-FIREWALL", "KUBE-NODEPORTS"},
}

// Repairable reports whether repair may write to a chain: kube-proxy's shared service chains
// and its per-service chains, nothing else (not KUBE-PROXY-CANARY, KUBE-IPTABLES-HINT,
// KUBE-MARK-MASQ, KUBE-POSTROUTING, or any chain not kube-proxy's).
func Repairable(table, chain string) bool {
	for _, c := range topChains[table] {
		if c == chain {
			return true
		}
	}
	return table == "nat" && naming.IsServiceChain(chain)
}

// ownerName is the service port a top-level rule belongs to, from its comment: kube-proxy starts
// every such comment with the port's name ("ns/name:port cluster IP", "ns/name:port has no
// endpoints", ...). "" for rules of no Service (the node-ports jump).
func ownerName(r *iptables.Rule) string {
	name, _, _ := strings.Cut(r.Comment, " ")
	if !strings.Contains(name, "/") {
		return ""
	}
	return name
}

// DetectLayout reads kube-proxy's flags and the cluster-size mode off the node's own IPv4 rules,
// and refuses what repair cannot reproduce.
func DetectLayout(rs *iptables.Ruleset, cl *trace.Cluster, node *trace.NodeContext) (Layout, []string, error) {
	return detectLayout(rs, false, cl, node)
}

// detectLayout is DetectLayout for the rules of one family (IPv6's when v6).
func detectLayout(rs *iptables.Ruleset, v6 bool, cl *trace.Cluster, node *trace.NodeContext) (Layout, []string, error) {
	var l Layout
	var notes []string
	nat := rs.Tables["nat"]
	if nat == nil {
		return l, nil, fmt.Errorf("the dump has no nat table")
	}
	// The local-traffic detector shows in two places: the cluster IP's masquerade rule
	// (`! -s CIDR`, `! -i IFACE`, or no condition at all with --masquerade-all) and the "pod
	// traffic" rule of a Local-policy service's KUBE-EXT chain (`-s CIDR`, `-i IFACE`).
	sawSplit, sawComment, sawMasq, sawDetector := false, false, false, false
	detector := func(r *iptables.Rule, neg bool) bool {
		switch {
		case r.Src.Set && r.Src.Neg == neg:
			l.LocalCIDR = r.Src.Prefix
		case r.Extra != nil && r.Extra.InIface.Set && r.Extra.InIface.Neg == neg:
			l.LocalIface = r.Extra.InIface.Name
		default:
			return false
		}
		return true
	}
	for _, c := range nat.Order {
		if strings.HasPrefix(c.Name, extPrefix) {
			for _, r := range c.Rules {
				if !sawDetector && strings.HasPrefix(r.Comment, "pod traffic for ") {
					if !detector(r, false) {
						return l, nil, fmt.Errorf("this kube-proxy detects local traffic in a way svctrace cannot reproduce (%q)", r.Text)
					}
					sawDetector = true
				}
			}
			continue
		}
		if !strings.HasPrefix(c.Name, svcPrefix) && !strings.HasPrefix(c.Name, svlPrefix) {
			continue
		}
		for _, r := range c.Rules {
			switch {
			case strings.HasPrefix(r.Target, sepPrefix):
				sawSplit = true
				sawComment = sawComment || r.Comment != ""
			case r.Target == "KUBE-MARK-MASQ" && !sawMasq:
				sawMasq = true
				switch {
				case detector(r, true):
					sawDetector = true
				case !r.Src.Set && (r.Extra == nil || !r.Extra.InIface.Set && !r.Extra.OutIface.Set):
					l.MasqueradeAll = true
				default:
					return l, nil, fmt.Errorf("this kube-proxy detects local traffic in a way svctrace cannot reproduce (%q); repair supports the ClusterCIDR, NodeCIDR, BridgeInterface and InterfaceNamePrefix detectors and --masquerade-all", r.Text)
				}
			}
		}
	}
	if sawSplit {
		l.LargeCluster = !sawComment
	} else if cl != nil {
		total := 0
		for _, p := range FamilyPorts(cl, node.Name, v6) {
			total += len(p.Reachable)
		}
		l.LargeCluster = total > 1000
		notes = append(notes, "no endpoint rules to learn the comment style from; assumed from the API's endpoint count")
	}
	if !sawDetector {
		if p, ok := (&iptables.Dataplane{V4: rs}).ClusterCIDR(); ok && p.Addr().Is4() != v6 {
			l.LocalCIDR = p
		}
	}
	// nfacct: kube-proxy counts into nfacct objects only where the kernel has them. Its rules say
	// which: the localhost node-port rules, or else the INVALID drop in filter's KUBE-FORWARD,
	// carry the match or not.
	acct, sawAcct := false, false
	if np := nat.Chains["KUBE-NODEPORTS"]; np != nil {
		for _, r := range np.Rules {
			if strings.Contains(r.Text, " -d 127.0.0.0/8 ") {
				l.LocalhostNodePorts = true
				acct, sawAcct = acct || strings.Contains(r.Text, " -m nfacct "), true
			}
		}
	}
	if f := rs.Tables["filter"]; !sawAcct && f != nil && f.Chains["KUBE-FORWARD"] != nil {
		for _, r := range f.Chains["KUBE-FORWARD"].Rules {
			if strings.Contains(r.Text, "--ctstate INVALID") {
				acct = acct || strings.Contains(r.Text, " -m nfacct ")
			}
		}
	}
	l.NFAcct = acct
	l.IPv6 = v6
	for _, a := range node.Local {
		if a.Is4() != v6 && !a.IsLoopback() && !a.IsLinkLocalUnicast() {
			l.NodeIP = a
			break
		}
	}
	return l, notes, nil
}

// chainRules returns a chain's rule texts, and whether it exists.
func chainRules(t *iptables.Table, name string) ([]string, bool) {
	if t == nil {
		return nil, false
	}
	c := t.Chains[name]
	if c == nil {
		return nil, false
	}
	out := make([]string, len(c.Rules))
	for i, r := range c.Rules {
		out[i] = r.Text
	}
	return out, true
}

// PlanIPTables computes the minimal change that makes the node's iptables rules for the Services in
// scope what kube-proxy would write for them now, plus the removal of rules for Services (or
// ports) the API no longer has: IPv4's rules, and IPv6's where the node has kube-proxy's
// ip6tables chains (a dual-stack kube-proxy runs one proxier per family).
func PlanIPTables(d *iptables.Dataplane, cl *trace.Cluster, node *trace.NodeContext, scope trace.CheckScope) (*trace.RepairPlan, error) {
	plan := &trace.RepairPlan{APIVersion: trace.APIVersion, Kind: "RepairPlan", Node: node.Name, Mode: d.Mode(), Changes: []trace.RepairChange{}, Services: []string{}}
	if d.IPVS != nil {
		return nil, fmt.Errorf("internal: PlanIPTables is for iptables mode")
	}
	rs := d.V4
	if rs == nil || rs.Tables["nat"] == nil || rs.Tables["filter"] == nil {
		return nil, fmt.Errorf("repair needs the node's IPv4 nat and filter tables")
	}
	if err := planIPTablesFamily(plan, rs, false, cl, node, scope); err != nil {
		return nil, err
	}
	v6 := d.V6
	switch {
	case v6 != nil && v6.Tables["nat"] != nil && v6.Tables["nat"].Chains["KUBE-SERVICES"] != nil:
		if err := planIPTablesFamily(plan, v6, true, cl, node, scope); err != nil {
			return nil, err
		}
	case len(FamilyPorts(cl, node.Name, true)) > 0:
		if v6 == nil {
			plan.Notes = append(plan.Notes, "the API has IPv6 Service ports but the node's ip6tables rules were not read: IPv6 is not repaired")
		} else {
			plan.Notes = append(plan.Notes, "the API has IPv6 Service ports but the node has no kube-proxy ip6tables chains (a single-stack kube-proxy): IPv6 is not repaired")
		}
	}
	sort.Strings(plan.Services)
	plan.Services = slices.Compact(plan.Services)
	if !plan.Empty() {
		plan.Notes = append(plan.Notes, "kube-proxy owns these rules: its next sync rewrites them from the API again (and, with the same API, writes the same)")
	}
	return plan, nil
}

// planIPTablesFamily adds one family's changes to the plan: rs is the node's IPv4 or (v6) IPv6
// ruleset.
func planIPTablesFamily(plan *trace.RepairPlan, rs *iptables.Ruleset, v6 bool, cl *trace.Cluster, node *trace.NodeContext, scope trace.CheckScope) error {
	family, fam := "", "IPv4"
	if v6 {
		family, fam = trace.FamilyIPv6, "IPv6"
	}
	if rs.Tables["nat"] == nil || rs.Tables["filter"] == nil {
		return fmt.Errorf("repair needs the node's %s nat and filter tables", fam)
	}
	for _, c := range rs.Tables["nat"].Order {
		if strings.HasPrefix(c.Name, "KUBE-XLB-") {
			return fmt.Errorf("this node's rules have the layout of kube-proxy before 1.24 (chain %s); repair writes the layout of 1.30-1.36 and would fight it: restart or upgrade kube-proxy instead", c.Name)
		}
	}
	for table, chains := range topChains {
		for _, c := range chains {
			if rs.Tables[table].Chains[c] == nil {
				return fmt.Errorf("kube-proxy's chain %s is missing from the %s %s table: kube-proxy has not set this node up; restart it rather than repair single Services", c, fam, table)
			}
		}
	}
	layout, notes, err := detectLayout(rs, v6, cl, node)
	if err != nil {
		return err
	}
	for _, n := range notes {
		if v6 {
			n = "IPv6: " + n // IPv4's are the plan's notes as before dual-stack
		}
		plan.Notes = append(plan.Notes, n)
	}

	// The API's ports: those in scope are written, every one is known (not stale).
	apiNames := map[string]bool{}
	desired := map[string]*TableRules{}
	ports := map[string]*ServicePort{}
	var names []string
	for _, p := range FamilyPorts(cl, node.Name, v6) {
		apiNames[p.Name] = true
		ns, rest, _ := strings.Cut(p.Name, "/")
		svc, _, _ := strings.Cut(rest, ":")
		if !scope.Has(ns, svc) {
			continue
		}
		ports[p.Name] = p
		desired[p.Name] = IPTablesRules(p, layout)
		names = append(names, p.Name)
	}
	// Stale ports: named by top-level rules, in scope, unknown to the API. Their protocol comes
	// from those rules (their chains are named by name and protocol).
	stale := map[string]string{}
	for _, table := range []string{"nat", "filter"} {
		for _, cn := range topChains[table] {
			for _, r := range rs.Tables[table].Chains[cn].Rules {
				o := ownerName(r)
				if o == "" || apiNames[o] {
					continue
				}
				ns, rest, _ := strings.Cut(o, "/")
				svc, _, _ := strings.Cut(rest, ":")
				if !scope.Has(ns, svc) {
					continue
				}
				// The first rule seen gives the protocol: nat is read first, and its rules carry
				// the port's (filter's health-check rules are always tcp).
				if _, seen := stale[o]; !seen {
					stale[o] = protoName(r.Proto)
				}
			}
		}
	}
	var staleNames []string
	for n := range stale {
		staleNames = append(staleNames, n)
	}
	sort.Strings(names)
	sort.Strings(staleNames)
	managed := map[string]bool{}
	for _, n := range names {
		managed[n] = true
	}
	for _, n := range staleNames {
		managed[n] = true
	}

	type chainChange struct {
		table, chain string
		before       []string
		existed      bool
		after        []string
		keep         bool // false: delete the chain
		service      string
	}
	var changes []*chainChange
	touch := func(table, chain, service string, after []string, keep bool) error {
		if !Repairable(table, chain) {
			return fmt.Errorf("internal: refusing to write chain %s in %s, which is not kube-proxy's service chain", chain, table)
		}
		before, existed := chainRules(rs.Tables[table], chain)
		if !keep && !existed {
			return nil
		}
		if keep && existed && slices.Equal(before, after) {
			return nil
		}
		changes = append(changes, &chainChange{table: table, chain: chain, before: before, existed: existed, after: after, keep: keep, service: service})
		return nil
	}

	// Top-level chains: each managed port's rules replaced in place by what it needs now (none
	// for stale ones); new ones go before the node-ports jump (nat KUBE-SERVICES) or at the end.
	for _, table := range []string{"nat", "filter"} {
		for _, cn := range topChains[table] {
			var after []string
			emitted := map[string]bool{}
			want := func(name string) []string {
				if r := desired[name]; r != nil {
					if table == "nat" {
						return r.Nat[cn]
					}
					return r.Filter[cn]
				}
				return nil
			}
			var tail []string
			for _, r := range rs.Tables[table].Chains[cn].Rules {
				o := ownerName(r)
				if o != "" && managed[o] {
					if !emitted[o] {
						emitted[o] = true
						after = append(after, want(o)...)
					}
					continue
				}
				if table == "nat" && cn == "KUBE-SERVICES" && strings.HasPrefix(r.Comment, "kubernetes service nodeports") {
					tail = append(tail, r.Text)
					continue
				}
				after = append(after, r.Text)
			}
			for _, n := range names {
				if !emitted[n] {
					after = append(after, want(n)...)
				}
			}
			after = append(after, tail...)
			service := ""
			if err := touch(table, cn, service, after, true); err != nil {
				return err
			}
		}
	}

	// Per-service chains.
	nat := rs.Tables["nat"]
	referencedSEPs := func(p string, proto string) []string {
		var out []string
		h := portProtoHash(p + proto)
		for _, c := range []string{svcPrefix + h, svlPrefix + h} {
			if ch := nat.Chains[c]; ch != nil {
				for _, r := range ch.Rules {
					if strings.HasPrefix(r.Target, sepPrefix) && !slices.Contains(out, r.Target) {
						out = append(out, r.Target)
					}
				}
			}
		}
		return out
	}
	oldBackends := map[string][]string{}
	for _, n := range append(append([]string(nil), names...), staleNames...) {
		proto := stale[n]
		var want *TableRules
		if p := ports[n]; p != nil {
			proto, want = p.Protocol, desired[n]
		}
		h := portProtoHash(n + proto)
		candidates := []string{svcPrefix + h, svlPrefix + h, extPrefix + h, fwPrefix + h}
		seps := referencedSEPs(n, proto)
		for _, sep := range seps {
			if ch := nat.Chains[sep]; ch != nil {
				for _, r := range ch.Rules {
					if r.Target == "DNAT" {
						oldBackends[n] = append(oldBackends[n], r.ToDestination)
					}
				}
			}
		}
		candidates = append(candidates, seps...)
		if want != nil {
			for _, c := range want.Chains {
				if !slices.Contains(candidates, c) {
					candidates = append(candidates, c)
				}
			}
		}
		for _, c := range candidates {
			var after []string
			keep := false
			if want != nil {
				after, keep = want.Nat[c]
			}
			if err := touch("nat", c, n, after, keep); err != nil {
				return err
			}
		}
	}

	// Conntrack: UDP entries of removed endpoints, for every address of the port.
	for _, n := range append(append([]string(nil), names...), staleNames...) {
		p := ports[n]
		proto := stale[n]
		if p != nil {
			proto = p.Protocol
		}
		if proto != "udp" {
			continue
		}
		for _, old := range oldBackends[n] {
			if p != nil && slices.Contains(p.Reachable, old) {
				continue
			}
			ip := old
			if ap, err := netip.ParseAddrPort(old); err == nil {
				ip = ap.Addr().String()
			}
			for _, dst := range udpAddresses(p, n, rs) {
				plan.Conntrack = append(plan.Conntrack, trace.ConntrackFlush{Protocol: "udp", Dst: dst, Backend: ip})
				plan.Changes = append(plan.Changes, trace.RepairChange{Service: n, Op: "flush-conntrack", Family: family, Detail: fmt.Sprintf("delete UDP conntrack entries to %s that were sent to %s", dst, ip)})
			}
		}
	}

	// One transaction per table: chain lines (flushing), complete rule lists, then -X.
	touchedServices := map[string]bool{}
	for _, table := range []string{"filter", "nat"} {
		var decl, rules, del []string
		tr := trace.TableRestore{Table: table, Family: family}
		for _, c := range changes {
			if c.table != table {
				continue
			}
			if c.service != "" {
				touchedServices[c.service] = true
			}
			decl = append(decl, ":"+c.chain+" - [0:0]")
			tr.Before = append(tr.Before, trace.ChainRules{Chain: c.chain, Exists: c.existed, Rules: nonNil(c.before)})
			if c.keep {
				rules = append(rules, c.after...)
				tr.After = append(tr.After, trace.ChainRules{Chain: c.chain, Exists: true, Rules: nonNil(c.after)})
			} else {
				del = append(del, "-X "+c.chain)
				tr.After = append(tr.After, trace.ChainRules{Chain: c.chain, Exists: false, Rules: []string{}})
			}
			for _, d := range describeChange(c.table, c.chain, c.service, c.before, c.existed, c.after, c.keep) {
				d.Family = family
				plan.Changes = append(plan.Changes, d)
			}
		}
		if len(decl) == 0 {
			continue
		}
		tr.Input = "*" + table + "\n" + strings.Join(decl, "\n") + "\n"
		for _, part := range [][]string{rules, del} {
			if len(part) > 0 {
				tr.Input += strings.Join(part, "\n") + "\n"
			}
		}
		tr.Input += "COMMIT\n"
		plan.IPTables = append(plan.IPTables, tr)
	}
	// Top-level rewrites belong to the ports whose rules changed there.
	for _, c := range changes {
		if c.service != "" {
			continue
		}
		for n := range changedOwners(c.before, c.after) {
			if managed[n] {
				touchedServices[n] = true
			}
		}
	}
	for n := range touchedServices {
		plan.Services = append(plan.Services, n)
	}
	return nil
}

// udpAddresses are the addresses a UDP port's clients use, as conntrack's original destination:
// the cluster IP, external and LB IPs with the port, and "*:nodePort".
func udpAddresses(p *ServicePort, name string, rs *iptables.Ruleset) []string {
	if p == nil {
		// A stale port: its addresses from its old top-level rules.
		var out []string
		for _, cn := range topChains["nat"] {
			for _, r := range rs.Tables["nat"].Chains[cn].Rules {
				if ownerName(r) != name || !r.DPort.Set {
					continue
				}
				if r.Dst.Set && r.Dst.Prefix.IsSingleIP() && !r.Dst.Prefix.Addr().IsLoopback() {
					out = append(out, netip.AddrPortFrom(r.Dst.Prefix.Addr(), r.DPort.Lo).String())
				} else if !r.Dst.Set {
					out = append(out, fmt.Sprintf("*:%d", r.DPort.Lo))
				}
			}
		}
		return out
	}
	out := []string{netip.AddrPortFrom(p.ClusterIP, uint16(p.Port)).String()}
	for _, a := range append(append([]netip.Addr(nil), p.ExternalIPs...), p.LoadBalancerIPs...) {
		out = append(out, netip.AddrPortFrom(a, uint16(p.Port)).String())
	}
	if p.NodePort != 0 {
		out = append(out, fmt.Sprintf("*:%d", p.NodePort))
	}
	return out
}

// changedOwners names the service ports whose rules differ between a chain's before and after:
// the owners (first word of the comment) of the rules that one has more often than the other.
// One pass, as KUBE-SERVICES holds a rule per Service port.
func changedOwners(before, after []string) map[string]bool {
	count := map[string]int{}
	for _, r := range before {
		count[r]++
	}
	for _, r := range after {
		count[r]--
	}
	out := map[string]bool{}
	for r, n := range count {
		if n == 0 {
			continue
		}
		if _, c, ok := strings.Cut(r, `--comment "`); ok {
			c, _, _ = strings.Cut(c, `"`)
			name, _, _ := strings.Cut(c, " ")
			out[name] = true
		}
	}
	return out
}

// describeChange turns one chain's change into changes for people: the rules removed and added.
func describeChange(table, chain, service string, before []string, existed bool, after []string, keep bool) []trace.RepairChange {
	var out []trace.RepairChange
	switch {
	case !keep:
		out = append(out, trace.RepairChange{Service: service, Op: "delete-chain", Table: table, Chain: chain, Detail: fmt.Sprintf("delete chain %s (%d rules)", chain, len(before))})
		return out
	case !existed:
		out = append(out, trace.RepairChange{Service: service, Op: "add-chain", Table: table, Chain: chain, Detail: "create chain " + chain})
	}
	had := map[string]int{}
	for _, r := range before {
		had[r]++
	}
	has := map[string]int{}
	for _, r := range after {
		has[r]++
	}
	for _, r := range before {
		if has[r] == 0 {
			out = append(out, trace.RepairChange{Service: service, Op: "delete-rule", Table: table, Chain: chain, Detail: r})
		} else {
			has[r]--
		}
	}
	for _, r := range after {
		if had[r] == 0 {
			out = append(out, trace.RepairChange{Service: service, Op: "add-rule", Table: table, Chain: chain, Detail: r})
		} else {
			had[r]--
		}
	}
	if len(out) == 0 {
		out = append(out, trace.RepairChange{Service: service, Op: "reorder-rules", Table: table, Chain: chain, Detail: "same rules in kube-proxy's order"})
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func protoName(p uint8) string {
	switch p {
	case 17:
		return "udp"
	case 132:
		return "sctp"
	}
	return "tcp"
}
