package xtables

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file prints a legacy iptables table as the kernel hands it over (the entries
// IPT_SO_GET_ENTRIES copies, and IPT_SO_GET_INFO's hook offsets) exactly as iptables-legacy-save
// v1.8.9 prints it, for the matches and targets kube-proxy writes. Anything else — another
// extension, another revision, an option those rules never use, a layout libiptc would not
// write — is an UnsupportedError, and the caller runs iptables-legacy-save instead: a text the
// decoder is not sure of is never produced. The tests compare it byte for byte with the real
// iptables-legacy-save on tables loaded into the kernel.
//
// The layouts are Linux's on 64-bit machines (struct ipt_entry is 112 bytes, extensions are
// aligned to 8), in this machine's byte order, as the kernel copies them.

// KernelTable is one legacy table as the kernel hands it over.
type KernelTable struct {
	Name string
	// ValidHooks, HookEntry and Underflow are IPT_SO_GET_INFO's: which built-in chains the
	// table has, the offset of each one's first entry and of its policy entry.
	ValidHooks uint32
	HookEntry  [5]uint32
	Underflow  [5]uint32
	// Entries are the table's entries (IPT_SO_GET_ENTRIES), Count how many the kernel said.
	Entries []byte
	Count   int
	// Done, when set, is told that the entries before an offset are printed and will not be
	// read again (their memory can go).
	Done func(offset int)
	// SetName names the ipset of a kernel index (the set match holds the index); without it,
	// a rule with a set match is an UnsupportedError.
	SetName func(index uint16) (string, error)
}

// UnsupportedError says what in a kernel table the decoder does not print.
type UnsupportedError struct {
	Table, What string
}

func (e *UnsupportedError) Error() string {
	if e.Table == "" {
		return "legacy tables: " + e.What
	}
	return fmt.Sprintf("legacy table %s: %s", e.Table, e.What)
}

const (
	entrySize    = 112 // struct ipt_entry
	extHeader    = 32  // struct xt_entry_match and xt_entry_target: size, name[29], revision
	extNameLen   = 29
	errorNameLen = 30 // struct xt_error_target's errorname

	// ipt_ip's flags and inversions.
	flagFrag  = 0x01
	flagGoto  = 0x02
	invIn     = 0x01
	invOut    = 0x02
	invTOS    = 0x04
	invSrc    = 0x08
	invDst    = 0x10
	invFrag   = 0x20
	invProto  = 0x40
	allInvert = invIn | invOut | invSrc | invDst | invFrag | invProto

	// Standard targets' verdicts: -NF_DROP-1, -NF_ACCEPT-1, -NF_REPEAT-1 (XT_RETURN).
	verdictDrop   = -1
	verdictAccept = -2
	verdictReturn = -5
)

var hookNames = [5]string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

// extension is a match or target the decoder prints: its revision, the size of its data as
// the kernel keeps it, and how iptables-save prints that data.
type extension struct {
	revision uint8
	size     int
	save     func(b []byte, d []byte) ([]byte, error)
}

var matches = map[string]extension{
	"comment":   {0, 256, saveComment},
	"tcp":       {0, 16, savePorts(0, 4, 11, 1, 2, true)},
	"udp":       {0, 16, savePorts(0, 4, 8, 1, 2, false)},
	"sctp":      {0, 296, saveSCTP},
	"mark":      {1, 16, saveMark},
	"conntrack": {3, 168, saveConntrack},
	"addrtype":  {1, 8, saveAddrtype},
	"statistic": {0, 24, saveStatistic},
	"recent":    {1, 232, saveRecent},
	"nfacct":    {1, 40, saveNfacct},
	// IPVS mode's ipset lookups: printed by KernelTable.saveSet, which asks the kernel for
	// the set's name.
	"set": {4, 48, nil},
}

var targets = map[string]extension{
	"MARK":       {2, 8, saveSetMark},
	"MASQUERADE": {0, 24, saveMasquerade},
	"DNAT":       {2, 48, saveDNAT},
	"REJECT":     {0, 8, saveReject},
}

// kchain is one chain of a kernel table: its rules are the entries from first to foot (its
// policy entry, or a user chain's closing RETURN).
type kchain struct {
	name        string
	hook        int // -1 for a user chain
	first, foot int
}

// layout finds a table's chains, checking what libiptc would check and that every extension is
// one the decoder prints.
func (t *KernelTable) layout() ([]kchain, error) {
	unsupported := func(format string, a ...any) error {
		return &UnsupportedError{Table: t.Name, What: fmt.Sprintf(format, a...)}
	}
	e := t.Entries
	var chains []kchain
	hookAt := func(off int) (int, bool) {
		for h := range hookNames {
			if t.ValidHooks&(1<<h) != 0 && int(t.HookEntry[h]) == off {
				return h, true
			}
		}
		return 0, false
	}
	open := -1 // the chain whose rules are being read
	prev := -1 // the previous entry's offset
	closeChain := func() error {
		if open < 0 {
			return nil
		}
		c := &chains[open]
		if prev < c.first {
			return unsupported("chain %s has no closing entry", c.name)
		}
		c.foot = prev
		if !unconditional(e[prev:]) {
			return unsupported("chain %s does not end in an unconditional entry", c.name)
		}
		v, ok := standardVerdict(e, prev)
		switch {
		case !ok:
			return unsupported("chain %s does not end in a standard target", c.name)
		case c.hook >= 0 && (prev != int(t.Underflow[c.hook]) || v != verdictAccept && v != verdictDrop):
			return unsupported("built-in chain %s's policy is not ACCEPT or DROP at its underflow", c.name)
		case c.hook < 0 && v != verdictReturn:
			return unsupported("user chain %s does not end in RETURN", c.name)
		}
		return nil
	}
	count, end := 0, false
	for off := 0; off < len(e); {
		if end {
			return nil, unsupported("entries after the table's end")
		}
		count++
		if off+entrySize > len(e) {
			return nil, unsupported("entry at %d is cut short", off)
		}
		to, next := int(u16(e, off+88)), int(u16(e, off+90))
		if to < entrySize || next < to+extHeader || off+next > len(e) || next%8 != 0 || to%8 != 0 {
			return nil, unsupported("entry at %d has a bad size", off)
		}
		// Its extensions: known, of a known revision and size, filling the entry exactly.
		for m := off + entrySize; m < off+to; {
			size := int(u16(e, m))
			if size < extHeader || m+size > off+to {
				return nil, unsupported("match at %d has a bad size", m)
			}
			name, rev := cbytes(e[m+2:m+2+extNameLen]), e[m+extHeader-1]
			x, ok := matches[string(name)]
			if !ok || x.revision != rev || x.size != size-extHeader {
				return nil, unsupported("match %s (revision %d, %d bytes)", name, rev, size-extHeader)
			}
			m += size
		}
		ts := int(u16(e, off+to))
		if off+to+ts != off+next {
			return nil, unsupported("target at %d has a bad size", off+to)
		}
		tname, trev := cbytes(e[off+to+2:off+to+2+extNameLen]), e[off+to+extHeader-1]
		switch string(tname) {
		case "":
			if ts != extHeader+8 || trev != 0 {
				return nil, unsupported("a standard target of %d bytes", ts)
			}
		case "ERROR":
			if ts != extHeader+32 || trev != 0 {
				return nil, unsupported("an ERROR target of %d bytes", ts)
			}
		default:
			x, ok := targets[string(tname)]
			if !ok || x.revision != trev || x.size != ts-extHeader {
				return nil, unsupported("target %s (revision %d, %d bytes)", tname, trev, ts-extHeader)
			}
		}
		h, isHook := hookAt(off)
		switch {
		case isHook:
			if err := closeChain(); err != nil {
				return nil, err
			}
			if len(chains) > 0 && chains[len(chains)-1].hook < 0 {
				return nil, unsupported("built-in chain %s after a user chain", hookNames[h])
			}
			chains = append(chains, kchain{name: hookNames[h], hook: h, first: off})
			open = len(chains) - 1
		case string(tname) == "ERROR":
			if err := closeChain(); err != nil {
				return nil, err
			}
			open = -1
			name := cstring(e[off+to+extHeader : off+to+extHeader+errorNameLen])
			if off+next == len(e) {
				if name != "ERROR" {
					return nil, unsupported("the table ends in %q", name)
				}
				end = true
				break
			}
			if !validChainName(name) {
				return nil, unsupported("a user chain named %q", name)
			}
			chains = append(chains, kchain{name: name, hook: -1, first: off + next})
			open = len(chains) - 1
		case open < 0:
			return nil, unsupported("entry at %d is in no chain", off)
		}
		prev = off
		off += next
	}
	if !end {
		return nil, unsupported("no end entry")
	}
	if t.Count != 0 && count != t.Count {
		return nil, unsupported("%d entries, the kernel said %d", count, t.Count)
	}
	for h := range hookNames {
		if t.ValidHooks&(1<<h) == 0 {
			continue
		}
		found := false
		for _, c := range chains {
			found = found || c.hook == h
		}
		if !found {
			return nil, unsupported("built-in chain %s is missing", hookNames[h])
		}
	}
	return chains, nil
}

// validChainName is what iptables-save prints as a chain name without the text becoming
// another (iptables' own limit is 28 characters).
func validChainName(s string) bool {
	if s == "" || len(s) > 28 || s[0] == '!' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f || s[i] == '"' || s[i] == '\'' || s[i] == '\\' {
			return false
		}
	}
	return true
}

