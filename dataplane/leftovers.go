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
// kube-proxy's iptables chains (either backend, IPv4) and IPVS state; in iptables and IPVS mode,
// its nftables tables (and in iptables mode, IPVS state).
func FindLeftovers(ctx context.Context, r noderun.Runner, mode string) ([]trace.Leftover, error) {
	var out []trace.Leftover
	if mode == "nftables" {
		for _, backend := range []string{"iptables-legacy", "iptables-nft"} {
			for _, table := range []string{"nat", "filter", "mangle"} {
				l, err := IPTablesLeftover(ctx, r, backend, table)
				if err != nil {
					return nil, err
				}
				if l != nil {
					out = append(out, *l)
				}
			}
		}
	} else if HasNftKubeProxy(ctx, r) { // one look (over netlink on the node) before reading a family
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
	if mode != "ipvs" && ipvsadm.HasKubeIPVS(ctx, r) {
		out = append(out, trace.Leftover{Mode: "ipvs", Table: "ipvs", Objects: []string{"the kube-ipvs0 device"}})
	}
	return out, nil
}

// IPTablesLeftover reads kube-proxy's chains of one table in one backend, with the built-in
// chains' jumps to them; nil when there are none (or the backend is not installed).
func IPTablesLeftover(ctx context.Context, r noderun.Runner, backend, table string) (*trace.Leftover, error) {
	out, err := r.Run(ctx, backend+"-save", "-t", table)
	var exited *noderun.Error
	switch {
	case errors.Is(err, noderun.ErrNotFound), errors.As(err, &exited):
		return nil, nil // not installed, or no such table here
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
	l := &trace.Leftover{Mode: "iptables", Backend: backend, Table: table}
	mine := map[string]bool{}
	for _, c := range t.Order {
		if slices.Contains(trace.KubeProxyLeftoverChains[table], c.Name) || table == "nat" && naming.IsServiceChain(c.Name) {
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
