//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/svctrace/svctrace/dataplane/ipvsadm"
	"github.com/svctrace/svctrace/test/e2e/harness"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/ipvs"
)

// ipvsFlow is a flow checked inside the IPVS VM: the guest runs kubectl-svctrace node-side (IPVS
// read over netlink) and real connections from the client's namespace.
type ipvsFlow struct {
	name, traceArgs, clientNS, addr string
	wantVerdict                     string
	wantPods                        []string
	sticky                          bool
}

var ipvsFlows = []ipvsFlow{
	{"ClusterIP from a pod", "10.96.30.10:80 --from pod/ipvs/vmclient", "pvmclient", "10.96.30.10:80", "DNAT", []string{"vm-a", "vm-b", "vm-c"}, false},
	{"ClusterIP from the node itself", "10.96.30.10:80 --from node", "", "10.96.30.10:80", "DNAT", []string{"vm-a", "vm-b", "vm-c"}, false},
	{"NodePort with Cluster policy from outside", harness.VMNodeIP + ":30200 --from " + harness.VMExternalIP, "ext", harness.VMNodeIP + ":30200", "DNAT", []string{"vm-a", "vm-b", "vm-c"}, false},
	{"NodePort with Local policy from outside", harness.VMNodeIP + ":30201 --from " + harness.VMExternalIP, "ext", harness.VMNodeIP + ":30201", "DNAT", []string{"vm-a"}, false},
	{"virtual server without real servers", "10.96.30.30:80 --from pod/ipvs/vmclient", "pvmclient", "10.96.30.30:80", "REJECT", nil, false},
	{"wrong port on a cluster IP", "10.96.30.10:81 --from pod/ipvs/vmclient", "pvmclient", "10.96.30.10:81", "REJECT", nil, false},
	{"hairpin", "10.96.30.10:80 --from pod/ipvs/vm-a", "pvm-a", "10.96.30.10:80", "DNAT", []string{"vm-a", "vm-b", "vm-c"}, false},
	{"session affinity (persistence)", "10.96.30.40:80 --from pod/ipvs/vmclient", "pvmclient", "10.96.30.40:80", "DNAT", []string{"vm-a", "vm-b", "vm-c"}, true},
}

// ipvsVariants are the kube-proxy configurations the VM's kube-proxy is restarted with, in turn:
// its flags, a shell test that says it synced, and what shows the configuration took effect:
// the one masquerade rule for cluster IPs must contain match (with no match, no negated match at
// all: masquerade everything), or, with nodePort, the node port's virtual servers are exactly
// on these addresses. flows replaces ipvsVariantFlows when the clients differ.
var ipvsVariants = []struct {
	name         string
	flags        []string
	ready, match string
	nodePort     []string
	flows        []ipvsFlow
}{
	{name: "masqueradeAll", flags: []string{"--masquerade-all"},
		ready: masqRules + " | grep -qv -- '! -s'"},
	{name: "detectLocalMode InterfaceNamePrefix", flags: []string{"--detect-local-mode=InterfaceNamePrefix", "--pod-interface-name-prefix=vp"},
		ready: masqRules + " | grep -q -- '! -i vp+'", match: "! -i vp+"},
	{name: "detectLocalMode NodeCIDR", flags: []string{"--detect-local-mode=NodeCIDR"},
		ready: masqRules + " | grep -q -- '! -s " + harness.VMPodCIDR + "'", match: "! -s " + harness.VMPodCIDR},
	{name: "detectLocalMode BridgeInterface", flags: []string{"--detect-local-mode=BridgeInterface", "--pod-bridge-interface=" + harness.VMBridge},
		ready: masqRules + " | grep -q -- '! -i " + harness.VMBridge + "'", match: "! -i " + harness.VMBridge,
		flows: []ipvsFlow{
			{"ClusterIP from a pod on the bridge", "10.96.30.10:80 --from " + harness.VMBridgedClient, "bclient", "10.96.30.10:80", "DNAT", []string{"vm-a", "vm-b", "vm-c"}, false},
			ipvsVariantFlows[1], ipvsVariantFlows[2],
		}},
	{name: "nodePortAddresses CIDR", flags: []string{"--nodeport-addresses=" + harness.VMNodeIP + "/32"},
		ready: "! ipvsadm -Ln | grep -v '^TCP  " + harness.VMNodeIP + ":30201 ' | grep -q ':30201 '", nodePort: []string{harness.VMNodeIP}},
}