// SaveHeader is the comment a decoded table starts with (iptables-save's names its version; this
// one says who printed it, and that the tables are legacy).
func SaveHeader(now time.Time) string {
	return "# Generated by kubectl-svctrace from the kernel's tables (legacy) on " + now.Format("Mon Jan _2 15:04:05 2006") + "\n"
}

// WriteSave prints the table as `iptables-legacy-save -c` does (its header line aside), handing
// out the text in pieces of about size bytes that end at a line's end.
func (t *KernelTable) WriteSave(now time.Time, size int, emit func([]byte) error) error {
	chains, err := t.layout()
	if err != nil {
		return err
	}
	// iptables-save prints the built-in chains in the table's order, then the user chains by
	// name (libiptc keeps them sorted).
	order := make([]int, len(chains))
	for i := range order {
		order[i] = i
	}
	// (layout puts the built-in chains first: the user chains are sorted after them.)
	if users := slices.IndexFunc(chains, func(c kchain) bool { return c.hook < 0 }); users >= 0 {
		slices.SortFunc(order[users:], func(a, b int) int { return strings.Compare(chains[a].name, chains[b].name) })
	}
	// Jumps name the offset of a user chain's first entry; chains are in offset order.
	target := func(off int) (string, bool) {
		i, ok := slices.BinarySearchFunc(chains, off, func(c kchain, off int) int { return c.first - off })
		if !ok || chains[i].hook >= 0 {
			return "", false
		}
		return chains[i].name, true
	}
	chunk := func() []byte {
		b := make([]byte, 0, size+4096)
		hugePages(b[:cap(b)])
		return b
	}
	b := chunk()
	flush := func(force bool) error {
		if len(b) < size && !force {
			return nil
		}
		if len(b) > 0 {
			if err := emit(b); err != nil {
				return err
			}
		}
		b = chunk()
		return nil
	}
	b = append(b, SaveHeader(now)...)
	b = append(b, '*')
	b = append(b, t.Name...)
	b = append(b, '\n')
	e := t.Entries
	for _, i := range order {
		c := chains[i]
		b = append(b, ':')
		b = append(b, c.name...)
		if c.hook < 0 {
			b = append(b, " - [0:0]\n"...)
			continue
		}
		if v, _ := standardVerdict(e, c.foot); v == verdictAccept {
			b = append(b, " ACCEPT ["...)
		} else {
			b = append(b, " DROP ["...)
		}
		b = appendCounters(b, e, c.foot)
		b = append(b, "]\n"...)
	}
	// Chains are printed in the entries' order (libiptc writes user chains sorted): what lies
	// behind is not read again.
	done, inOrder := 0, true
	for _, i := range order {
		c := chains[i]
		if inOrder = inOrder && c.first >= done; inOrder && t.Done != nil && c.first-done >= 8<<20 {
			t.Done(c.first)
			done = c.first
		}
		for off := c.first; off < c.foot; off += int(u16(e, off+90)) {
			if b, err = t.appendRule(b, c.name, off, target); err != nil {
				return err
			}
			if err := flush(false); err != nil {
				return err
			}
		}
	}
	b = append(b, "COMMIT\n# Completed on "...)
	b = append(b, now.Format("Mon Jan _2 15:04:05 2006")...)
	b = append(b, '\n')
	return flush(true)
}

