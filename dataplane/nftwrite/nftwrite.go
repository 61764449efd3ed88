// Package nftwrite writes repair's changes to kube-proxy's nftables table, with
// sigs.k8s.io/knftables (the library kube-proxy itself writes that table with): the transaction
// that turns one state of the touched objects into another, its validation as untrusted data,
// and the read-back that verification compares.
package nftwrite

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/knftables"

	"github.com/svctrace/svctrace/dataplane/nftjson"
	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/kubeproxy"
	"github.com/svctrace/svctrace/trace/nftables"
)

// Table is kube-proxy's table; repair writes no other.
const Table = "kube-proxy"

// Fill adds to tx the commands that turn from into to (the same objects in two states), in an
// order nft accepts in one transaction: chains and sets created, rewritten chains flushed,
// elements deleted and added, sets deleted, rules added. It returns the chains to delete
// afterwards, in a transaction of their own: before Linux 6.2 the kernel notices only a moment
// later that a chain is no longer referenced by a deleted map element, which is why kube-proxy
// too deletes such chains in a later transaction.
func Fill(tx *knftables.Transaction, family string, from, to trace.NftState) []string {
	addrType := "ipv4_addr"
	if family == "ip6" {
		addrType = "ipv6_addr"
	}
	fromChains := chainMap(from.Chains)
	fromSets := map[string]trace.NftSet{}
	for _, s := range from.Sets {
		fromSets[s.Name] = s
	}
	fromElems := map[string]trace.NftElement{}
	for _, e := range from.Elements {
		fromElems[e.Set+" "+e.Key] = e
	}
	var rewrite, remove []string
	for _, c := range to.Chains {
		old := fromChains[c.Chain]
		switch {
		case c.Exists && !old.Exists:
			tx.Add(&knftables.Chain{Name: c.Chain})
			rewrite = append(rewrite, c.Chain)
		case c.Exists && !slices.Equal(c.Rules, old.Rules):
			rewrite = append(rewrite, c.Chain)
		case !c.Exists && old.Exists:
			remove = append(remove, c.Chain)
		}
	}
	var recreate []trace.NftSet
	for _, s := range to.Sets {
		old := fromSets[s.Name]
		if s.Exists && (!old.Exists || old.Timeout != s.Timeout) {
			recreate = append(recreate, s)
		}
	}
	for _, s := range recreate {
		if !fromSets[s.Name].Exists {
			tx.Add(affinitySet(s, addrType))
		}
	}
	for _, name := range append(append([]string(nil), rewrite...), remove...) {
		if fromChains[name].Exists {
			tx.Flush(&knftables.Chain{Name: name})
		}
	}
	for _, e := range to.Elements {
		old := fromElems[e.Set+" "+e.Key]
		if old.Exists && (!e.Exists || old.Value != e.Value) {
			tx.Delete(element(trace.NftElement{Set: old.Set, Key: old.Key}))
		}
	}
	for _, e := range to.Elements {
		old := fromElems[e.Set+" "+e.Key]
		if e.Exists && (!old.Exists || old.Value != e.Value) {
			tx.Add(element(e))
		}
	}
	for _, s := range to.Sets {
		old := fromSets[s.Name]
		if old.Exists && (!s.Exists || old.Timeout != s.Timeout) {
			tx.Delete(&knftables.Set{Name: s.Name})
		}
	}
	for _, s := range recreate {
		if fromSets[s.Name].Exists {
			tx.Add(affinitySet(s, addrType))
		}
	}
	toChains := chainMap(to.Chains)
	for _, name := range rewrite {
		for _, r := range toChains[name].Rules {
			tx.Add(&knftables.Rule{Chain: name, Rule: r})
		}
	}
	return remove
}

func chainMap(list []trace.ChainRules) map[string]trace.ChainRules {
	out := make(map[string]trace.ChainRules, len(list))
	for _, c := range list {
		out[c.Chain] = c
	}
	return out
}

func affinitySet(s trace.NftSet, addrType string) *knftables.Set {
	timeout := time.Duration(s.Timeout) * time.Second
	return &knftables.Set{Name: s.Name, Type: addrType, Flags: []knftables.SetFlag{knftables.DynamicFlag, knftables.TimeoutFlag}, Timeout: &timeout}
}