// masqRules lists the guest's cluster-IP masquerade rules.
const masqRules = "iptables-save -t nat | grep -- 'KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ'"

// ipvsNodePortServers checks the restart step's `ipvsadm -Ln` lines for node port 30201: one
// virtual server on each address of want, and no other.
func ipvsNodePortServers(out string, want []string) error {
	var got []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "TCP" && strings.HasSuffix(f[1], ":30201") {
			got = append(got, strings.TrimSuffix(f[1], ":30201"))
		}
	}
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		return fmt.Errorf("node port 30201 has virtual servers on %v, want %v", got, want)
	}
	return nil
}

// guestStderr keeps a guest command's standard error out of the section the test parses (the
// console carries both): under emulation a read can pass the second after which svctrace says on
// stderr how long it took.
const guestStderr = " 2>>/tmp/svctrace-stderr.txt"

// ipvsMasqRule checks the restart step's output: exactly one rule marks cluster-IP traffic for
// masquerade, and it is the variant's.
func ipvsMasqRule(out, match string) error {
	var rules []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "-A ") && strings.Contains(l, "--match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ") {
			rules = append(rules, l)
		}
	}
	switch {
	case len(rules) != 1:
		return fmt.Errorf("want one cluster-IP masquerade rule, got %d", len(rules))
	case match == "" && strings.Contains(rules[0], "! -"):
		return fmt.Errorf("the rule masquerades only some traffic: %s", rules[0])
	case match != "" && !strings.Contains(rules[0], match):
		return fmt.Errorf("the rule does not match %q: %s", match, rules[0])
	}
	return nil
}

// ipvsVariantFlows run under each variant: whether a pod's and an outside client's traffic to a
// cluster IP is masqueraded depends on it (the trace must say so, and the pods see the node's
// address exactly then); a Local-policy node port keeps the source under all.
var ipvsVariantFlows = []ipvsFlow{
	{"ClusterIP from a pod", "10.96.30.10:80 --from pod/ipvs/vmclient", "pvmclient", "10.96.30.10:80", "DNAT", []string{"vm-a", "vm-b", "vm-c"}, false},
	{"ClusterIP from outside the cluster", "10.96.30.10:80 --from " + harness.VMExternalIP, "ext", "10.96.30.10:80", "DNAT", []string{"vm-a", "vm-b", "vm-c"}, false},
	{"NodePort with Local policy from outside", harness.VMNodeIP + ":30201 --from " + harness.VMExternalIP, "ext", harness.VMNodeIP + ":30201", "DNAT", []string{"vm-a"}, false},
}

