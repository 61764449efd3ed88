package plugin

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/svctrace/svctrace/trace"
)

var update = flag.Bool("update", false, "rewrite golden files")

// run executes the command line in-process, as main would, and returns stdout, stderr and the
// exit code.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	streams := genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errb}
	root := NewRootCommand(streams)
	root.SetArgs(args)
	err := root.Execute()
	code := codeOf(err)
	if err != nil {
		if err != errFindings {
			errb.WriteString("error: " + err.Error() + "\n")
		}
	}
	return out.String(), errb.String(), code
}

func TestDemoTraceGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"hostnames", []string{"trace", "--demo", "default/hostnames"}},
		{"nodeport-local-external", []string{"trace", "--demo", "172.31.250.2:30081"}},
		{"lb-denied", []string{"trace", "--demo", "203.0.113.100:80", "--from", "198.51.100.11"}},
		{"empty", []string{"trace", "--demo", "default/empty"}},
		{"sticky-from-node", []string{"trace", "--demo", "default/sticky", "--from", "node"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, code := run(t, tc.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			golden := "testdata/" + tc.name + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if out != string(want) {
				t.Errorf("output differs from %s (go test ./plugin -update to accept):\n%s", golden, out)
			}
		})
	}
}

func TestTraceJSONFollowsTheContract(t *testing.T) {
	out, stderr, code := run(t, "trace", "--demo", "default/web-nodeport", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"apiVersion", "kind", "node", "mode", "packet", "service", "backends", "verdicts", "hops", "findings"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("missing %q", k)
		}
	}
	if doc["apiVersion"] != "svctrace/v1" || doc["kind"] != "Trace" || doc["mode"] != "iptables" || doc["node"] != "node1" {
		t.Errorf("header %v %v %v %v", doc["apiVersion"], doc["kind"], doc["mode"], doc["node"])
	}
	backends := doc["backends"].([]any)
	if len(backends) != 2 {
		t.Fatalf("backends %v", backends)
	}
	sum := 0.0
	for _, b := range backends {
		m := b.(map[string]any)
		for _, k := range []string{"ip", "port", "probability", "masquerade", "pod", "ready", "node"} {
			if _, ok := m[k]; !ok {
				t.Errorf("backend lacks %q: %v", k, m)
			}
		}
		sum += m["probability"].(float64)
	}
	if sum < 0.999999 || sum > 1.000001 {
		t.Errorf("backend probabilities sum to %v", sum)
	}
	svc := doc["service"].(map[string]any)
	if svc["namespace"] != "default" || svc["name"] != "web-nodeport" || svc["port"] != "http" || svc["type"] != "ClusterIP" {
		t.Errorf("service %v", svc)
	}
}

func TestTraceYAML(t *testing.T) {
	out, _, code := run(t, "trace", "--demo", "default/dns", "--protocol", "udp", "-o", "yaml")
	if code != 0 || !strings.Contains(out, "apiVersion: svctrace/v1") || !strings.Contains(out, "protocol: udp") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestBadInputIsOneSentenceAndExitTwo(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no target", []string{"trace", "--demo"}, "needs exactly one TARGET"},
		{"unknown service", []string{"trace", "--demo", "default/nope"}, "service default/nope not found"},
		{"ambiguous port", []string{"trace", "--demo", "default/multi"}, "several ports (http=80/tcp, metrics=9090/tcp): choose one with --port"},
		{"wrong protocol", []string{"trace", "--demo", "default/dns"}, "has no tcp port (it has dns=53/udp); set --protocol"},
		{"bad protocol", []string{"trace", "--demo", "default/dns", "--protocol", "icmp"}, "unknown protocol"},
		{"bad output", []string{"trace", "--demo", "default/dns", "-o", "xml"}, "unknown format"},
		{"bad from", []string{"trace", "--demo", "default/hostnames", "--from", "somewhere"}, "--from \"somewhere\""},
		{"unknown flag", []string{"trace", "--demo", "default/hostnames", "--frmo", "x"}, "unknown flag: --frmo"},
		{"two inputs", []string{"trace", "--demo", "--dataplane", "x", "default/hostnames"}, "use one of them"},
		{"missing file", []string{"trace", "--dataplane", "/nonexistent", "10.96.0.1:443"}, "cannot read --dataplane"},
		{"name without objects", []string{"trace", "--dataplane", "../dataplane/snapshot/demo/iptables-save.txt", "default/hostnames"}, "needs API objects"},
		{"garbage dump", []string{"trace", "--dataplane", "trace_test.go", "10.96.0.1:443"}, "not a dump svctrace recognises"},
		{"mixed families", []string{"trace", "--demo", "10.96.10.10:80", "--from", "fd00::1"}, "different address families"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, code := run(t, tc.args...)
			if code != ExitUsage {
				t.Errorf("exit %d, want %d", code, ExitUsage)
			}
			if !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("stderr %q, want one line containing %q", stderr, tc.want)
			}
			if out != "" {
				t.Errorf("stdout should be empty on error, got %q", out)
			}
		})
	}
}

