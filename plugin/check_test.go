package plugin

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const demoDir = "../dataplane/snapshot/demo/"

func TestCheckDemoIsClean(t *testing.T) {
	out, stderr, code := run(t, "check", "--demo", "-A")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "NoEndpoints") || !strings.Contains(out, "0 error(s), 0 warning(s)") {
		t.Errorf("output:\n%s", out)
	}
	if _, _, code := run(t, "check", "--demo", "-A", "--fail-on", "info"); code != ExitFindings {
		t.Errorf("--fail-on info: exit %d, want 1", code)
	}
}

// withoutService writes the demo's objects minus one Service, as if it had been deleted.
func withoutService(t *testing.T, name string) string {
	data, err := os.ReadFile(demoDir + "objects.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var list map[string]any
	if err := yaml.Unmarshal(data, &list); err != nil {
		t.Fatal(err)
	}
	var kept []any
	for _, it := range list["items"].([]any) {
		m := it.(map[string]any)
		meta := m["metadata"].(map[string]any)
		if m["kind"] == "Service" && meta["name"] == name {
			continue
		}
		kept = append(kept, it)
	}
	list["items"] = kept
	out, err := yaml.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "objects.yaml")
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckReportsADeletedServiceAndExitsOne(t *testing.T) {
	objs := withoutService(t, "multi")
	out, _, code := run(t, "check", "-A", "--dataplane", demoDir+"iptables-save.txt", "--objects", objs, "--node", "node1", "-o", "json")
	if code != ExitFindings {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	var doc struct {
		APIVersion, Kind string
		Findings         []struct{ Kind, Severity, Service, Node, Message string }
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	var stale []string
	for _, f := range doc.Findings {
		if f.Severity == "error" {
			stale = append(stale, f.Kind+" "+f.Service)
		}
	}
	if doc.Kind != "Check" || strings.Join(stale, ",") != "StaleService default/multi:http,StaleService default/multi:metrics" {
		t.Errorf("kind %s, errors %v", doc.Kind, stale)
	}

	out, _, code = run(t, "check", "-A", "--dataplane", demoDir+"iptables-save.txt", "--objects", objs, "--node", "node1", "-o", "junit")
	var suites struct {
		Suites []struct {
			Failures int `xml:"failures,attr"`
			Cases    []struct {
				Name     string `xml:"name,attr"`
				Failures []struct {
					Type string `xml:"type,attr"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal([]byte(out), &suites); err != nil || code != ExitFindings {
		t.Fatalf("junit: exit %d, %v:\n%s", code, err, out)
	}
	if len(suites.Suites) != 1 || suites.Suites[0].Failures != 2 || suites.Suites[0].Cases[0].Failures[0].Type != "StaleService" {
		t.Errorf("junit %+v", suites)
	}
}

func TestCheckUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"check", "--demo", "default/nope"}, "service default/nope not found"},
		{[]string{"check", "--dataplane", demoDir + "iptables-save.txt", "-A"}, "check compares the dataplane with the API"},
		{[]string{"check", "--demo", "-A", "default/hostnames"}, "a SERVICE and -A do not go together"},
		{[]string{"check", "--demo", "-o", "xml"}, "unknown format"},
	} {
		_, stderr, code := run(t, tc.args...)
		if code != ExitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}
