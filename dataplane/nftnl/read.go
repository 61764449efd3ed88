//go:build linux

package nftnl

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"sort"
	"sync"

	gn "github.com/google/nftables"
	"github.com/google/nftables/userdata"

	"github.com/svctrace/svctrace/trace/nftables"
)

// Reader reads tables, chains and sets over netlink, in the network namespace of the process.
type Reader struct {
	mu    sync.Mutex
	c     *gn.Conn
	netns *os.File
	// kinds are the key components of the named sets the rules decoded so far look up, by
	// "family table set": a set's elements are written by what its users compare them with.
	kinds map[string][]kind
}

// Open connects to nf_tables of this process's network namespace, or of the namespace netns (an
// open /run/netns/NAME) when it is not nil.
func Open(netns *os.File) (*Reader, error) {
	// One socket for every request (a whole-table read makes tens of thousands).
	opts := []gn.ConnOption{gn.AsLasting()}
	if netns != nil {
		opts = append(opts, gn.WithNetNSFd(int(netns.Fd())))
	}
	c, err := gn.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nf_tables netlink: %w", err)
	}
	return &Reader{c: c, netns: netns, kinds: map[string][]kind{}}, nil
}

// Close ends the connection.
func (r *Reader) Close() error { return r.c.CloseLasting() }

var families = map[gn.TableFamily]string{gn.TableFamilyIPv4: "ip", gn.TableFamilyIPv6: "ip6", gn.TableFamilyINet: "inet"}

func family(f string) (gn.TableFamily, error) {
	for k, v := range families {
		if v == f {
			return k, nil
		}
	}
	return 0, fmt.Errorf("nftables family %q is not read over netlink", f)
}

// Tables lists the ip, ip6 and inet tables.
func (r *Reader) Tables() ([]nftables.Object, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []nftables.Object
	for _, f := range []gn.TableFamily{gn.TableFamilyIPv4, gn.TableFamilyIPv6, gn.TableFamilyINet} {
		ts, err := r.c.ListTablesOfFamily(f)
		if err != nil {
			return nil, fmt.Errorf("listing nftables tables: %w", err)
		}
		for _, t := range ts {
			out = append(out, nftables.Object{Family: families[f], Table: t.Name, Kind: "table", Name: t.Name})
		}
	}
	return out, nil
}

var hooks = map[gn.ChainHook]string{*gn.ChainHookPrerouting: "prerouting", *gn.ChainHookInput: "input",
	*gn.ChainHookForward: "forward", *gn.ChainHookOutput: "output", *gn.ChainHookPostrouting: "postrouting"}

// Read reads chains (their rules), sets (their elements) and elements (a set's key, values giving
// the keys: a partial set) of one table, as a Ruleset holding that table with those objects.
func (r *Reader) Read(fam, table string, objs []nftables.Object, values map[nftables.Object]any) (*nftables.Ruleset, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, err := family(fam)
	if err != nil {
		return nil, err
	}
	t := &gn.Table{Name: table, Family: f}
	mt := &nftables.Table{Family: fam, Name: table, Chains: map[string]*nftables.Chain{}, Sets: map[string]*nftables.Set{}}
	// Chains first: decoding their rules tells how the sets they look up are keyed.
	sort.SliceStable(objs, func(i, j int) bool { return objs[i].Kind == "chain" && objs[j].Kind != "chain" })
	keys := map[string][]nftables.Object{}
	var keyed []string
	for _, o := range objs {
		switch o.Kind {
		case "chain":
			c, err := r.chain(t, fam, o.Name)
			if err != nil {
				return nil, err
			}
			c.Table = mt
			mt.Chains[c.Name] = c
		case "set":
			s, err := r.set(t, fam, o.Name)
			if err != nil {
				return nil, err
			}
			mt.Sets[s.Name] = s
		case "element":
			if keys[o.Name] == nil {
				keyed = append(keyed, o.Name)
			}
			keys[o.Name] = append(keys[o.Name], o)
		default:
			return nil, fmt.Errorf("nftables object kind %q", o.Kind)
		}
	}
	for _, name := range keyed {
		if mt.Sets[name] != nil {
			continue // read whole in this same call
		}
		s, err := r.elements(t, fam, name, keys[name], values)
		if err != nil {
			return nil, err
		}
		mt.Sets[name] = s
	}
	return &nftables.Ruleset{Tables: []*nftables.Table{mt}}, nil
}

