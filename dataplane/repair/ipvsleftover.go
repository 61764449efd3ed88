package repair

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/svctrace/svctrace/dataplane"
	"github.com/svctrace/svctrace/dataplane/ipvsadm"
	"github.com/svctrace/svctrace/trace"
)

// This file removes the IPVS state kube-proxy's IPVS mode left on a node in another mode (the
// virtual servers, the kube-ipvs0 device, the ipsets), as kube-proxy's own cleanup does but
// without flushing (pkg/proxy/ipvs/cleanup.go flushes every virtual server), and puts it back.

// ipvsSchedulers are the IPVS schedulers of Linux (kube-proxy's --ipvs-scheduler takes these).
var ipvsSchedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}

// ipsetTypes are the set types kube-proxy creates.
var ipsetTypes = []string{"hash:ip", "hash:ip,port", "hash:ip,port,ip", "hash:ip,port,net", "bitmap:port"}

// ipsetMember is one member as `ipset save` prints kube-proxy's: an address, a port, or
// ADDRESS,PROTO:PORT[,ADDRESS|CIDR].
var ipsetMember = regexp.MustCompile(`^[0-9A-Fa-f][0-9A-Fa-f.:,/a-z-]{0,99}$`)

// validIPVSLeftover checks IPVS state read from a plan or state file: only kube-proxy's device
// holding single addresses, kube-proxy's ipsets with their own types and options and members
// that are addresses and ports, and virtual servers that are kube-proxy's by that same state (on
// an address of kube-ipvs0, or on one of its node ports).
func validIPVSLeftover(l trace.Leftover) error {
	s := l.IPVS
	if s == nil {
		return errors.New("leftover: IPVS state with no detail (read through a pod) cannot be removed")
	}
	if l.Table != "ipvs" || len(l.Chains) > 0 || len(l.Jumps) > 0 || l.NftJSON != "" {
		return errors.New("leftover: IPVS state with iptables chains or an nftables table")
	}
	if s.Device != "" && s.Device != trace.IPVSDevice || s.Device == "" && (s.Up || len(s.Addresses) > 0) {
		return fmt.Errorf("leftover: device %q is not %s", s.Device, trace.IPVSDevice)
	}
	for _, a := range s.Addresses {
		p, err := netip.ParsePrefix(a)
		if err != nil || p.Bits() != p.Addr().BitLen() || p.Addr().Zone() != "" {
			return fmt.Errorf("leftover: %q on %s is not a single address", a, trace.IPVSDevice)
		}
	}
	seen := map[string]bool{}
	for _, set := range s.IPSets {
		if !trace.IsKubeProxyIPSet(set.Name) || seen[set.Name] {
			return fmt.Errorf("leftover: ipset %q is not one of kube-proxy's, or is listed twice", set.Name)
		}
		seen[set.Name] = true
		if err := validIPSetCreate(set.Create); err != nil {
			return fmt.Errorf("leftover: ipset %s: %v", set.Name, err)
		}
		if len(set.Members) > 1<<20 {
			return fmt.Errorf("leftover: ipset %s has %d members", set.Name, len(set.Members))
		}
		for _, m := range set.Members {
			if !ipsetMember.MatchString(m) {
				return fmt.Errorf("leftover: ipset %s: member %q is not an address or port", set.Name, m)
			}
		}
	}
	vs := map[string]bool{}
	owns := s.Owner()
	for _, v := range s.VirtualServers {
		if err := validVirtual(v); err != nil {
			return fmt.Errorf("leftover: %v", err)
		}
		if !owns(v) {
			return fmt.Errorf("leftover: virtual server %s %s is on no address of %s and no node port of kube-proxy's ipsets", v.Protocol, v.Address, trace.IPVSDevice)
		}
		if key := v.Protocol + " " + v.Address; vs[key] {
			return fmt.Errorf("leftover: virtual server %s is listed twice", key)
		} else {
			vs[key] = true
		}
	}
	return nil
}

func validVirtual(v trace.IPVSService) error {
	if !slices.Contains(ipvsSchedulers, v.Scheduler) {
		return fmt.Errorf("virtual server %s: scheduler %q", v.Address, v.Scheduler)
	}
	if v.Flags > 0xffff || v.Timeout > 1<<24 {
		return fmt.Errorf("virtual server %s: flags %#x, timeout %d", v.Address, v.Flags, v.Timeout)
	}
	vip, err := netip.ParseAddrPort(v.Address)
	if err != nil || vip.Port() == 0 {
		return fmt.Errorf("virtual server %q is not an ADDRESS:PORT", v.Address)
	}
	for _, r := range v.Reals {
		if err := validReal(v.Protocol, v.Address, r.Address); err != nil {
			return fmt.Errorf("virtual server %s: %v", v.Address, err)
		}
		if rp, _ := netip.ParseAddrPort(r.Address); rp.Addr().Is4() != vip.Addr().Is4() {
			return fmt.Errorf("virtual server %s: real server %s of the other family", v.Address, r.Address)
		}
		if r.Weight < 0 || r.Weight > 65535 || !slices.Contains([]string{"masq", "route", "tunnel", "local"}, r.Forward) {
			return fmt.Errorf("virtual server %s: real server %s with weight %d, forwarding %q", v.Address, r.Address, r.Weight, r.Forward)
		}
	}
	return validReal(v.Protocol, v.Address, v.Address)
}

