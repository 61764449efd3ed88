package repair

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/knftables"

	"github.com/svctrace/svctrace/dataplane"
	"github.com/svctrace/svctrace/dataplane/ipvsadm"
	"github.com/svctrace/svctrace/dataplane/nftjson"
	"github.com/svctrace/svctrace/dataplane/nftwrite"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/kubeproxy"
	"github.com/svctrace/svctrace/trace/kubeproxy/naming"
	"github.com/svctrace/svctrace/trace/nftables"
)

// This file removes what another kube-proxy mode left on a node, and puts it back (rollback,
// undo): kube-proxy's iptables chains of one table and backend with the built-in chains' jumps to
// them, as kube-proxy's own cleanup removes them, or its nftables table of one family.

// removeInput is the iptables-restore --noflush input that removes an iptables leftover: its
// chains flushed, the jumps to them deleted, the chains deleted.
func removeInput(l trace.Leftover) string {
	var b strings.Builder
	b.WriteString("*" + l.Table + "\n")
	for _, c := range l.Chains {
		b.WriteString(":" + c.Chain + " - [0:0]\n")
	}
	for _, j := range l.Jumps {
		b.WriteString("-D " + strings.TrimPrefix(j.Rule, "-A ") + "\n")
	}
	for _, c := range l.Chains {
		b.WriteString("-X " + c.Chain + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// restoreInput puts an iptables leftover back: its chains with their rules, then the jumps at
// their positions (in order, so that each lands where it was; past the end it is appended).
// builtinLen is each built-in chain's rule count now.
func restoreInput(l trace.Leftover, builtinLen map[string]int) string {
	var b strings.Builder
	b.WriteString("*" + l.Table + "\n")
	for _, c := range l.Chains {
		b.WriteString(":" + c.Chain + " - [0:0]\n")
	}
	for _, c := range l.Chains {
		for _, r := range c.Rules {
			b.WriteString(r + "\n")
		}
	}
	jumps := slices.Clone(l.Jumps)
	sort.SliceStable(jumps, func(i, j int) bool { return jumps[i].Position < jumps[j].Position })
	n := map[string]int{}
	for k, v := range builtinLen {
		n[k] = v
	}
	for _, j := range jumps {
		spec := strings.TrimPrefix(j.Rule, "-A "+j.Chain+" ")
		if j.Position <= n[j.Chain]+1 {
			b.WriteString("-I " + j.Chain + " " + strconv.Itoa(j.Position) + " " + spec + "\n")
		} else {
			b.WriteString(j.Rule + "\n")
		}
		n[j.Chain]++
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// leftoverDifferences says how what the node has now (nil: nothing) differs from l.
func leftoverDifferences(now *trace.Leftover, l trace.Leftover) []string {
	if now == nil {
		return []string{l.Where() + " is not there"}
	}
	if !l.IsIPTables() && l.Mode == "ipvs" {
		missing, extra := ipvsDiff(now, l)
		var out []string
		if len(missing) > 0 {
			out = append(out, fmt.Sprintf("%s lacks %s", l.Where(), strings.Join(firstOf(missing, 3), ", ")))
		}
		if len(extra) > 0 {
			out = append(out, fmt.Sprintf("%s also holds %s", l.Where(), strings.Join(firstOf(extra, 3), ", ")))
		}
		return out
	}
	if !l.IsIPTables() && l.Mode == "nftables" {
		a, errA := nftShape(now.NftJSON, l.Table)
		b, errB := nftShape(l.NftJSON, l.Table)
		if errA != nil || errB != nil || a != b {
			return []string{l.Where() + " holds other chains, rules or elements"}
		}
		return nil
	}
	var out []string
	have := map[string][]string{}
	for _, c := range now.Chains {
		have[c.Chain] = c.Rules
	}
	for _, c := range l.Chains {
		r, ok := have[c.Chain]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("chain %s (%s) is not there", c.Chain, l.Where()))
		case !slices.Equal(r, c.Rules):
			out = append(out, fmt.Sprintf("chain %s (%s) has other rules", c.Chain, l.Where()))
		}
		delete(have, c.Chain)
	}
	for c := range have {
		out = append(out, fmt.Sprintf("chain %s (%s) is there too", c, l.Where()))
	}
	rules := func(js []trace.Jump) string {
		var s []string
		for _, j := range js {
			s = append(s, j.Rule)
		}
		sort.Strings(s)
		return strings.Join(s, "\n")
	}
	if rules(now.Jumps) != rules(l.Jumps) {
		out = append(out, fmt.Sprintf("the built-in chains' jumps (%s) are not those read", l.Where()))
	}
	sort.Strings(out)
	return out
}

// partOf says whether what the node has now is a part of IPVS leftover l (nothing else, nothing
// different): what a removal cut short leaves, which putting l back completes.
func partOf(now *trace.Leftover, l trace.Leftover) bool {
	if l.IsIPTables() || l.Mode != "ipvs" {
		return false
	}
	_, extra := ipvsDiff(now, l)
	return len(extra) == 0
}

// ipvsDiff lists the IPVS objects l has and now lacks, and those now has beyond l.
func ipvsDiff(now *trace.Leftover, l trace.Leftover) (missing, extra []string) {
	var a, b []string
	if now.IPVS != nil {
		a = now.IPVS.Lines()
	}
	if l.IPVS != nil {
		b = l.IPVS.Lines()
	}
	have := map[string]bool{}
	for _, x := range a {
		have[x] = true
	}
	for _, x := range b {
		if !have[x] {
			missing = append(missing, x)
		}
		delete(have, x)
	}
	for _, x := range a {
		if have[x] {
			extra = append(extra, x)
		}
	}
	return missing, extra
}

// firstOf is the first n of list, and how many more.
func firstOf(list []string, n int) []string {
	if len(list) <= n {
		return list
	}
	return append(slices.Clone(list[:n]), fmt.Sprintf("%d more", len(list)-n))
}

// nftShape is a table's chains (rules in order) and sets (elements sorted) in nft's syntax.
func nftShape(js, family string) (string, error) {
	rs, err := nftjson.Parse([]byte(js))
	if err != nil {
		return "", err
	}
	var lines []string
	for _, t := range rs.Tables {
		if t.Family != family || t.Name != nftwrite.Table {
			return "", fmt.Errorf("table %s %s is not kube-proxy's %s table", t.Family, t.Name, family)
		}
		for name, c := range t.Chains {
			lines = append(lines, fmt.Sprintf("chain %s hook=%s type=%s prio=%d", name, c.Hook, c.Type, c.Prio))
			for i, r := range c.Rules {
				text, _ := nftables.CanonRule(r)
				lines = append(lines, fmt.Sprintf("chain %s %06d %s", name, i, text))
			}
		}
		for name, s := range t.Sets {
			lines = append(lines, fmt.Sprintf("set %s map=%s timeout=%d", name, s.Map, s.Timeout))
			elems, _ := nftables.SortedElems(s)
			for k, v := range elems {
				lines = append(lines, fmt.Sprintf("set %s elem %s : %s", name, k, v))
			}
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n"), nil
}

// ValidLeftover checks a leftover read from a plan or state file as untrusted data: only
// kube-proxy's chains (the fixed ones its cleanup removes and its per-Service ones), rules of
// their own chain on one line, jumps from a built-in chain to one of them; or kube-proxy's
// nftables table of one family holding only kube-proxy's chains.
func ValidLeftover(l trace.Leftover) error {
	switch {
	case l.IsIPTables() && (l.Mode == "iptables" || l.Mode == "ipvs"):
		return validIPTablesLeftover(l)
	case l.Mode == "ipvs":
		return validIPVSLeftover(l)
	case l.Mode == "nftables":
		if l.Table != "ip" && l.Table != "ip6" {
			return fmt.Errorf("leftover: nftables family %q is not ip or ip6", l.Table)
		}
		if len(l.Chains) > 0 || len(l.Jumps) > 0 || l.Backend != "" {
			return fmt.Errorf("leftover: an nftables table with iptables chains")
		}
		rs, err := nftjson.Parse([]byte(l.NftJSON))
		if err != nil {
			return fmt.Errorf("leftover: the saved %s kube-proxy table: %v", l.Table, err)
		}
		if len(rs.Tables) != 1 || rs.Tables[0].Family != l.Table || rs.Tables[0].Name != nftwrite.Table {
			return fmt.Errorf("leftover: the saved nftables JSON is not exactly the %s kube-proxy table", l.Table)
		}
		for name := range rs.Tables[0].Chains {
			if !slices.Contains(kubeproxy.NftStaticChains, name) && !kubeproxy.IsNftServiceChain(name) {
				return fmt.Errorf("leftover: chain %q is not one of kube-proxy's nftables chains", name)
			}
		}
		return nil
	}
	return fmt.Errorf("leftover: mode %q is not iptables, nftables or ipvs", l.Mode)
}

func validIPTablesLeftover(l trace.Leftover) error {
	if !Backends[l.Backend] {
		return fmt.Errorf("leftover: backend %q is not one of iptables, iptables-legacy or iptables-nft", l.Backend)
	}
	fixed, ok := trace.KubeProxyLeftoverChains[l.Table]
	if !ok || l.NftJSON != "" {
		return fmt.Errorf("leftover: table %q is not nat, filter or mangle", l.Table)
	}
	if l.Mode == "ipvs" {
		fixed = trace.IPVSOnlyChains[l.Table]
	}
	mine := map[string]bool{}
	for _, c := range l.Chains {
		if !slices.Contains(fixed, c.Chain) && !(l.Mode == "iptables" && l.Table == "nat" && naming.IsServiceChain(c.Chain)) {
			return fmt.Errorf("leftover: chain %s (%s) is not one kube-proxy's cleanup removes", c.Chain, l.Table)
		}
		if !c.Exists {
			return fmt.Errorf("leftover: chain %s is listed as absent", c.Chain)
		}
		mine[c.Chain] = true
	}
	if err := validChains(l.Table, l.Chains); err != nil {
		return fmt.Errorf("leftover: %v", err)
	}
	for _, j := range l.Jumps {
		if !slices.Contains(trace.BuiltinChains[l.Table], j.Chain) {
			return fmt.Errorf("leftover: %s is not a built-in chain of %s", j.Chain, l.Table)
		}
		target := j.Rule[strings.LastIndex(j.Rule, " ")+1:]
		if !strings.HasPrefix(j.Rule, "-A "+j.Chain+" ") || strings.ContainsAny(j.Rule, "\r\n\x00") || !strings.HasSuffix(j.Rule, " -j "+target) || !mine[target] {
			return fmt.Errorf("leftover: %q is not a jump from %s to one of the chains removed", j.Rule, j.Chain)
		}
		if j.Position < 1 || j.Position > 1<<20 {
			return fmt.Errorf("leftover: jump position %d", j.Position)
		}
	}
	return nil
}

// readLeftover reads the node's state of the leftover's kind now (nil: none).
func readLeftover(ctx context.Context, l trace.Leftover) (*trace.Leftover, error) {
	switch {
	case l.IsIPTables():
		return dataplane.IPTablesLeftover(ctx, local, l.Backend, l.Table, l.Mode)
	case l.Mode == "nftables":
		return dataplane.NftLeftover(ctx, local, l.Table)
	}
	how := dataplane.IPVSRead{Services: ipvsadm.Services, Strict: true}
	if l.IPVS != nil {
		how.Also = l.IPVS.VirtualServers
	}
	return dataplane.IPVSLeftover(ctx, local, how)
}

// ReadLeftover implements Node.
func (Local) ReadLeftover(ctx context.Context, l trace.Leftover) (*trace.Leftover, error) {
	return readLeftover(ctx, l)
}

// RemoveLeftover implements Node: one iptables-restore transaction, or the table deleted in one
// nft transaction.
func (Local) RemoveLeftover(ctx context.Context, l trace.Leftover) error {
	if !l.IsIPTables() && l.Mode == "ipvs" {
		return removeIPVS(ctx, l.IPVS)
	}
	if !l.IsIPTables() && l.Mode == "nftables" {
		w, err := knftables.New(knftables.Family(l.Table), nftwrite.Table)
		if err != nil {
			return err
		}
		tx := w.NewTransaction()
		tx.Delete(&knftables.Table{})
		return w.Run(context.WithoutCancel(ctx), tx)
	}
	_, err := local.RunInput([]byte(removeInput(l)), l.Backend+"-restore", "--noflush", "--wait", lockWaitSeconds)
	return err
}

// RestoreLeftover implements Node.
func (Local) RestoreLeftover(ctx context.Context, l trace.Leftover) error {
	if !l.IsIPTables() && l.Mode == "ipvs" {
		return restoreIPVS(ctx, l.IPVS)
	}
	if !l.IsIPTables() && l.Mode == "nftables" {
		in, err := nftjson.Importable([]byte(l.NftJSON))
		if err != nil {
			return err
		}
		_, err = local.RunInput(in, "nft", "-j", "-f", "-")
		return err
	}
	out, err := local.Run(ctx, l.Backend+"-save", "-t", l.Table)
	if err != nil {
		return err
	}
	n := map[string]int{}
	for _, line := range strings.Split(string(out), "\n") {
		for _, c := range trace.BuiltinChains[l.Table] {
			if strings.HasPrefix(line, "-A "+c+" ") {
				n[c]++
			}
		}
	}
	_, err = local.RunInput([]byte(restoreInput(l, n)), l.Backend+"-restore", "--noflush", "--wait", lockWaitSeconds)
	return err
}
