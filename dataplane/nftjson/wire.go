package nftjson

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"

	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/nftables"
)

// The scoped read through a pod: the laptop's Scoped asks, read by read, an svctrace binary on
// the node (the agent's pod, `kubectl-svctrace nft-objects REQUEST`) for kube-proxy's chains,
// sets and keys; that binary reads them over netlink (ServeObjects) and answers with them as nft
// prints them (an `nft -j` document) and, for sets read by key, the keys asked. A few kilobytes
// per read where `nft -j list ruleset` prints megabytes.

// ObjectsCommand is the hidden command that serves a read.
const ObjectsCommand = "nft-objects"

// maxObjects bounds one request; maxAnswer one answer (a whole table of 10,000 Services is
// about 13 MB).
const (
	maxObjects = 4096
	maxAnswer  = 64 << 20
)

// objectRequest is a read: the table names (Tables), or objects of one table. Each read is a
// process of its own on the node: Keying names the chains read before, which it reads again
// (without answering them) to learn how the sets they look up are keyed.
type objectRequest struct {
	Tables  bool              `json:"tables,omitempty"`
	Family  string            `json:"family,omitempty"`
	Table   string            `json:"table,omitempty"`
	Objects []nftables.Object `json:"objects,omitempty"`
	Keying  []string          `json:"keying,omitempty"`
	Walk    *walkRequest      `json:"walk,omitempty"`
}

// walkRequest asks the binary on the node to walk one packet through kube-proxy's table of a
// family itself, reading over netlink what the walk needs, level by level, and to answer with all
// of it and the tables' names: one round trip where the laptop's reads take one per level of the
// packet's path. The laptop then walks what came, and reads the usual way anything its walk still
// misses (the other tables, which it lists with nft, can change what kube-proxy's chains see).
type walkRequest struct {
	Family      string   `json:"family"`
	Src         string   `json:"src"`
	Dst         string   `json:"dst"`
	Protocol    uint8    `json:"protocol"`
	SrcPort     uint16   `json:"srcPort,omitempty"`
	DstPort     uint16   `json:"dstPort"`
	InInterface string   `json:"inInterface,omitempty"`
	Mark        uint32   `json:"mark,omitempty"`
	Origin      uint8    `json:"origin,omitempty"`
	Node        string   `json:"node,omitempty"`
	Local       []string `json:"local,omitempty"`
	PodCIDRs    []string `json:"podCIDRs,omitempty"`
}

func newWalkRequest(family string, p trace.Packet, node *trace.NodeContext) *walkRequest {
	w := &walkRequest{Family: family, Src: p.Src.String(), Dst: p.Dst.String(), Protocol: uint8(p.Protocol), SrcPort: p.SrcPort,
		DstPort: p.DstPort, InInterface: p.InInterface, Mark: p.Mark, Origin: uint8(p.Origin)}
	if node != nil {
		w.Node = node.Name
		for _, a := range node.Local {
			w.Local = append(w.Local, a.String())
		}
		for _, c := range node.PodCIDRs {
			w.PodCIDRs = append(w.PodCIDRs, c.String())
		}
	}
	return w
}

// packet validates a walk request as untrusted input and returns its packet and node.
func (w *walkRequest) packet() (trace.Packet, *trace.NodeContext, error) {
	var p trace.Packet
	if w.Family != "ip" && w.Family != "ip6" {
		return p, nil, fmt.Errorf("walk: family %q is not ip or ip6", w.Family)
	}
	src, err1 := netip.ParseAddr(w.Src)
	dst, err2 := netip.ParseAddr(w.Dst)
	if err1 != nil || err2 != nil || src.Zone() != "" || dst.Zone() != "" {
		return p, nil, fmt.Errorf("walk: addresses %q and %q", w.Src, w.Dst)
	}
	proto, err := trace.ParseProtocol(strconv.Itoa(int(w.Protocol)))
	if err != nil {
		return p, nil, fmt.Errorf("walk: %w", err)
	}
	if w.Origin > uint8(trace.FromLocalProcess) {
		return p, nil, fmt.Errorf("walk: origin %d", w.Origin)
	}
	if len(w.InInterface) > 15 || len(w.Node) > 253 || len(w.Local) > maxObjects || len(w.PodCIDRs) > 16 {
		return p, nil, errors.New("walk: an interface name, node name or address list too long")
	}
	p = trace.Packet{Src: src, Dst: dst, Protocol: proto, SrcPort: w.SrcPort, DstPort: w.DstPort, InInterface: w.InInterface, Mark: w.Mark, Origin: trace.Origin(w.Origin)}
	node := &trace.NodeContext{Name: w.Node}
	for _, l := range w.Local {
		a, err := netip.ParseAddr(l)
		if err != nil {
			return p, nil, fmt.Errorf("walk: local address %q", l)
		}
		node.Local = append(node.Local, a)
	}
	for _, c := range w.PodCIDRs {
		pfx, err := netip.ParsePrefix(c)
		if err != nil {
			return p, nil, fmt.Errorf("walk: pod CIDR %q", c)
		}
		node.PodCIDRs = append(node.PodCIDRs, pfx)
	}
	return p, node, nil
}