func element(e trace.NftElement) *knftables.Element {
	el := &knftables.Element{Key: strings.Split(e.Key, " . ")}
	if isMap(e.Set) {
		el.Map = e.Set
		if e.Exists && e.Value != "" {
			el.Value = []string{e.Value}
		}
	} else {
		el.Set = e.Set
	}
	if e.Comment != "" && e.Exists {
		c := e.Comment
		el.Comment = &c
	}
	return el
}

func isMap(set string) bool {
	return set != kubeproxy.NftClusterIPs && set != kubeproxy.NftHairpin
}

// Script is the change as nft reads it: the transaction, then the chain deletions (a second
// transaction when written).
func Script(c trace.NftChange) string {
	fk := knftables.NewFake(knftables.Family(c.Family), Table)
	tx := fk.NewTransaction()
	remove := Fill(tx, c.Family, c.Before, c.After)
	del := fk.NewTransaction()
	for _, name := range remove {
		del.Delete(&knftables.Chain{Name: name})
	}
	return tx.String() + del.String()
}

// Differences lists where the node's objects (now) differ from want: a chain's existence or rules,
// a set's existence or timeout, an element's presence or value (comments are not compared, as
// kube-proxy does not compare them either).
func Differences(now, want trace.NftState) []string {
	var out []string
	nc := chainMap(now.Chains)
	for _, c := range want.Chains {
		got := nc[c.Chain]
		switch {
		case got.Exists != c.Exists && c.Exists:
			out = append(out, "chain "+c.Chain+" is missing")
		case got.Exists != c.Exists:
			out = append(out, "chain "+c.Chain+" exists")
		case c.Exists && !slices.Equal(got.Rules, c.Rules):
			out = append(out, fmt.Sprintf("chain %s has %d rule(s) other than expected", c.Chain, len(got.Rules)))
		}
	}
	ns := map[string]trace.NftSet{}
	for _, s := range now.Sets {
		ns[s.Name] = s
	}
	for _, s := range want.Sets {
		got := ns[s.Name]
		if got.Exists != s.Exists || s.Exists && got.Timeout != s.Timeout {
			out = append(out, "affinity set "+s.Name+" is not as expected")
		}
	}
	ne := map[string]trace.NftElement{}
	for _, e := range now.Elements {
		ne[e.Set+" "+e.Key] = e
	}
	for _, e := range want.Elements {
		got := ne[e.Set+" "+e.Key]
		switch {
		case got.Exists != e.Exists && e.Exists:
			out = append(out, fmt.Sprintf("%s has no element %s", e.Set, e.Key))
		case got.Exists != e.Exists:
			out = append(out, fmt.Sprintf("%s still has element %s", e.Set, e.Key))
		case e.Exists && got.Value != e.Value:
			out = append(out, fmt.Sprintf("%s element %s is %q, not %q", e.Set, e.Key, got.Value, e.Value))
		}
	}
	return out
}