func TestFailOnExitsOneOnFindings(t *testing.T) {
	// Without objects the trace reports an info finding (NoAPIObjects): --fail-on info trips.
	_, _, code := run(t, "trace", "--dataplane", "../dataplane/snapshot/demo/iptables-save.txt", "--node-ip", "172.31.250.2", "--from", "10.244.1.9", "10.96.10.10:80", "--fail-on", "info")
	if code != ExitFindings {
		t.Errorf("exit %d, want %d", code, ExitFindings)
	}
	_, _, code = run(t, "trace", "--demo", "default/hostnames", "--fail-on", "warning")
	if code != ExitOK {
		t.Errorf("clean trace: exit %d, want 0", code)
	}
}

func TestOfflineWithoutObjectsStillTracesAndNamesTheServiceFromComments(t *testing.T) {
	out, stderr, code := run(t, "trace", "--dataplane", "../dataplane/snapshot/demo/iptables-save.txt", "10.96.10.10:80", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var doc struct {
		Service  struct{ Namespace, Name, Port, Type string }
		Backends []struct{ IP string }
		Packet   struct{ Src string }
		Findings []struct{ Kind string }
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Service.Name != "hostnames" || doc.Service.Port != "default" || doc.Service.Type != "ClusterIP" || len(doc.Backends) != 3 {
		t.Errorf("service %+v backends %+v", doc.Service, doc.Backends)
	}
	// The pod source comes from the cluster CIDR in the rules (10.244.0.0/16).
	if doc.Packet.Src != "10.244.255.254" {
		t.Errorf("source %s", doc.Packet.Src)
	}
	if len(doc.Findings) == 0 || doc.Findings[0].Kind != "NoAPIObjects" {
		t.Errorf("findings %+v", doc.Findings)
	}
}

func TestVersion(t *testing.T) {
	out, _, code := run(t, "version")
	if code != 0 || !strings.HasPrefix(out, "svctrace ") {
		t.Fatalf("exit %d %q", code, out)
	}
}

// TestLoopbackNodePortInNftablesMode: kube-proxy's nftables mode does not serve node ports on
// 127.0.0.1 by design; a trace says so (info) instead of reporting the Service missing (error).
// iptables mode does serve them.
func TestLoopbackNodePortInNftablesMode(t *testing.T) {
	out, stderr, code := run(t, "trace", "127.0.0.1:30080", "--from", "node", "--snapshot", "../dataplane/snapshot/demo-nftables")
	if code != 0 || !strings.Contains(out, "LoopbackNodePort") || strings.Contains(out, "MissingService") {
		t.Fatalf("nftables: exit %d %s %s", code, out, stderr)
	}
	out, stderr, code = run(t, "trace", "127.0.0.1:30080", "--from", "node", "--demo")
	if code != 0 || !strings.Contains(out, "DNAT") || strings.Contains(out, "LoopbackNodePort") {
		t.Fatalf("iptables: exit %d %s %s", code, out, stderr)
	}
}

// TestFromNodeTakesTheDestinationsFamily: --from node to an IPv6 address uses the node's IPv6
// address as the source, not its first (IPv4) one (the walk once stopped: "different address
// families").
func TestFromNodeTakesTheDestinationsFamily(t *testing.T) {
	o := NewTraceOptions(genericiooptions.NewTestIOStreamsDiscard(), nil)
	o.from = "node"
	if err := o.Complete([]string{"[fd00:96::10]:80"}); err != nil {
		t.Fatal(err)
	}
	in := &Inputs{Node: &trace.NodeContext{Name: "node1", Local: []netip.Addr{netip.MustParseAddr("172.31.250.2"), netip.MustParseAddr("fd00:10::2")}}}
	q, err := o.query(in)
	if err != nil || q.Packet.Src != netip.MustParseAddr("fd00:10::2") {
		t.Fatalf("source %s, %v; want the node's IPv6 address", q.Packet.Src, err)
	}
}

// TestOutputFormatsRefused: kubectl's -o values this tool does not have are refused with one
// sentence and exit 2, not taken for the default format (issue 18); each command's own human
// format and json/yaml work.
func TestOutputFormatsRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"trace", "--demo", "default/hostnames", "-o", "xml"}, `unknown format "xml": use tree, wide, json, yaml, jsonpath=TEMPLATE or go-template=TEMPLATE`},
		{[]string{"trace", "--demo", "default/hostnames", "-o", "table"}, `unknown format "table": use tree, wide, json, yaml`},
		{[]string{"check", "--demo", "-A", "-o", "tree"}, `unknown format "tree": use table, wide, json, yaml, jsonpath=TEMPLATE or go-template=TEMPLATE (check also takes junit)`},
		{[]string{"repair", "--demo", "-A", "-o", "human"}, `unknown format "human": use table, wide, json, yaml`},
		{[]string{"check", "--demo", "-A", "-o", "jsonpath={.kind"}, `-o jsonpath={.kind: error parsing jsonpath`},
		{[]string{"trace", "--demo", "default/hostnames", "-o", "go-template={{.kind"}, `-o go-template={{.kind: error parsing template`},
	} {
		_, stderr, code := run(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("%v: exit %d, %q", tc.args, code, stderr)
		}
	}
	for _, args := range [][]string{{"trace", "--demo", "default/hostnames", "-o", "tree"}, {"trace", "--demo", "default/hostnames", "-o", "yaml"}, {"check", "--demo", "-A", "-o", "table"}} {
		if _, stderr, code := run(t, args...); code == 2 {
			t.Errorf("%v refused: %s", args, stderr)
		}
	}
}