// objectAnswer is what was read: an nft -j document, the keys each partial set was asked for,
// and for a Tables request the tables.
type objectAnswer struct {
	Nftables []map[string]any  `json:"nftables"`
	Probed   []probedKeys      `json:"probed,omitempty"`
	Tables   []nftables.Object `json:"tables,omitempty"`
}

type probedKeys struct {
	Family string   `json:"family"`
	Table  string   `json:"table"`
	Set    string   `json:"set"`
	Keys   []string `json:"keys"`
}

// checkRequest validates a request as untrusted input: the family, the table's name, the
// objects' kinds and names, and element keys that are exact keys; or a walk's packet (see
// serveWalk).
func checkRequest(q *objectRequest) (map[nftables.Object]any, error) {
	if q.Walk != nil {
		if q.Tables || q.Family != "" || q.Table != "" || len(q.Objects) > 0 || len(q.Keying) > 0 {
			return nil, errors.New("a walk is a request of its own")
		}
		_, _, err := q.Walk.packet()
		return nil, err
	}
	if q.Tables {
		return nil, nil
	}
	if q.Family != "ip" && q.Family != "ip6" && q.Family != "inet" {
		return nil, fmt.Errorf("family %q is not ip, ip6 or inet", q.Family)
	}
	if !safeName.MatchString(q.Table) {
		return nil, fmt.Errorf("table name %q is not one svctrace reads", q.Table)
	}
	if len(q.Objects) > maxObjects || len(q.Keying) > maxObjects {
		return nil, fmt.Errorf("%d objects and %d chains in one read (at most %d each)", len(q.Objects), len(q.Keying), maxObjects)
	}
	for _, c := range q.Keying {
		if len(c) == 0 || len(c) > 256 {
			return nil, fmt.Errorf("chain name of %d bytes", len(c))
		}
	}
	values := map[nftables.Object]any{}
	for _, o := range q.Objects {
		if o.Family != q.Family || o.Table != q.Table {
			return nil, fmt.Errorf("object %s %s %s is not of table %s %s", o.Kind, o.Family, o.Table, q.Family, q.Table)
		}
		if len(o.Name) == 0 || len(o.Name) > 256 {
			return nil, fmt.Errorf("object name of %d bytes", len(o.Name))
		}
		switch o.Kind {
		case "chain", "set":
			if o.Key != "" {
				return nil, fmt.Errorf("%s %s has a key", o.Kind, o.Name)
			}
		case "element":
			v, ok := nftables.ParseKey(o.Key)
			if !ok {
				return nil, fmt.Errorf("element key %q of %s is not one exact key", o.Key, o.Name)
			}
			values[o] = v
		default:
			return nil, fmt.Errorf("object kind %q", o.Kind)
		}
	}
	return values, nil
}

// ServeObjects answers one request (the JSON argument of `nft-objects`) from objects, this
// node's netlink reader.
func ServeObjects(ctx context.Context, objects ObjectReader, request []byte) ([]byte, error) {
	var q objectRequest
	dec := json.NewDecoder(bytes.NewReader(request))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil {
		return nil, fmt.Errorf("the request: %w", err)
	}
	values, err := checkRequest(&q)
	if err != nil {
		return nil, fmt.Errorf("the request: %w", err)
	}
	if q.Walk != nil {
		return serveWalk(ctx, objects, q.Walk)
	}
	if q.Tables {
		ts, err := objects.Tables()
		if err != nil {
			return nil, err
		}
		return json.Marshal(objectAnswer{Nftables: []map[string]any{}, Tables: ts})
	}
	if len(q.Keying) > 0 {
		var keying []nftables.Object
		for _, c := range q.Keying {
			keying = append(keying, nftables.Object{Family: q.Family, Table: q.Table, Kind: "chain", Name: c})
		}
		if _, err := objects.Read(q.Family, q.Table, keying, nil); err != nil {
			return nil, err
		}
	}
	rs, err := objects.Read(q.Family, q.Table, q.Objects, values)
	if err != nil {
		return nil, err
	}
	return json.Marshal(encodeAnswer(rs))
}

