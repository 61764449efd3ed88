// Command record brings up the e2e harness with the standard scenario, lets the real kube-proxy
// program it, and writes what it programmed as fixtures: the node's dataplane dump and the API
// objects as `kubectl get svc,endpointslices,pods,nodes -A -o yaml` prints them.
//
//	go run ./test/e2e/record -mode iptables -out trace/testdata/scenario-iptables
//
// Rerun it (as root) whenever the kube-proxy version changes; hack/record-fixtures.sh does.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svctrace/svctrace/test/e2e/harness"
)

func main() {
	mode := flag.String("mode", "iptables", "kube-proxy mode: iptables or nftables")
	out := flag.String("out", "", "directory to write dataplane and objects.yaml into")
	bin := flag.String("bin", "", "directory with the Kubernetes binaries (hack/k8s-binaries.sh)")
	netprobe := flag.String("netprobe", "", "path to the netprobe binary")
	hold := flag.Bool("hold", false, "keep the cluster running until Ctrl-C (for poking at it)")
	flag.IntVar(&scale.services, "services", 0, "instead of the standard scenario, create this many selector-less Services")
	flag.IntVar(&scale.endpoints, "endpoints", 10, "endpoints per Service with -services")
	flag.BoolVar(&scale.legacy, "legacy", false, "run kube-proxy with the legacy iptables binaries (needed at scale)")
	flag.StringVar(&scale.compare, "compare", "", "with -services: time this kubectl-svctrace binary against iptables-save, side by side")
	flag.StringVar(&vmFlags.kernel, "kernel", "", "with -mode ipvs: the unpacked cloud kernel (hack/ipvs-vm/kernel.sh)")
	flag.IntVar(&fleetFlags.nodes, "fleet", 0, "instead of recording, time check --all-nodes (the -compare binary) on this many kwok nodes with kube-proxy pods")
	flag.StringVar(&fleetFlags.parallel, "fleet-parallel", "16,64", "with -fleet: the --parallel values to time")
	flag.StringVar(&fleetFlags.kwok, "kwok", "", "with -fleet: the kwok binary (hack/kwok-binary.sh)")
	flag.StringVar(&agentFlags.args, "agent-args", "", "with -agent: more flags for the agent (\"--grace 45s\")")
	flag.DurationVar(&agentFlags.duration, "agent", 0, "with -services and -compare: instead of recording, run the -compare binary's agent next to kube-proxy while one EndpointSlice changes every second for this long, and report its CPU, memory, checks and findings")
	flag.BoolVar(&repairFlag, "repair", false, "with -services, -mode nftables and -compare: instead of recording, stop kube-proxy, then five times replace one endpoint of one Service in the API and time the -compare binary's repair of that Service, dry run and --apply")
	flag.BoolVar(&remoteFlag, "remote", false, "with -services, -compare and -kwok: instead of recording, time a remote trace (through the API server): in nftables mode through the svctrace agent's pod and through kube-proxy's pod, with the bytes each moves; in iptables mode (-legacy) against the bare iptables-legacy-save through kube-proxy's pod")
	flag.BoolVar(&proxyFlags.MasqueradeAll, "masquerade-all", false, "run kube-proxy with --masquerade-all")
	flag.StringVar(&proxyFlags.DetectLocalMode, "detect-local-mode", "", "kube-proxy's --detect-local-mode (ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix)")
	flag.StringVar(&proxyFlags.PodInterfacePrefix, "pod-interface-name-prefix", "", "kube-proxy's --pod-interface-name-prefix (the harness's pod interfaces are vpN)")
	flag.StringVar(&proxyFlags.PodBridge, "pod-bridge-interface", "", "kube-proxy's --pod-bridge-interface")
	flag.BoolVar(&dualStack, "dual-stack", false, "add the dual-stack scenario (a PreferDualStack Service over pods with IPv4 and IPv6 addresses) and, in iptables mode, write ip6tables-save.txt too")
	flag.StringVar(&conntrackOut, "conntrack", "", "instead of recording the dataplane, make the balance scenario's traffic to default/hostnames (in -mode ipvs, to ipvs/vmweb in the guest) — a keep-alive client's 600 requests over one connection, 60 short connections from another pod — and write the node's conntrack entries of it to this file")
	flag.Parse()
	holdCluster = *hold
	if err := record(*mode, *out, *bin, *netprobe, *hold); err != nil {
		fmt.Fprintln(os.Stderr, "record:", err)
		os.Exit(1)
	}
}