// TestIPVSModeInVM boots Debian's cloud kernel under QEMU (this kernel has no IPVS), runs the real
// kube-proxy in IPVS mode there as node vm1 of the harness's cluster, and compares what
// kubectl-svctrace predicts on that node with real connections inside the guest.
func TestIPVSModeInVM(t *testing.T) {
	needCluster(t)
	kernel, vmbin := os.Getenv("SVCTRACE_VM_KERNEL"), os.Getenv("SVCTRACE_VM_BIN")
	if kernel == "" || vmbin == "" {
		t.Fatal("SVCTRACE_VM_KERNEL and SVCTRACE_VM_BIN are not set (make test sets them)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if err := cluster.SetupIPVSScenario(ctx); err != nil {
		t.Fatal(err)
	}
	extra := map[string]string{"restore-failures": "grep -c 'Failed to execute iptables-restore' /tmp/kube-proxy.log"}
	for i, f := range ipvsFlows {
		// Node-side: the live IPVS table over netlink, the live iptables and ipsets. The API
		// objects come as a file: TLS to the API server from a TCG-emulated guest outlasts
		// client-go's 10 s handshake timeout.
		extra[fmt.Sprintf("trace-%d", i)] = "/bin/kubectl-svctrace trace " + f.traceArgs + " --node vm1 --objects /objects.yaml -o json" + guestStderr
		in := ""
		if f.clientNS != "" {
			in = "ip netns exec " + f.clientNS + " "
		}
		n := 45
		if f.wantVerdict != "DNAT" {
			n = 3
		}
		extra[fmt.Sprintf("probe-%d", i)] = fmt.Sprintf("%s/bin/netprobe probe -n %d -timeout 2s %s", in, n, f.addr)
	}
	// balance on IPVS: the real servers' connection counters come over netlink. vmweb-np's cluster
	// IP gets no other traffic, so its counters hold exactly these 60 connections. The kernel
	// publishes them from its rate estimator, every 2 seconds (6.1): balance starts once the
	// virtual server's Conns column reads 60. Conntrack tracks nothing in a network namespace
	// until something there needs it: here, kube-proxy's nat table, which it writes after the
	// virtual servers and ipsets. A slow emulated run probed before that, so conntrack held no
	// entry, or only those of the connections made after kube-proxy's iptables-restore
	// ("counters 20, conntrack 8"; balance-debug showed "0 flow entries" in the whole table).
	// The probe now waits for kube-proxy's nat rules. A closed connection's entry stays 120 s
	// (TIME_WAIT); an emulated guest on a busy host took longer than that from the probe to
	// balance's read ("counters 20, conntrack 19"): the entries stay 10 minutes here.
	vip := harness.VMClusterIPs["vmweb-np"] + ":80"
	extra["balance"] = "for i in $(seq 120); do iptables-save -t nat | grep -q -- '-A KUBE-POSTROUTING' && break; sleep 1; done; " +
		"sysctl -qw net.netfilter.nf_conntrack_acct=1 net.netfilter.nf_conntrack_tcp_timeout_time_wait=600; ip netns exec pvmclient /bin/netprobe probe -n 60 -timeout 2s " + vip + " >/tmp/probe.json; " +
		"for i in $(seq 60); do ipvsadm -Ln --stats -t " + vip + " | awk '$1 == \"TCP\" && $3 == 60 { found = 1 } END { exit !found }' && break; sleep 1; done; " +
		"(date; cat /tmp/probe.json; ipvsadm -Ln --stats -t " + vip + "; conntrack -L -o extended 2>&1 | grep -c 'dst=" + harness.VMClusterIPs["vmweb-np"] + " '; conntrack -L 2>&1 | tail -1) > /tmp/balance-debug.txt 2>&1; " +
		"/bin/kubectl-svctrace balance ipvs/vmweb-np --node vm1 --objects /objects.yaml --duration 0 -o json 2>>/tmp/balance-debug.txt"
	// The table as trace and check read it (/proc/net/ip_vs, with vmsticky's persistence timeout
	// from netlink), between two listings by ipvsadm itself: written by snapshot as ipvsadm -Ln
	// text. The steps run one after another (their names sort together), after the probes.
	extra["table-1-ipvsadm"] = "ipvsadm -Ln"
	extra["table-2-svctrace"] = "rm -rf /tmp/snap; /bin/kubectl-svctrace snapshot /tmp/snap --node vm1 --objects /objects.yaml >/dev/null" + guestStderr + " && cat /tmp/snap/ipvsadm-Ln.txt"
	extra["table-3-ipvsadm"] = "ipvsadm -Ln"
	// kube-proxy restarted with each other configuration in turn (after the flows and balance,
	// before the repair): the masquerade of a pod's and an outside client's traffic to a
	// cluster IP follows the configuration, and check stays clean.
	for i, v := range ipvsVariants {
		p := fmt.Sprintf("y-%d-", i)
		show := masqRules
		if v.nodePort != nil {
			show = "ipvsadm -Ln | grep ':30201 '"
		}
		extra[p+"0-restart"] = harness.IPVSRestart(v.flags, v.ready, show)
		flows := ipvsVariantFlows
		if v.flows != nil {
			flows = v.flows
		}
		for j, f := range flows {
			extra[fmt.Sprintf("%s1-trace-%d", p, j)] = "/bin/kubectl-svctrace trace " + f.traceArgs + " --node vm1 --objects /objects.yaml -o json" + guestStderr
			extra[fmt.Sprintf("%s2-probe-%d", p, j)] = fmt.Sprintf("ip netns exec %s /bin/netprobe probe -n 45 -timeout 2s %s", f.clientNS, f.addr)
		}
		extra[p+"3-check"] = "/bin/kubectl-svctrace check -A --node vm1 --objects /objects.yaml -o json" + guestStderr + "; echo exit=$?"
	}
	// Back to the default configuration for the repair steps.
	extra["y-z-restore"] = harness.IPVSRestart(nil, masqRules+" | grep -q -- '! -s "+harness.ClusterCIDR+"'", masqRules)
	// What the node held when balance read it, shown when the balance check fails.
	extra["balance-debug"] = "cat /tmp/balance-debug.txt"
	objects := filepath.Join(cluster.Dir, "ipvs-objects.yaml")
	out, err := runKubectl(t, "get", "svc,endpointslices,pods,nodes", "-A", "-o", "yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(objects, out, 0o644); err != nil {
		t.Fatal(err)
	}
	// Last (the names sort after the others): kube-proxy stopped, then repair against objects in
	// which vm-c has left vmweb and vm-d has joined it.
	repairObjects := filepath.Join(cluster.Dir, "ipvs-objects-repair.json")
	if err := writeRepairObjects(out, repairObjects); err != nil {
		t.Fatal(err)
	}
	repair := "/bin/kubectl-svctrace repair -n ipvs --node vm1 --objects /objects-repair.json"
	extra["zz-repair-1-plan"] = "kill $(pidof kube-proxy); sleep 1; ipvsadm -Sn > /tmp/ipvs-before.txt; " + repair + " -o json 2>/dev/null"
	extra["zz-repair-2-apply"] = repair + " --apply --state-dir /tmp/state 2>&1; echo exit=$?"
	extra["zz-repair-3-probe"] = "ip netns exec pvmclient /bin/netprobe probe -n 45 -timeout 2s 10.96.30.10:80"
	extra["zz-repair-4-others"] = "ipvsadm -Sn | grep -v 10.96.30.10 | diff - /tmp/ipvs-before.txt | grep '^[<>]' | grep -v 10.96.30.10; echo diff-done"
	extra["zz-repair-5-vmweb"] = "ipvsadm -Ln -t 10.96.30.10:80"
	// Then a switch to iptables mode, which leaves IPVS mode's state behind (kube-proxy's
	// iptables mode never cleans it up): check finds it, repair -A removes exactly it, undo puts
	// it back.
	for name, step := range ipvsLeftoverSteps() {
		extra[name] = step
	}
	here, _ := os.Getwd()
	vm := &harness.VM{KernelDir: kernel, BinDir: vmbin, Hack: filepath.Join(here, "..", "..", "hack", "ipvs-vm")}
	console, err := vm.Run(ctx, cluster, harness.IPVSScript(extra), 12*time.Minute, objects+":/objects.yaml", repairObjects+":/objects-repair.json")
	if err != nil {
		t.Fatalf("%v\n%s", err, lastLines(console, 40))
	}
	sec := harness.Sections(console)
	// A kube-proxy whose iptables-restore fails leaves half-programmed rules (svctrace then
	// faithfully reports them); the comparison is only meaningful against a healthy one.
	if n := strings.TrimSpace(jsonLine(sec["restore-failures"])); n != "0" {
		t.Fatalf("kube-proxy in the VM failed %s iptables-restore runs; its log ends:\n%s", n, sec["kube-proxy-log"])
	}
	t.Run("balance reads the real servers' counters", func(t *testing.T) {
		var res trace.BalanceResult
		if err := json.Unmarshal([]byte(sec["balance"]), &res); err != nil {
			t.Fatalf("balance output: %v\n%s", err, sec["balance"])
		}
		if res.Diagnosis != trace.Balanced || len(res.Backends) != 3 {
			t.Fatalf("balance: %s: %s (%d backends); the node then:\n%s", res.Diagnosis, res.Message, len(res.Backends), sec["balance-debug"])
		}
		for _, b := range res.Backends {
			// Round robin over three real servers: 20 connections each, in both counts.
			if b.NewConnections == nil {
				t.Fatalf("backend %s: no counters read from the IPVS table", b.Backend)
			}
			if *b.NewConnections != 20 || b.Connections != 20 {
				t.Errorf("backend %s: counters %d, conntrack %d; want 20 and 20", b.Backend, *b.NewConnections, b.Connections)
			}
		}
	})
	t.Run("the table read from /proc is ipvsadm's", func(t *testing.T) { checkIPVSTableRead(t, sec) })
	t.Run("repair drains a stale real server and adds the new one over netlink", func(t *testing.T) {
		var plan trace.RepairPlan
		if err := json.Unmarshal([]byte(sec["zz-repair-1-plan"]), &plan); err != nil {
			t.Fatalf("plan: %v\n%s", err, sec["zz-repair-1-plan"])
		}
		var ops []string
		for _, op := range plan.IPVS {
			ops = append(ops, fmt.Sprintf("%s %s %s", op.Op, op.Virtual, op.Real))
		}
		want := "set-weight 10.96.30.10:80 10.244.3.13:8080; delete-real 10.96.30.10:80 10.244.3.13:8080; add-real 10.96.30.10:80 10.244.3.14:8080"
		if strings.Join(ops, "; ") != want {
			t.Fatalf("plan ops: %s\nwant %s", strings.Join(ops, "; "), want)
		}
		apply := sec["zz-repair-2-apply"]
		if !strings.Contains(apply, "exit=0") || !strings.Contains(apply, "read back as planned and traced clean") {
			t.Fatalf("apply:\n%s", apply)
		}
		// New connections reach exactly the API's endpoints: vm-c is drained (weight 0, or
		// deleted if it had no connections left), vm-d added.
		var got probeResult
		if err := json.Unmarshal([]byte(jsonLine(sec["zz-repair-3-probe"])), &got); err != nil {
			t.Fatalf("probe: %v\n%s", err, sec["zz-repair-3-probe"])
		}
		var pods []string
		for answer := range got.Backends {
			pods = append(pods, strings.Fields(answer)[0])
		}
		sort.Strings(pods)
		if strings.Join(pods, ",") != "vm-a,vm-b,vm-d" || len(got.Failures) > 0 {
			t.Errorf("after the repair connections reach %v (failures %v)", pods, got.Failures)
		}
		vmweb := sec["zz-repair-5-vmweb"]
		if !regexp.MustCompile(`10\.244\.3\.14:8080\s+Masq\s+1\s`).MatchString(vmweb) ||
			strings.Contains(vmweb, "10.244.3.13:8080") && !regexp.MustCompile(`10\.244\.3\.13:8080\s+Masq\s+0\s`).MatchString(vmweb) {
			t.Errorf("vmweb's real servers after the repair:\n%s", vmweb)
		}
		if strings.Contains(vmweb, "10.244.3.13:8080") != strings.Contains(apply, "still has") {
			t.Errorf("vm-c is left at weight 0 exactly when it still had connections, and the output says so:\n%s\n%s", vmweb, apply)
		}
		// Nothing flushed: every other virtual server and real server is as it was.
		if others := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(sec["zz-repair-4-others"]), "diff-done")); others != "" {
			t.Errorf("other virtual servers changed:\n%s", others)
		}
	})
	t.Run("leftovers of IPVS mode after a switch to iptables mode", func(t *testing.T) { checkIPVSLeftovers(t, sec) })
	nodeAddrs := map[string]bool{harness.VMNodeIP: true, "198.51.100.1": true}
	for i, v := range ipvsVariants {
		p := fmt.Sprintf("y-%d-", i)
		t.Run(v.name, func(t *testing.T) {
			check := ipvsMasqRule(sec[p+"0-restart"], v.match)
			if v.nodePort != nil {
				check = ipvsNodePortServers(sec[p+"0-restart"], v.nodePort)
			}
			if check != nil {
				t.Fatalf("kube-proxy restarted with %v: %v\n%s", v.flags, check, sec[p+"0-restart"])
			}
			flows := ipvsVariantFlows
			if v.flows != nil {
				flows = v.flows
			}
			for j, f := range flows {
				t.Run(f.name, func(t *testing.T) {
					compareIPVSFlow(t, f, sec[fmt.Sprintf("%s1-trace-%d", p, j)], sec[fmt.Sprintf("%s2-probe-%d", p, j)], nodeAddrs)
				})
			}
			// Errors only: vm1 has no local endpoint of node1's Local-policy Services, which
			// check warns about (LocalPolicyBlackhole), rightly.
			out, code, _ := strings.Cut(sec[p+"3-check"], "exit=")
			if got := checkErrors(t, []byte(out)); strings.TrimSpace(code) != "0" || len(got) > 0 {
				t.Errorf("check -A: exit %s, errors %v", code, got)
			}
		})
	}
	if err := ipvsMasqRule(sec["y-z-restore"], "! -s "+harness.ClusterCIDR); err != nil {
		t.Errorf("kube-proxy restarted with the defaults: %v\n%s", err, sec["y-z-restore"])
	}
	for i, f := range ipvsFlows {
		t.Run(f.name, func(t *testing.T) {
			compareIPVSFlow(t, f, sec[fmt.Sprintf("trace-%d", i)], sec[fmt.Sprintf("probe-%d", i)], nodeAddrs)
		})
	}
}

