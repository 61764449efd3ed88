package plugin

import (
	"strings"
	"testing"
)

// TestCompletion: flag values complete from their fixed sets, Services, nodes, pods and namespaces
// from --demo's objects (the command reads them), never from file names.
func TestCompletion(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		want, not []string
		directive string
	}{
		{[]string{"trace", "--demo", ""}, []string{"default/hostnames\n", "default/web-lb\n"}, nil, ":4"},
		{[]string{"trace", "--demo", "--node", ""}, []string{"node1\n", "node2\n"}, nil, ":4"},
		{[]string{"trace", "--demo", "--from", "pod/default/web"}, []string{"pod/default/web-1\n", "pod/default/web-2\n"}, []string{"pod/default/hostnames-a"}, ":4"},
		{[]string{"trace", "--demo", "--from", ""}, []string{"pod\n", "node\n", "external\n", "pod/\n"}, nil, ":6"},
		{[]string{"trace", "-o", ""}, []string{"tree\n", "mermaid\n", "jsonpath=\n"}, []string{"junit"}, ":6"},
		{[]string{"check", "-o", "j"}, []string{"json\n", "junit\n", "jsonpath=\n"}, []string{"tree"}, ":6"},
		{[]string{"check", "--fail-on", ""}, []string{"error\n", "warning\n", "info\n", "none\n"}, nil, ":4"},
		{[]string{"trace", "--protocol", "u"}, []string{"udp\n"}, []string{"tcp"}, ":4"},
		{[]string{"check", "--mode", ""}, []string{"iptables\n", "nftables\n", "ipvs\n"}, nil, ":4"},
		{[]string{"check", "--demo", "-n", ""}, []string{"default\n"}, nil, ":4"},
		{[]string{"trace", "--demo", "-n", "default", "h"}, []string{"hostnames\n"}, []string{"default/hostnames"}, ":4"},
	} {
		out, stderr, code := run(t, append([]string{"__complete"}, tc.args...)...)
		if code != 0 || !strings.Contains(out, tc.directive+"\n") {
			t.Errorf("%v: exit %d, directive not %s:\n%s%s", tc.args, code, tc.directive, out, stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: lacks %q:\n%s", tc.args, w, out)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(out, n) {
				t.Errorf("%v: offers %q:\n%s", tc.args, n, out)
			}
		}
	}
}