var vmFlags struct{ kernel string }

// holdCluster is -hold: the remote bench in iptables mode keeps the cluster up after it too.
var holdCluster bool

// repairFlag is -repair.
var repairFlag bool

// dualStack is -dual-stack.
var dualStack bool

// conntrackOut is -conntrack.
var conntrackOut string

// recordConntrack makes the balance scenario's traffic and writes `conntrack -L -o extended` of
// it, byte accounting on.
func recordConntrack(c *harness.Cluster, out string) error {
	if _, err := harness.NS(harness.NodeNS, "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1"); err != nil {
		return err
	}
	for _, p := range []struct {
		pod  string
		args []string
	}{
		{harness.ClientPod, []string{"-n", "1", "-requests", "600"}},
		{"multi-1", []string{"-n", "60"}},
	} {
		args := append(append([]string{c.Netprobe, "probe"}, p.args...), "10.96.10.10:80")
		if _, err := harness.NS(c.Pod("default", p.pod).NetNS, args...); err != nil {
			return err
		}
	}
	table, err := harness.NS(harness.NodeNS, "conntrack", "-L", "-o", "extended", "-d", "10.96.10.10")
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, table, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "record: wrote %d conntrack entries to %s\n", strings.Count(string(table), "\n"), out)
	return nil
}

// proxyFlags is the kube-proxy configuration to record under (its Mode is -mode).
var proxyFlags harness.KubeProxyConfig

var scale struct {
	services, endpoints int
	legacy              bool
	compare             string
}

