//go:build linux

// Package nftnl reads kube-proxy's nftables objects one by one over netlink — a chain's rules, a
// set's elements — and decodes them into the statements `nft -j` prints, so that the engine walks
// them as it walks `nft -j list ruleset`. The nft command cannot list one chain cheaply: version
// 1.0.6 fetches the elements of every set first (each of kube-proxy's 10,000 Service chains has an
// anonymous map), which takes seconds on a large node; the kernel itself filters a rule dump by
// chain. Only the statements kube-proxy writes are decoded; anything else is an error, and the
// caller reads the whole ruleset with nft instead.
package nftnl

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	gn "github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// kind is what a register holds, which says how a value compared with it is written.
type kind int

const (
	kindInt      kind = iota // numgen, mark: host-order integers
	kindAddr                 // ip/ip6 saddr, daddr
	kindProto                // meta l4proto
	kindPort                 // th dport, sport: network-order 16 bits
	kindIfname               // iifname, oifname
	kindCtState              // ct state
	kindCtStatus             // ct status
	kindFibType              // fib … type
	kindMap                  // a map lookup's value (NAT address . port)
	kindRaw                  // an immediate, read by its user
	kindMarkOp               // meta mark | x, ^ x: a value for a meta set
)

type reg struct {
	expr any
	kind kind
	// n is the bytes loaded; full the field's length (a shorter load is a prefix match).
	n, full int
	// mask is a bitwise mask applied to ct state/status or an address (prefix).
	mask []byte
	// raw is an immediate's data; parts the byte lengths of a map value's components.
	raw   []byte
	parts []int
}

// setInfo is what a rule's lookup needs of a set: its name, whether it is anonymous, and its
// elements (for anonymous sets, which nft prints inline).
type setInfo struct {
	set   *gn.Set
	elems []gn.SetElement
}

// decoder turns one rule's expressions into nft's JSON statements.
type decoder struct {
	family string // ip or ip6
	regs   map[uint32]reg
	fresh  []uint32 // 32-bit register slots loaded and not yet used, in load order
	out    []map[string]any
	// sets looks a set up by name (anonymous sets of the rule included).
	sets func(name string) (*setInfo, error)
	// used records the key components of the named sets the rule looks up.
	used map[string][]kind
}

// slot is a register's first 32-bit slot: NFT_REG_1..4 are 16 bytes, NFT_REG32_00.. 4 bytes.
func slot(r uint32) uint32 {
	if r >= 1 && r <= 4 {
		return 8 + (r-1)*4
	}
	return r
}

func (d *decoder) load(r uint32, v reg) {
	s := slot(r)
	d.regs[s] = v
	for i, f := range d.fresh {
		if f == s {
			d.fresh = append(d.fresh[:i], d.fresh[i+1:]...)
			break
		}
	}
	d.fresh = append(d.fresh, s)
}

// take returns the register's value and marks it used.
func (d *decoder) take(r uint32) (reg, error) {
	s := slot(r)
	v, ok := d.regs[s]
	if !ok {
		return reg{}, fmt.Errorf("register %d read before it was written", r)
	}
	d.used1(s)
	return v, nil
}

func (d *decoder) used1(s uint32) {
	for i, f := range d.fresh {
		if f == s {
			d.fresh = append(d.fresh[:i], d.fresh[i+1:]...)
			return
		}
	}
}

// key reads a lookup key of n bytes from register r: one value, or a concatenation of values in
// consecutive slots (each padded to 4 bytes).
func (d *decoder) key(r uint32, n int) (any, []kind, error) {
	s := slot(r)
	var parts []any
	var kinds []kind
	for got := 0; got < n; {
		v, ok := d.regs[s]
		if !ok {
			return nil, nil, fmt.Errorf("lookup key register %d not written", s)
		}
		d.used1(s)
		parts = append(parts, v.expr)
		kinds = append(kinds, v.kind)
		w := (v.n + 3) / 4 * 4
		got += w
		s += uint32(w / 4)
	}
	if len(parts) == 1 {
		return parts[0], kinds, nil
	}
	return map[string]any{"concat": parts}, kinds, nil
}

