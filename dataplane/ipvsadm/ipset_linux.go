package ipvsadm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/svctrace/svctrace/trace/ipvs"
)

// TestMember asks this network namespace's kernel, over netlink, whether values (one per
// dimension of set's type, as ipset prints a member: "10.96.0.10", "tcp:80", "30080") form a
// member of set, as `ipset test` does: net dimensions match by containment. An address of the
// other family than the set's is no member.
func TestMember(set *ipvs.Set, values []string) (bool, error) {
	data, ok, err := entryOf(set, values)
	if err != nil || !ok {
		return false, err
	}
	req := nl.NewNetlinkRequest(nl.IPSET_CMD_TEST|(unix.NFNL_SUBSYS_IPSET<<8), nl.GetIpsetFlags(nl.IPSET_CMD_TEST))
	req.AddData(&nl.Nfgenmsg{NfgenFamily: uint8(unix.AF_NETLINK), Version: nl.NFNETLINK_V0})
	req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_PROTOCOL, nl.Uint8Attr(nl.IPSET_PROTOCOL)))
	req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_SETNAME, nl.ZeroTerminated(set.Name)))
	req.AddData(data)
	_, err = req.Execute(unix.NETLINK_NETFILTER, 0)
	var errno syscall.Errno
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &errno) && int(errno) == nl.IPSET_ERR_EXIST:
		return false, nil // (the kernel's answer to a test of a value that is not a member)
	case errors.As(err, &errno) && int(errno) >= nl.IPSET_ERR_PRIVATE:
		return false, nl.IPSetError(uintptr(errno))
	}
	return false, err
}

// entryOf is the netlink data of values in set: the addresses (the first as IP, a second as IP2),
// the port and, when values name one, the protocol (a bitmap:port set takes none); ok is false
// when they cannot be a member (an address of the other family).
func entryOf(set *ipvs.Set, values []string) (data *nl.RtAttr, ok bool, err error) {
	dims := set.Dimensions()
	if len(dims) != len(values) {
		return nil, false, fmt.Errorf("ipset %s (%s) has %d dimensions, not %d", set.Name, set.Type, len(dims), len(values))
	}
	data = nl.NewRtAttr(nl.IPSET_ATTR_DATA|int(nl.NLA_F_NESTED), nil)
	addrs := 0
	for i, d := range dims {
		v := values[i]
		switch d {
		case "ip", "net":
			a, err := netip.ParseAddr(v)
			if err != nil {
				return nil, false, fmt.Errorf("ipset %s: %q is not an address", set.Name, v)
			}
			a = a.Unmap()
			if fam := map[bool]string{true: "inet6", false: "inet"}[a.Is6()]; set.Family != "" && set.Family != fam {
				return nil, false, nil
			}
			kind := nl.IPSET_ATTR_IPADDR_IPV4
			if a.Is6() {
				kind = nl.IPSET_ATTR_IPADDR_IPV6
			}
			which := nl.IPSET_ATTR_IP
			if addrs > 0 {
				which = nl.IPSET_ATTR_IP2
			}
			if addrs++; addrs > 2 {
				return nil, false, fmt.Errorf("ipset %s (%s): more than two addresses", set.Name, set.Type)
			}
			addr := nl.NewRtAttr(kind|int(nl.NLA_F_NET_BYTEORDER), a.AsSlice())
			data.AddChild(nl.NewRtAttr(which|int(nl.NLA_F_NESTED), addr.Serialize()))
		case "port":
			proto, port, hasProto := strings.Cut(v, ":")
			if !hasProto {
				port = proto
			}
			n, err := strconv.ParseUint(port, 10, 16)
			if err != nil {
				return nil, false, fmt.Errorf("ipset %s: %q is not a port", set.Name, v)
			}
			if hasProto {
				num, ok := protoNumbers[proto]
				if !ok {
					return nil, false, fmt.Errorf("ipset %s: protocol %q", set.Name, proto)
				}
				data.AddChild(nl.NewRtAttr(nl.IPSET_ATTR_PROTO, nl.Uint8Attr(uint8(num))))
			}
			data.AddChild(nl.NewRtAttr(nl.IPSET_ATTR_PORT|int(nl.NLA_F_NET_BYTEORDER), binary.BigEndian.AppendUint16(nil, uint16(n))))
		default:
			return nil, false, errors.New("ipset " + set.Name + ": svctrace cannot test a " + d + " dimension (" + set.Type + ")")
		}
	}
	return data, true, nil
}