func record(mode, out, bin, netprobe string, hold bool) error {
	if out == "" && conntrackOut == "" && agentFlags.duration == 0 && !repairFlag && !remoteFlag || bin == "" || netprobe == "" {
		return fmt.Errorf("-out (or -conntrack), -bin and -netprobe are required")
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	c, err := harness.Start(ctx, bin, netprobe, os.Stderr)
	if err != nil {
		return err
	}
	defer c.Stop()
	if mode == "ipvs" {
		return recordIPVS(ctx, c, out, bin, netprobe)
	}
	programmed := harness.ScenarioProgrammed
	if scale.services > 0 {
		if err := c.PopulateScale(ctx, scale.services, scale.endpoints); err != nil {
			return err
		}
		programmed = func(dump string) bool {
			if mode == "nftables" {
				return strings.Count(dump, `"name": "service-`) >= scale.services
			}
			return strings.Count(dump, "\n:KUBE-SVC-") >= scale.services
		}
	} else if _, err := c.SetupScenario(ctx); err != nil {
		return err
	}
	if dualStack {
		if _, err := c.SetupDualStack(ctx); err != nil {
			return err
		}
		base := programmed
		programmed = func(dump string) bool { return base(dump) && harness.DualStackProgrammed(dump) }
		if mode == "iptables" {
			// The IPv4 dump names the IPv4 endpoints; the IPv6 rules are waited for below.
			programmed = func(dump string) bool { return base(dump) && strings.Contains(dump, "10.244.1.162:8080") }
		}
	}
	if scale.legacy {
		if err := c.UseLegacyIptables(); err != nil {
			return err
		}
	}
	t := time.Now()
	proxyFlags.Mode = mode
	if err := c.StartKubeProxyWith(proxyFlags); err != nil {
		return err
	}
	patience := time.Minute
	if scale.services > 0 {
		patience = 10 * time.Minute
	}
	dump, err := c.WaitDumpFor(ctx, mode, programmed, patience)
	if err != nil {
		return err
	}
	c.Phase("kube-proxy programmed the node", t)
	if conntrackOut != "" {
		return recordConntrack(c, conntrackOut)
	}
	if fleetFlags.nodes > 0 {
		return recordFleet(ctx, c, scale.compare)
	}
	if agentFlags.duration > 0 {
		if scale.services == 0 || scale.compare == "" {
			return fmt.Errorf("-agent needs -services and -compare (the kubectl-svctrace binary)")
		}
		return recordAgent(ctx, c, scale.compare, scale.services)
	}
	if remoteFlag {
		if scale.services == 0 || scale.compare == "" || mode == "iptables" && !scale.legacy {
			return fmt.Errorf("-remote needs -services, -compare (the kubectl-svctrace binary) and, in iptables mode, -legacy")
		}
		if mode == "iptables" {
			return recordRemoteIptables(ctx, c, scale.compare, scale.services)
		}
		return recordRemote(ctx, c, scale.compare, scale.services)
	}
	if repairFlag {
		if scale.services == 0 || scale.compare == "" || mode != "nftables" {
			return fmt.Errorf("-repair needs -services, -mode nftables and -compare (the kubectl-svctrace binary)")
		}
		if err := recordRepair(ctx, c, scale.compare, scale.services); err != nil || !hold {
			return err
		}
		fmt.Fprintf(os.Stderr, "record: holding; KUBECONFIG=%s; Ctrl-C to stop\n", c.Kubeconfig)
		<-ctx.Done()
		return nil
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	name := "iptables-save.txt"
	if mode == "nftables" {
		name = "nft.json"
	}
	if err := os.WriteFile(filepath.Join(out, name), []byte(dump), 0o644); err != nil {
		return err
	}
	files := []string{name}
	if dualStack && mode == "iptables" {
		var dump6 string
		for deadline := time.Now().Add(60 * time.Second); !harness.DualStackProgrammed(dump6); time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				return fmt.Errorf("kube-proxy did not program the dual-stack Service's IPv6 rules in time")
			}
			out6, err := harness.NS(harness.NodeNS, harness.IP6TablesSave(), "-c")
			if err != nil {
				return err
			}
			dump6 = string(out6)
		}
		if err := os.WriteFile(filepath.Join(out, "ip6tables-save.txt"), []byte(dump6), 0o644); err != nil {
			return err
		}
		files = append(files, "ip6tables-save.txt")
	}
	format, objFile := "yaml", "objects.yaml"
	if scale.services > 0 {
		format, objFile = "json", "objects.json" // 20,000 objects: JSON reads several times faster
	}
	kubectl := exec.Command(filepath.Join(bin, "kubectl"), "--kubeconfig", c.Kubeconfig, "get", "svc,endpointslices,pods,nodes", "-A", "-o", format)
	kubectl.Stderr = os.Stderr
	objs, err := kubectl.Output()
	if err != nil {
		return fmt.Errorf("kubectl get: %w", err)
	}
	if err := os.WriteFile(filepath.Join(out, objFile), objs, 0o644); err != nil {
		return err
	}
	if err := writeManifest(out, harness.NodeName, mode, bin, files...); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "record: wrote %s, objects.yaml and snapshot.yaml to %s\n", name, out)
	if scale.compare != "" {
		if err := compare(ctx, c, mode, filepath.Join(out, name), scale.compare); err != nil {
			return err
		}
	}
	if hold {
		fmt.Fprintf(os.Stderr, "record: holding; KUBECONFIG=%s; Ctrl-C to stop\n", c.Kubeconfig)
		<-ctx.Done()
	}
	return nil
}