// checkIPVSTableRead compares the IPVS table svctrace read for trace and check (/proc/net/ip_vs
// and netlink's persistence timeouts) with ipvsadm -Ln's listings just before and just after:
// the same virtual servers, schedulers, persistence, real servers, forwarding and weights, and
// connection counts between the two listings' (connections only close meanwhile: no traffic runs).
func checkIPVSTableRead(t *testing.T, sec map[string]string) {
	parse := func(name string) *ipvs.Table {
		tab, err := ipvsadm.ParseList([]byte(sec[name]))
		if err != nil || len(tab.Services) < len(harness.VMClusterIPs) {
			t.Fatalf("%s: %v\n%s", name, err, sec[name])
		}
		return tab
	}
	before, got, after := parse("table-1-ipvsadm"), parse("table-2-svctrace"), parse("table-3-ipvsadm")
	if s := got.Find("tcp", netip.MustParseAddrPort(harness.VMClusterIPs["vmsticky"]+":80")); s == nil || s.Persistent != 10800 {
		t.Errorf("vmsticky's persistence as read: %+v", s)
	}
	if len(got.Services) != len(before.Services) {
		t.Fatalf("svctrace read %d virtual servers, ipvsadm listed %d", len(got.Services), len(before.Services))
	}
	within := func(v, a, b int) bool { return min(a, b) <= v && v <= max(a, b) }
	for _, b := range before.Services {
		g, a := got.Find(b.Protocol, b.Addr), after.Find(b.Protocol, b.Addr)
		if g == nil || a == nil || g.Scheduler != b.Scheduler || g.Persistent != b.Persistent || len(g.Reals) != len(b.Reals) {
			t.Errorf("virtual server %s %s: read %+v, ipvsadm listed %+v", b.Protocol, b.Addr, g, b)
			continue
		}
		for _, br := range b.Reals {
			var gr, ar *ipvs.RealServer
			for _, r := range g.Reals {
				if r.Addr == br.Addr {
					gr = r
				}
			}
			for _, r := range a.Reals {
				if r.Addr == br.Addr {
					ar = r
				}
			}
			if gr == nil || ar == nil || gr.Forward != br.Forward || gr.Weight != br.Weight ||
				!within(gr.ActiveConn, br.ActiveConn, ar.ActiveConn) || !within(gr.InActConn, br.InActConn, ar.InActConn) {
				t.Errorf("%s real server %s: read %+v, ipvsadm listed %+v then %+v", b.Addr, br.Addr, gr, br, ar)
			}
		}
	}
}

