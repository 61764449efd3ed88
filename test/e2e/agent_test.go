//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svctrace/svctrace/test/e2e/harness"
)

// agentMetrics is where the agent in the node namespace serves: node1's uplink address, which
// the root namespace (the test, Prometheus) reaches.
var agentMetrics = harness.NodeIP + ":9808"

// TestAgentReportsAndClears runs `kubectl-svctrace agent` in node1's namespace next to the real
// kube-proxy, as the DaemonSet's ServiceAccount with exactly the shipped RBAC (a token from the
// real API server). kube-proxy is stopped and an endpoint's pod deleted: within 30 s the stale
// endpoint is a metric, an Event on the Service and the Node condition; kube-proxy restarted, all
// three clear; the programming-latency histogram has observations.
func TestAgentReportsAndClears(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	for _, f := range []string{"rbac.yaml", "daemonset.yaml"} {
		if out, err := runKubectl(t, "apply", "-f", filepath.Join("..", "..", "krew", "agent", f)); err != nil {
			t.Fatalf("kubectl apply %s: %v\n%s", f, err, out)
		}
	}
	tok, err := cluster.Client.CoreV1().ServiceAccounts("svctrace-system").CreateToken(ctx, "svctrace-agent",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := cluster.KubeconfigFor("svctrace-agent", tok.Status.Token)
	if err != nil {
		t.Fatal(err)
	}

	app := map[string]string{"app": "agent"}
	for _, p := range []harness.PodSpec{
		{Namespace: "default", Name: "agent-1", IP: "10.244.1.91", Labels: app, Ports: []string{"8080"}},
		{Namespace: "default", Name: "agent-2", IP: "10.244.1.92", Labels: app, Ports: []string{"8080"}},
	} {
		if _, err := cluster.AddPod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "agent"},
		Spec: corev1.ServiceSpec{Selector: app, Ports: []corev1.ServicePort{harness.TCPPort("http", 80, 8080)}}}
	if _, err := cluster.CreateService(ctx, svc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.Client.CoreV1().Services("default").Delete(context.Background(), "agent", metav1.DeleteOptions{})
		_ = cluster.DeletePod(context.Background(), "default", "agent-2")
	})
	if _, err := cluster.WaitDump(ctx, "iptables", func(d string) bool {
		return strings.Contains(d, "10.244.1.91:8080") && strings.Contains(d, "10.244.1.92:8080")
	}); err != nil {
		t.Fatal(err)
	}

	bin := filepath.Join(strings.Split(pluginPath, ":")[0], "kubectl-svctrace")
	if err := cluster.SpawnInNode("svctrace-agent", bin, "agent", "--kubeconfig", kubeconfig, "--node", harness.NodeName,
		"--metrics-bind-address", agentMetrics); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cluster.StopProcess("svctrace-agent")
		t.Logf("the agent's log:\n%s", cluster.LogTail("svctrace-agent"))
	})
	eventually(t, ctx, 60*time.Second, "the agent ready and the Node condition True", func() (bool, string) {
		c := nodeCondition(ctx, t)
		return httpOK(agentMetrics+"/readyz") && c != nil && c.Status == corev1.ConditionTrue, fmt.Sprintf("condition %+v; agent log:\n%s", c, cluster.LogTail("svctrace-agent"))
	})

	// A real Prometheus scrapes the agent every second and evaluates the shipped alerts.
	rules, err := filepath.Abs(filepath.Join("..", "..", "krew", "agent", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("promtool", "check", "rules", rules).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	promDir := t.TempDir()
	promConfig := filepath.Join(promDir, "prometheus.yml")
	if err := os.WriteFile(promConfig, []byte(fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
- job_name: svctrace-agent
  static_configs: [{targets: [%q]}]
`, rules, agentMetrics)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Spawn("prometheus", "prometheus", "--config.file="+promConfig, "--storage.tsdb.path="+filepath.Join(promDir, "data"),
		"--web.listen-address="+prometheusAddr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.StopProcess("prometheus") })
	eventually(t, ctx, 60*time.Second, "Prometheus scraping the agent", func() (bool, string) {
		up := promQuery(t, `up{job="svctrace-agent"}`)
		return strings.Contains(up, `"1"]`), up + "\n" + cluster.LogTail("prometheus")
	})

	// Stale: kube-proxy stopped, then agent-1's pod deleted.
	cluster.StopKubeProxy()
	t.Cleanup(func() {
		if err := cluster.StartKubeProxy("iptables"); err == nil {
			_, _ = cluster.WaitDump(context.Background(), "iptables", harness.ScenarioProgrammed)
		}
	})
	changed := time.Now()
	if err := cluster.DeletePod(ctx, "default", "agent-1"); err != nil {
		t.Fatal(err)
	}
	staleMetric := regexp.MustCompile(`svctrace_findings\{kind="StaleEndpoint",namespace="default",node="node1",service="agent",severity="error"\} 1`)
	eventually(t, ctx, 30*time.Second, "the stale endpoint reported three ways", func() (bool, string) {
		m := metrics(t)
		c := nodeCondition(ctx, t)
		ev := serviceEvents(ctx, t, "StaleEndpoint")
		ok := staleMetric.MatchString(m) && c != nil && c.Status == corev1.ConditionFalse && c.Reason == "StaleDataplane" && strings.Contains(c.Message, "default/agent:http") && ev != ""
		return ok, fmt.Sprintf("metric %v, condition %+v, event %q; agent log:\n%s", staleMetric.MatchString(m), c, ev, cluster.LogTail("svctrace-agent"))
	})
	t.Logf("reported %.1fs after the change", time.Since(changed).Seconds())
	if ev := serviceEvents(ctx, t, "StaleEndpoint"); !strings.Contains(ev, "10.244.1.91:8080") || !strings.Contains(ev, "svctrace.io/agent") || !strings.Contains(ev, "related=Node/node1") {
		t.Errorf("the Event does not name the stale endpoint, the controller and the node: %s", ev)
	}

	eventually(t, ctx, 90*time.Second, "the alert ServiceDataplaneStale firing in Prometheus", func() (bool, string) {
		a := alertState(t, "ServiceDataplaneStale")
		return a == "firing default/agent", a
	})

	// kube-proxy catches up: all three clear.
	if err := cluster.StartKubeProxy("iptables"); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, 30*time.Second, "the finding cleared three ways", func() (bool, string) {
		m := metrics(t)
		c := nodeCondition(ctx, t)
		ev := serviceEvents(ctx, t, "ClearedStaleEndpoint")
		return !strings.Contains(m, `kind="StaleEndpoint"`) && c != nil && c.Status == corev1.ConditionTrue && ev != "", fmt.Sprintf("condition %+v, event %q", c, ev)
	})
	eventually(t, ctx, 30*time.Second, "the alert resolved", func() (bool, string) {
		a := alertState(t, "ServiceDataplaneStale")
		return a == "", a
	})
	m := metrics(t)
	count := regexp.MustCompile(`(?m)^svctrace_programming_latency_seconds_count\{node="node1"\} (\d+)$`).FindStringSubmatch(m)
	if n, _ := strconv.Atoi(count[len(count)-1]); len(count) < 2 || n == 0 {
		t.Errorf("no programming latency observed:\n%s", grepLines(m, "svctrace_programming_latency"))
	}
	if !strings.Contains(m, `svctrace_checks_total{node="node1",result="success",scope="node"}`) {
		t.Errorf("no whole-node check counted:\n%s", grepLines(m, "svctrace_checks_total"))
	}
}

// prometheusAddr is where the test's Prometheus listens (root namespace, loopback).
const prometheusAddr = "127.0.0.1:19090"

// promQuery runs an instant query and returns the raw JSON result.
func promQuery(t *testing.T, q string) string {
	t.Helper()
	resp, err := http.Get("http://" + prometheusAddr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// alertState is "STATE NAMESPACE/SERVICE" of the named alert in Prometheus, "" when it is not
// pending or firing.
func alertState(t *testing.T, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + prometheusAddr + "/api/v1/alerts")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var doc struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return err.Error()
	}
	var out []string
	for _, a := range doc.Data.Alerts {
		if a.Labels["alertname"] == name {
			out = append(out, a.State+" "+a.Labels["namespace"]+"/"+a.Labels["service"])
		}
	}
	return strings.Join(out, "; ")
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, ctx context.Context, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("%s: not within %s: %s", what, d, state)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func httpOK(addr string) bool {
	resp, err := http.Get("http://" + addr)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

func metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + agentMetrics + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func nodeCondition(ctx context.Context, t *testing.T) *corev1.NodeCondition {
	t.Helper()
	n, err := cluster.Client.CoreV1().Nodes().Get(ctx, harness.NodeName, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == "ServiceDataplaneHealthy" {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// serviceEvents describes the events.k8s.io Events with this reason regarding Service
// default/agent ("" when none).
func serviceEvents(ctx context.Context, t *testing.T, reason string) string {
	t.Helper()
	list, err := cluster.Client.EventsV1().Events("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		return ""
	}
	var out []string
	for _, e := range list.Items {
		if e.Reason == reason && e.Regarding.Kind == "Service" && e.Regarding.Name == "agent" {
			rel := ""
			if e.Related != nil {
				rel = e.Related.Kind + "/" + e.Related.Name
			}
			out = append(out, fmt.Sprintf("%s %s %s related=%s: %s", e.Type, e.ReportingController, e.ReportingInstance, rel, e.Note))
		}
	}
	return strings.Join(out, "\n")
}