// compare runs iptables-save and svctrace side by side on the same node, five times each, and
// prints wall time and peak RSS: the figures the README quotes.
func compare(ctx context.Context, c *harness.Cluster, mode, dumpFile, svctrace string) error {
	svc, err := c.Client.CoreV1().Services(harness.ScaleNamespace).Get(ctx, fmt.Sprintf("svc-%05d", scale.services/2), metav1.GetOptions{})
	if err != nil {
		return err
	}
	vip := svc.Spec.ClusterIP + ":80"
	runs := []struct {
		name string
		argv []string
	}{
		{"iptables-save -c (produces the dump)", []string{harness.IptablesSave, "-c"}},
		{"nft -j list ruleset (produces the dump)", []string{"nft", "-j", "list", "ruleset"}},
		{"svctrace trace, offline on the dump", []string{svctrace, "trace", vip, "--dataplane", dumpFile, "--node", harness.NodeName, "--from", "10.244.1.254", "-o", "json"}},
		{"svctrace trace, live on the node", []string{svctrace, "trace", vip, "--no-api", "--node", harness.NodeName, "--from", "10.244.1.254", "-o", "json"}},
	}
	fmt.Printf("| command (%d Services x %d endpoints) | wall time, median of 5 | peak RSS |\n|---|---|---|\n", scale.services, scale.endpoints)
	for _, r := range runs {
		if strings.HasPrefix(r.argv[0], "iptables") == (mode == "nftables") && r.argv[0] != svctrace {
			continue // the baseline of the other mode
		}
		var times []time.Duration
		var rss int64
		for i := 0; i < 5; i++ {
			// GNU time measures the peak RSS of the command alone (a child forked from this
			// big process would report the parent's).
			var stderr strings.Builder
			cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", harness.NodeNS, "/usr/bin/time", "-f", "maxrss=%M"}, r.argv...)...)
			cmd.Stdout = io.Discard
			cmd.Stderr = &stderr
			start := time.Now()
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%s: %w: %s", r.name, err, stderr.String())
			}
			times = append(times, time.Since(start))
			if i := strings.LastIndex(stderr.String(), "maxrss="); i >= 0 {
				var kb int64
				fmt.Sscanf(stderr.String()[i:], "maxrss=%d", &kb)
				rss = max(rss, kb)
			}
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		fmt.Printf("| %s | %.2fs | %d MiB |\n", r.name, times[2].Seconds(), rss/1024)
	}
	return nil
}

