package nftwrite

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/svctrace/svctrace/dataplane/nftnl"
	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/kubeproxy"
	"github.com/svctrace/svctrace/trace/nftables"
)

// objects reads parts of kube-proxy's table of a family over netlink.
type objects struct {
	r      *nftnl.Reader
	family string
	// chains are the table's chain names; read says whether the static chains were read (their
	// rules tell the reader how the shared sets are keyed).
	chains map[string]bool
	read   bool
	t      *nftables.Table
}

// newObjects starts a read of a family's table. With names, the table's chain names are listed
// first (a plan looks for a Service's chains by name); without, only the chains asked for and
// kube-proxy's static chains are asked whether they exist, one request each (a read-back names
// every chain it wants: cheaper than listing 10,000 names).
func newObjects(r *nftnl.Reader, family string, names bool, want []string) (*objects, error) {
	if family != "ip" && family != "ip6" {
		return nil, fmt.Errorf("family %q is not ip or ip6", family)
	}
	o := &objects{r: r, family: family, chains: map[string]bool{},
		t: &nftables.Table{Family: family, Name: Table, Chains: map[string]*nftables.Chain{}, Sets: map[string]*nftables.Set{}, Partial: true}}
	if names {
		list, err := r.ChainNames(family, Table)
		if err != nil {
			return nil, err
		}
		for _, n := range list {
			o.chains[n] = true
		}
	} else {
		for _, n := range append(slices.Clone(kubeproxy.NftStaticChains), want...) {
			ok, err := r.HasChain(family, Table, n)
			if err != nil {
				return nil, err
			}
			o.chains[n] = ok
		}
	}
	if !o.chains["services"] {
		return nil, fmt.Errorf("the node has no %s %s table (or not kube-proxy's services chain in it)", family, Table)
	}
	return o, nil
}

// add reads the chains (those that exist: an absent one stays absent from the table, as from
// the node), whole sets, set headers (timeouts) and single elements (by key) into the table.
func (o *objects) add(chains, whole, headers []string, elems []trace.NftElement) error {
	var objs []nftables.Object
	obj := func(kind, name, key string) nftables.Object {
		return nftables.Object{Family: o.family, Table: Table, Kind: kind, Name: name, Key: key}
	}
	if !o.read {
		for _, c := range kubeproxy.NftStaticChains {
			if o.chains[c] {
				objs = append(objs, obj("chain", c, ""))
			}
		}
		o.read = true
	}
	for _, c := range chains {
		if o.chains[c] && o.t.Chains[c] == nil && !slices.Contains(kubeproxy.NftStaticChains, c) {
			objs = append(objs, obj("chain", c, ""))
		}
	}
	for _, s := range whole {
		objs = append(objs, obj("set", s, ""))
	}
	values := map[nftables.Object]any{}
	for _, e := range elems {
		v, ok := nftables.ParseKey(e.Key)
		if !ok {
			return fmt.Errorf("%s element %q is not one exact key", e.Set, e.Key)
		}
		x := obj("element", e.Set, e.Key)
		objs = append(objs, x)
		values[x] = v
	}
	rs, err := o.r.Read(o.family, Table, objs, values)
	if err != nil {
		return err
	}
	for _, pt := range rs.Tables {
		for name, c := range pt.Chains {
			c.Table = o.t
			o.t.Chains[name] = c
		}
		for name, s := range pt.Sets {
			if old := o.t.Sets[name]; old != nil && old.Partial && s.Partial {
				old.MergeProbes(s)
				continue
			}
			o.t.Sets[name] = s
		}
	}
	for _, name := range headers {
		timeout, ok, err := o.r.SetHeader(o.family, Table, name)
		if err != nil {
			return err
		}
		if ok {
			o.t.Sets[name] = &nftables.Set{Name: name, Timeout: timeout}
		}
	}
	return nil
}