// hugePages asks the kernel to back memory about to be written with huge pages, where the
// machine allows them (Linux's transparent huge pages): a fresh page's first write is a fault,
// and a 2 MiB page takes a 512th of them. A hint, nothing else.
var hugePages = func([]byte) {}

func appendCounters(b, e []byte, off int) []byte {
	b = strconv.AppendUint(b, u64(e, off+96), 10)
	b = append(b, ':')
	return strconv.AppendUint(b, u64(e, off+104), 10)
}

// appendRule prints the rule at off as iptables-save's print_rule4 does, with counters.
func (t *KernelTable) appendRule(b []byte, chain string, off int, target func(int) (string, bool)) ([]byte, error) {
	unsupported := func(format string, a ...any) error {
		return &UnsupportedError{Table: t.Name, What: fmt.Sprintf("rule in %s: ", chain) + fmt.Sprintf(format, a...)}
	}
	e := t.Entries
	flags, inv := e[off+82], e[off+83]
	if flags&^(flagFrag|flagGoto) != 0 || inv&^allInvert != 0 {
		return b, unsupported("flags %#x, inversions %#x", flags, inv)
	}
	b = append(b, '[')
	b = appendCounters(b, e, off)
	b = append(b, "] -A "...)
	b = append(b, chain...)
	b = appendAddr(b, 's', e[off:off+4], e[off+8:off+12], inv&invSrc != 0)
	b = appendAddr(b, 'd', e[off+4:off+8], e[off+12:off+16], inv&invDst != 0)
	var err error
	if b, err = appendIface(b, 'i', e[off+16:off+32], e[off+48:off+64], inv&invIn != 0); err != nil {
		return b, unsupported("%v", err)
	}
	if b, err = appendIface(b, 'o', e[off+32:off+48], e[off+64:off+80], inv&invOut != 0); err != nil {
		return b, unsupported("%v", err)
	}
	if proto := u16(e, off+80); proto != 0 {
		name, ok := protoNames[proto]
		if !ok {
			return b, unsupported("protocol %d", proto)
		}
		if inv&invProto != 0 {
			b = append(b, " !"...)
		}
		b = append(b, " -p "...)
		b = append(b, name...)
	} else if inv&invProto != 0 {
		return b, unsupported("an inverted protocol 0")
	}
	if flags&flagFrag != 0 {
		if inv&invFrag != 0 {
			b = append(b, " !"...)
		}
		b = append(b, " -f"...)
	}
	to, next := int(u16(e, off+88)), int(u16(e, off+90))
	for m := off + entrySize; m < off+to; m += int(u16(e, m)) {
		name := cbytes(e[m+2 : m+2+extNameLen])
		b = append(b, " -m "...)
		b = append(b, name...)
		data := e[m+extHeader : m+int(u16(e, m))]
		if save := matches[string(name)].save; save != nil {
			b, err = save(b, data)
		} else {
			b, err = t.saveSet(b, data)
		}
		if err != nil {
			return b, unsupported("-m %s: %v", name, err)
		}
	}
	tname := cbytes(e[off+to+2 : off+to+2+extNameLen])
	switch string(tname) {
	case "":
		v, _ := standardVerdict(e, off)
		switch {
		case v == verdictAccept:
			b = append(b, " -j ACCEPT"...)
		case v == verdictDrop:
			b = append(b, " -j DROP"...)
		case v == verdictReturn:
			b = append(b, " -j RETURN"...)
		case v == int32(off+next):
			// falls through to the next rule: no target
		case v >= 0:
			name, ok := target(int(v))
			if !ok {
				return b, unsupported("a jump to offset %d, where no user chain starts", v)
			}
			if flags&flagGoto != 0 {
				b = append(b, " -g "...)
			} else {
				b = append(b, " -j "...)
			}
			b = append(b, name...)
		default:
			return b, unsupported("verdict %d", v)
		}
		if flags&flagGoto != 0 && v < 0 {
			return b, unsupported("a goto to a verdict")
		}
	case "ERROR":
		return b, unsupported("an ERROR target inside a chain")
	default:
		if flags&flagGoto != 0 {
			return b, unsupported("a goto to target %s", tname)
		}
		b = append(b, " -j "...)
		b = append(b, tname...)
		ts := int(u16(e, off+to))
		if b, err = targets[string(tname)].save(b, e[off+to+extHeader:off+to+ts]); err != nil {
			return b, unsupported("-j %s: %v", tname, err)
		}
	}
	return append(b, '\n'), nil
}

