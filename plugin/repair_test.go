package plugin

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
)

// editedDemoObjects writes the demo's API objects with the multi Service deleted and hostnames-c
// replaced by a new pod address: what a node whose kube-proxy stopped would disagree with.
func editedDemoObjects(t *testing.T) string {
	data, err := trace.EncodeObjects(tracetest.StaleDemo(t, "../dataplane/snapshot/demo"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "objects.json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRepairPlansOffline(t *testing.T) {
	objects := editedDemoObjects(t)
	dump := "../dataplane/snapshot/demo/iptables-save.txt"
	out, stderr, code := run(t, "repair", "-A", "--dataplane", dump, "--objects", objects, "--node", "node1")
	if code != ExitFindings || !strings.Contains(stderr, "dry run: nothing was changed") {
		t.Fatalf("exit %d %s\n%s", code, stderr, out)
	}
	for _, want := range []string{"default/hostnames:default", "default/multi:http", "- nat KUBE-SERVICES  -A KUBE-SERVICES -d 10.96.10.50/32", "+ nat KUBE-SEP-", "--to-destination 10.244.1.15:9376", "- nat KUBE-SVC-ZI7V5MEXJLWC5J7J  delete chain"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	out, _, _ = run(t, "repair", "-A", "--dataplane", dump, "--objects", objects, "--node", "node1", "-o", "json")
	var plan trace.RepairPlan
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatal(err)
	}
	// Only nat changes (the deleted Service had endpoints, so no filter rules); the -X lines
	// come after every rule.
	if len(plan.IPTables) != 1 || !strings.HasPrefix(plan.IPTables[0].Input, "*nat\n:KUBE-SERVICES - [0:0]\n") ||
		!strings.HasSuffix(plan.IPTables[0].Input, "-X KUBE-SEP-FE4RJF6KYHPNKSHY\nCOMMIT\n") {
		t.Fatalf("restore input: %s", plan.IPTables[0].Input)
	}
	// Writing is for the live node, as root, node-side.
	if _, stderr, code := run(t, "repair", "-A", "--dataplane", dump, "--objects", objects, "--apply"); code != ExitUsage || !strings.Contains(stderr, "offline input") {
		t.Errorf("--apply offline: exit %d %q", code, stderr)
	}
	if _, stderr, code := run(t, "repair", "--undo", "x.json", "--plan", "y.json"); code != ExitUsage || !strings.Contains(stderr, "do not go together") {
		t.Errorf("--undo with --plan: exit %d %q", code, stderr)
	}
}

// A plan file is checked before anything is written: not JSON, not a plan, or restore input that
// names a chain the plan does not declare or that is not kube-proxy's.
func TestRepairRefusesMalformedPlans(t *testing.T) {
	objects := editedDemoObjects(t)
	out, _, _ := run(t, "repair", "-A", "--dataplane", "../dataplane/snapshot/demo/iptables-save.txt", "--objects", objects, "--node", "node1", "-o", "json")
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct{ name, content, want string }{
		{"garbage", "{not json", "is not a repair plan"},
		{"other kind", `{"apiVersion":"svctrace/v1","kind":"Check"}`, "not a svctrace/v1 RepairPlan"},
		{"foreign chain", strings.Replace(out, `:KUBE-SERVICES - [0:0]\n`, `:KUBE-SERVICES - [0:0]\n-A INPUT -j ACCEPT\n`, 1), "names chain INPUT"},
		{"not a rule", strings.Replace(out, `:KUBE-SERVICES - [0:0]\n`, `:KUBE-SERVICES - [0:0]\nflush everything\n`, 1), "is not a chain, rule or chain deletion"},
	} {
		if tc.content == out {
			t.Fatalf("%s: the edit did not apply", tc.name)
		}
		_, stderr, code := run(t, "repair", "--plan", write(tc.name+".json", tc.content))
		if code != ExitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d %q", tc.name, code, stderr)
		}
	}
	// nftables mode: the plan lists kube-proxy's objects to change; a plan file is shown as the
	// nft transaction it writes, and one that names a chain not kube-proxy's per-Service kind, or a
	// rule with a second command, is refused.
	nft := "../dataplane/snapshot/demo-nftables/nft.json"
	out, _, code := run(t, "repair", "-A", "--dataplane", nft, "--objects", objects, "--node", "node1")
	if code != ExitFindings || !strings.Contains(out, "applied as one nft transaction per kube-proxy table (ip)") || !strings.Contains(out, "delete chain service-WORRPFDT-default/multi/tcp/http") {
		t.Errorf("nftables: exit %d\n%s", code, out)
	}
	out, _, _ = run(t, "repair", "-A", "--dataplane", nft, "--objects", objects, "--node", "node1", "-o", "json")
	shown, _, code := run(t, "repair", "--plan", write("nft.json", out))
	if code != ExitFindings || !strings.Contains(shown, "nft -f -, ip kube-proxy table:") || !strings.Contains(shown, "delete element ip kube-proxy service-ips { 10.96.10.50 . tcp . 80 }") {
		t.Errorf("nftables plan file: exit %d\n%s", code, shown)
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"base chain", `"chain": "service-WORRPFDT-default/multi/tcp/http"`, `"chain": "filter-input"`, "is not one of kube-proxy's per-Service chains"},
		{"second command", `"meta l4proto tcp dnat ip addr . port to numgen random mod 3 map { 0 : 10.244.1.11 . 9376, 1 : 10.244.1.12 . 9376, 2 : 10.244.1.15 . 9376 }"`, `"drop; flush ruleset"`, "holds characters"},
	} {
		edited := strings.ReplaceAll(out, tc.old, tc.new)
		if edited == out {
			t.Fatalf("%s: the edit did not apply", tc.name)
		}
		_, stderr, code := run(t, "repair", "--plan", write(tc.name+".json", edited))
		if code != ExitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("nftables %s: exit %d %q", tc.name, code, stderr)
		}
	}
}