// serveWalk walks a packet through kube-proxy's table of its family, reading over netlink what
// the walk needs, and answers with everything read and the tables' names.
func serveWalk(ctx context.Context, objects ObjectReader, w *walkRequest) ([]byte, error) {
	p, node, err := w.packet()
	if err != nil {
		return nil, err
	}
	ts, err := objects.Tables()
	if err != nil {
		return nil, err
	}
	s := NewScoped(nil, objects) // no runner: kube-proxy's table alone, nothing listed with nft
	if _, err := s.Walk(ctx, p, node); err != nil {
		return nil, fmt.Errorf("walk: %w", err)
	}
	a := encodeAnswer(s.rs)
	a.Tables = ts
	return json.Marshal(a)
}

// encodeAnswer writes what was read as nft -j prints it, with the partial sets' keys.
func encodeAnswer(rs *nftables.Ruleset) objectAnswer {
	a := objectAnswer{Nftables: []map[string]any{}}
	for _, t := range rs.Tables {
		a.Nftables = append(a.Nftables, map[string]any{"table": map[string]any{"family": t.Family, "name": t.Name}})
		for _, name := range sortedNames(t.Chains) {
			c := t.Chains[name]
			ch := map[string]any{"family": t.Family, "table": t.Name, "name": c.Name}
			if c.Hook != "" {
				ch["hook"], ch["type"], ch["prio"], ch["policy"] = c.Hook, c.Type, c.Prio, c.Policy
			}
			a.Nftables = append(a.Nftables, map[string]any{"chain": ch})
			for _, r := range c.Rules {
				rule := map[string]any{"family": t.Family, "table": t.Name, "chain": c.Name, "handle": r.Handle, "expr": r.Exprs}
				if r.Comment != "" {
					rule["comment"] = r.Comment
				}
				a.Nftables = append(a.Nftables, map[string]any{"rule": rule})
			}
		}
		for _, name := range sortedNames(t.Sets) {
			s := t.Sets[name]
			elems := []any{}
			for _, e := range s.Elems {
				var key any = e.Key
				if e.Comment != "" {
					key = map[string]any{"elem": map[string]any{"val": e.Key, "comment": e.Comment}}
				}
				if s.Map != "" {
					key = []any{key, e.Data}
				}
				elems = append(elems, key)
			}
			kind, set := "set", map[string]any{"family": t.Family, "table": t.Name, "name": s.Name, "elem": elems}
			if s.Map != "" {
				kind, set["map"] = "map", s.Map
			}
			if s.Timeout > 0 {
				set["timeout"] = s.Timeout
			}
			a.Nftables = append(a.Nftables, map[string]any{kind: set})
			if s.Partial {
				a.Probed = append(a.Probed, probedKeys{Family: t.Family, Table: t.Name, Set: s.Name, Keys: s.ProbedKeys()})
			}
		}
	}
	return a
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// decodeAnswer reads an answer as untrusted data: an nft -j document parsed as nft's own output
// is, and the keys of partial sets.
func decodeAnswer(data []byte) (*nftables.Ruleset, []nftables.Object, error) {
	if len(data) > maxAnswer {
		return nil, nil, fmt.Errorf("an answer of %d bytes (at most %d)", len(data), maxAnswer)
	}
	var raw struct {
		Nftables []json.RawMessage `json:"nftables"`
		Probed   []probedKeys      `json:"probed"`
		Tables   []nftables.Object `json:"tables"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, nil, fmt.Errorf("the answer: %w", err)
	}
	if raw.Nftables == nil {
		return nil, nil, errors.New(`the answer has no "nftables" array`)
	}
	rs := &nftables.Ruleset{}
	if err := add(rs, raw.Nftables); err != nil {
		return nil, nil, fmt.Errorf("the answer: %w", err)
	}
	for _, p := range raw.Probed {
		var set *nftables.Set
		var table *nftables.Table
		for _, t := range rs.Tables {
			if t.Family == p.Family && t.Name == p.Table {
				set, table = t.Sets[p.Set], t
			}
		}
		if set == nil {
			return nil, nil, fmt.Errorf("the answer probes set %s %s %s, which it does not hold", p.Family, p.Table, p.Set)
		}
		part := &nftables.Set{Name: set.Name, Map: set.Map, Timeout: set.Timeout, Partial: true}
		for _, k := range p.Keys {
			var found *nftables.Elem
			for i := range set.Elems {
				if ck, ok := nftables.CanonicalKey(set.Elems[i].Key); ok && ck == k {
					found = &set.Elems[i]
				}
			}
			part.AddProbed(k, found)
		}
		if len(part.Elems) != len(set.Elems) {
			return nil, nil, fmt.Errorf("the answer holds elements of set %s that were not asked for", p.Set)
		}
		table.Sets[p.Set] = part
	}
	for _, t := range raw.Tables {
		if t.Kind != "table" || !safeName.MatchString(t.Table) {
			return nil, nil, fmt.Errorf("the answer names a table %q", t.Table)
		}
	}
	return rs, raw.Tables, nil
}

// ExecReader is an ObjectReader that asks an svctrace binary on the node (the agent's pod,
// through the API server) to read over netlink there. Bytes counts what it answered.
type ExecReader struct {
	// Ctx bounds the reads (the command's context).
	Ctx    context.Context
	Runner noderun.Runner
	// Argv0 is the binary in the pod ("kubectl-svctrace").
	Argv0 string
	Bytes int
	// read are the chains read so far, by "family table": each later read names them (Keying).
	read   map[string][]string
	tables []nftables.Object
}

func (x *ExecReader) ask(q objectRequest) (*nftables.Ruleset, []nftables.Object, error) {
	req, err := json.Marshal(q)
	if err != nil {
		return nil, nil, err
	}
	out, err := x.Runner.Run(x.Ctx, x.Argv0, ObjectsCommand, string(req))
	x.Bytes += len(out)
	if err != nil {
		return nil, nil, err
	}
	return decodeAnswer(out)
}

// Tables implements ObjectReader: asked once, the answer kept for the reader's life (one command).
func (x *ExecReader) Tables() ([]nftables.Object, error) {
	if x.tables != nil {
		return x.tables, nil
	}
	_, ts, err := x.ask(objectRequest{Tables: true})
	if err == nil {
		x.tables = append([]nftables.Object{}, ts...)
	}
	return ts, err
}

// Read implements ObjectReader.
func (x *ExecReader) Read(family, table string, objs []nftables.Object, _ map[nftables.Object]any) (*nftables.Ruleset, error) {
	id := family + " " + table
	rs, _, err := x.ask(objectRequest{Family: family, Table: table, Objects: objs, Keying: x.read[id]})
	if err != nil {
		return nil, err
	}
	if x.read == nil {
		x.read = map[string][]string{}
	}
	for _, o := range objs {
		if o.Kind == "chain" {
			x.read[id] = append(x.read[id], o.Name)
		}
	}
	return rs, nil
}

// WalkObjects implements PacketWalker: the binary on the node walks the packet and answers with
// what it read of kube-proxy's table of the family, and the tables (kept, as Tables keeps them).
func (x *ExecReader) WalkObjects(family string, p trace.Packet, node *trace.NodeContext) (*nftables.Ruleset, []nftables.Object, error) {
	rs, ts, err := x.ask(objectRequest{Walk: newWalkRequest(family, p, node)})
	if err != nil {
		return nil, nil, err
	}
	for _, t := range rs.Tables {
		if t.Family != family || t.Name != "kube-proxy" {
			return nil, nil, fmt.Errorf("the walk's answer holds table %s %s", t.Family, t.Name)
		}
		id := family + " " + t.Name
		if x.read == nil {
			x.read = map[string][]string{}
		}
		// Later reads name these chains, as they name the chains read before them.
		for _, name := range sortedNames(t.Chains) {
			if !slices.Contains(x.read[id], name) {
				x.read[id] = append(x.read[id], name)
			}
		}
	}
	if x.tables == nil {
		x.tables = append([]nftables.Object{}, ts...)
	}
	return rs, ts, nil
}