// protoNames are the protocols iptables-save names (from /etc/protocols) that the decoder
// prints.
var protoNames = map[uint16]string{1: "icmp", 6: "tcp", 17: "udp", 132: "sctp"}

// unconditional reports whether an entry matches every packet (libiptc's test for a chain's
// policy or closing RETURN): an all-zero ipt_ip and no match.
func unconditional(e []byte) bool {
	for _, c := range e[:84] {
		if c != 0 {
			return false
		}
	}
	return u16(e, 88) == entrySize
}

// standardVerdict is the verdict of the standard target of the entry at off.
func standardVerdict(e []byte, off int) (int32, bool) {
	to := off + int(u16(e, off+88))
	if e[to+2] != 0 || u16(e, to) != extHeader+8 {
		return 0, false
	}
	return int32(binary.NativeEndian.Uint32(e[to+extHeader:])), true
}

// appendAddr prints -s or -d as save_ipv4_addr does: an address and its prefix length (or
// dotted mask when not a prefix), omitted when it matches everything.
func appendAddr(b []byte, letter byte, addr, mask []byte, inv bool) []byte {
	a, m := binary.BigEndian.Uint32(addr), binary.BigEndian.Uint32(mask)
	if a == 0 && m == 0 && !inv {
		return b
	}
	if inv {
		b = append(b, " !"...)
	}
	b = append(b, ' ', '-', letter, ' ')
	b = netip.AddrFrom4([4]byte(addr)).AppendTo(b)
	b = append(b, '/')
	ones := 0
	for ones < 32 && m&(1<<(31-ones)) != 0 {
		ones++
	}
	if ones == 32 || m<<ones == 0 {
		return strconv.AppendInt(b, int64(ones), 10)
	}
	return netip.AddrFrom4([4]byte(mask)).AppendTo(b)
}

