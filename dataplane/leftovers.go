package dataplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/svctrace/svctrace/dataplane/ipvsadm"
	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/dataplane/xtables"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/kubeproxy/naming"
)

// ProxyModeURL is where kube-proxy says which mode it runs in: its metrics server's /proxyMode
// (kube-proxy's default --metrics-bind-address, on the node's loopback).
var ProxyModeURL = "http://127.0.0.1:10249/proxyMode"

// KubeProxyMode asks the node's kube-proxy which mode it runs in; "" when it does not answer in
// a second or answers something that is not a mode.
func KubeProxyMode(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ProxyModeURL, nil)
	if err != nil {
		return ""
	}
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	switch m := strings.TrimSpace(string(body)); m {
	case "iptables", "nftables", "ipvs":
		if resp.StatusCode == http.StatusOK {
			return m
		}
	}
	return ""
}

// FindLeftovers lists kube-proxy state of modes other than mode on the node: in nftables mode,
// kube-proxy's iptables chains (either backend, IPv4; iptables and IPVS mode's) and IPVS state;
// in iptables and IPVS mode, its nftables tables; in iptables mode, IPVS state and the chains
// only IPVS mode writes. iptables chains come first: they use the ipsets, which go after them.
func FindLeftovers(ctx context.Context, r noderun.Runner, mode string) ([]trace.Leftover, error) {
	var out []trace.Leftover
	var ipvsState *trace.Leftover
	if mode != "ipvs" {
		var err error
		read := IPVSRead{}
		if _, local := r.(noderun.Local); local {
			read.Services = ipvsadm.Services
		}
		if ipvsState, err = IPVSLeftover(ctx, r, read); err != nil {
			return nil, err
		}
	}
	chainsOf := ""
	switch {
	case mode == "nftables":
		chainsOf = "iptables"
	case mode == "iptables" && ipvsState != nil:
		chainsOf = "ipvs" // only when IPVS state says so: two more iptables-save runs otherwise
	}
	if chainsOf != "" {
		// Both backends by their own names; a node with neither name (a minimal image, the
		// IPVS test guest) has one, as plain iptables-save.
		installed := 0
		for _, backend := range []string{"iptables-legacy", "iptables-nft", "iptables"} {
			if backend == "iptables" && installed > 0 {
				break
			}
			for _, table := range []string{"nat", "filter", "mangle"} {
				if chainsOf == "ipvs" && trace.IPVSOnlyChains[table] == nil {
					continue
				}
				l, err := IPTablesLeftover(ctx, r, backend, table, chainsOf)
				if errors.Is(err, noderun.ErrNotFound) {
					break
				}
				if err != nil {
					return nil, err
				}
				installed++
				if l != nil {
					out = append(out, *l)
				}
			}
		}
	}
	if mode != "nftables" && HasNftKubeProxy(ctx, r) { // one look (over netlink on the node) before reading a family
		for _, family := range []string{"ip", "ip6"} {
			l, err := NftLeftover(ctx, r, family)
			if err != nil {
				return nil, err
			}
			if l != nil {
				out = append(out, *l)
			}
		}
	}
	if ipvsState != nil {
		out = append(out, *ipvsState)
	}
	return out, nil
}

// IPVSRead says how IPVSLeftover reads.
type IPVSRead struct {
	// Services reads the virtual servers (over netlink, on the node itself); nil through a pod,
	// where the state is then only reported (Leftover.IPVS is nil).
	Services func() ([]trace.IPVSService, error)
	// Also are virtual servers a plan names: kube-proxy's whatever else the node has (after
	// kube-ipvs0 and the ipsets are gone they would not be known as its own otherwise).
	Also []trace.IPVSService
	// Strict makes a command that fails an error rather than "nothing there" (repair's reads).
	Strict bool
}

// IPVSLeftover reads the IPVS state kube-proxy's IPVS mode left: the kube-ipvs0 device with its
// addresses, kube-proxy's ipsets and its virtual servers; nil when there is none of it.
func IPVSLeftover(ctx context.Context, r noderun.Runner, how IPVSRead) (*trace.Leftover, error) {
	s := &trace.IPVSState{}
	soft := func(err error) error {
		var exited *noderun.Error
		if errors.Is(err, noderun.ErrNotFound) || !how.Strict && errors.As(err, &exited) {
			return nil
		}
		return err
	}
	dev, err := IPVSDeviceOf(ctx, r)
	if err != nil {
		return nil, err
	}
	s.Device, s.Up, s.Addresses = dev.Device, dev.Up, dev.Addresses
	// The names first: a node with another user's big ipsets (a CNI's) dumps them only when
	// kube-proxy's are there too.
	names, err := r.Run(ctx, "ipset", "list", "-n")
	if err := soft(err); err != nil {
		return nil, fmt.Errorf("ipset list -n: %w", err)
	}
	if slices.ContainsFunc(strings.Fields(string(names)), trace.IsKubeProxyIPSet) {
		sets, err := r.Run(ctx, "ipset", "save")
		if err != nil {
			return nil, fmt.Errorf("ipset save: %w", err)
		}
		s.IPSets = KubeProxyIPSets(sets)
	}
	if how.Services != nil && (s.Device != "" || len(s.IPSets) > 0 || len(how.Also) > 0) {
		all, err := how.Services()
		if err != nil {
			return nil, err
		}
		also := map[string]bool{}
		for _, v := range how.Also {
			also[v.Protocol+" "+v.Address] = true
		}
		owns := s.Owner()
		for _, v := range all {
			if owns(v) || also[v.Protocol+" "+v.Address] {
				s.VirtualServers = append(s.VirtualServers, v)
			}
		}
	}
	if s.Device == "" && len(s.IPSets) == 0 && len(s.VirtualServers) == 0 {
		return nil, nil
	}
	l := &trace.Leftover{Mode: "ipvs", Table: "ipvs", Objects: s.Summary()}
	if how.Services != nil {
		l.IPVS = s
	}
	return l, nil
}

