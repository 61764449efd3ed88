package repair

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/svctrace/svctrace/dataplane/nftwrite"
	"github.com/svctrace/svctrace/dataplane/xtables"
	"github.com/svctrace/svctrace/trace"
)

// Backends are the iptables command families a state or plan may name. A file never names a
// command: it names one of these, and the commands are derived from it here.
var Backends = map[string]bool{"iptables": true, "iptables-legacy": true, "iptables-nft": true}

// BackendOf is the family of a detected backend ("iptables-legacy" for iptables-legacy-save).
func BackendOf(b xtables.Backend) string { return strings.TrimSuffix(b.Save, "-save") }

// State is what --apply saves before it writes anything, and what --undo reads back. It is data:
// the node, the mode, the backend family and the touched chains' rules before and after, and the
// IPVS real servers' weights before. Nothing in it is ever run.
type State struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"`
	Time       time.Time `json:"time"`
	// Status is writing, applied, rolled back, rollback failed, write failed or undone.
	Status string `json:"status"`
	Node   string `json:"node"`
	Mode   string `json:"mode"`
	// Backend is the iptables family the plan was written with (a key of Backends).
	Backend string            `json:"backend,omitempty"`
	Plan    *trace.RepairPlan `json:"plan"`
	// IPVSBefore are the touched real servers as they were: weight, or absent.
	IPVSBefore []RealState `json:"ipvsBefore,omitempty"`
	Deferred   []string    `json:"deferred,omitempty"`
}

// RealState is one IPVS real server's weight, or its absence.
type RealState struct {
	Protocol string `json:"protocol"`
	Virtual  string `json:"virtual"`
	Real     string `json:"real"`
	// Weight is -1 when the real server did not exist.
	Weight int `json:"weight"`
}

// RealKey names a real server of a virtual server.
type RealKey struct{ Protocol, Virtual, Real string }

func (r RealState) key() RealKey { return RealKey{r.Protocol, r.Virtual, r.Real} }

// Encode is the state file's content.
func (s *State) Encode() ([]byte, error) { return json.MarshalIndent(s, "", "  ") }

// stateKind is the Kind of a state file.
const stateKind = "RepairState"

// maxFileBytes bounds a plan or state file: a real one for a 10,000-Service node is a few MB.
const maxFileBytes = 256 << 20

// DecodeState parses and validates a state file: every value in it is checked as if an attacker
// wrote it, because --undo runs as root.
func DecodeState(data []byte) (*State, error) {
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("it is larger than %d MiB", maxFileBytes>>20)
	}
	var s State
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("it is not a state file written by repair --apply of this version: %v", err)
	}
	if s.Kind != stateKind || s.APIVersion != trace.APIVersion || s.Plan == nil {
		return nil, errors.New("it is not a state file written by repair --apply")
	}
	if err := ValidNodeName(s.Node); err != nil {
		return nil, err
	}
	if s.Plan.Node != s.Node || s.Plan.Mode != s.Mode {
		return nil, fmt.Errorf("its plan is for node %q in %s mode, but the state says node %q in %s mode", s.Plan.Node, s.Plan.Mode, s.Node, s.Mode)
	}
	if err := ValidatePlan(s.Plan); err != nil {
		return nil, err
	}
	if len(s.Plan.IPTables) > 0 && !Backends[s.Backend] {
		return nil, fmt.Errorf("backend %q is not one of iptables, iptables-legacy or iptables-nft", s.Backend)
	}
	for _, r := range s.IPVSBefore {
		if err := validReal(r.Protocol, r.Virtual, r.Real); err != nil {
			return nil, err
		}
		if r.Weight < -1 || r.Weight > 65535 {
			return nil, fmt.Errorf("real server %s has weight %d", r.Real, r.Weight)
		}
	}
	return &s, nil
}

// DecodePlan parses and validates a plan file (the -o json of a dry run).
func DecodePlan(data []byte) (*trace.RepairPlan, error) {
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("it is larger than %d MiB", maxFileBytes>>20)
	}
	var p trace.RepairPlan
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("it is not a repair plan (the -o json of a dry run): %v", err)
	}
	if p.Kind != "RepairPlan" || p.APIVersion != trace.APIVersion {
		return nil, fmt.Errorf("it is a %q %q, not a %s RepairPlan", p.APIVersion, p.Kind, trace.APIVersion)
	}
	if err := ValidNodeName(p.Node); err != nil {
		return nil, err
	}
	if err := ValidatePlan(&p); err != nil {
		return nil, err
	}
	return &p, nil
}

// nodeName is a Node object's name: a DNS subdomain.
var nodeName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// ValidNodeName checks a node name taken from a file; it becomes part of a file name.
func ValidNodeName(n string) error {
	if len(n) == 0 || len(n) > 253 || !nodeName.MatchString(n) {
		return fmt.Errorf("node name %q is not a valid Kubernetes node name", n)
	}
	return nil
}