// appendIface prints -i or -o as save_iface does: the name where the mask is set, and a + when
// the mask stops before the name's end.
func appendIface(b []byte, letter byte, name, mask []byte, inv bool) ([]byte, error) {
	if mask[0] == 0 {
		return b, nil
	}
	if inv {
		b = append(b, " !"...)
	}
	b = append(b, ' ', '-', letter, ' ')
	for i := range 16 {
		if mask[i] == 0 {
			if name[i-1] != 0 {
				b = append(b, '+')
			}
			break
		}
		if c := name[i]; c != 0 {
			if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
				return b, fmt.Errorf("interface name with byte %#x", c)
			}
			b = append(b, c)
		}
	}
	return b, nil
}

// cbytes is a NUL-terminated name, in place.
func cbytes(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

// cstring is a NUL-terminated name.
func cstring(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

func u16(b []byte, off int) uint16 { return binary.NativeEndian.Uint16(b[off:]) }
func u32(b []byte, off int) uint32 { return binary.NativeEndian.Uint32(b[off:]) }
func u64(b []byte, off int) uint64 { return binary.NativeEndian.Uint64(b[off:]) }

// appendQuoted prints a string as xtables_save_string does: bare when it is only letters,
// digits, - and _, else in double quotes with ", \ and ' escaped.
func appendQuoted(b []byte, s string) []byte {
	b = append(b, ' ')
	bare := s != ""
	for i := 0; i < len(s) && bare; i++ {
		c := s[i]
		bare = c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	}
	if bare {
		return append(b, s...)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' || s[i] == '\'' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// printable refuses a name or comment whose bytes would break the line (iptables-save prints
// them as they are).
func printable(s string) error {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return fmt.Errorf("control byte %#x", s[i])
		}
	}
	return nil
}

func saveComment(b, d []byte) ([]byte, error) {
	s := cstring(d)
	if err := printable(s); err != nil {
		return b, err
	}
	b = append(b, " --comment"...)
	return appendQuoted(b, s), nil
}

// savePorts prints the tcp or udp match (struct xt_tcp, xt_udp): source and destination port
// ranges at sport and dport, the inversions byte at inv with its two bits; tcp's option and
// flags bytes must be unused.
func savePorts(sport, dport, inv int, invSrc, invDst byte, tcp bool) func(b, d []byte) ([]byte, error) {
	return func(b, d []byte) ([]byte, error) {
		flags := d[inv]
		known := invSrc | invDst
		if tcp && (d[8] != 0 || d[9] != 0 || d[10] != 0) || flags&^known != 0 {
			return b, fmt.Errorf("options other than ports")
		}
		b = appendPortRange(b, "--sport", u16(d, sport), u16(d, sport+2), flags&invSrc != 0)
		return appendPortRange(b, "--dport", u16(d, dport), u16(d, dport+2), flags&invDst != 0), nil
	}
}

// saveSCTP prints the sctp match (struct xt_sctp_info) on ports alone: unlike tcp's, its
// ranges are printed only when its flags say they are set.
func saveSCTP(b, d []byte) ([]byte, error) {
	const src, dst = 1, 2
	flags, inv := u32(d, 284), u32(d, 288)
	// The chunk map is used only with its flag (XT_SCTP_CHUNK_TYPES), refused here.
	if flags&^(src|dst) != 0 || inv&^flags != 0 {
		return b, fmt.Errorf("flags %#x", flags)
	}
	for _, p := range []struct {
		bit uint32
		opt string
		at  int
	}{{src, "--sport", 4}, {dst, "--dport", 0}} {
		if flags&p.bit == 0 {
			continue
		}
		lo, hi := u16(d, p.at), u16(d, p.at+2)
		if inv&p.bit != 0 {
			b = append(b, " !"...)
		}
		b = strconv.AppendUint(append(b, " "+p.opt+" "...), uint64(lo), 10)
		if lo != hi {
			b = strconv.AppendUint(append(b, ':'), uint64(hi), 10)
		}
	}
	return b, nil
}

func appendPortRange(b []byte, opt string, lo, hi uint16, inv bool) []byte {
	if lo == 0 && hi == 0xffff {
		return b
	}
	if inv {
		b = append(b, " !"...)
	}
	b = append(b, ' ')
	b = append(b, opt...)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(lo), 10)
	if lo != hi {
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(hi), 10)
	}
	return b
}

