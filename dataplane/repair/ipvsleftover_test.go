package repair

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/dataplane"
	"github.com/svctrace/svctrace/dataplane/ipvsadm"
	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/trace"
)

// recordedIPVSNode answers, for a node that kube-proxy v1.36.3 left in IPVS mode (the recorded
// dataplane/snapshot/demo-ipvs), the commands the IPVS leftover read runs: `ipset save` and the
// device are the recording's; the device's addresses are the members of kube-proxy's
// KUBE-IPVS-IPS set, which holds exactly the addresses it binds to kube-ipvs0.
type recordedIPVSNode struct{ ipset, iptables []byte }

func (n recordedIPVSNode) Run(_ context.Context, argv ...string) ([]byte, error) {
	switch argv[0] {
	case "iptables-save":
		// The only iptables command (as in the IPVS test guest): the recorded rules, whatever
		// the table asked for (IPTablesLeftover keeps the one it asked for).
		return n.iptables, nil
	case "iptables-legacy-save", "iptables-nft-save", "nft":
		return nil, fmt.Errorf("%s: %w", argv[0], noderun.ErrNotFound)
	}
	if n.ipset == nil && argv[0] == "ip" { // a node IPVS mode never ran on
		return nil, &noderun.Error{Argv: argv, ExitStatus: 1, Stderr: `Device "kube-ipvs0" does not exist.`}
	}
	switch strings.Join(argv, " ") {
	case "ip -o link show kube-ipvs0":
		return []byte("5: kube-ipvs0: <BROADCAST,NOARP> mtu 1500 qdisc noop state DOWN mode DEFAULT group default \\    link/ether 8a:3c:1e:21:7a:0b brd ff:ff:ff:ff:ff:ff\n"), nil
	case "ip -o addr show dev kube-ipvs0":
		var b strings.Builder
		for _, line := range strings.Split(string(n.ipset), "\n") {
			if a, ok := strings.CutPrefix(line, "add KUBE-IPVS-IPS "); ok {
				fmt.Fprintf(&b, "5: kube-ipvs0    inet %s/32 scope global kube-ipvs0\\       valid_lft forever preferred_lft forever\n", a)
			}
		}
		return []byte(b.String()), nil
	case "ipset save":
		return n.ipset, nil
	case "ipset list -n":
		var names []string
		for _, line := range strings.Split(string(n.ipset), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "create" {
				names = append(names, f[1])
			}
		}
		return []byte(strings.Join(names, "\n") + "\n"), nil
	}
	return nil, fmt.Errorf("unexpected command %v", argv)
}

