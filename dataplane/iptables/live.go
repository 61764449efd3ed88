package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	dpexec "github.com/svctrace/svctrace/dataplane/exec"
	xt "github.com/svctrace/svctrace/trace/iptables"
)

// Tables are the tables read from a live node, one iptables-save call each: listing chain by
// chain is far too slow on a node with 10,000 Services.
var Tables = []string{"raw", "mangle", "filter", "nat"}

// Backend is one iptables variant installed on the node.
type Backend struct {
	// Save is the save command, e.g. iptables-legacy-save.
	Save string
	// Mode is "legacy" or "nf_tables".
	Mode string
	// KubeRules is true when the variant holds kube-proxy's chains.
	KubeRules bool
	// Version is the iptables version ("v1.8.9"), when known.
	Version string
	// Ambiguous is set when both variants, or neither, hold kube-proxy's chains: reading then
	// picks the default command's, but writing must refuse.
	Ambiguous bool
}

// Restore is the backend's restore command ("iptables-legacy-restore").
func (b Backend) Restore() string {
	return strings.TrimSuffix(b.Save, "-save") + "-restore"
}

// kubeMarkers are chains whose presence says kube-proxy (or the kubelet) writes to a backend.
var kubeMarkers = []string{":KUBE-IPTABLES-HINT", ":KUBE-PROXY-CANARY", ":KUBE-KUBELET-CANARY", ":KUBE-SERVICES"}

// DetectBackend picks the iptables variant kube-proxy uses on this node, the way
// kubernetes-sigs/iptables-wrappers does: the variant whose mangle/nat tables hold kube-proxy's
// chains. It prefers the default `iptables` command's mode when both or neither have them.
func DetectBackend(ctx context.Context, r dpexec.Runner, ipv6 bool) (Backend, error) {
	prefix := "iptables"
	if ipv6 {
		prefix = "ip6tables"
	}
	defaultMode := modeOf(ctx, r, prefix)
	version := ""
	if _, local := r.(dpexec.Local); local {
		version = localVersion(ipv6)
	}
	var found []Backend
	for _, v := range []Backend{{Save: prefix + "-nft-save", Mode: "nf_tables", Version: version}, {Save: prefix + "-legacy-save", Mode: "legacy", Version: version}} {
		// The markers live in the small mangle table (kube-proxy's canary, the kubelet's hint);
		// kube-proxy versions without them still have KUBE-SERVICES in filter. The big nat
		// table is never read twice.
		present := false
		for _, table := range []string{"mangle", "filter"} {
			out, err := r.Run(ctx, v.Save, "-t", table)
			if errors.Is(err, dpexec.ErrNotFound) {
				break
			}
			present = true
			for _, m := range kubeMarkers {
				v.KubeRules = v.KubeRules || bytes.Contains(out, []byte(m))
			}
			if v.KubeRules {
				break
			}
		}
		if present {
			found = append(found, v)
		}
	}
	if len(found) == 0 {
		// Old distributions ship only plain iptables-save.
		if _, err := r.Run(ctx, prefix+"-save", "-t", "filter"); err != nil {
			return Backend{}, fmt.Errorf("no %s-save on this node: install iptables, or pass --dataplane FILE: %w", prefix, err)
		}
		return Backend{Save: prefix + "-save", Mode: defaultMode, KubeRules: true, Version: version}, nil
	}
	var withRules []Backend
	for _, b := range found {
		if b.KubeRules {
			withRules = append(withRules, b)
		}
	}
	if len(withRules) == 1 {
		return withRules[0], nil
	}
	for _, b := range found {
		if b.Mode == defaultMode {
			b.Ambiguous = true
			return b, nil
		}
	}
	found[0].Ambiguous = true
	return found[0], nil
}

func modeOf(ctx context.Context, r dpexec.Runner, prefix string) string {
	out, err := r.Run(ctx, prefix, "--version")
	if err != nil {
		return ""
	}
	switch {
	case bytes.Contains(out, []byte("nf_tables")):
		return "nf_tables"
	case bytes.Contains(out, []byte("legacy")):
		return "legacy"
	}
	return "legacy"
}

// ReadLive dumps the backend's tables with counters (one call per table) and parses them.
func ReadLive(ctx context.Context, r dpexec.Runner, b Backend) (*xt.Ruleset, []byte, error) {
	var outs [][]byte
	total := 0
	for _, t := range Tables {
		out, err := r.Run(ctx, b.Save, "-c", "-t", t)
		if err != nil {
			var ee *dpexec.Error
			if errors.As(err, &ee) && (t == "raw" || t == "mangle") {
				continue // tables kube-proxy does not need may be absent
			}
			return nil, nil, err
		}
		outs = append(outs, out)
		total += len(out)
	}
	// One buffer of the right size: on a big node the nat table alone is 30 MB.
	all := make([]byte, 0, total)
	for _, o := range outs {
		all = append(all, o...)
	}
	outs = nil
	if !bytes.Contains(all, []byte("*nat")) {
		return nil, nil, fmt.Errorf("%s printed no nat table: is kube-proxy running in iptables mode on this node?", b.Save)
	}
	rs, err := Parse(all)
	if err != nil {
		return nil, nil, err
	}
	if rs.Variant == "" {
		rs.Variant = b.Mode
	}
	return rs, all, nil
}
