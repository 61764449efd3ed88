package plugin

import (
	"io"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"
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

// TestDemoModes: --demo takes the mode of the recorded node to use; --demo alone is iptables.
func TestDemoModes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"trace", "--demo", "default/hostnames"}, "node node1, iptables mode"},
		{[]string{"trace", "--demo=nftables", "default/hostnames"}, "node node1, nftables mode"},
		{[]string{"check", "-A", "--demo=ipvs"}, "node vm1 (ipvs mode)"},
		{[]string{"repair", "-A", "--demo=nftables"}, "nothing to repair"},
		{[]string{"balance", "--demo=nftables", "default/hostnames"}, "ConnectionStickiness: 3 of 61 connections"},
	} {
		out, stderr, code := run(t, tc.args...)
		if code > 1 || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d, want %q:\n%s%s", tc.args, code, tc.want, out, stderr)
		}
	}
	if _, stderr, code := run(t, "trace", "--demo=xdp", "default/hostnames"); code != ExitUsage || !strings.Contains(stderr, "the demos are iptables, nftables and ipvs") {
		t.Errorf("--demo=xdp: exit %d %s", code, stderr)
	}
}

// TestHelpExamplesRun: every example in a command's --help that reads offline input (--demo)
// runs as written and succeeds (exit 0, or 1 for findings).
func TestHelpExamplesRun(t *testing.T) {
	root := NewRootCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard})
	ran := 0
	for _, c := range root.Commands() {
		for _, line := range strings.Split(c.Example, "\n") {
			line = strings.TrimSpace(line)
			args, ok := strings.CutPrefix(line, "kubectl svctrace ")
			if !ok || !strings.Contains(args, "--demo") {
				continue
			}
			if strings.Contains(args, "--graph ") {
				args = strings.Replace(args, "--graph path.svg", "--graph "+filepath.Join(t.TempDir(), "path.svg"), 1)
			}
			_, stderr, code := run(t, strings.Fields(args)...)
			if code > 1 {
				t.Errorf("%s --help example %q: exit %d %s", c.Name(), line, code, stderr)
			}
			ran++
		}
	}
	if ran < 5 {
		t.Errorf("only %d --help examples with --demo ran", ran)
	}
}
