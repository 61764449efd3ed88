package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svctrace/svctrace/test/e2e/harness"
	"github.com/svctrace/svctrace/trace"
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
		extra[fmt.Sprintf("trace-%d", i)] = "/bin/kubectl-svctrace trace " + f.traceArgs + " --node vm1 --objects /objects.yaml -o json"
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
	// publishes them from its rate estimator, every 2 seconds (6.1).
	extra["balance"] = "sysctl -qw net.netfilter.nf_conntrack_acct=1; ip netns exec pvmclient /bin/netprobe probe -n 60 -timeout 2s " +
		harness.VMClusterIPs["vmweb-np"] + ":80 >/dev/null; for i in $(seq 30); do ipvsadm -Ln --stats -t " + harness.VMClusterIPs["vmweb-np"] + ":80 | grep -q ' 60 ' && break; sleep 1; done; /bin/kubectl-svctrace balance ipvs/vmweb-np --node vm1 --objects /objects.yaml --duration 0 -o json"
	objects := filepath.Join(cluster.Dir, "ipvs-objects.yaml")
	out, err := runKubectl(t, "get", "svc,endpointslices,pods,nodes", "-A", "-o", "yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(objects, out, 0o644); err != nil {
		t.Fatal(err)
	}
	here, _ := os.Getwd()
	vm := &harness.VM{KernelDir: kernel, BinDir: vmbin, Hack: filepath.Join(here, "..", "..", "hack", "ipvs-vm")}
	console, err := vm.Run(ctx, cluster, harness.IPVSScript(extra), 12*time.Minute, objects+":/objects.yaml")
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
			t.Fatalf("balance: %s: %s (%d backends)", res.Diagnosis, res.Message, len(res.Backends))
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
	nodeAddrs := map[string]bool{harness.VMNodeIP: true, "198.51.100.1": true}
	for i, f := range ipvsFlows {
		t.Run(f.name, func(t *testing.T) {
			var res trace.Result
			if err := json.Unmarshal([]byte(sec[fmt.Sprintf("trace-%d", i)]), &res); err != nil {
				t.Fatalf("trace output: %v\n%s", err, sec[fmt.Sprintf("trace-%d", i)])
			}
			if res.Mode != "ipvs" {
				t.Fatalf("svctrace read the VM as %s mode", res.Mode)
			}
			want := expectation{verdict: f.wantVerdict, pods: f.wantPods, sticky: f.sticky, nodeAddrs: nodeAddrs}
			masq := checkPrediction(t, &res, want)
			var got probeResult
			// The console interleaves kernel messages (IPVS logs "no destination available"):
			// the probe's answer is its JSON line.
			if err := json.Unmarshal([]byte(jsonLine(sec[fmt.Sprintf("probe-%d", i)])), &got); err != nil {
				t.Fatalf("probe output: %v\n%s", err, sec[fmt.Sprintf("probe-%d", i)])
			}
			checkConnections(t, &res, masq, got, want)
		})
	}
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
