//go:build linux

package nftnl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sort"

	gn "github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/svctrace/svctrace/trace/nftables"
)

// encodeKey writes a packet's value (netip.Addr, uint64, a protocol name, []any for a
// concatenation) as the bytes of a set key of the components, each padded to 4 bytes.
func encodeKey(v any, comps []component) ([]byte, error) {
	vals := []any{v}
	if list, ok := v.([]any); ok {
		vals = list
	}
	if len(vals) != len(comps) {
		return nil, fmt.Errorf("a key of %d values for a set keyed by %d", len(vals), len(comps))
	}
	var out []byte
	for i, c := range comps {
		b := make([]byte, (c.n+3)/4*4)
		switch c.kind {
		case kindAddr:
			a, ok := vals[i].(netip.Addr)
			if !ok || len(a.AsSlice()) != c.n {
				return nil, fmt.Errorf("key value %v is not an address of %d bytes", vals[i], c.n)
			}
			copy(b, a.AsSlice())
		case kindProto:
			name, _ := vals[i].(string)
			p, ok := map[string]byte{"tcp": 6, "udp": 17, "sctp": 132}[name]
			if !ok {
				return nil, fmt.Errorf("key value %v is not a protocol", vals[i])
			}
			b[0] = p
		case kindPort:
			n, ok := vals[i].(uint64)
			if !ok || n > 0xffff {
				return nil, fmt.Errorf("key value %v is not a port", vals[i])
			}
			binary.BigEndian.PutUint16(b, uint16(n))
		case kindInt:
			n, ok := vals[i].(uint64)
			if !ok || n > 0xffffffff {
				return nil, fmt.Errorf("key value %v is not a 32-bit integer", vals[i])
			}
			binary.NativeEndian.PutUint32(b, uint32(n))
		default:
			return nil, fmt.Errorf("keys of kind %d are not looked up", c.kind)
		}
		out = append(out, b...)
	}
	return out, nil
}

// rawElem is one element as the kernel returned it.
type rawElem struct {
	key, data []byte
	verdict   bool
	comment   string
}

// elemRequest sends NFT_MSG_GETSETELEM for a set: for one key (as `nft get element` does), or,
// when key is nil, a dump of every element. It returns the replies; none when there is no such key.
func (r *Reader) elemRequest(fam gn.TableFamily, table, set string, key []byte) ([]netlink.Message, error) {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, table)
	ae.String(unix.NFTA_SET_ELEM_LIST_SET, set)
	flags := netlink.Request | netlink.Dump
	if key != nil {
		flags = netlink.Request
		ae.Nested(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(ae *netlink.AttributeEncoder) error {
			ae.Nested(unix.NFTA_LIST_ELEM, func(ae *netlink.AttributeEncoder) error {
				ae.Nested(unix.NFTA_SET_ELEM_KEY, func(ae *netlink.AttributeEncoder) error {
					ae.Bytes(unix.NFTA_DATA_VALUE, key)
					return nil
				})
				return nil
			})
			return nil
		})
	}
	attrs, err := ae.Encode()
	if err != nil {
		return nil, err
	}
	replies, err := r.request(fam, unix.NFT_MSG_GETSETELEM, flags, attrs)
	if err != nil {
		if key != nil && errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading elements of set %s %s: %w", table, set, err)
	}
	return replies, nil
}

// request sends one nf_tables request (msg, one of unix.NFT_MSG_GET*) on a connection of its own
// and returns the replies: for the raw reads google/nftables does not make (one key of a set, a
// dump decoded only in part).
func (r *Reader) request(fam gn.TableFamily, msg int, flags netlink.HeaderFlags, attrs []byte) ([]netlink.Message, error) {
	cfg := &netlink.Config{}
	if r.netns != nil {
		cfg.NetNS = int(r.netns.Fd())
	}
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msg), Flags: flags},
		Data:   append([]byte{byte(fam), unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
}

// getElement asks the kernel for one key of a set: the element, or nil when the set has no such
// key.
func (r *Reader) getElement(fam gn.TableFamily, table, set string, key []byte) (*rawElem, error) {
	replies, err := r.elemRequest(fam, table, set, key)
	if err != nil {
		return nil, err
	}
	for _, m := range replies {
		if len(m.Data) < 4 {
			continue
		}
		es, err := parseElemList(m.Data[4:])
		if err != nil || len(es) > 0 {
			return first(es), err
		}
	}
	return nil, nil
}

func first(es []*rawElem) *rawElem {
	if len(es) == 0 {
		return nil
	}
	return es[0]
}

// parseElemList reads the elements of an NFT_MSG_NEWSETELEM message's attributes.
func parseElemList(b []byte) ([]*rawElem, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil, err
	}
	var out []*rawElem
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		ad.Nested(func(list *netlink.AttributeDecoder) error {
			for list.Next() {
				if list.Type() != unix.NFTA_LIST_ELEM {
					continue
				}
				e := &rawElem{}
				list.Nested(func(el *netlink.AttributeDecoder) error {
					for el.Next() {
						switch el.Type() {
						case unix.NFTA_SET_ELEM_KEY:
							el.Nested(func(d *netlink.AttributeDecoder) error {
								for d.Next() {
									if d.Type() == unix.NFTA_DATA_VALUE {
										e.key = d.Bytes()
									}
								}
								return nil
							})
						case unix.NFTA_SET_ELEM_DATA:
							el.Nested(func(d *netlink.AttributeDecoder) error {
								for d.Next() {
									switch d.Type() {
									case unix.NFTA_DATA_VALUE:
										e.data = d.Bytes()
									case unix.NFTA_DATA_VERDICT:
										e.data, e.verdict = d.Bytes(), true
									}
								}
								return nil
							})
						case unix.NFTA_SET_ELEM_USERDATA:
							e.comment, _ = userdata.GetString(el.Bytes(), userdata.NFTNL_UDATA_SET_ELEM_COMMENT)
						}
					}
					return nil
				})
				out = append(out, e)
			}
			return nil
		})
	}
	return out, ad.Err()
}