func (r *Reader) chain(t *gn.Table, fam, name string) (*nftables.Chain, error) {
	ch, err := r.c.ListChain(t, name)
	if err != nil {
		return nil, fmt.Errorf("chain %s %s %s: %w", fam, t.Name, name, err)
	}
	mc := &nftables.Chain{Name: name}
	if ch.Hooknum != nil {
		if mc.Hook = hooks[*ch.Hooknum]; mc.Hook == "" {
			return nil, fmt.Errorf("chain %s %s %s: hook %d is not read", fam, t.Name, name, *ch.Hooknum)
		}
		mc.Type = string(ch.Type)
		if ch.Priority != nil {
			mc.Prio = int(*ch.Priority)
		}
		mc.Policy = "accept"
		if ch.Policy != nil && *ch.Policy == gn.ChainPolicyDrop {
			mc.Policy = "drop"
		}
	}
	rules, err := r.c.GetRules(t, ch)
	if err != nil {
		return nil, fmt.Errorf("rules of chain %s %s %s: %w", fam, t.Name, name, err)
	}
	anon := map[string]*setInfo{}
	sets := func(set string) (*setInfo, error) {
		if si := anon[set]; si != nil {
			return si, nil
		}
		s, err := r.c.GetSetByName(t, set)
		if err != nil {
			return nil, fmt.Errorf("set %s %s %s: %w", fam, t.Name, set, err)
		}
		si := &setInfo{set: s}
		if s.Anonymous {
			if si.elems, err = r.c.GetSetElements(s); err != nil {
				return nil, fmt.Errorf("elements of set %s %s %s: %w", fam, t.Name, set, err)
			}
			sortElems(s, si.elems)
			anon[set] = si
		}
		return si, nil
	}
	for _, rule := range rules {
		exprs, used, err := decodeRule(fam, rule.Exprs, sets)
		if err != nil {
			return nil, fmt.Errorf("chain %s %s %s rule handle %d: %w", fam, t.Name, name, rule.Handle, err)
		}
		for set, kinds := range used {
			r.kinds[fam+" "+t.Name+" "+set] = kinds
		}
		comment, _ := userdata.GetString(rule.UserData, userdata.TypeComment)
		mc.Rules = append(mc.Rules, nftables.NewRule(name, int(rule.Handle), exprs, comment))
	}
	return mc, nil
}

// header reads a set's header: the set, its key's components (from the rules that look it up),
// and an empty model set of its kind.
func (r *Reader) header(t *gn.Table, fam, name string) (*gn.Set, []component, *nftables.Set, error) {
	kinds, ok := r.kinds[fam+" "+t.Name+" "+name]
	if !ok {
		return nil, nil, nil, fmt.Errorf("set %s %s %s: no rule read looks it up, so its key is not known", fam, t.Name, name)
	}
	comps, err := keyComponents(kinds, fam)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("set %s %s %s: %w", fam, t.Name, name, err)
	}
	s, err := r.c.GetSetByName(t, name)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("set %s %s %s: %w", fam, t.Name, name, err)
	}
	if s.Interval || s.Anonymous {
		return nil, nil, nil, fmt.Errorf("set %s %s %s has intervals or is anonymous, which is not read here", fam, t.Name, name)
	}
	ms := &nftables.Set{Name: name, Timeout: int(s.Timeout.Seconds())}
	if s.IsMap {
		ms.Map = s.DataType.Name
		if s.KeyType.Name == "verdict" {
			ms.Map = "verdict"
		}
	}
	return s, comps, ms, nil
}

func (r *Reader) set(t *gn.Table, fam, name string) (*nftables.Set, error) {
	s, comps, ms, err := r.header(t, fam, name)
	if err != nil {
		return nil, err
	}
	elems, err := r.c.GetSetElements(s)
	if err != nil {
		return nil, fmt.Errorf("elements of set %s %s %s: %w", fam, t.Name, name, err)
	}
	sortElems(s, elems)
	for _, e := range elems {
		k, err := elemValue(e.Key, comps)
		if err != nil {
			return nil, fmt.Errorf("set %s %s %s: %w", fam, t.Name, name, err)
		}
		me := nftables.Elem{Key: k, Comment: e.Comment}
		if s.IsMap {
			if me.Data, err = mapData(s, e.Val); err != nil {
				return nil, fmt.Errorf("map %s %s %s: %w", fam, t.Name, name, err)
			}
		}
		ms.Elems = append(ms.Elems, me)
	}
	return ms, nil
}

// ReadTable reads a whole table: every chain, then every named set its rules look up.
func (r *Reader) ReadTable(fam, name string) (*nftables.Table, error) {
	f, err := family(fam)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	chains, err := r.c.ListChainsOfTableFamily(f)
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var objs []nftables.Object
	for _, c := range chains {
		if c.Table.Name == name {
			objs = append(objs, nftables.Object{Family: fam, Table: name, Kind: "chain", Name: c.Name})
		}
	}
	rs, err := r.Read(fam, name, objs, nil)
	if err != nil {
		return nil, err
	}
	var sets []nftables.Object
	for k := range r.kinds {
		var sf, st, sn string
		if n, _ := fmt.Sscanf(k, "%s %s %s", &sf, &st, &sn); n == 3 && sf == fam && st == name {
			sets = append(sets, nftables.Object{Family: fam, Table: name, Kind: "set", Name: sn})
		}
	}
	more, err := r.Read(fam, name, sets, nil)
	if err != nil {
		return nil, err
	}
	t := rs.Tables[0]
	t.Sets = more.Tables[0].Sets
	return t, nil
}

// sortElems orders elements as nft lists them: by key, integers (host order) by value, other
// keys (addresses, ports: network order) byte by byte.
func sortElems(s *gn.Set, es []gn.SetElement) {
	sort.SliceStable(es, func(i, j int) bool { return keyLess(s, es[i].Key, es[j].Key) })
}

// keyLess orders two keys of a set's elements as nft lists them.
func keyLess(s *gn.Set, a, b []byte) bool {
	if (s.KeyType.Name == "integer" || s.KeyType.Name == "mark") && len(a) == 4 && len(b) == 4 {
		return binary.NativeEndian.Uint32(a) < binary.NativeEndian.Uint32(b)
	}
	return bytes.Compare(a, b) < 0
}