// validIPSetCreate checks the rest of a `create NAME` line: a type kube-proxy uses and options
// `ipset save` prints for such sets.
func validIPSetCreate(create string) error {
	f := strings.Fields(create)
	if len(f) == 0 || !slices.Contains(ipsetTypes, f[0]) {
		return fmt.Errorf("type %q is not one kube-proxy creates", create)
	}
	for i := 1; i < len(f); i++ {
		opt := f[i]
		if opt == "comment" || opt == "counters" {
			continue
		}
		if i+1 == len(f) {
			return fmt.Errorf("option %q without a value", opt)
		}
		i++
		val, ok := f[i], true
		switch opt {
		case "family":
			ok = val == "inet" || val == "inet6"
		case "hashsize", "maxelem", "bucketsize":
			_, err := strconv.ParseUint(val, 10, 32)
			ok = err == nil
		case "initval":
			_, err := strconv.ParseUint(strings.TrimPrefix(val, "0x"), 16, 32)
			ok = strings.HasPrefix(val, "0x") && err == nil
		case "range":
			lo, hi, cut := strings.Cut(val, "-")
			_, e1 := strconv.ParseUint(lo, 10, 16)
			_, e2 := strconv.ParseUint(hi, 10, 16)
			ok = cut && e1 == nil && e2 == nil
		default:
			ok = false
		}
		if !ok {
			return fmt.Errorf("option %s %q", opt, val)
		}
	}
	return nil
}

// removeIPVS deletes kube-proxy's virtual servers (only those), its device, and its ipsets
// (after the iptables rules that use them, which come earlier in the plan).
func removeIPVS(ctx context.Context, s *trace.IPVSState) error {
	if s == nil {
		return errors.New("IPVS state with no detail")
	}
	if len(s.VirtualServers) > 0 {
		if err := ipvsadm.DeleteServices(s.VirtualServers); err != nil {
			return err
		}
	}
	if s.Device != "" {
		if _, err := local.Run(ctx, "ip", "link", "delete", trace.IPVSDevice); err != nil {
			return err
		}
	}
	if len(s.IPSets) > 0 {
		var b strings.Builder
		for _, set := range s.IPSets {
			b.WriteString("destroy " + set.Name + "\n")
		}
		if _, err := local.RunInput([]byte(b.String()), "ipset", "restore"); err != nil {
			return err
		}
	}
	return nil
}

// restoreIPVS puts back what of s is not there: the ipsets and their members first (the iptables
// rules put back after them use them), then the device and its addresses, then the virtual
// servers and their real servers. What is there stays as it is.
func restoreIPVS(ctx context.Context, s *trace.IPVSState) error {
	if s == nil {
		return errors.New("IPVS state with no detail")
	}
	if len(s.IPSets) > 0 {
		var b strings.Builder
		for _, set := range s.IPSets {
			fmt.Fprintf(&b, "create %s %s\n", set.Name, set.Create)
			for _, m := range set.Members {
				fmt.Fprintf(&b, "add %s %s\n", set.Name, m)
			}
		}
		if _, err := local.RunInput([]byte(b.String()), "ipset", "-exist", "restore"); err != nil {
			return err
		}
	}
	if s.Device != "" {
		now, err := dataplane.IPVSDeviceOf(ctx, local)
		if err != nil {
			return err
		}
		var batch []string
		if now.Device == "" {
			batch = append(batch, "link add "+trace.IPVSDevice+" type dummy")
		}
		for _, a := range s.Addresses {
			if !slices.Contains(now.Addresses, a) {
				batch = append(batch, "addr add "+a+" dev "+trace.IPVSDevice)
			}
		}
		if s.Up && !now.Up {
			batch = append(batch, "link set "+trace.IPVSDevice+" up")
		}
		if len(batch) > 0 {
			if _, err := local.RunInput([]byte(strings.Join(batch, "\n")+"\n"), "ip", "-batch", "-"); err != nil {
				return err
			}
		}
	}
	return ipvsadm.EnsureServices(s.VirtualServers)
}
