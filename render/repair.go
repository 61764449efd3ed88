package render

import (
	"fmt"
	"io"
	"strings"

	"github.com/svctrace/svctrace/trace"
)

// Repair prints a repair plan as a diff per Service port: rules and chains removed (-) and added
// (+), IPVS operations, conntrack flushes; then the notes.
func Repair(w io.Writer, p *trace.RepairPlan, o Options) error {
	if o.Format.Machine() {
		return Machine(w, p, o.Format)
	}
	s := newStyles(w, o)
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s\n", s.title.Render("repair plan"), s.dim.Render(fmt.Sprintf("node %s, %s mode", p.Node, p.Mode)))
	if len(p.Changes) == 0 {
		fmt.Fprintf(&b, "%s\n", s.ok.Render("nothing to repair: the dataplane does what the API says for these Services"))
	}
	group := "\x00"
	for _, c := range p.Changes {
		if c.Service != group {
			group = c.Service
			name := c.Service
			if name == "" {
				name = "shared chains"
			}
			fmt.Fprintf(&b, "\n%s\n", s.title.Render(name))
		}
		where := ""
		if c.Chain != "" {
			where = s.dim.Render(trace.TableKey(c.Table, c.Family == trace.FamilyIPv6)+" "+c.Chain) + "  "
		}
		switch c.Op {
		case "delete-rule", "delete-chain", "delete-real", "delete-element", "delete-set", "delete-table", "delete-virtual-server", "delete-device", "destroy-ipset":
			fmt.Fprintf(&b, "  %s %s%s\n", s.bad.Render("-"), where, c.Detail)
		case "add-rule", "add-chain", "add-real", "add-element", "add-set":
			fmt.Fprintf(&b, "  %s %s%s\n", s.ok.Render("+"), where, c.Detail)
		default:
			fmt.Fprintf(&b, "  %s %s%s\n", s.warn.Render("~"), where, c.Detail)
		}
	}
	if len(p.IPTables) > 0 {
		var tables []string
		how := "iptables-restore"
		for _, t := range p.IPTables {
			tables = append(tables, t.Key())
			if t.IPv6() {
				how = "iptables-restore (ip6tables-restore for IPv6's)"
			}
		}
		fmt.Fprintf(&b, "\n%s\n", s.dim.Render(fmt.Sprintf("applied as one %s --noflush transaction per table (%s); -o json shows the exact input", how, strings.Join(tables, ", "))))
	}
	if len(p.Nftables) > 0 {
		var families []string
		for _, c := range p.Nftables {
			families = append(families, c.Family)
		}
		fmt.Fprintf(&b, "\n%s\n", s.dim.Render(fmt.Sprintf("applied as one nft transaction per kube-proxy table (%s), checked first with nft --check; -o json shows the objects before and after", strings.Join(families, ", "))))
	}
	for _, n := range p.Notes {
		fmt.Fprintf(&b, "%s\n", s.dim.Render("note: "+n))
	}
	_, err := io.WriteString(w, wrapProse(b.String(), s.width))
	return err
}

// RepairInput prints a plan read from a file as exactly what applying it writes: each table's
// iptables-restore input line by line, the IPVS operations and the conntrack deletions, from the
// fields that are written, not from the plan's description of itself (which a file may not match).
func RepairInput(w io.Writer, p *trace.RepairPlan, nftScript func(trace.NftChange) string, o Options) error {
	if o.Format.Machine() {
		return Machine(w, p, o.Format)
	}
	s := newStyles(w, o)
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s\n", s.title.Render("repair plan from a file"), s.dim.Render(fmt.Sprintf("node %s, %s mode; what applying it writes:", p.Node, p.Mode)))
	if p.Empty() {
		fmt.Fprintf(&b, "%s\n", s.ok.Render("nothing"))
	}
	for _, t := range p.IPTables {
		cmd := "iptables-restore"
		if t.IPv6() {
			cmd = "ip6tables-restore"
		}
		fmt.Fprintf(&b, "\n%s\n", s.title.Render(fmt.Sprintf("%s --noflush, %s table:", cmd, t.Table)))
		for _, l := range strings.Split(strings.TrimRight(t.Input, "\n"), "\n") {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	for _, l := range p.Leftovers {
		fmt.Fprintf(&b, "\n%s\n", s.title.Render(fmt.Sprintf("remove %s, left from %s mode:", l.Where(), l.Mode)))
		for _, j := range l.Jumps {
			fmt.Fprintf(&b, "  delete %s\n", j.Rule)
		}
		for _, c := range l.Chains {
			fmt.Fprintf(&b, "  delete chain %s (%d rules)\n", c.Chain, len(c.Rules))
		}
		if !l.IsIPTables() && l.Mode == "nftables" {
			fmt.Fprintf(&b, "  delete table %s\n", l.Where())
		}
		if st := l.IPVS; st != nil && !l.IsIPTables() {
			for _, v := range st.VirtualServers {
				fmt.Fprintf(&b, "  delete virtual server %s %s (%d real servers)\n", v.Protocol, v.Address, len(v.Reals))
			}
			if st.Device != "" {
				fmt.Fprintf(&b, "  ip link delete %s (%d addresses)\n", st.Device, len(st.Addresses))
			}
			for _, set := range st.IPSets {
				fmt.Fprintf(&b, "  ipset destroy %s (%d members)\n", set.Name, len(set.Members))
			}
		}
	}
	for _, c := range p.Nftables {
		fmt.Fprintf(&b, "\n%s\n", s.title.Render(fmt.Sprintf("nft -f -, %s kube-proxy table:", c.Family)))
		for _, l := range strings.Split(strings.TrimRight(nftScript(c), "\n"), "\n") {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	if len(p.IPVS) > 0 {
		fmt.Fprintf(&b, "\n%s\n", s.title.Render("IPVS over netlink:"))
		for _, op := range p.IPVS {
			idle := ""
			if op.WhenIdle {
				idle = " (once it has no connections)"
			}
			fmt.Fprintf(&b, "  %s %s %s real %s weight %d%s\n", op.Op, op.Protocol, op.Virtual, op.Real, op.Weight, idle)
		}
	}
	if len(p.Conntrack) > 0 {
		fmt.Fprintf(&b, "\n%s\n", s.title.Render("conntrack entries deleted:"))
		for _, f := range p.Conntrack {
			fmt.Fprintf(&b, "  %s to %s answered by %s\n", f.Protocol, f.Dst, f.Backend)
		}
	}
	_, err := io.WriteString(w, wrapProse(b.String(), s.width))
	return err
}