// Select is the state of the objects named in want as the table has them.
func Select(t *nftables.Table, want trace.NftState) (trace.NftState, error) {
	var out trace.NftState
	o, bad := kubeproxy.NodeNftObjects(t)
	for _, c := range want.Chains {
		for _, b := range bad {
			if strings.HasPrefix(b, "chain "+c.Chain+": ") {
				return out, fmt.Errorf("%s holds a rule svctrace cannot read back (%s)", c.Chain, b)
			}
		}
		rules, ok := o.Chains[c.Chain]
		out.Chains = append(out.Chains, trace.ChainRules{Chain: c.Chain, Exists: ok, Rules: nonNil(rules)})
	}
	for _, s := range want.Sets {
		timeout, ok := o.Affinity[s.Name]
		out.Sets = append(out.Sets, trace.NftSet{Name: s.Name, Exists: ok, Timeout: timeout})
	}
	for _, e := range want.Elements {
		v, ok := o.Elems[e.Set][e.Key]
		out.Elements = append(out.Elements, trace.NftElement{Set: e.Set, Key: e.Key, Exists: ok, Value: v, Comment: o.Comments[e.Set][e.Key]})
	}
	return out, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Read reads kube-proxy's table of a family on the node (`nft -j list table`) and selects the
// objects named in want.
func Read(ctx context.Context, r noderun.Runner, family string, want trace.NftState) (trace.NftState, error) {
	if family != "ip" && family != "ip6" {
		return trace.NftState{}, fmt.Errorf("family %q is not ip or ip6", family)
	}
	out, err := r.Run(ctx, "nft", "-j", "list", "table", family, Table)
	if err != nil {
		return trace.NftState{}, err
	}
	rs, err := nftjson.Parse(out)
	if err != nil {
		return trace.NftState{}, err
	}
	for _, t := range rs.Tables {
		if t.Family == family && t.Name == Table {
			return Select(t, want)
		}
	}
	return trace.NftState{}, fmt.Errorf("the node has no %s %s table", family, Table)
}

// Writer writes transactions to one family's kube-proxy table.
type Writer interface {
	NewTransaction() *knftables.Transaction
	Check(ctx context.Context, tx *knftables.Transaction) error
	Run(ctx context.Context, tx *knftables.Transaction) error
}

var (
	writersMu sync.Mutex
	writers   = map[string]Writer{}
)

// New is the node's nft for kube-proxy's table of a family, made once per process: knftables
// runs nft to learn its version and features when made, 0.2 s a run on a node with 10,000
// Services (nft 1.0.6 fetches every set's elements even for that).
func New(family string) (Writer, error) {
	if family != "ip" && family != "ip6" {
		return nil, fmt.Errorf("family %q is not ip or ip6", family)
	}
	writersMu.Lock()
	defer writersMu.Unlock()
	if w := writers[family]; w != nil {
		return w, nil
	}
	w, err := knftables.New(knftables.Family(family), Table)
	if err != nil {
		return nil, err
	}
	writers[family] = w
	return w, nil
}

// ErrNotChecked wraps what nft --check refused.
var ErrNotChecked = errors.New("nft --check refused the transaction")

// Check checks the transaction that turns from into to without writing it.
func Check(ctx context.Context, w Writer, family string, from, to trace.NftState) error {
	tx := w.NewTransaction()
	Fill(tx, family, from, to)
	if tx.NumOperations() == 0 {
		return nil
	}
	if err := w.Check(ctx, tx); err != nil {
		return fmt.Errorf("%w: %v", ErrNotChecked, err)
	}
	return nil
}

// Write turns from into to: one transaction, then the deletion of the chains to no longer has,
// tried again for up to two seconds while the kernel still counts them referenced.
func Write(ctx context.Context, w Writer, family string, from, to trace.NftState) error {
	tx := w.NewTransaction()
	remove := Fill(tx, family, from, to)
	if tx.NumOperations() > 0 {
		if err := w.Run(ctx, tx); err != nil {
			return err
		}
	}
	if len(remove) == 0 {
		return nil
	}
	var err error
	for deadline := time.Now().Add(2 * time.Second); ; {
		del := w.NewTransaction()
		for _, c := range remove {
			del.Delete(&knftables.Chain{Name: c})
		}
		if err = w.Run(ctx, del); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("deleting %d emptied chain(s): %w", len(remove), err)
	}
	return nil
}

var (
	chainName = regexp.MustCompile(`^(service|local|external|firewall|endpoint)-[A-Z2-7]{8}-[a-z0-9.-]+/[a-z0-9.-]+/(tcp|udp|sctp)/[a-z0-9-]*(__[0-9a-f.]+/[0-9]{1,5})?(\.\.\.)?$`)
	setName   = regexp.MustCompile(`^affinity-[A-Z2-7]{8}-[a-z0-9.-]+/[a-z0-9.-]+/(tcp|udp|sctp)/[a-z0-9-]*__[0-9a-f.]+/[0-9]{1,5}(\.\.\.)?$`)
	// ruleText is what a rule may hold: nft's words, addresses, set names and a quoted comment;
	// no command separator, line break or include.
	ruleText  = regexp.MustCompile(`^[A-Za-z0-9 _./:,{}@!=&|^\[\]*"-]+$`)
	jumpWord  = regexp.MustCompile(`\b(?:goto|jump) (\S+)`)
	commentOK = regexp.MustCompile(`^[a-z0-9./:-]{1,128}$`)
)

// Validate checks a change read from a plan or state file as untrusted data: the family, and
// that every chain, set and element is kube-proxy's per-Service kind, every rule one line of nft
// words that jumps only to such chains (or kube-proxy's reject-chain), every element key made of
// addresses, protocols and ports, every value a verdict.
func Validate(c trace.NftChange) error {
	if c.Family != "ip" && c.Family != "ip6" {
		return fmt.Errorf("nftables change: family %q is not ip or ip6", c.Family)
	}
	for _, st := range []trace.NftState{c.Before, c.After} {
		seen := map[string]bool{}
		for _, ch := range st.Chains {
			if !chainName.MatchString(ch.Chain) || len(ch.Chain) > 256 {
				return fmt.Errorf("nftables change: %q is not one of kube-proxy's per-Service chains", ch.Chain)
			}
			if seen[ch.Chain] {
				return fmt.Errorf("nftables change: chain %s is listed twice", ch.Chain)
			}
			seen[ch.Chain] = true
			if !ch.Exists && len(ch.Rules) > 0 {
				return fmt.Errorf("nftables change: absent chain %s has rules", ch.Chain)
			}
			for _, r := range ch.Rules {
				if err := validRule(r); err != nil {
					return fmt.Errorf("nftables change: chain %s: %v", ch.Chain, err)
				}
			}
		}
		for _, s := range st.Sets {
			if !setName.MatchString(s.Name) || len(s.Name) > 256 {
				return fmt.Errorf("nftables change: %q is not one of kube-proxy's affinity sets", s.Name)
			}
			if s.Exists && (s.Timeout < 1 || s.Timeout > 86400) {
				return fmt.Errorf("nftables change: affinity set %s has timeout %d", s.Name, s.Timeout)
			}
		}
		for _, e := range st.Elements {
			if err := validElement(c.Family, e); err != nil {
				return fmt.Errorf("nftables change: %v", err)
			}
		}
	}
	if len(c.Before.Chains) != len(c.After.Chains) || len(c.Before.Sets) != len(c.After.Sets) || len(c.Before.Elements) != len(c.After.Elements) {
		return errors.New("nftables change: its before and after do not name the same objects")
	}
	for i := range c.Before.Chains {
		if c.Before.Chains[i].Chain != c.After.Chains[i].Chain {
			return errors.New("nftables change: its before and after do not name the same chains")
		}
	}
	for i := range c.Before.Sets {
		if c.Before.Sets[i].Name != c.After.Sets[i].Name {
			return errors.New("nftables change: its before and after do not name the same sets")
		}
	}
	for i := range c.Before.Elements {
		if c.Before.Elements[i].Set != c.After.Elements[i].Set || c.Before.Elements[i].Key != c.After.Elements[i].Key {
			return errors.New("nftables change: its before and after do not name the same elements")
		}
	}
	return nil
}

func validRule(r string) error {
	if len(r) > 1<<20 || !ruleText.MatchString(r) {
		return fmt.Errorf("rule %.80q holds characters nft rules of kube-proxy do not", r)
	}
	if strings.Count(r, `"`)%2 != 0 {
		return fmt.Errorf("rule %.80q has an unclosed quote", r)
	}
	for _, m := range jumpWord.FindAllStringSubmatch(r, -1) {
		t := strings.TrimRight(m[1], ",}")
		if t != "reject-chain" && !chainName.MatchString(t) {
			return fmt.Errorf("rule %.80q jumps to %s, which is not a kube-proxy per-Service chain", r, t)
		}
	}
	return nil
}

func validElement(family string, e trace.NftElement) error {
	if !slices.Contains(kubeproxy.NftContainers, e.Set) {
		return fmt.Errorf("%q is not one of kube-proxy's shared sets and maps", e.Set)
	}
	parts := strings.Split(e.Key, " . ")
	for _, p := range parts {
		if a, err := netip.ParseAddr(p); err == nil {
			if a.Is4() != (family == "ip") || a.Zone() != "" {
				return fmt.Errorf("element %q of %s has an address of the other family", e.Key, e.Set)
			}
			continue
		}
		if p == "tcp" || p == "udp" || p == "sctp" {
			continue
		}
		if len(p) > 0 && len(p) <= 5 && strings.Trim(p, "0123456789") == "" {
			continue
		}
		return fmt.Errorf("element %q of %s is not made of addresses, protocols and ports", e.Key, e.Set)
	}
	switch {
	case !e.Exists:
		if e.Value != "" {
			return fmt.Errorf("absent element %q of %s has a value", e.Key, e.Set)
		}
	case !isMap(e.Set):
		if e.Value != "" {
			return fmt.Errorf("element %q of set %s has a value", e.Key, e.Set)
		}
	case e.Value == "drop" || e.Value == "goto reject-chain":
	default:
		target, ok := strings.CutPrefix(e.Value, "goto ")
		if !ok || !chainName.MatchString(target) {
			return fmt.Errorf("element %q of %s sends to %q, not a kube-proxy chain", e.Key, e.Set, e.Value)
		}
	}
	if e.Comment != "" && !commentOK.MatchString(e.Comment) {
		return fmt.Errorf("element %q of %s has comment %q", e.Key, e.Set, e.Comment)
	}
	return nil
}