func appendHex(b []byte, v uint32) []byte {
	b = append(b, "0x"...)
	return strconv.AppendUint(b, uint64(v), 16)
}

// saveMark prints the mark match, revision 1 (struct xt_mark_mtinfo1).
func saveMark(b, d []byte) ([]byte, error) {
	mark, mask, inv := u32(d, 0), u32(d, 4), d[8]
	if inv > 1 {
		return b, fmt.Errorf("inversion %d", inv)
	}
	if inv == 1 {
		b = append(b, " !"...)
	}
	b = append(b, " --mark "...)
	b = appendHex(b, mark)
	if mask != 0xffffffff {
		b = append(b, '/')
		b = appendHex(b, mask)
	}
	return b, nil
}

// saveSetMark prints the MARK target, revision 2 (struct xt_mark_tginfo2).
func saveSetMark(b, d []byte) ([]byte, error) {
	b = append(b, " --set-xmark "...)
	b = appendHex(b, u32(d, 0))
	b = append(b, '/')
	return appendHex(b, u32(d, 4)), nil
}

// ctStates are conntrack's state bits in the order iptables prints them.
var ctStates = []struct {
	bit  uint16
	name string
}{{1, "INVALID"}, {8, "NEW"}, {4, "RELATED"}, {2, "ESTABLISHED"}, {256, "UNTRACKED"}, {64, "SNAT"}, {128, "DNAT"}}

// saveConntrack prints the conntrack match, revision 3 (struct xt_conntrack_mtinfo3), when it
// matches on --ctstate alone.
func saveConntrack(b, d []byte) ([]byte, error) {
	const matchState = 1
	for _, c := range d[:146] {
		if c != 0 {
			return b, fmt.Errorf("options other than --ctstate")
		}
	}
	flags, inv, states, status := u16(d, 146), u16(d, 148), u16(d, 150), u16(d, 152)
	if flags != matchState || inv&^matchState != 0 || status != 0 || states == 0 {
		return b, fmt.Errorf("options other than --ctstate")
	}
	var known uint16
	for _, s := range ctStates {
		known |= s.bit
	}
	if states&^known != 0 {
		return b, fmt.Errorf("state bits %#x", states)
	}
	if inv != 0 {
		b = append(b, " !"...)
	}
	b = append(b, " --ctstate "...)
	sep := false
	for _, s := range ctStates {
		if states&s.bit != 0 {
			if sep {
				b = append(b, ',')
			}
			b, sep = append(b, s.name...), true
		}
	}
	return b, nil
}