// compareIPVSFlow checks one flow's trace output and probe output from the guest.
func compareIPVSFlow(t *testing.T, f ipvsFlow, traceOut, probeOut string, nodeAddrs map[string]bool) {
	t.Helper()
	var res trace.Result
	if err := json.Unmarshal([]byte(traceOut), &res); err != nil {
		t.Fatalf("trace output: %v\n%s", err, traceOut)
	}
	if res.Mode != "ipvs" {
		t.Fatalf("svctrace read the VM as %s mode", res.Mode)
	}
	want := expectation{verdict: f.wantVerdict, pods: f.wantPods, sticky: f.sticky, nodeAddrs: nodeAddrs}
	masq := checkPrediction(t, &res, want)
	var got probeResult
	if err := json.Unmarshal([]byte(jsonLine(probeOut)), &got); err != nil {
		t.Fatalf("probe output: %v\n%s", err, probeOut)
	}
	checkConnections(t, &res, masq, got, want)
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func jsonLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "{") {
			return l
		}
	}
	return s
}

// writeRepairObjects edits the API objects (kubectl get -o yaml) for the repair step: in vmweb's
// slice, vm-c (10.244.3.13) is replaced by vm-d (10.244.3.14).
func writeRepairObjects(objects []byte, path string) error {
	cl, err := trace.DecodeObjects(objects)
	if err != nil {
		return err
	}
	data, err := trace.EncodeObjects(tracetest.EditEndpoints(cl, "vmweb", map[string]string{"10.244.3.13": "10.244.3.14"}))
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
