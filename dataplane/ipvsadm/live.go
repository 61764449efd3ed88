package ipvsadm

import (
	"context"
	"fmt"
	"strings"

	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/trace/ipvs"
)

// HasKubeIPVS reports whether kube-proxy runs in IPVS mode here: its kube-ipvs0 interface exists.
func HasKubeIPVS(ctx context.Context, r noderun.Runner) bool {
	out, err := r.Run(ctx, "ip", "-o", "link", "show", "kube-ipvs0")
	return err == nil && strings.Contains(string(out), "kube-ipvs0")
}

// ReadIPSets runs `ipset save` and parses it; it returns the text too, for snapshots.
func ReadIPSets(ctx context.Context, r noderun.Runner) (ipvs.Sets, []byte, error) {
	out, err := r.Run(ctx, "ipset", "save")
	if err != nil {
		return nil, nil, err
	}
	sets, err := ParseIPSet(out)
	return sets, out, err
}

// ReadIPSetHeaders lists the ipsets' names, types and families without their members (`ipset
// list -t`): the sets are Partial, for a Scoped dataplane to test the packet's values in.
func ReadIPSetHeaders(ctx context.Context, r noderun.Runner) (ipvs.Sets, error) {
	out, err := r.Run(ctx, "ipset", "list", "-t")
	if err != nil {
		return nil, err
	}
	if len(strings.TrimSpace(string(out))) == 0 {
		return ipvs.Sets{}, nil
	}
	sets, err := parseIPSetList(out)
	if err != nil {
		return nil, err
	}
	for _, s := range sets {
		s.Members, s.List, s.Partial, s.Tested = map[string]bool{}, nil, true, map[string]bool{}
	}
	return sets, nil
}

// FormatList writes the table the way `ipvsadm -Ln` prints it, so that ParseList reads it back
// (snapshots of a node read over netlink).
func FormatList(t *ipvs.Table) []byte {
	var b strings.Builder
	b.WriteString("IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
	for _, s := range t.Services {
		fmt.Fprintf(&b, "%s  %s %s", strings.ToUpper(s.Protocol), s.Addr, s.Scheduler)
		if s.Persistent > 0 {
			fmt.Fprintf(&b, " persistent %d", s.Persistent)
		}
		b.WriteString("\n")
		for _, r := range s.Reals {
			fwd := map[string]string{"masq": "Masq", "route": "Route", "tunnel": "Tunnel", "local": "Local"}[r.Forward]
			if fwd == "" {
				fwd = "Masq"
			}
			fmt.Fprintf(&b, "  -> %-28s %-7s %-6d %-10d %d\n", r.Addr, fwd, r.Weight, r.ActiveConn, r.InActConn)
		}
	}
	return []byte(b.String())
}

// ReadRemote reads the IPVS table where netlink is out of reach (through a pod exec): `ipvsadm
// -Ln` when the image has it, else /proc/net/ip_vs.
func ReadRemote(ctx context.Context, r noderun.Runner) (*ipvs.Table, error) {
	out, err := r.Run(ctx, "ipvsadm", "-Ln")
	if err != nil {
		if out, err = r.Run(ctx, "cat", "/proc/net/ip_vs"); err != nil {
			return nil, fmt.Errorf("reading IPVS: neither ipvsadm -Ln nor /proc/net/ip_vs: %w", err)
		}
	}
	return ParseList(out)
}
