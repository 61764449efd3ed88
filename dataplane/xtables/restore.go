package xtables

import (
	"context"
	"fmt"
	"strings"

	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/kubeproxy"
)

// InputRunner runs a command with standard input: this machine (dpexec.Local).
type InputRunner interface {
	RunInput(stdin []byte, argv ...string) ([]byte, error)
}

// lockWaitSeconds bounds how long a write waits for another writer's xtables lock.
const lockWaitSeconds = "10"

// Restore applies restore input (one or more tables, each its own COMMIT) with
// `iptables-restore --noflush --wait`: only the chains the input names change, each table in one
// transaction. It fails as a whole if any line is refused, and then writes nothing.
func Restore(r InputRunner, b Backend, input string) error {
	if b.Ambiguous {
		return fmt.Errorf("both iptables backends (legacy and nf_tables), or neither, hold kube-proxy's rules on this node: svctrace will not guess which one kube-proxy writes to")
	}
	_, err := r.RunInput([]byte(input), b.Restore(), "--noflush", "--wait", lockWaitSeconds)
	return err
}

// ReadChains reads the tables' current rules for the named chains, one save call per table.
func ReadChains(ctx context.Context, r noderun.Runner, b Backend, want map[string][]string) (map[string]map[string]trace.ChainRules, error) {
	out := map[string]map[string]trace.ChainRules{}
	for table, chains := range want {
		data, err := r.Run(ctx, b.Save, "-t", table)
		if err != nil {
			return nil, err
		}
		rs, err := Parse(data)
		if err != nil {
			return nil, err
		}
		out[table] = map[string]trace.ChainRules{}
		t := rs.Tables[table]
		for _, c := range chains {
			cr := trace.ChainRules{Chain: c, Rules: []string{}}
			if t != nil && t.Chains[c] != nil {
				cr.Exists = true
				for _, rule := range t.Chains[c].Rules {
					cr.Rules = append(cr.Rules, rule.Text)
				}
			}
			out[table][c] = cr
		}
	}
	return out, nil
}

// Differences compares chains as read (keyed by TableRestore.Key: "nat", "ipv6 nat") with what
// they should be, one sentence per chain that is not.
func Differences(got map[string]map[string]trace.ChainRules, want []trace.TableRestore, after bool) []string {
	var out []string
	for _, tr := range want {
		list := tr.Before
		if after {
			list = tr.After
		}
		for _, w := range list {
			g := got[tr.Key()][w.Chain]
			switch {
			case g.Exists != w.Exists && w.Exists:
				out = append(out, fmt.Sprintf("chain %s (%s) does not exist", w.Chain, tr.Key()))
			case g.Exists != w.Exists:
				out = append(out, fmt.Sprintf("chain %s (%s) exists", w.Chain, tr.Key()))
			case strings.Join(g.Rules, "\n") != strings.Join(w.Rules, "\n"):
				out = append(out, fmt.Sprintf("chain %s (%s) has other rules", w.Chain, tr.Key()))
			}
		}
	}
	return out
}

// ValidateInput checks restore input before it is written: every line is a table, a chain line,
// a rule, a chain deletion or COMMIT, and every chain it names is one the plan declares and
// kube-proxy's (a plan file may have been edited).
func ValidateInput(tr trace.TableRestore) error {
	declared := map[string]bool{}
	for _, c := range tr.Before {
		if !kubeproxy.Repairable(tr.Table, c.Chain) {
			return fmt.Errorf("the plan writes chain %s in %s, which is not one of kube-proxy's service chains", c.Chain, tr.Table)
		}
		declared[c.Chain] = true
	}
	lines := strings.Split(strings.TrimRight(tr.Input, "\n"), "\n")
	if len(lines) < 2 || lines[0] != "*"+tr.Table || lines[len(lines)-1] != "COMMIT" {
		return fmt.Errorf("the %s input must start with *%s and end with COMMIT", tr.Table, tr.Table)
	}
	for i, l := range lines[1 : len(lines)-1] {
		f := strings.Fields(l)
		var chain string
		switch {
		case len(f) >= 1 && strings.HasPrefix(l, ":"):
			chain = f[0][1:]
		case len(f) >= 2 && (f[0] == "-A" || f[0] == "-X"):
			chain = f[1]
		default:
			return fmt.Errorf("line %d of the %s input is not a chain, rule or chain deletion: %q", i+2, tr.Table, l)
		}
		if !declared[chain] {
			return fmt.Errorf("line %d of the %s input names chain %s, which the plan does not list", i+2, tr.Table, chain)
		}
	}
	return nil
}

// RollbackInput is the input that puts a table's touched chains back as they were before tr,
// whatever part of tr is in place now (current, as ReadChains read it): chains that existed get
// their old rules, chains tr created are deleted if they exist.
func RollbackInput(tr trace.TableRestore, current map[string]trace.ChainRules) string {
	var decl, rules, del []string
	for _, c := range tr.Before {
		switch {
		case c.Exists:
			decl = append(decl, ":"+c.Chain+" - [0:0]")
			rules = append(rules, c.Rules...)
		case current[c.Chain].Exists:
			decl = append(decl, ":"+c.Chain+" - [0:0]")
			del = append(del, "-X "+c.Chain)
		}
	}
	in := "*" + tr.Table + "\n"
	for _, part := range [][]string{decl, rules, del} {
		for _, l := range part {
			in += l + "\n"
		}
	}
	return in + "COMMIT\n"
}