// IPVSDeviceOf reads kube-proxy's kube-ipvs0 device: whether it is there (Device), up, and the
// addresses kube-proxy put on it (not the kernel's link-local ones).
func IPVSDeviceOf(ctx context.Context, r noderun.Runner) (trace.IPVSState, error) {
	var s trace.IPVSState
	link, err := r.Run(ctx, "ip", "-o", "link", "show", trace.IPVSDevice)
	var exited *noderun.Error
	switch {
	case errors.Is(err, noderun.ErrNotFound), errors.As(err, &exited):
		return s, nil // no ip here, or no such device
	case err != nil:
		return s, fmt.Errorf("ip link show %s: %w", trace.IPVSDevice, err)
	case !strings.Contains(string(link), trace.IPVSDevice):
		return s, nil
	}
	s.Device = trace.IPVSDevice
	flags, _, _ := strings.Cut(string(link), ">")
	s.Up = slices.Contains(strings.Split(flags[strings.Index(flags, "<")+1:], ","), "UP")
	addrs, err := r.Run(ctx, "ip", "-o", "addr", "show", "dev", trace.IPVSDevice)
	if err != nil {
		return s, fmt.Errorf("ip addr show dev %s: %w", trace.IPVSDevice, err)
	}
	for _, line := range strings.Split(string(addrs), "\n") {
		f := strings.Fields(line)
		// "5: kube-ipvs0    inet 10.96.0.1/32 scope global kube-ipvs0\ ..."
		if len(f) >= 6 && (f[2] == "inet" || f[2] == "inet6") && f[1] == trace.IPVSDevice && f[5] != "link" {
			s.Addresses = append(s.Addresses, f[3])
		}
	}
	return s, nil
}

// KubeProxyIPSets picks kube-proxy's ipsets out of `ipset save` output, in its order.
func KubeProxyIPSets(save []byte) []trace.IPSetState {
	var out []trace.IPSetState
	at := map[string]int{}
	for _, line := range strings.Split(string(save), "\n") {
		verb, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
		name, rest, _ := strings.Cut(rest, " ")
		if !trace.IsKubeProxyIPSet(name) {
			continue
		}
		switch verb {
		case "create":
			at[name] = len(out)
			out = append(out, trace.IPSetState{Name: name, Create: rest})
		case "add":
			if i, ok := at[name]; ok {
				out[i].Members = append(out[i].Members, rest)
			}
		}
	}
	return out
}

// IPTablesLeftover reads kube-proxy's chains of one table in one backend, with the built-in
// chains' jumps to them; nil when there are none, noderun.ErrNotFound when the backend is not
// installed. mode says
// which chains: "iptables" all kube-proxy's (trace.KubeProxyLeftoverChains and the per-Service
// ones), "ipvs" those only IPVS mode writes (trace.IPVSOnlyChains).
func IPTablesLeftover(ctx context.Context, r noderun.Runner, backend, table, mode string) (*trace.Leftover, error) {
	out, err := r.Run(ctx, backend+"-save", "-t", table)
	var exited *noderun.Error
	switch {
	case errors.As(err, &exited):
		return nil, nil // no such table here
	case err != nil:
		return nil, err
	}
	if !bytes.Contains(out, []byte(":KUBE-")) {
		return nil, nil
	}
	rs, err := xtables.Parse(out)
	if err != nil {
		return nil, fmt.Errorf("%s-save -t %s: %w", backend, table, err)
	}
	t := rs.Tables[table]
	if t == nil {
		return nil, nil
	}
	l := &trace.Leftover{Mode: mode, Backend: backend, Table: table}
	mine := map[string]bool{}
	for _, c := range t.Order {
		if mode == "ipvs" && slices.Contains(trace.IPVSOnlyChains[table], c.Name) ||
			mode == "iptables" && (slices.Contains(trace.KubeProxyLeftoverChains[table], c.Name) || table == "nat" && naming.IsServiceChain(c.Name)) {
			mine[c.Name] = true
			rules := make([]string, 0, len(c.Rules))
			for _, r := range c.Rules {
				rules = append(rules, r.Text)
			}
			l.Chains = append(l.Chains, trace.ChainRules{Chain: c.Name, Exists: true, Rules: rules})
		}
	}
	if len(l.Chains) == 0 {
		return nil, nil
	}
	for _, name := range trace.BuiltinChains[table] {
		c := t.Chains[name]
		if c == nil {
			continue
		}
		for i, r := range c.Rules {
			if mine[r.Target] {
				l.Jumps = append(l.Jumps, trace.Jump{Chain: name, Position: i + 1, Rule: r.Text})
			}
		}
	}
	return l, nil
}

// NftLeftover reads kube-proxy's nftables table of a family; nil when there is none.
func NftLeftover(ctx context.Context, r noderun.Runner, family string) (*trace.Leftover, error) {
	tables, err := r.Run(ctx, "nft", "list", "tables")
	if errors.Is(err, noderun.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !slices.Contains(strings.Split(string(tables), "\n"), "table "+family+" kube-proxy") {
		return nil, nil
	}
	out, err := r.Run(ctx, "nft", "-j", "list", "table", family, "kube-proxy")
	if err != nil {
		return nil, err
	}
	return &trace.Leftover{Mode: "nftables", Table: family, NftJSON: string(bytes.TrimSpace(out))}, nil
}