// TestTargetsAsPrinted: a Service is accepted as svctrace prints it (NS/NAME:PORT, a port name or
// number) and as its DNS name, and traces the same as NS/NAME (issue 18).
func TestTargetsAsPrinted(t *testing.T) {
	want, _, code := run(t, "trace", "--demo", "default/hostnames", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, target := range []string{"default/hostnames:80", "default/hostnames:default", "hostnames.default.svc.cluster.local", "hostnames.default", "svc/default/hostnames:80"} {
		got, stderr, code := run(t, "trace", "--demo", target, "-o", "json")
		if code != 0 || got != want {
			t.Errorf("%s: exit %d, %s", target, code, stderr)
		}
	}
	for target, msg := range map[string]string{
		"default/hostnames:81":                `has no tcp port "81"`,
		"hostnames.default.pod.cluster.local": "is not a Service's DNS name",
		"default/hostnames:80 --port 80":      "already has a port",
	} {
		args := append([]string{"trace", "--demo"}, strings.Fields(target)...)
		if _, stderr, code := run(t, args...); code != 2 || !strings.Contains(stderr, msg) {
			t.Errorf("%s: exit %d, %q", target, code, stderr)
		}
	}
}

// TestNodeChosenOrChecked: offline without --node, a NODEIP:NODEPORT target picks the Node that
// has the address (it was "not a known Service address"); a --from pod on another node is traced
// on this node's rules with a warning that says so (issue 18).
func TestNodeChosenOrChecked(t *testing.T) {
	out, stderr, code := run(t, "trace", "172.31.250.2:30080", "--dataplane", "../dataplane/snapshot/demo/iptables-save.txt", "--objects", "../dataplane/snapshot/demo/objects.yaml")
	if code != 0 || !strings.Contains(out, "default/web-nodeport:http (NodePort), node node1") || !strings.Contains(stderr, "taking node node1, whose address 172.31.250.2") {
		t.Errorf("node address target: exit %d\n%s\n%s", code, out, stderr)
	}
	_, stderr, code = run(t, "trace", "--demo", "default/hostnames", "--from", "pod/default/web-2")
	if code != 0 || !strings.Contains(stderr, "pod default/web-2 runs on node node2, but this trace walks node node1's rules; trace it with --node node2") {
		t.Errorf("pod on another node: exit %d, %q", code, stderr)
	}
	if _, stderr, _ := run(t, "trace", "--demo", "default/hostnames", "--from", "pod/default/hostnames-a"); strings.Contains(stderr, "runs on node") {
		t.Errorf("a pod on this node is warned about: %q", stderr)
	}
}

// TestNoHeaders: --no-headers drops exactly the header row of the tables (issue 18), every data
// row stays.
func TestNoHeaders(t *testing.T) {
	for _, args := range [][]string{{"check", "-A", "--demo"}, {"trace", "--demo", "default/hostnames"}} {
		with, _, _ := run(t, args...)
		without, _, _ := run(t, append(args, "--no-headers")...)
		var dropped []string
		have := map[string]bool{}
		for _, l := range strings.Split(without, "\n") {
			have[l] = true
		}
		for _, l := range strings.Split(with, "\n") {
			if !have[l] {
				dropped = append(dropped, l)
			}
		}
		if len(dropped) != 1 || !strings.Contains(dropped[0], "NODE") || strings.Count(with, "\n") != strings.Count(without, "\n")+1 {
			t.Errorf("%v --no-headers dropped %q", args, dropped)
		}
	}
}

// TestTemplateOutputs: kubectl's jsonpath and go-template formats, through cli-runtime's printers,
// on every command's document.
func TestTemplateOutputs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"trace", "--demo", "default/hostnames", "-o", "jsonpath={.service.name}"}, "hostnames"},
		{[]string{"trace", "--demo", "default/hostnames", "-o", "go-template={{.kind}} {{.service.namespace}}"}, "Trace default"},
		{[]string{"check", "--demo", "-A", "-o", "jsonpath={.kind} {.nodes[0].mode}"}, "Check iptables"},
		{[]string{"repair", "--demo", "-A", "-o", "jsonpath={.kind}/{.node}"}, "RepairPlan/node1"},
		{[]string{"trace", "--demo", "default/hostnames", "-o", "jsonpath-as-json={.service.port}"}, `"default"`},
	} {
		out, stderr, code := run(t, tc.args...)
		if code != 0 || strings.TrimSpace(out) != tc.want && !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d, %q (want %q) %s", tc.args, code, out, tc.want, stderr)
		}
	}
}