// keyLen is the byte length of the key starting at register r: all slots loaded since they were
// last used, consecutive from r (a lookup takes the whole key it was given).
func (d *decoder) keyLen(r uint32) int {
	s := slot(r)
	n := 0
	for {
		v, ok := d.regs[s]
		if !ok || !d.isFresh(s) {
			return n
		}
		w := (v.n + 3) / 4 * 4
		n += w
		s += uint32(w / 4)
	}
}

func (d *decoder) isFresh(s uint32) bool {
	for _, f := range d.fresh {
		if f == s {
			return true
		}
	}
	return false
}

func (d *decoder) emit(k string, v any) { d.out = append(d.out, map[string]any{k: v}) }

// decodeRule returns a rule's statements as `nft -j` prints them, and the key kinds of the
// named sets it looks up.
func decodeRule(family string, exprs []expr.Any, sets func(string) (*setInfo, error)) ([]map[string]any, map[string][]kind, error) {
	d := &decoder{family: family, regs: map[uint32]reg{}, sets: sets, used: map[string][]kind{}}
	for _, e := range exprs {
		if err := d.expr(e); err != nil {
			return nil, nil, err
		}
	}
	return d.out, d.used, nil
}

func (d *decoder) expr(e expr.Any) error {
	switch x := e.(type) {
	case *expr.Payload:
		if x.OperationType != expr.PayloadLoad {
			return fmt.Errorf("payload write is not decoded")
		}
		v, err := d.payload(x)
		if err != nil {
			return err
		}
		d.load(x.DestRegister, v)
	case *expr.Meta:
		name, k, n := metaKey(x.Key)
		if name == "" {
			return fmt.Errorf("meta key %d is not decoded", x.Key)
		}
		if x.SourceRegister {
			v, err := d.take(x.Register)
			if err != nil {
				return err
			}
			if v.kind != kindMarkOp {
				return fmt.Errorf("meta %s set from a value that is not decoded", name)
			}
			d.emit("mangle", map[string]any{"key": map[string]any{"meta": map[string]any{"key": name}}, "value": v.expr})
			return nil
		}
		d.load(x.Register, reg{expr: map[string]any{"meta": map[string]any{"key": name}}, kind: k, n: n, full: n})
	case *expr.Ct:
		if x.SourceRegister || x.Direction != 0 {
			return fmt.Errorf("ct statement is not decoded")
		}
		switch x.Key {
		case expr.CtKeySTATE:
			d.load(x.Register, reg{expr: map[string]any{"ct": map[string]any{"key": "state"}}, kind: kindCtState, n: 4, full: 4})
		case expr.CtKeySTATUS:
			d.load(x.Register, reg{expr: map[string]any{"ct": map[string]any{"key": "status"}}, kind: kindCtStatus, n: 4, full: 4})
		default:
			return fmt.Errorf("ct key %d is not decoded", x.Key)
		}
	case *expr.Fib:
		if !x.ResultADDRTYPE {
			return fmt.Errorf("fib result other than type is not decoded")
		}
		var flags []any
		for _, f := range []struct {
			on   bool
			name string
		}{{x.FlagSADDR, "saddr"}, {x.FlagDADDR, "daddr"}, {x.FlagMARK, "mark"}, {x.FlagIIF, "iif"}, {x.FlagOIF, "oif"}} {
			if f.on {
				flags = append(flags, f.name)
			}
		}
		d.load(x.Register, reg{expr: map[string]any{"fib": map[string]any{"result": "type", "flags": flags}}, kind: kindFibType, n: 4, full: 4})
	case *expr.Numgen:
		if x.Type != 1 { // NFT_NG_RANDOM
			return fmt.Errorf("numgen type %d is not decoded", x.Type)
		}
		d.load(x.Register, reg{expr: map[string]any{"numgen": map[string]any{"mode": "random", "mod": float64(x.Modulus), "offset": float64(x.Offset)}}, kind: kindInt, n: 4, full: 4})
	case *expr.Bitwise:
		return d.bitwise(x)
	case *expr.Cmp:
		return d.cmp(x)
	case *expr.Lookup:
		return d.lookup(x)
	case *expr.Immediate:
		d.load(x.Register, reg{kind: kindRaw, raw: x.Data, n: len(x.Data), full: len(x.Data)})
	case *expr.Verdict:
		return d.verdict(x.Kind, x.Chain)
	case *expr.NAT:
		return d.nat(x)
	case *expr.Masq:
		if x.ToPorts || x.Random || x.Persistent {
			return fmt.Errorf("masquerade options are not decoded")
		}
		if x.FullyRandom {
			d.emit("masquerade", map[string]any{"flags": "fully-random"})
		} else {
			d.emit("masquerade", nil)
		}
	case *expr.Reject:
		return d.reject(x)
	case *expr.Dynset:
		if x.SrcRegData != 0 || x.Invert || len(x.Exprs) > 0 || x.Operation != 1 { // NFT_DYNSET_OP_UPDATE
			return fmt.Errorf("dynset on @%s is not decoded", x.SetName)
		}
		k, kinds, err := d.key(x.SrcRegKey, d.keyLen(x.SrcRegKey))
		if err != nil {
			return err
		}
		d.used[x.SetName] = kinds
		if x.Timeout != 0 {
			k = map[string]any{"elem": map[string]any{"val": k, "timeout": float64(x.Timeout.Seconds())}}
		}
		d.emit("set", map[string]any{"op": "update", "elem": k, "set": "@" + x.SetName})
	case *expr.Counter:
		d.emit("counter", map[string]any{"packets": float64(x.Packets), "bytes": float64(x.Bytes)})
	default:
		return fmt.Errorf("expression %T is not decoded", e)
	}
	return nil
}

