package plugin

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestTracePictures: -o mermaid and -o dot draw the path of the recorded node's web-local
// Service (two backends, 50% each): every hop a box, the split on the arrows, each backend with
// its pod; Graphviz accepts the DOT, and --graph writes the SVG it renders.
func TestTracePictures(t *testing.T) {
	out, stderr, code := run(t, "trace", "--demo", "default/web-local", "-o", "mermaid")
	if code != 0 {
		t.Fatalf("-o mermaid: exit %d %s", code, stderr)
	}
	for _, want := range []string{"flowchart LR\n", `-- "50.0%" -->`, `DNAT → 10.244.1.21:8080<br/>pod default/web-1 (node1)`, `DNAT → 10.244.2.21:8080<br/>pod default/web-2 (node2)`, ":::dnat"} {
		if !strings.Contains(out, want) {
			t.Errorf("mermaid lacks %q:\n%s", want, out)
		}
	}
	// Inside a node's quoted label nothing may close the quote.
	for _, l := range regexp.MustCompile(`\["(.*)"\]`).FindAllStringSubmatch(out, -1) {
		if strings.Contains(l[1], `"`) {
			t.Errorf("unescaped quote in %q", l[1])
		}
	}
	dot, _, code := run(t, "trace", "--demo", "default/empty", "--from", "node", "-o", "dot")
	if code != 0 || !strings.HasPrefix(dot, "digraph trace {") || !strings.Contains(dot, "REJECT") {
		t.Fatalf("-o dot: exit %d\n%s", code, dot)
	}
	if _, err := exec.LookPath("dot"); err != nil {
		t.Skip("Graphviz's dot is not installed (make deps installs it)")
	}
	cmd := exec.Command("dot", "-Tsvg")
	cmd.Stdin = strings.NewReader(dot)
	if svg, err := cmd.Output(); err != nil || !strings.Contains(string(svg), "REJECT") {
		t.Errorf("dot does not render the DOT: %v\n%s", err, dot)
	}
	path := filepath.Join(t.TempDir(), "path.svg")
	if _, stderr, code := run(t, "trace", "--demo", "default/web-local", "--graph", path); code != 0 || !strings.Contains(stderr, "wrote the picture of the path to "+path) {
		t.Fatalf("--graph: exit %d %s", code, stderr)
	}
	svg, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(svg), "<svg") || !strings.Contains(string(svg), "10.244.2.21:8080") {
		t.Errorf("--graph wrote %d bytes (%v)", len(svg), err)
	}
	for _, tc := range []struct{ args []string }{
		{[]string{"trace", "--demo", "default/web-local", "--graph", filepath.Join(t.TempDir(), "path.txt")}},
		{[]string{"balance", "--demo", "default/hostnames", "-o", "mermaid"}},
	} {
		if _, _, code := run(t, tc.args...); code != ExitUsage {
			t.Errorf("%v: exit %d, want %d", tc.args, code, ExitUsage)
		}
	}
}
