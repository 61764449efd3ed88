//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svctrace/svctrace/test/e2e/harness"
)

// checkInNode runs `kubectl svctrace check ARGS` node-side and returns its output and exit code.
func checkInNode(t *testing.T, args ...string) ([]byte, int) {
	t.Helper()
	out, _, code := kubectl(t, true, append([]string{"svctrace", "check"}, args...)...)
	return out, code
}

// checkFindings are check's findings above info, as "KIND SERVICE", sorted.
func checkFindings(t *testing.T, out []byte) []string {
	t.Helper()
	return findingsAtLeast(t, out, "warning")
}

// checkErrors are check's error findings, as "KIND SERVICE", sorted.
func checkErrors(t *testing.T, out []byte) []string {
	t.Helper()
	return findingsAtLeast(t, out, "error")
}

func findingsAtLeast(t *testing.T, out []byte, severity string) []string {
	t.Helper()
	var doc struct {
		Findings []struct{ Kind, Severity, Service string }
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var got []string
	for _, f := range doc.Findings {
		if f.Severity == "error" || severity == "warning" && f.Severity == "warning" {
			got = append(got, f.Kind+" "+f.Service)
		}
	}
	sort.Strings(got)
	return got
}

// TestCheckFindsStaleRulesAfterKubeProxyStops stops kube-proxy after it synced, changes the API
// behind its back (an endpoint's pod deleted, a new pod, a Service deleted), and expects check to
// report exactly that and exit 1; once kube-proxy runs again, check is clean and exits 0.
func TestCheckFindsStaleRulesAfterKubeProxyStops(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	chk := func(name string) map[string]string { return map[string]string{"app": name} }
	for _, p := range []harness.PodSpec{
		{Namespace: "default", Name: "chk-1", IP: "10.244.1.61", Labels: chk("chk"), Ports: []string{"8080"}},
		{Namespace: "default", Name: "chk-2", IP: "10.244.1.62", Labels: chk("chk"), Ports: []string{"8080"}},
		{Namespace: "default", Name: "chk-3", IP: "10.244.1.63", Labels: chk("chk-gone"), Ports: []string{"8080"}},
	} {
		if _, err := cluster.AddPod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"chk", "chk-gone"} {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec: corev1.ServiceSpec{Selector: chk(name), Ports: []corev1.ServicePort{harness.TCPPort("http", 80, 8080)}}}
		if _, err := cluster.CreateService(ctx, svc); err != nil {
			t.Fatal(err)
		}
	}
	if err := cluster.WaitEndpoints(ctx, "default", "chk", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.WaitDump(ctx, "iptables", func(d string) bool {
		return strings.Contains(d, "default/chk:http") && strings.Contains(d, "default/chk-gone:http") && strings.Contains(d, "10.244.1.62:8080")
	}); err != nil {
		t.Fatal(err)
	}
	if out, code := checkInNode(t, "-A", "-o", "json"); code != 0 {
		t.Fatalf("before any change: exit %d, findings %v", code, checkFindings(t, out))
	}

	cluster.StopKubeProxy()
	defer func() {
		// Leave kube-proxy running for the tests after this one, whatever happened.
		if err := cluster.StartKubeProxy("iptables"); err == nil {
			_, _ = cluster.WaitDump(context.Background(), "iptables", harness.ScenarioProgrammed)
		}
	}()
	if err := cluster.DeletePod(ctx, "default", "chk-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.AddPod(ctx, harness.PodSpec{Namespace: "default", Name: "chk-4", IP: "10.244.1.64", Labels: chk("chk"), Ports: []string{"8080"}}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.CoreV1().Services("default").Delete(ctx, "chk-gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitEndpointIPs(ctx, "default", "chk", "10.244.1.62", "10.244.1.64"); err != nil {
		t.Fatal(err)
	}

	out, code := checkInNode(t, "-A", "-o", "json")
	want := []string{"MissingEndpoint default/chk:http", "StaleEndpoint default/chk:http", "StaleService default/chk-gone:http"}
	if got := checkFindings(t, out); strings.Join(got, "; ") != strings.Join(want, "; ") || code != 1 {
		t.Fatalf("with kube-proxy stopped: exit %d, findings\n%v\nwant\n%v", code, got, want)
	}
	if _, code := checkInNode(t, "-A", "-o", "junit"); code != 1 {
		t.Errorf("-o junit: exit %d, want 1", code)
	}

	if err := cluster.StartKubeProxy("iptables"); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.WaitDump(ctx, "iptables", func(d string) bool {
		return strings.Contains(d, "10.244.1.64:8080") && !strings.Contains(d, "default/chk-gone:http")
	}); err != nil {
		t.Fatal(err)
	}
	if out, code := checkInNode(t, "-A", "-o", "json"); code != 0 {
		t.Fatalf("after kube-proxy resynced: exit %d, findings %v", code, checkFindings(t, out))
	}
}

// TestMissingPermissionsAreNamed: a user without the reader role is told exactly which reads are
// missing (SelfSubjectAccessReview) and gets exit 3 and the rbac command to run; with the shipped
// ClusterRole bound, check works; so it does with what `svctrace rbac --user` prints, applied
// as printed, and not with one verb of it taken away.
func TestMissingPermissionsAreNamed(t *testing.T) {
	needCluster(t)
	asViewer := func(extra ...string) (string, int) {
		_, stderr, code := kubectl(t, true, append([]string{"svctrace", "check", "-A", "--as", "viewer"}, extra...)...)
		return stderr, code
	}
	stderr, code := asViewer()
	if code != 3 || !strings.Contains(stderr, "you may not list services, list endpointslices.discovery.k8s.io, list pods, list nodes") || !strings.Contains(stderr, "kubectl svctrace rbac --user YOU | kubectl apply -f -") {
		t.Fatalf("without RBAC: exit %d, %q", code, stderr)
	}
	// What `svctrace rbac` prints, applied as printed, for a user of its own; and the same with
	// "list" taken from Nodes for another user.
	printed, _, code := kubectl(t, false, "svctrace", "rbac", "--user", "rbac-printed")
	if code != 0 {
		t.Fatalf("svctrace rbac: exit %d", code)
	}
	dir := t.TempDir()
	full, short := filepath.Join(dir, "rbac.yaml"), filepath.Join(dir, "short.yaml")
	lessNodes := strings.Replace(strings.ReplaceAll(string(printed), "rbac-printed", "rbac-short"), "  - nodes\n", "", 1)
	lessNodes = strings.ReplaceAll(lessNodes, "name: svctrace-reader\n", "name: svctrace-reader-short\n")
	if err := os.WriteFile(full, printed, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(short, []byte(lessNodes), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{full, short} {
		if out, err := runKubectl(t, "apply", "-f", f); err != nil {
			t.Fatalf("kubectl apply the printed RBAC: %v %s", err, out)
		}
	}
	as := func(user string) (string, int) {
		return kubectlOnceAllowed(t, true, "svctrace", "check", "-A", "--as", user)
	}
	if stderr, code := as("rbac-printed"); code != 0 {
		t.Fatalf("with the printed RBAC: exit %d, %q", code, stderr)
	}
	if stderr, code := as("rbac-short"); code != 3 || !strings.Contains(stderr, "you may not list nodes") {
		t.Fatalf("with the printed RBAC less list nodes: exit %d, %q", code, stderr)
	}
	if out, err := runKubectl(t, "apply", "-f", "../../krew/rbac/svctrace-reader.yaml"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	stderr, code = kubectlOnceAllowed(t, true, "svctrace", "check", "-A", "--as", "viewer", "--as-group", "svctrace-users")
	if code != 0 {
		t.Fatalf("with the reader role: exit %d, %q", code, stderr)
	}
}