// ValidatePlan checks everything a plan would write, computed or read from a file: the restore
// input of each table (only kube-proxy's service chains, only chain, rule and deletion lines, no
// line outside what the plan declares), the before and after rule lists (rules of their own chain
// only), the IPVS operations and the conntrack deletions (addresses, ports and protocols only).
func ValidatePlan(p *trace.RepairPlan) error {
	switch p.Mode {
	case "iptables", "ipvs", "nftables":
	default:
		return fmt.Errorf("mode %q is not iptables, ipvs or nftables", p.Mode)
	}
	if len(p.IPTables) > 0 && p.Mode == "nftables" || len(p.IPVS) > 0 && p.Mode != "ipvs" {
		return fmt.Errorf("the plan writes iptables rules in nftables mode, or IPVS outside IPVS mode")
	}
	seen := map[string]bool{}
	for _, t := range p.IPTables {
		if t.Table != "nat" && t.Table != "filter" {
			return fmt.Errorf("the plan writes the %q table; repair writes only nat and filter", t.Table)
		}
		if t.Family != "" && t.Family != trace.FamilyIPv6 {
			return fmt.Errorf("the plan's %s table is of family %q; only IPv4 (no family) and %q are written", t.Table, t.Family, trace.FamilyIPv6)
		}
		if seen[t.Key()] {
			return fmt.Errorf("the plan has the %s table twice", t.Key())
		}
		seen[t.Key()] = true
		if err := xtables.ValidateInput(t); err != nil {
			return err
		}
		for _, list := range [][]trace.ChainRules{t.Before, t.After} {
			if err := validChains(t.Table, list); err != nil {
				return err
			}
		}
		if err := xtables.ValidateInput(trace.TableRestore{Table: t.Table, Before: t.Before, Input: xtables.RollbackInput(t, nil)}); err != nil {
			return fmt.Errorf("the rules it would put back: %v", err)
		}
	}
	families := map[string]bool{}
	for _, c := range p.Nftables {
		if p.Mode != "nftables" {
			return fmt.Errorf("the plan writes nftables objects in %s mode", p.Mode)
		}
		if families[c.Family] {
			return fmt.Errorf("the plan has the %s kube-proxy table twice", c.Family)
		}
		families[c.Family] = true
		if err := nftwrite.Validate(c); err != nil {
			return err
		}
	}
	for _, l := range p.Leftovers {
		if err := ValidLeftover(l); err != nil {
			return err
		}
		if l.Mode == p.Mode || l.Mode == "iptables" && p.Mode == "ipvs" {
			return fmt.Errorf("leftover: the plan removes %s mode's state on a node in %s mode", l.Mode, p.Mode)
		}
	}
	for _, op := range p.IPVS {
		switch op.Op {
		case "add-real", "set-weight", "delete-real":
		default:
			return fmt.Errorf("IPVS operation %q is not add-real, set-weight or delete-real", op.Op)
		}
		if err := validReal(op.Protocol, op.Virtual, op.Real); err != nil {
			return err
		}
		if op.Weight < 0 || op.Weight > 65535 {
			return fmt.Errorf("IPVS operation on %s has weight %d", op.Real, op.Weight)
		}
	}
	for _, f := range p.Conntrack {
		if err := ValidFlush(f); err != nil {
			return err
		}
	}
	return nil
}

// validChains checks a before or after list: kube-proxy's chains, each once, holding only its
// own rules on one line each.
func validChains(table string, list []trace.ChainRules) error {
	names := map[string]bool{}
	for _, c := range list {
		if names[c.Chain] {
			return fmt.Errorf("chain %s (%s) is listed twice", c.Chain, table)
		}
		names[c.Chain] = true
		for _, r := range c.Rules {
			if !strings.HasPrefix(r, "-A "+c.Chain+" ") || strings.ContainsAny(r, "\r\n\x00") {
				return fmt.Errorf("chain %s (%s) lists a rule of another chain or with a line break: %q", c.Chain, table, r)
			}
		}
	}
	return nil
}

func validReal(proto, virtual, real string) error {
	switch proto {
	case "tcp", "udp", "sctp":
	default:
		return fmt.Errorf("protocol %q is not tcp, udp or sctp", proto)
	}
	for _, a := range []string{virtual, real} {
		ap, err := netip.ParseAddrPort(a)
		if err != nil || ap.Port() == 0 {
			return fmt.Errorf("%q is not an ADDRESS:PORT", a)
		}
	}
	return nil
}

// ValidFlush checks a conntrack deletion: the protocol, the Service address (or *:PORT for a node
// port) and the removed endpoint's address.
func ValidFlush(f trace.ConntrackFlush) error {
	switch f.Protocol {
	case "udp", "tcp", "sctp":
	default:
		return fmt.Errorf("conntrack deletion: protocol %q is not udp, tcp or sctp", f.Protocol)
	}
	if ap, err := netip.ParseAddrPort(f.Dst); err != nil || ap.Port() == 0 {
		port, ok := strings.CutPrefix(f.Dst, "*:")
		if n, perr := parsePort(port); !ok || perr != nil || n == 0 {
			return fmt.Errorf("conntrack deletion: destination %q is not ADDRESS:PORT or *:PORT", f.Dst)
		}
	}
	if _, err := netip.ParseAddr(f.Backend); err != nil {
		return fmt.Errorf("conntrack deletion: backend %q is not an address", f.Backend)
	}
	return nil
}

func parsePort(s string) (int, error) {
	if s == "" || len(s) > 5 {
		return 0, errors.New("not a port")
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, errors.New("not a port")
		}
		n = n*10 + int(c-'0')
	}
	if n > 65535 {
		return 0, errors.New("not a port")
	}
	return n, nil
}