// addrTypes are the route types addrtype names, by bit.
var addrTypes = []string{"UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE", "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE"}

// saveAddrtype prints the addrtype match, revision 1 (struct xt_addrtype_info_v1).
func saveAddrtype(b, d []byte) ([]byte, error) {
	src, dst, flags := u16(d, 0), u16(d, 2), u32(d, 4)
	if flags&^0xf != 0 || src>>len(addrTypes) != 0 || dst>>len(addrTypes) != 0 {
		return b, fmt.Errorf("flags %#x", flags)
	}
	types := func(b []byte, v uint16) []byte {
		sep := false
		for i, n := range addrTypes {
			if v&(1<<i) != 0 {
				if sep {
					b = append(b, ',')
				}
				b, sep = append(b, n...), true
			}
		}
		return b
	}
	if src != 0 {
		if flags&1 != 0 {
			b = append(b, " !"...)
		}
		b = types(append(b, " --src-type "...), src)
	}
	if dst != 0 {
		if flags&2 != 0 {
			b = append(b, " !"...)
		}
		b = types(append(b, " --dst-type "...), dst)
	}
	if flags&4 != 0 {
		b = append(b, " --limit-iface-in"...)
	}
	if flags&8 != 0 {
		b = append(b, " --limit-iface-out"...)
	}
	return b, nil
}

// saveStatistic prints the statistic match (struct xt_statistic_info) in random mode.
func saveStatistic(b, d []byte) ([]byte, error) {
	mode, flags := u16(d, 0), u16(d, 2)
	if mode != 0 || flags != 0 {
		return b, fmt.Errorf("mode %d, flags %#x", mode, flags)
	}
	b = append(b, " --mode random --probability "...)
	return strconv.AppendFloat(b, float64(u32(d, 4))/0x80000000, 'f', 11, 64), nil
}

// saveRecent prints the recent match, revision 1 (struct xt_recent_mtinfo_v1) for IPv4.
func saveRecent(b, d []byte) ([]byte, error) {
	seconds, hits, check, inv, side := u32(d, 0), u32(d, 4), d[8], d[9], d[210]
	name := cstring(d[10:210])
	if check&^0x3f != 0 || inv > 1 || side > 1 || !validChainName(name) {
		return b, fmt.Errorf("options %#x", check)
	}
	if inv == 1 {
		b = append(b, " !"...)
	}
	for _, o := range []struct {
		bit  byte
		name string
	}{{2, " --set"}, {1, " --rcheck"}, {4, " --update"}, {8, " --remove"}} {
		if check&o.bit != 0 {
			b = append(b, o.name...)
		}
	}
	if seconds != 0 {
		b = strconv.AppendUint(append(b, " --seconds "...), uint64(seconds), 10)
	}
	if check&32 != 0 {
		b = append(b, " --reap"...)
	}
	if hits != 0 {
		b = strconv.AppendUint(append(b, " --hitcount "...), uint64(hits), 10)
	}
	if check&16 != 0 {
		b = append(b, " --rttl"...)
	}
	b = append(append(b, " --name "...), name...)
	b = netip.AddrFrom4([4]byte(d[212:216])).AppendTo(append(b, " --mask "...))
	if side == 0 {
		return append(b, " --rsource"...), nil
	}
	return append(b, " --rdest"...), nil
}

