package plugin

import (
	"os"
	"reflect"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// roles reads the Roles and ClusterRoles of a multi-document YAML by name.
func roles(t *testing.T, data string) map[string][]rbacv1.PolicyRule {
	t.Helper()
	out := map[string][]rbacv1.PolicyRule{}
	for _, doc := range strings.Split(data, "\n---\n") {
		var r struct {
			Kind     string
			Metadata struct{ Name, Namespace string }
			Rules    []rbacv1.PolicyRule
		}
		if err := yaml.Unmarshal([]byte(doc), &r); err != nil {
			t.Fatalf("%v in\n%s", err, doc)
		}
		if r.Kind == "Role" || r.Kind == "ClusterRole" {
			out[r.Kind+"/"+r.Metadata.Name] = r.Rules
		}
	}
	return out
}

// TestRBACPrintsTheShippedRoles: `rbac` prints exactly the roles of krew/rbac (the same rules),
// bound to the one subject named; a wrong subject is refused.
func TestRBACPrintsTheShippedRoles(t *testing.T) {
	out, stderr, code := run(t, "rbac", "--group", "sre", "--exec", "--debug-pod", "--debug-namespace", "svctrace-debug")
	if code != 0 {
		t.Fatalf("exit %d %s", code, stderr)
	}
	printed := roles(t, out)
	shipped := map[string][]rbacv1.PolicyRule{}
	for _, f := range []string{"svctrace-reader.yaml", "svctrace-node-reader.yaml", "svctrace-node-reader-agent.yaml", "svctrace-debug-pod.yaml"} {
		data, err := os.ReadFile("../krew/rbac/" + f)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range roles(t, string(data)) {
			shipped[k] = v
		}
	}
	if !reflect.DeepEqual(printed, shipped) {
		t.Errorf("printed roles differ from krew/rbac:\nprinted %+v\nshipped %+v", printed, shipped)
	}
	for _, want := range []string{"kind: ClusterRoleBinding", "name: svctrace-reader-group-sre", "kind: Group\n  name: sre", "namespace: svctrace-debug",
		"name: svctrace-node-reader\n  namespace: svctrace-system", "name: svctrace-node-reader-group-sre\n  namespace: svctrace-system"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "svctrace-node-reader-group-sre\n  namespace: svctrace-debug") {
		t.Errorf("the exec role went to the debug namespace")
	}
	for _, args := range [][]string{{"rbac"}, {"rbac", "--user", "a", "--group", "b"}, {"rbac", "--serviceaccount", "nocolon"}, {"rbac", "--user", "a", "--kube-proxy-namespace", "Bad_NS"}} {
		if _, _, code := run(t, args...); code != ExitUsage {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