// ReadNetlink reads the objects want names in kube-proxy's table of a family over netlink, as
// Read does with nft: the chains by name, the affinity sets' headers, the elements key by key;
// not the rest of the table (at 10,000 Services `nft -j list table` takes seconds, this a few
// milliseconds).
func ReadNetlink(r *nftnl.Reader, family string, want trace.NftState) (trace.NftState, error) {
	var chains, sets []string
	for _, c := range want.Chains {
		chains = append(chains, c.Chain)
	}
	o, err := newObjects(r, family, false, chains)
	if err != nil {
		return trace.NftState{}, err
	}
	for _, s := range want.Sets {
		sets = append(sets, s.Name)
	}
	if err := o.add(chains, nil, sets, want.Elements); err != nil {
		return trace.NftState{}, err
	}
	return Select(o.t, want)
}

// ReadForPlan reads over netlink the part of kube-proxy's table of a family that a repair plan of
// the Services in scope looks at: kube-proxy's static chains, every per-Service chain named after
// one of those Services, the elements of the maps that say which Service an element belongs to
// (kubeproxy.NftOwnerMaps) that say one of those, and what kubeproxy.NftScopeProbes names (affinity sets, and
// keys of the cluster-IP and hairpin sets). When the services chain does not show kube-proxy's
// local-traffic detector, every external chain is read too (the planner looks for it there). The
// table is marked partial; planned on, it gives the plan the whole table gives for that scope.
func ReadForPlan(r *nftnl.Reader, family string, cl *trace.Cluster, node *trace.NodeContext, scope trace.CheckScope) (*nftables.Table, error) {
	o, err := newObjects(r, family, true, nil)
	if err != nil {
		return nil, err
	}
	var mine []string
	for name := range o.chains {
		if kubeproxy.IsNftServiceChain(name) && kubeproxy.NftChainInScope(name, scope) {
			mine = append(mine, name)
		}
	}
	if err := o.add(mine, nil, nil, nil); err != nil {
		return nil, err
	}
	// Of the maps that name their elements' Services, only this scope's elements (the others
	// are never planned on with this scope): service-ips has one per Service port of the node.
	for _, name := range kubeproxy.NftOwnerMaps {
		s, err := r.SetWhere(family, Table, name, func(target, comment string) bool {
			return kubeproxy.IsNftServiceChain(target) && kubeproxy.NftChainInScope(target, scope) || kubeproxy.NftCommentInScope(comment, scope)
		})
		if err != nil {
			return nil, err
		}
		o.t.Sets[name] = s
	}
	detector := false
	if s := o.t.Chains["services"]; s != nil {
		for _, r := range s.Rules {
			detector = detector || r.Comment == "masquerade clusterIP traffic from outside cluster"
		}
	}
	if !detector {
		var external []string
		for name := range o.chains {
			if strings.HasPrefix(name, "external-") {
				external = append(external, name)
			}
		}
		if err := o.add(external, nil, nil, nil); err != nil {
			return nil, err
		}
	}
	probes, err := kubeproxy.NftScopeProbes(o.t, cl, node, scope)
	if err != nil {
		return nil, err
	}
	var sets []string
	for _, s := range probes.Sets {
		sets = append(sets, s.Name)
	}
	if err := o.add(nil, nil, sets, probes.Elements); err != nil {
		return nil, err
	}
	return o.t, nil
}

// PlanTables reads, on this node over netlink, kube-proxy's tables (ip and ip6, those it has) as
// a plan of the Services in scope needs them (ReadForPlan).
func PlanTables(cl *trace.Cluster, node *trace.NodeContext, scope trace.CheckScope) ([]*nftables.Table, error) {
	r, err := nftnl.Open(nil)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	tables, err := r.Tables()
	if err != nil {
		return nil, err
	}
	var out []*nftables.Table
	for _, t := range tables {
		if t.Table != Table || t.Family != "ip" && t.Family != "ip6" {
			continue
		}
		tab, err := ReadForPlan(r, t.Family, cl, node, scope)
		if err != nil {
			return nil, err
		}
		out = append(out, tab)
	}
	return out, nil
}

// ReadLocal reads the objects want names in kube-proxy's table of a family on this node: over
// netlink (ReadNetlink), or, when that fails, with nft (Read).
func ReadLocal(ctx context.Context, r noderun.Runner, family string, want trace.NftState) (trace.NftState, error) {
	if nl, err := nftnl.Open(nil); err == nil {
		defer nl.Close()
		if s, err := ReadNetlink(nl, family, want); err == nil {
			return s, nil
		}
	}
	return Read(ctx, r, family, want)
}