// demoIPVS reads a file of the recorded IPVS node (kube-proxy v1.36.3 in IPVS mode).
func demoIPVS(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../snapshot/demo-ipvs/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// foreignVirtual is a virtual server that is not kube-proxy's (an address not on kube-ipvs0, a
// port that is no node port).
var foreignVirtual = trace.IPVSService{Protocol: "tcp", Address: "192.0.2.10:8443", Scheduler: "wlc", Netmask: 0xffffffff,
	Reals: []trace.IPVSDest{{Address: "192.0.2.20:8443", Weight: 1, Forward: "route"}}}

// recordedIPVSLeftover is the recorded IPVS node's state as a leftover, its virtual servers read
// from the recorded `ipvsadm -Sn` next to a foreign one.
func recordedIPVSLeftover(t *testing.T) trace.Leftover {
	t.Helper()
	sets := demoIPVS(t, "ipset-save.txt")
	save := demoIPVS(t, "ipvsadm-Sn.txt")
	table, err := ipvsadm.ParseSave(save)
	if err != nil {
		t.Fatal(err)
	}
	services := func() ([]trace.IPVSService, error) {
		out := []trace.IPVSService{foreignVirtual}
		for _, s := range table.Services {
			v := trace.IPVSService{Protocol: s.Protocol, Address: s.Addr.String(), Scheduler: s.Scheduler, Netmask: 0xffffffff}
			if s.Persistent > 0 {
				v.Flags, v.Timeout = 1, uint32(s.Persistent)
			}
			for _, r := range s.Reals {
				v.Reals = append(v.Reals, trace.IPVSDest{Address: r.Addr.String(), Weight: r.Weight, Forward: r.Forward})
			}
			out = append(out, v)
		}
		return out, nil
	}
	l, err := dataplane.IPVSLeftover(context.Background(), recordedIPVSNode{ipset: sets}, dataplane.IPVSRead{Services: services, Strict: true})
	if err != nil || l == nil || l.IPVS == nil {
		t.Fatalf("%v %v", l, err)
	}
	return *l
}

// TestIPVSLeftoverRead: on the recorded IPVS node, the leftover is kube-proxy's device with its
// addresses, its 17 ipsets and every recorded virtual server, and not the foreign one.
func TestIPVSLeftoverRead(t *testing.T) {
	l := recordedIPVSLeftover(t)
	s := l.IPVS
	if s.Device != "kube-ipvs0" || s.Up || len(s.Addresses) != 7 || !slices.Contains(s.Addresses, "10.96.0.1/32") {
		t.Errorf("device %q up=%v addresses %v", s.Device, s.Up, s.Addresses)
	}
	if len(s.IPSets) != 17 {
		t.Errorf("%d ipsets, want kube-proxy's 17", len(s.IPSets))
	}
	var addrs []string
	for _, v := range s.VirtualServers {
		addrs = append(addrs, v.Address)
	}
	// 8 node-port ones (4 ports on 2 node addresses), 7 on cluster IPs.
	if len(addrs) != 15 || slices.Contains(addrs, foreignVirtual.Address) || !slices.Contains(addrs, "10.0.2.15:30203") {
		t.Errorf("virtual servers %v", addrs)
	}
	if err := ValidLeftover(l); err != nil {
		t.Errorf("the recorded IPVS leftover is refused: %v", err)
	}
	if got := strings.Join(l.Objects, ", "); got != "the kube-ipvs0 device (7 addresses), 15 virtual servers (19 real servers), 17 ipsets (40 members)" {
		t.Logf("objects: %s", got) // the counts are the recording's; the assertions above pin what matters
	}
	// Through a pod (no netlink): reported, not removable.
	far, err := dataplane.IPVSLeftover(context.Background(), recordedIPVSNode{ipset: []byte("create KUBE-CLUSTER-IP hash:ip,port family inet\n")}, dataplane.IPVSRead{})
	if err != nil || far == nil || far.IPVS != nil || far.Removable() {
		t.Errorf("read through a pod: %+v %v", far, err)
	}
}

// TestFindIPVSLeftovers: on a node in iptables mode that IPVS mode left its state on, with only
// plain iptables-save (neither iptables-legacy-save nor iptables-nft-save), FindLeftovers reports
// the chains only IPVS mode writes, nat then filter, and then the IPVS state (through a runner
// that is not this machine: reported, with no detail to remove).
func TestFindIPVSLeftovers(t *testing.T) {
	sets := demoIPVS(t, "ipset-save.txt")
	rules := demoIPVS(t, "iptables-save.txt")
	left, err := dataplane.FindLeftovers(context.Background(), recordedIPVSNode{ipset: sets, iptables: rules}, "iptables")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range left {
		got = append(got, fmt.Sprintf("%s %s %d/%d removable=%v", l.Where(), l.Mode, len(l.Chains), len(l.Jumps), l.Removable()))
	}
	want := "iptables nat ipvs 2/0 removable=true, iptables filter ipvs 4/3 removable=true, IPVS ipvs 0/0 removable=false"
	if strings.Join(got, ", ") != want {
		t.Errorf("leftovers:\n%s\nwant\n%s", strings.Join(got, ", "), want)
	}
	// On a node without IPVS state, the chains are not even read.
	left, err = dataplane.FindLeftovers(context.Background(), recordedIPVSNode{iptables: rules}, "iptables")
	if err != nil || len(left) != 0 {
		t.Errorf("without IPVS state: %v %v", left, err)
	}
}

// TestIPVSLeftoverValidated: a plan or state file cannot make the removal or the undo create or
// delete IPVS state that is not kube-proxy's, or smuggle commands into ipset or ip.
func TestIPVSLeftoverValidated(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(s *trace.IPVSState)
		want string
	}{
		{"another device", func(s *trace.IPVSState) { s.Device = "eth0" }, `device "eth0"`},
		{"a network on the device", func(s *trace.IPVSState) { s.Addresses[0] = "10.0.0.0/8" }, "not a single address"},
		{"a foreign virtual server", func(s *trace.IPVSState) { s.VirtualServers = append(s.VirtualServers, foreignVirtual) }, "is on no address of kube-ipvs0"},
		{"a scheduler that is a command", func(s *trace.IPVSState) { s.VirtualServers[0].Scheduler = "rr; reboot" }, "scheduler"},
		{"a real server of the other family", func(s *trace.IPVSState) { s.VirtualServers[0].Reals[0].Address = "[fd00::1]:80" }, "other family"},
		{"a foreign ipset", func(s *trace.IPVSState) { s.IPSets[0].Name = "cali40-hosts" }, "not one of kube-proxy's"},
		{"an ipset twice", func(s *trace.IPVSState) { s.IPSets[1].Name = s.IPSets[0].Name }, "listed twice"},
		{"a second ipset command", func(s *trace.IPVSState) { s.IPSets[0].Create += "\nflush" }, "option"},
		{"an ipset type", func(s *trace.IPVSState) { s.IPSets[0].Create = "list:set" }, "not one kube-proxy creates"},
		{"a member that is a command", func(s *trace.IPVSState) {
			s.IPSets[0].Members = append(s.IPSets[0].Members, "10.0.0.1\ndestroy KUBE-CLUSTER-IP")
		}, "is not an address or port"},
		{"a member that is an option", func(s *trace.IPVSState) { s.IPSets[0].Members = append(s.IPSets[0].Members, "-exist") }, "is not an address or port"},
	} {
		l := recordedIPVSLeftover(t)
		tc.edit(l.IPVS)
		if err := ValidLeftover(l); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	l := recordedIPVSLeftover(t)
	l.IPVS = nil
	if err := ValidLeftover(l); err == nil {
		t.Error("IPVS state with no detail is accepted")
	}
}

// TestIPVSLeftoverApplyUndo: an iptables-mode node's IPVS leftovers (IPVS mode's filter chains,
// which use its ipsets, then the IPVS state) are removed in that order and put back in the
// reverse one; state found there in part (a removal cut short) is completed, state with
// something else is not overwritten.
func TestIPVSLeftoverApplyUndo(t *testing.T) {
	save := demoIPVS(t, "iptables-save.txt")
	chains, err := dataplane.IPTablesLeftover(context.Background(), dumpRunner{save: save}, "iptables-legacy", "filter", "ipvs")
	if err != nil || chains == nil {
		t.Fatalf("%v %v", chains, err)
	}
	var names []string
	for _, c := range chains.Chains {
		names = append(names, c.Chain)
	}
	// Only what IPVS mode writes and iptables mode does not (KUBE-FORWARD, KUBE-PROXY-FIREWALL are
	// iptables mode's too), with the built-in chains' jumps to them.
	if strings.Join(names, " ") != "KUBE-IPVS-FILTER KUBE-IPVS-OUT-FILTER KUBE-NODE-PORT KUBE-SOURCE-RANGES-FIREWALL" || len(chains.Jumps) != 3 {
		t.Fatalf("IPVS mode's filter chains: %v, %d jumps", names, len(chains.Jumps))
	}
	if err := ValidLeftover(*chains); err != nil {
		t.Fatal(err)
	}
	state := recordedIPVSLeftover(t)
	plan := &trace.RepairPlan{APIVersion: trace.APIVersion, Kind: "RepairPlan", Node: "node1", Mode: "iptables", Leftovers: []trace.Leftover{*chains, state}}
	if err := ValidatePlan(plan); err != nil {
		t.Fatalf("the plan is refused: %v", err)
	}
	setup := func() (*fakeNode, *Engine, Result) {
		f := newFake(&trace.RepairPlan{})
		f.leftovers = map[string]*trace.Leftover{}
		for i := range plan.Leftovers {
			l := plan.Leftovers[i]
			f.leftovers[l.Where()] = &l
		}
		e := &Engine{Node: f, StateDir: t.TempDir()}
		return f, e, e.Apply(context.Background(), plan, "node1", "")
	}
	f, e, res := setup()
	if res.Outcome != Applied || len(f.leftovers) != 0 {
		t.Fatalf("%s %s", res.Outcome, res.Message)
	}
	s, err := DecodeState(f.files[res.StatePath])
	if err != nil {
		t.Fatal(err)
	}
	if u := e.Undo(context.Background(), s, res.StatePath, "node1", false); u.Outcome != Undone || strings.Join(f.restored, ", ") != "IPVS, iptables-legacy filter" {
		t.Fatalf("undo: %s %s, put back %v", u.Outcome, u.Message, f.restored)
	}

	// A removal cut short: only the ipsets are left. Undo (forced past the "written again"
	// check) completes it.
	f, e, res = setup()
	part := state
	part.IPVS = &trace.IPVSState{IPSets: state.IPVS.IPSets}
	f.leftovers["IPVS"] = &part
	s, _ = DecodeState(f.files[res.StatePath])
	if u := e.Undo(context.Background(), s, res.StatePath, "node1", false); u.Outcome != NothingWritten {
		t.Errorf("undo over part of the state without --force: %s %s", u.Outcome, u.Message)
	}
	if u := e.Undo(context.Background(), s, res.StatePath, "node1", true); u.Outcome != Undone || len(f.leftovers["IPVS"].IPVS.VirtualServers) != 15 {
		t.Errorf("forced undo over part of the state: %s %s", u.Outcome, u.Message)
	}

	// Something that was not there: not overwritten.
	f, e, res = setup()
	other := state
	other.IPVS = &trace.IPVSState{VirtualServers: []trace.IPVSService{foreignVirtual}}
	f.leftovers["IPVS"] = &other
	s, _ = DecodeState(f.files[res.StatePath])
	if u := e.Undo(context.Background(), s, res.StatePath, "node1", true); u.Outcome == Undone || !strings.Contains(u.Message, "not as it was") {
		t.Errorf("undo over other IPVS state: %s %s", u.Outcome, u.Message)
	}
}