func TestKubeProxyVersionFromItsPod(t *testing.T) {
	pod := func(node, image string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"k8s-app": "kube-proxy"}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Image: image}}}}
	}
	cl := trace.NewCluster(nil, nil, []*corev1.Pod{pod("a", "registry.k8s.io/kube-proxy:v1.36.3"), pod("b", "registry.k8s.io/kube-proxy:v1.31.2"), pod("c", "k8s.gcr.io/kube-proxy:v1.22.0"), pod("e", "registry.k8s.io/kube-proxy:v1.27.4")}, nil)
	if v, note := kubeProxyVersion(cl, "a"); v.minor != 36 || note != "" {
		t.Errorf("a: %+v %q", v, note)
	}
	if v, note := kubeProxyVersion(cl, "b"); v.minor != 31 || note != "" {
		t.Errorf("b: %+v %q", v, note)
	}
	if v, _ := kubeProxyVersion(cl, "c"); v.minor != 22 {
		t.Errorf("c: %+v", v)
	}
	if v, note := kubeProxyVersion(cl, "e"); v.minor != 27 || !strings.Contains(note, "v1.27.4") {
		t.Errorf("e: %+v %q", v, note)
	}
	if _, note := kubeProxyVersion(cl, "d"); !strings.Contains(note, "not known") {
		t.Errorf("d: %q", note)
	}
}

// A plan file is shown as the lines applying it writes, not as its own description of itself
// (which an edited file need not match).
func TestRepairShowsAPlanFileAsItsInput(t *testing.T) {
	objects := editedDemoObjects(t)
	out, _, _ := run(t, "repair", "-A", "--dataplane", "../dataplane/snapshot/demo/iptables-save.txt", "--objects", objects, "--node", "node1", "-o", "json")
	var plan trace.RepairPlan
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatal(err)
	}
	plan.Changes = []trace.RepairChange{{Op: "add-rule", Detail: "a harmless-looking description"}}
	data, _ := json.Marshal(plan)
	p := filepath.Join(t.TempDir(), "plan.json")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	shown, stderr, code := run(t, "repair", "--plan", p)
	if code != ExitFindings || !strings.Contains(stderr, "dry run: nothing was changed") {
		t.Fatalf("exit %d %q", code, stderr)
	}
	for _, want := range []string{"iptables-restore --noflush, nat table:", "  -X KUBE-SEP-FE4RJF6KYHPNKSHY", "--to-destination 10.244.1.15:9376"} {
		if !strings.Contains(shown, want) {
			t.Errorf("the review lacks %q:\n%s", want, shown)
		}
	}
	if strings.Contains(shown, "harmless-looking") {
		t.Errorf("the review shows the file's description instead of what it writes:\n%s", shown)
	}
}