// elements reads, of a set, the elements with the given keys: a partial set.
func (r *Reader) elements(t *gn.Table, fam string, set string, objs []nftables.Object, values map[nftables.Object]any) (*nftables.Set, error) {
	s, comps, ms, err := r.header(t, fam, set)
	if err != nil {
		return nil, err
	}
	ms.Partial = true
	for _, o := range objs {
		v, ok := values[o]
		if !ok {
			return nil, fmt.Errorf("set %s %s %s: no value for key %s", fam, t.Name, set, o.Key)
		}
		key, err := encodeKey(v, comps)
		if err != nil {
			return nil, fmt.Errorf("set %s %s %s: %w", fam, t.Name, set, err)
		}
		raw, err := r.getElement(t.Family, t.Name, set, key)
		if err != nil {
			return nil, err
		}
		if raw == nil {
			ms.AddProbed(o.Key, nil)
			continue
		}
		e, err := decodeElem(s, comps, raw)
		if err != nil {
			return nil, fmt.Errorf("set %s %s %s: %w", fam, t.Name, set, err)
		}
		ms.AddProbed(o.Key, e)
	}
	return ms, nil
}

// decodeElem decodes an element as the kernel returned it: its key, a map's data, its comment.
func decodeElem(s *gn.Set, comps []component, raw *rawElem) (*nftables.Elem, error) {
	k, err := elemValue(raw.key, comps)
	if err != nil {
		return nil, err
	}
	e := &nftables.Elem{Key: k, Comment: raw.comment}
	if s.IsMap {
		if raw.verdict {
			e.Data, err = verdictData(raw.data)
		} else {
			e.Data, err = mapData(s, raw.data)
		}
	}
	return e, err
}

// SetWhere reads the elements of a named set that keep accepts, given the chain a verdict map's
// element jumps or goes to ("" for none) and the element's comment: one dump of the set whose
// keys are decoded only for the elements kept (a map of 10,000 Services' addresses, of which a
// plan of one Service keeps a few). The set is marked partial.
func (r *Reader) SetWhere(fam, table, name string, keep func(target, comment string) bool) (*nftables.Set, error) {
	f, err := family(fam)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t := &gn.Table{Name: table, Family: f}
	s, comps, ms, err := r.header(t, fam, name)
	if err != nil {
		return nil, err
	}
	ms.Partial = true
	replies, err := r.elemRequest(f, table, name, nil)
	if err != nil {
		return nil, err
	}
	var kept []*rawElem
	for _, m := range replies {
		if len(m.Data) < 4 {
			continue
		}
		raws, err := parseElemList(m.Data[4:])
		if err != nil {
			return nil, fmt.Errorf("set %s %s %s: %w", fam, table, name, err)
		}
		for _, raw := range raws {
			target := ""
			if raw.verdict {
				v, err := verdictData(raw.data)
				if err != nil {
					return nil, fmt.Errorf("map %s %s %s: %w", fam, table, name, err)
				}
				for _, verb := range []string{"goto", "jump"} {
					if x, ok := v[verb].(map[string]any); ok {
						target, _ = x["target"].(string)
					}
				}
			}
			if keep(target, raw.comment) {
				kept = append(kept, raw)
			}
		}
	}
	sort.SliceStable(kept, func(i, j int) bool { return keyLess(s, kept[i].key, kept[j].key) })
	for _, raw := range kept {
		e, err := decodeElem(s, comps, raw)
		if err != nil {
			return nil, fmt.Errorf("set %s %s %s: %w", fam, table, name, err)
		}
		ms.Elems = append(ms.Elems, *e)
	}
	return ms, nil
}