// recordIPVS runs kube-proxy in IPVS mode inside the VM and writes what it programmed.
func recordIPVS(ctx context.Context, c *harness.Cluster, out, bin, netprobe string) error {
	if vmFlags.kernel == "" {
		return fmt.Errorf("-mode ipvs needs -kernel")
	}
	if err := c.SetupIPVSScenario(ctx); err != nil {
		return err
	}
	var extra map[string]string
	if conntrackOut != "" {
		// The balance scenario inside the guest: a keep-alive client's 600 requests over one
		// connection and 60 short connections from another pod, to ipvs/vmweb; kube-proxy has
		// IPVS keep conntrack entries (net.ipv4.vs.conntrack=1).
		vip := harness.VMClusterIPs["vmweb"]
		extra = map[string]string{"conntrack": "sysctl -qw net.netfilter.nf_conntrack_acct=1; " +
			"ip netns exec pvmclient /bin/netprobe probe -n 1 -requests 600 " + vip + ":80 >/dev/null; " +
			"ip netns exec pvm-d /bin/netprobe probe -n 60 " + vip + ":80 >/dev/null; " +
			"conntrack -L -o extended -d " + vip + " 2>/dev/null"}
	}
	script := harness.IPVSScript(extra)
	if scale.services > 0 {
		if err := c.PopulateScale(ctx, scale.services, scale.endpoints); err != nil {
			return err
		}
		// Timed inside the guest, so every command runs under the same emulation: each read
		// the live trace needs (the iptables rules, the ipsets, the IPVS table in
		// /proc/net/ip_vs), ipvsadm's listings, and the trace itself, interleaved.
		script = harness.IPVSScaleScript(map[string]string{"compare": ipvsCompareScript, "profile": ipvsProfileScript}, scale.services)
	}
	vmbin, err := os.MkdirTemp(c.Dir, "vmbin-")
	if err != nil {
		return err
	}
	for _, f := range []string{filepath.Join(bin, "kube-proxy"), netprobe} {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(vmbin, filepath.Base(f)), data, 0o755); err != nil {
			return err
		}
	}
	here, _ := os.Getwd()
	vm := &harness.VM{KernelDir: vmFlags.kernel, BinDir: vmbin, Hack: filepath.Join(here, "hack", "ipvs-vm")}
	if scale.compare != "" {
		data, err := os.ReadFile(scale.compare)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(vmbin, "kubectl-svctrace"), data, 0o755); err != nil {
			return err
		}
	}
	console, err := vm.Run(ctx, c, script, 90*time.Minute)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, tail(console, 3000))
	}
	sec := harness.Sections(console)
	if conntrackOut != "" {
		table := sec["conntrack"]
		if strings.Count(table, "\n") < 10 {
			return fmt.Errorf("the VM printed %d conntrack entries; console:\n%s", strings.Count(table, "\n"), tail(console, 3000))
		}
		if err := os.WriteFile(conntrackOut, []byte(table), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "record: wrote %d conntrack entries to %s\n", strings.Count(table, "\n"), conntrackOut)
		return nil
	}
	if scale.services > 0 {
		// A dump without the rules that match the sets is kube-proxy's sync cut short, not its
		// node: a trace of it would never look at a set.
		if !strings.Contains(sec["iptables-save"], "--match-set KUBE-CLUSTER-IP") {
			return fmt.Errorf("kube-proxy in the VM had not written its set-matching iptables rules after %ss; its log ends:\n%s",
				strings.TrimSpace(sec["kube-proxy-synced"]), sec["kube-proxy-log"])
		}
		fmt.Fprintf(os.Stderr, "record: kube-proxy's first sync in the VM wrote its iptables rules %ss after it started\n", strings.TrimSpace(sec["kube-proxy-synced"]))
	}
	files := map[string]string{"iptables-save": "iptables-save.txt", "ipset-save": "ipset-save.txt", "ipvsadm-Sn": "ipvsadm-Sn.txt", "ipvsadm-Ln": "ipvsadm-Ln.txt", "proc-net-ip_vs": "proc-net-ip_vs.txt"}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for name, file := range files {
		text, ok := sec[name]
		if !ok || strings.TrimSpace(text) == "" {
			return fmt.Errorf("the VM printed no %s; console:\n%s", name, tail(console, 3000))
		}
		if err := os.WriteFile(filepath.Join(out, file), []byte(text), 0o644); err != nil {
			return err
		}
	}
	what := "svc,endpointslices,pods,nodes"
	if scale.services > 0 {
		what = "nodes"
	}
	kubectl := exec.Command(filepath.Join(bin, "kubectl"), "--kubeconfig", c.Kubeconfig, "get", what, "-A", "-o", "yaml")
	objs, err := kubectl.Output()
	if err != nil {
		return fmt.Errorf("kubectl get: %w", err)
	}
	if err := os.WriteFile(filepath.Join(out, "objects.yaml"), objs, 0o644); err != nil {
		return err
	}
	if err := writeManifest(out, harness.VMNodeName, "ipvs", bin, "iptables-save.txt", "ipset-save.txt", "ipvsadm-Sn.txt"); err != nil {
		return err
	}
	if log := sec["kube-proxy-log"]; log != "" {
		// The tail of the guest kube-proxy's log: why its rules are what they are.
		if err := os.WriteFile(filepath.Join(out, "kube-proxy-log.txt"), []byte(log), 0o644); err != nil {
			return err
		}
	}
	if prof := sec["profile"]; prof != "" {
		// Where the live trace spends its time in the guest: its -v 2 log (each command and
		// read with its time), the garbage collector's trace, and a CPU profile (base64).
		if err := os.WriteFile(filepath.Join(out, "profile.txt"), []byte(prof), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "record: wrote the guest's profile of a live trace to %s\n", filepath.Join(out, "profile.txt"))
	}
	if cmp := sec["compare"]; cmp != "" {
		table, err := ipvsCompareTable(cmp)
		if err != nil {
			return fmt.Errorf("%w; the guest printed:\n%s", err, cmp)
		}
		fmt.Print(table)
	}
	fmt.Fprintf(os.Stderr, "record: wrote the IPVS dumps, objects.yaml and snapshot.yaml to %s\n", out)
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// writeManifest writes the bundle's snapshot.yaml.
func writeManifest(out, node, mode, bin string, dataplane ...string) error {
	var files strings.Builder
	for _, f := range dataplane {
		files.WriteString("- " + f + "\n")
	}
	manifest := fmt.Sprintf(`apiVersion: svctrace/v1
kind: Snapshot
node: %s
mode: %s
kubeProxyVersion: %s
recordedBy: test/e2e/record (hack/record-fixtures.sh)
dataplane:
%sobjects: objects.yaml
`, node, mode, strings.TrimPrefix(filepath.Base(filepath.Dir(bin)), "k8s-"), files.String())
	// The balance scenario's conntrack (-conntrack, recorded by hack/record-fixtures.sh after
	// the bundle) stays part of it.
	if _, err := os.Stat(filepath.Join(out, "conntrack.txt")); err == nil {
		manifest += "conntrack: conntrack.txt\n"
	}
	return os.WriteFile(filepath.Join(out, "snapshot.yaml"), []byte(manifest), 0o644)
}