func metaKey(k expr.MetaKey) (string, kind, int) {
	switch k {
	case expr.MetaKeyL4PROTO:
		return "l4proto", kindProto, 1
	case expr.MetaKeyMARK:
		return "mark", kindInt, 4
	case expr.MetaKeyIIFNAME:
		return "iifname", kindIfname, 16
	case expr.MetaKeyOIFNAME:
		return "oifname", kindIfname, 16
	}
	return "", 0, 0
}

func (d *decoder) payload(x *expr.Payload) (reg, error) {
	switch x.Base {
	case expr.PayloadBaseNetworkHeader:
		size, off := 4, map[uint32]string{12: "saddr", 16: "daddr"}
		if d.family == "ip6" {
			size, off = 16, map[uint32]string{8: "saddr", 24: "daddr"}
		}
		field := off[x.Offset]
		if field == "" || int(x.Len) > size {
			return reg{}, fmt.Errorf("%s header offset %d is not decoded", d.family, x.Offset)
		}
		return reg{expr: map[string]any{"payload": map[string]any{"protocol": d.family, "field": field}}, kind: kindAddr, n: int(x.Len), full: size}, nil
	case expr.PayloadBaseTransportHeader:
		field := map[uint32]string{0: "sport", 2: "dport"}[x.Offset]
		if field == "" || x.Len != 2 {
			return reg{}, fmt.Errorf("transport header offset %d is not decoded", x.Offset)
		}
		return reg{expr: map[string]any{"payload": map[string]any{"protocol": "th", "field": field}}, kind: kindPort, n: 2, full: 2}, nil
	}
	return reg{}, fmt.Errorf("payload base %d is not decoded", x.Base)
}