// `--demo MODE` (a space, not =) names the demo's mode, as users type it: the command line is
// joined to --demo=MODE before the flags are parsed; anything else after --demo stays an argument.
func TestDemoModeWithASpace(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"trace", "--demo", "nftables", "default/hostnames"}, []string{"trace", "--demo=nftables", "default/hostnames"}},
		{[]string{"check", "-A", "--demo", "ipvs"}, []string{"check", "-A", "--demo=ipvs"}},
		{[]string{"trace", "--demo", "default/hostnames"}, []string{"trace", "--demo", "default/hostnames"}},
		{[]string{"trace", "--demo"}, []string{"trace", "--demo"}},
		{[]string{"trace", "--", "--demo", "nftables"}, []string{"trace", "--", "--demo", "nftables"}},
	} {
		if got := demoArgs(tc.in); strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("demoArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	out, stderr, code := run(t, demoArgs([]string{"trace", "--demo", "nftables", "default/hostnames", "-o", "json"})...)
	if code != 0 || !strings.Contains(out, `"mode": "nftables"`) {
		t.Errorf("trace --demo nftables: exit %d\n%s%s", code, out, stderr)
	}
}

// TestDualStackFromPodAndCheck: on the node recorded with a PreferDualStack Service (both
// families' dumps), a trace of its IPv6 cluster IP --from a dual-stack pod starts at the pod's
// IPv6 address and reaches its two pods' IPv6 addresses half each; --from pod and external pick
// sources of IPv6 too; check compares the Service's port once per family (2), and given the IPv4
// dump alone it leaves IPv6 out (1).
func TestDualStackFromPodAndCheck(t *testing.T) {
	const dir = "../trace/kubeproxy/testdata/kube-proxy-v1.36.3-dual-stack/"
	input := []string{"--dataplane", dir + "iptables-save.txt", "--dataplane", dir + "ip6tables-save.txt", "--objects", dir + "objects.yaml", "--node", "node1"}
	for _, from := range []string{"pod/default/ds-client", "pod", "external"} {
		out, stderr, code := run(t, append([]string{"trace", "[fd00:10:96::70]:80", "--from", from, "-o", "json"}, input...)...)
		if code != 0 {
			t.Fatalf("--from %s: exit %d %s", from, code, stderr)
		}
		var res trace.Result
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatal(err)
		}
		src, err := netip.ParseAddr(res.Packet.Src)
		if err != nil || !src.Is6() || from == "pod/default/ds-client" && src != netip.MustParseAddr("fd00:10:244:1::169") {
			t.Errorf("--from %s: source %s", from, res.Packet.Src)
		}
		var got []string
		for _, b := range res.Backends {
			got = append(got, b.IP+" "+strconv.FormatFloat(b.Probability, 'f', -1, 64))
		}
		if strings.Join(got, ", ") != "fd00:10:244:1::161 0.5, fd00:10:244:1::162 0.5" {
			t.Errorf("--from %s: backends %v", from, got)
		}
	}
	for _, tc := range []struct {
		dumps   []string
		checked int
	}{
		{[]string{"--dataplane", dir + "iptables-save.txt", "--dataplane", dir + "ip6tables-save.txt"}, 2},
		{[]string{"--dataplane", dir + "iptables-save.txt"}, 1},
	} {
		args := append([]string{"check", "default/dual", "-o", "json", "--objects", dir + "objects.yaml", "--node", "node1"}, tc.dumps...)
		out, stderr, code := run(t, args...)
		var res struct {
			Nodes []trace.CheckResult `json:"nodes"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &res) != nil || len(res.Nodes) != 1 || res.Nodes[0].Checked != tc.checked {
			t.Errorf("check with %d dump(s): exit %d, %s %s; want %d ports checked", len(tc.dumps)/2, code, out, stderr, tc.checked)
		}
	}
}