// guestVIP sets $vip, in the guest, to the first Service virtual server with real servers (not
// the kubernetes Service's, whose API server is outside the guest); guestTrace traces it from a
// pod address of the guest's node.
const (
	guestVIP   = `vip=$(ipvsadm -Sn | awk '/^-A -t 10\.96\./ {v=$3} /^-a -t/ && $3 == v {print v; exit}'); echo "VIP: $vip"; `
	guestTrace = `/bin/kubectl-svctrace trace $vip --node vm1 --from 10.244.3.99 -o json`
)

// ipvsCompareScript times, in the guest, five interleaved rounds of each read a live IPVS-mode
// trace needs, of the whole IPVS table's listings (/proc and ipvsadm's), and of the trace itself
// (one line each: "name: seconds s KB KB").
const ipvsCompareScript = guestVIP +
	`for i in 1 2 3 4 5; do ` +
	`/bin/time -f "iptables-save -c: %e s %M KB" iptables-save -c >/dev/null; ` +
	`/bin/time -f "ipset save: %e s %M KB" ipset save >/dev/null; ` +
	`/bin/time -f "ipset list -t: %e s %M KB" ipset list -t >/dev/null; ` +
	`/bin/time -f "netprobe ipvs-services: %e s %M KB" /bin/netprobe ipvs-services >/dev/null; ` +
	`/bin/time -f "ipvsadm -Ln -t VIP: %e s %M KB" ipvsadm -Ln -t $vip >/dev/null; ` +
	`/bin/time -f "ip -o addr show dev kube-ipvs0: %e s %M KB" ip -o addr show dev kube-ipvs0 >/dev/null; ` +
	`/bin/time -f "cat /proc/net/ip_vs: %e s %M KB" cat /proc/net/ip_vs >/dev/null; ` +
	`/bin/time -f "ipvsadm -Ln: %e s %M KB" ipvsadm -Ln >/dev/null; ` +
	`/bin/time -f "ipvsadm -Sn: %e s %M KB" ipvsadm -Sn >/dev/null; ` +
	`/bin/time -f "kubectl-svctrace trace (live): %e s %M KB" ` + guestTrace + ` --no-api >/dev/null; ` +
	`done 2>&1`