func (d *decoder) bitwise(x *expr.Bitwise) error {
	v, err := d.take(x.SourceRegister)
	if err != nil {
		return err
	}
	switch v.kind {
	case kindCtState, kindCtStatus, kindAddr:
		if !allZero(x.Xor) {
			return fmt.Errorf("bitwise with xor on %v is not decoded", v.expr)
		}
		v.mask = x.Mask
		d.load(x.DestRegister, v)
		return nil
	case kindInt:
		if len(x.Mask) != 4 || len(x.Xor) != 4 {
			return fmt.Errorf("bitwise of %d bytes is not decoded", len(x.Mask))
		}
		m, xr := binary.NativeEndian.Uint32(x.Mask), binary.NativeEndian.Uint32(x.Xor)
		var out any
		switch {
		case xr == 0:
			out = map[string]any{"&": []any{v.expr, float64(m)}}
			d.load(x.DestRegister, reg{expr: out, kind: kindInt, n: 4, full: 4})
			return nil
		case m == ^xr:
			out = map[string]any{"|": []any{v.expr, float64(xr)}}
		case m == 0xffffffff:
			out = map[string]any{"^": []any{v.expr, float64(xr)}}
		default:
			return fmt.Errorf("bitwise mask %#x xor %#x is not decoded", m, xr)
		}
		d.load(x.DestRegister, reg{expr: out, kind: kindMarkOp, n: 4, full: 4})
		return nil
	}
	return fmt.Errorf("bitwise on %v is not decoded", v.expr)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

var cmpOps = map[expr.CmpOp]string{expr.CmpOpEq: "==", expr.CmpOpNeq: "!=", expr.CmpOpLt: "<", expr.CmpOpLte: "<=", expr.CmpOpGt: ">", expr.CmpOpGte: ">="}

func (d *decoder) cmp(x *expr.Cmp) error {
	v, err := d.take(x.Register)
	if err != nil {
		return err
	}
	op := cmpOps[x.Op]
	if op == "" {
		return fmt.Errorf("comparison %d is not decoded", x.Op)
	}
	var right any
	switch v.kind {
	case kindCtState, kindCtStatus:
		// "ct state new": the state masked with new's bit, compared != 0.
		if v.mask == nil || x.Op != expr.CmpOpNeq || !allZero(x.Data) {
			return fmt.Errorf("ct comparison is not decoded")
		}
		names := ctStateBits
		if v.kind == kindCtStatus {
			names = ctStatusBits
		}
		var set []any
		m := binary.NativeEndian.Uint32(v.mask)
		for bit := uint32(1); bit != 0; bit <<= 1 {
			if m&bit != 0 {
				name := names[bit]
				if name == "" {
					return fmt.Errorf("ct bit %#x is not decoded", bit)
				}
				set = append(set, name)
			}
		}
		if len(set) == 1 {
			right = set[0]
		} else {
			right = set
		}
		op = "in"
	case kindAddr:
		right, err = addrValue(v, x.Data)
		if err != nil {
			return err
		}
	case kindProto:
		if len(x.Data) != 1 {
			return fmt.Errorf("l4proto comparison of %d bytes", len(x.Data))
		}
		right = protoName(x.Data[0])
	case kindPort:
		if len(x.Data) != 2 {
			return fmt.Errorf("port comparison of %d bytes", len(x.Data))
		}
		right = float64(binary.BigEndian.Uint16(x.Data))
	case kindIfname:
		s := string(x.Data)
		if i := strings.IndexByte(s, 0); i >= 0 {
			s = s[:i]
		} else {
			s += "*"
		}
		right = s
	case kindInt:
		if len(x.Data) != 4 {
			return fmt.Errorf("integer comparison of %d bytes", len(x.Data))
		}
		right = float64(binary.NativeEndian.Uint32(x.Data))
	case kindFibType:
		if len(x.Data) != 4 {
			return fmt.Errorf("fib type comparison of %d bytes", len(x.Data))
		}
		right = fibTypes[binary.NativeEndian.Uint32(x.Data)]
		if right == "" {
			return fmt.Errorf("fib type %d is not decoded", binary.NativeEndian.Uint32(x.Data))
		}
	default:
		return fmt.Errorf("comparison of %v is not decoded", v.expr)
	}
	d.emit("match", map[string]any{"op": op, "left": v.expr, "right": right})
	return nil
}

var (
	ctStateBits  = map[uint32]string{1: "invalid", 2: "established", 4: "related", 8: "new", 64: "untracked"}
	ctStatusBits = map[uint32]string{1: "expected", 2: "seen-reply", 4: "assured", 8: "confirmed", 16: "snat", 32: "dnat", 512: "dying"}
	fibTypes     = map[uint32]string{0: "unspec", 1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast", 6: "blackhole", 7: "unreachable", 8: "prohibit"}
)

func protoName(p byte) any {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 132:
		return "sctp"
	case 1:
		return "icmp"
	case 58:
		return "ipv6-icmp"
	}
	return float64(p)
}

// addrValue writes an address compared with a (possibly partial or masked) address load: a
// whole address, or a prefix.
func addrValue(v reg, data []byte) (any, error) {
	full := make([]byte, v.full)
	copy(full, data)
	a, ok := netip.AddrFromSlice(full)
	if !ok {
		return nil, fmt.Errorf("address of %d bytes", len(full))
	}
	bits := len(data) * 8
	if v.mask != nil {
		bits = 0
		for _, b := range v.mask {
			for i := 7; i >= 0 && b&(1<<i) != 0; i-- {
				bits++
			}
			if b != 0xff {
				break
			}
		}
		bits += (v.n - len(v.mask)) * 8
		if bits > len(data)*8 {
			bits = len(data) * 8
		}
	}
	if bits == v.full*8 {
		return a.String(), nil
	}
	return map[string]any{"prefix": map[string]any{"addr": a.String(), "len": float64(bits)}}, nil
}

func (d *decoder) verdict(k expr.VerdictKind, chain string) error {
	v, err := verdictValue(k, chain)
	if err != nil {
		return err
	}
	for name, arg := range v {
		d.emit(name, arg)
	}
	return nil
}

func verdictValue(k expr.VerdictKind, chain string) (map[string]any, error) {
	switch k {
	case expr.VerdictJump:
		return map[string]any{"jump": map[string]any{"target": chain}}, nil
	case expr.VerdictGoto:
		return map[string]any{"goto": map[string]any{"target": chain}}, nil
	case expr.VerdictAccept:
		return map[string]any{"accept": nil}, nil
	case expr.VerdictDrop:
		return map[string]any{"drop": nil}, nil
	case expr.VerdictReturn:
		return map[string]any{"return": nil}, nil
	case expr.VerdictContinue:
		return map[string]any{"continue": nil}, nil
	}
	return nil, fmt.Errorf("verdict %d is not decoded", k)
}

func (d *decoder) reject(x *expr.Reject) error {
	switch {
	case x.Type == 0 && d.family == "ip" && x.Code == 3: // NFT_REJECT_ICMP_UNREACH, port unreachable
		d.emit("reject", map[string]any{"type": "icmp", "expr": "port-unreachable"})
	case x.Type == 0 && d.family == "ip6" && x.Code == 4:
		d.emit("reject", map[string]any{"type": "icmpv6", "expr": "port-unreachable"})
	case x.Type == 2 && x.Code == 1: // NFT_REJECT_ICMPX_UNREACH, port unreachable
		d.emit("reject", map[string]any{"type": "icmpx", "expr": "port-unreachable"})
	default:
		return fmt.Errorf("reject type %d code %d is not decoded", x.Type, x.Code)
	}
	return nil
}

func (d *decoder) lookup(x *expr.Lookup) error {
	si, err := d.sets(x.SetName)
	if err != nil {
		return err
	}
	n := d.keyLen(x.SourceRegister)
	if len(si.elems) > 0 {
		n = (len(si.elems[0].Key) + 3) / 4 * 4
	}
	k, kinds, err := d.key(x.SourceRegister, n)
	if err != nil {
		return err
	}
	var data any = "@" + x.SetName
	if si.set.Anonymous {
		if data, err = inline(si, kinds, d.family); err != nil {
			return err
		}
	} else {
		d.used[x.SetName] = kinds
	}
	switch {
	case !x.IsDestRegSet:
		op := "=="
		if x.Invert {
			op = "!="
		}
		d.emit("match", map[string]any{"op": op, "left": k, "right": data})
	case x.DestRegister == 0:
		d.emit("vmap", map[string]any{"key": k, "data": data})
	default:
		parts, err := dataParts(si.set)
		if err != nil {
			return err
		}
		d.load(x.DestRegister, reg{expr: map[string]any{"map": map[string]any{"key": k, "data": data}}, kind: kindMap, n: int(si.set.DataType.Bytes), parts: parts})
	}
	return nil
}

func (d *decoder) nat(x *expr.NAT) error {
	if x.Type != expr.NATTypeDestNAT || x.Random || x.FullyRandom || x.Persistent || x.Prefix || x.RegAddrMin != x.RegAddrMax || x.RegProtoMin != x.RegProtoMax {
		return fmt.Errorf("nat statement is not decoded")
	}
	a, err := d.take(x.RegAddrMin)
	if err != nil {
		return err
	}
	switch a.kind {
	case kindMap:
		// "dnat ip to numgen … map { 0 : addr . port, … }": address and port come from one map.
		if x.RegProtoMin != 0 {
			d.used1(slot(x.RegProtoMin))
		}
		d.emit("dnat", map[string]any{"family": d.family, "addr": a.expr})
	case kindRaw:
		addr, ok := netip.AddrFromSlice(a.raw)
		if !ok {
			return fmt.Errorf("dnat address of %d bytes", len(a.raw))
		}
		st := map[string]any{"addr": addr.String()}
		if x.RegProtoMin != 0 {
			p, err := d.take(x.RegProtoMin)
			if err != nil || p.kind != kindRaw || len(p.raw) != 2 {
				return fmt.Errorf("dnat port is not decoded")
			}
			st["port"] = float64(binary.BigEndian.Uint16(p.raw))
		}
		d.emit("dnat", st)
	default:
		return fmt.Errorf("dnat address from %v is not decoded", a.expr)
	}
	return nil
}

// component is one part of a set's key or data: its length in bytes and how it is written.
type component struct {
	n    int
	kind kind
}

// dataParts are the components of a map's data type ("ipv4_addr . inet_service").
func dataParts(s *gn.Set) ([]int, error) {
	var parts []int
	for _, name := range strings.Split(s.DataType.Name, " . ") {
		c, ok := typeComponents[name]
		if !ok {
			return nil, fmt.Errorf("map @%s data type %q is not decoded", s.Name, s.DataType.Name)
		}
		parts = append(parts, c.n)
	}
	return parts, nil
}

var typeComponents = map[string]component{
	"ipv4_addr": {4, kindAddr}, "ipv6_addr": {16, kindAddr}, "inet_service": {2, kindPort},
	"inet_proto": {1, kindProto}, "integer": {4, kindInt}, "mark": {4, kindInt},
}

// value writes the bytes of one component.
func value(b []byte, k kind) (any, error) {
	switch k {
	case kindAddr:
		a, ok := netip.AddrFromSlice(b)
		if !ok {
			return nil, fmt.Errorf("address of %d bytes", len(b))
		}
		return a.String(), nil
	case kindProto:
		return protoName(b[0]), nil
	case kindPort:
		return float64(binary.BigEndian.Uint16(b)), nil
	case kindInt:
		return float64(binary.NativeEndian.Uint32(b)), nil
	case kindIfname:
		s := string(b)
		if i := strings.IndexByte(s, 0); i >= 0 {
			s = s[:i]
		}
		return s, nil
	}
	return nil, fmt.Errorf("set component of kind %d is not decoded", k)
}

// elemValue writes a key or map value made of components, each padded to 4 bytes.
func elemValue(b []byte, comps []component) (any, error) {
	var parts []any
	off := 0
	for _, c := range comps {
		if off+c.n > len(b) {
			return nil, fmt.Errorf("element of %d bytes is shorter than its type", len(b))
		}
		v, err := value(b[off:off+c.n], c.kind)
		if err != nil {
			return nil, err
		}
		parts = append(parts, v)
		off += (c.n + 3) / 4 * 4
	}
	if off != (len(b)+3)/4*4 {
		return nil, fmt.Errorf("element of %d bytes does not match its type", len(b))
	}
	if len(parts) == 1 {
		return parts[0], nil
	}
	return map[string]any{"concat": parts}, nil
}

// keyComponents are a key's components from the kinds of the expressions a rule looks it up with.
func keyComponents(kinds []kind, family string) ([]component, error) {
	var out []component
	for _, k := range kinds {
		n := map[kind]int{kindProto: 1, kindPort: 2, kindInt: 4, kindIfname: 16}[k]
		if k == kindAddr {
			n = 4
			if family == "ip6" {
				n = 16
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("set key of kind %d is not decoded", k)
		}
		out = append(out, component{n, k})
	}
	return out, nil
}

// verdictData decodes a verdict map element's data: NFTA_VERDICT_CODE and NFTA_VERDICT_CHAIN.
func verdictData(b []byte) (map[string]any, error) {
	var code int32
	var chain string
	var haveCode bool
	for len(b) >= 4 {
		n := int(binary.LittleEndian.Uint16(b))
		typ := binary.LittleEndian.Uint16(b[2:]) & 0x3fff
		if n < 4 || n > len(b) {
			return nil, fmt.Errorf("verdict attribute of length %d", n)
		}
		v := b[4:n]
		switch typ {
		case 1:
			if len(v) != 4 {
				return nil, fmt.Errorf("verdict code of %d bytes", len(v))
			}
			code, haveCode = int32(binary.BigEndian.Uint32(v)), true
		case 2:
			chain = strings.TrimRight(string(v), "\x00")
		}
		b = b[(n+3)/4*4:]
		if len(b) < 4 {
			break
		}
	}
	if !haveCode {
		return nil, fmt.Errorf("verdict without a code")
	}
	return verdictValue(expr.VerdictKind(code), chain)
}

// inline writes an anonymous set or map as nft prints it in a rule: {"set": [elements]}, a map's
// as [key, data] pairs.
func inline(si *setInfo, kinds []kind, family string) (any, error) {
	if si.set.Interval {
		return nil, fmt.Errorf("anonymous interval set %s is not decoded", si.set.Name)
	}
	comps, err := keyComponents(kinds, family)
	if err != nil {
		return nil, err
	}
	var items []any
	for _, e := range si.elems {
		k, err := elemValue(e.Key, comps)
		if err != nil {
			return nil, err
		}
		if !si.set.IsMap {
			items = append(items, k)
			continue
		}
		v, err := mapData(si.set, e.Val)
		if err != nil {
			return nil, err
		}
		items = append(items, []any{k, v})
	}
	return map[string]any{"set": items}, nil
}

// mapData decodes a map element's data: a verdict, or values of the map's data type.
func mapData(s *gn.Set, val []byte) (any, error) {
	if s.KeyType.Name == "verdict" || s.DataType.Name == "verdict" {
		return verdictData(val)
	}
	var comps []component
	for _, name := range strings.Split(s.DataType.Name, " . ") {
		c, ok := typeComponents[name]
		if !ok {
			return nil, fmt.Errorf("map @%s data type %q is not decoded", s.Name, s.DataType.Name)
		}
		comps = append(comps, c)
	}
	return elemValue(val, comps)
}