// saveSet prints the set match, revision 4 (struct xt_set_info_match_v4: the set's index, its
// dimensions and their directions, then counter matches and flags), when it matches on the set
// alone, as kube-proxy's IPVS mode writes it: [!] --match-set NAME dst,dst.
func (t *KernelTable) saveSet(b, d []byte) ([]byte, error) {
	const (
		invMatch = 0x01 // IPSET_INV_MATCH; bit i is dimension i's source direction
		dimMax   = 6    // IPSET_DIM_MAX
	)
	index, dim, flags := u16(d, 0), int(d[2]), d[3]
	switch {
	case dim < 1 || dim > dimMax:
		return b, fmt.Errorf("%d dimensions", dim)
	case flags&^(invMatch|byte(1<<(dim+1)-2)) != 0:
		return b, fmt.Errorf("flags %#x", flags)
	case d[8] != 0 || d[24] != 0 || u32(d, 40) != 0:
		return b, fmt.Errorf("counter matches or options")
	case t.SetName == nil:
		return b, fmt.Errorf("no way to name set %d", index)
	}
	name, err := t.SetName(index)
	if err != nil {
		return b, err
	}
	if name == "" || strings.ContainsAny(name, " \"\\") || printable(name) != nil {
		return b, fmt.Errorf("set %d is named %q", index, name)
	}
	if flags&invMatch != 0 {
		b = append(b, " !"...)
	}
	b = append(b, " --match-set "...)
	b = append(b, name...)
	for i := 1; i <= dim; i++ {
		if i == 1 {
			b = append(b, ' ')
		} else {
			b = append(b, ',')
		}
		if flags&(1<<i) != 0 {
			b = append(b, "src"...)
		} else {
			b = append(b, "dst"...)
		}
	}
	return b, nil
}

// saveNfacct prints the nfacct match (struct xt_nfacct_match_info_v1).
func saveNfacct(b, d []byte) ([]byte, error) {
	name := cstring(d[:32])
	if err := printable(name); err != nil || name == "" {
		return b, fmt.Errorf("counter name %q", name)
	}
	b = append(b, " --nfacct-name "...)
	return appendQuoted(b, name), nil
}

// NAT range flags (NF_NAT_RANGE_*).
const (
	natMapIPs      = 1
	natProto       = 2
	natRandom      = 4
	natPersistent  = 8
	natRandomFully = 16
)

// saveMasquerade prints the IPv4 MASQUERADE target (struct nf_nat_ipv4_multi_range_compat) with
// no port range.
func saveMasquerade(b, d []byte) ([]byte, error) {
	flags := u32(d, 4)
	if u32(d, 0) != 1 || flags&^(natRandom|natRandomFully) != 0 {
		return b, fmt.Errorf("ranges %d, flags %#x", u32(d, 0), flags)
	}
	if flags&natRandom != 0 {
		b = append(b, " --random"...)
	}
	if flags&natRandomFully != 0 {
		b = append(b, " --random-fully"...)
	}
	return b, nil
}

// saveDNAT prints the DNAT target, revision 2 (struct nf_nat_range2), to one IPv4 address and
// one port, as kube-proxy writes it.
func saveDNAT(b, d []byte) ([]byte, error) {
	flags := u32(d, 0)
	minAddr, maxAddr := d[4:20], d[20:36]
	minPort, maxPort := binary.BigEndian.Uint16(d[36:]), binary.BigEndian.Uint16(d[38:])
	if flags != natMapIPs|natProto || string(minAddr) != string(maxAddr) || minPort != maxPort || u16(d, 40) != 0 {
		return b, fmt.Errorf("flags %#x or a range", flags)
	}
	for _, c := range minAddr[4:] {
		if c != 0 {
			return b, fmt.Errorf("not an IPv4 address")
		}
	}
	b = netip.AddrFrom4([4]byte(minAddr[:4])).AppendTo(append(b, " --to-destination "...))
	return strconv.AppendUint(append(b, ':'), uint64(minPort), 10), nil
}

// rejectWith are the IPv4 REJECT target's replies, by enum ipt_reject_with (4, echo-reply, is
// deprecated and not printed here).
var rejectWith = map[uint32]string{0: "icmp-net-unreachable", 1: "icmp-host-unreachable", 2: "icmp-proto-unreachable", 3: "icmp-port-unreachable", 5: "icmp-net-prohibited", 6: "icmp-host-prohibited", 7: "tcp-reset", 8: "icmp-admin-prohibited"}

func saveReject(b, d []byte) ([]byte, error) {
	w, ok := rejectWith[u32(d, 0)]
	if !ok {
		return b, fmt.Errorf("reply %d", u32(d, 0))
	}
	return append(append(b, " --reject-with "...), w...), nil
}