// ipvsProfileScript runs one live trace in the guest with its -v 2 log, the garbage collector's
// trace and a CPU profile, printed in base64 after a "cpu.prof:" line; then the trace of the
// node's dumps (the same reads, saved to files first), timed under the same emulation; then both
// again with transparent huge pages on request only.
const ipvsProfileScript = guestVIP +
	`SVCTRACE_CPUPROFILE=/tmp/cpu.prof GODEBUG=gctrace=1 /bin/time -f "trace: %e s %M KB" ` + guestTrace + ` --no-api -v 2 2>&1 >/dev/null; ` +
	`iptables-save -c >/tmp/ipt.txt; ipset save >/tmp/ipset.txt; ipvsadm -Ln >/tmp/ipvs.txt; ` +
	`/bin/time -f "trace of the dumps: %e s %M KB" ` + guestTrace + ` --dataplane /tmp/ipt.txt --dataplane /tmp/ipset.txt --dataplane /tmp/ipvs.txt 2>&1 >/dev/null; ` +
	// The same two with transparent huge pages on request only ("madvise", as on most
	// distributions; Debian's cloud kernel has "always"): is the guest's RSS theirs?
	`thp=/sys/kernel/mm/transparent_hugepage/enabled; echo "THP: $(cat $thp)"; was=$(sed 's/.*\[\(.*\)\].*/\1/' $thp); echo madvise >$thp; ` +
	`/bin/time -f "trace (THP madvise): %e s %M KB" ` + guestTrace + ` --no-api 2>&1 >/dev/null; ` +
	`/bin/time -f "trace of the dumps (THP madvise): %e s %M KB" ` + guestTrace + ` --dataplane /tmp/ipt.txt --dataplane /tmp/ipset.txt --dataplane /tmp/ipvs.txt 2>&1 >/dev/null; ` +
	`echo "$was" >$thp; ` +
	`echo cpu.prof:; base64 -w0 /tmp/cpu.prof; echo`

// ipvsCompareTable turns ipvsCompareScript's lines into a table: each command's median wall time
// and peak RSS, and the trace's ratio to the slowest single read it needs, each as a process of
// its own: iptables-save, ipset list -t, the packet's virtual server with its real servers
// (ipvsadm -Ln -t makes the trace's two netlink requests; the ipset lookups are a request
// each) and kube-ipvs0's addresses (ip addr). The whole table's and sets' listings are shown,
// which trace does not read: the netlink listing of every virtual server (netprobe
// ipvs-services, which trace made until it asked for the packet's alone), /proc/net/ip_vs and
// ipset save (read until it read only what the packet touches), ipvsadm -Ln and -Sn; and the
// ratio to /proc/net/ip_vs too.
func ipvsCompareTable(out string) (string, error) {
	times := map[string][]float64{}
	rss := map[string]int{}
	var order []string
	for _, line := range strings.Split(out, "\n") {
		name, rest, ok := strings.Cut(line, ": ")
		var sec float64
		var kb int
		if !ok {
			continue
		}
		if n, _ := fmt.Sscanf(rest, "%f s %d KB", &sec, &kb); n != 2 {
			continue
		}
		if times[name] == nil {
			order = append(order, name)
		}
		times[name] = append(times[name], sec)
		rss[name] = max(rss[name], kb)
	}
	median := func(v []float64) float64 {
		v = slices.Clone(v)
		slices.Sort(v)
		return v[len(v)/2]
	}
	const trace = "kubectl-svctrace trace (live)"
	if len(times[trace]) == 0 {
		return "", fmt.Errorf("the guest timed no live trace")
	}
	slowest, which := 0.0, ""
	for _, name := range []string{"iptables-save -c", "ipset list -t", "ipvsadm -Ln -t VIP", "ip -o addr show dev kube-ipvs0"} {
		if len(times[name]) == 0 {
			return "", fmt.Errorf("the guest did not time %s", name)
		}
		if m := median(times[name]); m > slowest {
			slowest, which = m, name
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| in the guest (TCG), %d Services x %d endpoints | wall time, median of %d | peak RSS |\n|---|---|---|\n", scale.services, scale.endpoints, len(times[trace]))
	for _, name := range order {
		extra := ""
		if name == trace {
			extra = fmt.Sprintf(" (%.2f× %s, the slowest read it needs", median(times[name])/slowest, which)
			if whole := times["cat /proc/net/ip_vs"]; len(whole) > 0 {
				extra += fmt.Sprintf("; %.2f× cat /proc/net/ip_vs, the whole IPVS table, which it does not read", median(times[name])/median(whole))
			}
			extra += ")"
		}
		fmt.Fprintf(&b, "| %s | %.2f s%s | %d MiB |\n", name, median(times[name]), extra, rss[name]/1024)
	}
	return b.String(), nil
}
