// Package tty_test drives the binary in a real terminal (tmux) at 80 and 200 columns: human output
// there is cut to the terminal's width, with no trailing spaces; -o wide keeps lines whole.
package tty_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/svctrace/svctrace/test/recorded"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
)

// inTmux runs argv in a detached tmux session of the given width and returns the pane's lines,
// wrapped lines joined back (so a line longer than the terminal shows whole), trailing spaces kept.
func inTmux(t *testing.T, width int, argv ...string) []string {
	t.Helper()
	done := filepath.Join(t.TempDir(), "done")
	// A tmux server of its own per run (-L): a shared one exits when its last session ends,
	// and a session started meanwhile, by this test or anyone, fails with it.
	session := fmt.Sprintf("svctrace-tty-%d-%d", os.Getpid(), time.Now().UnixNano())
	tmux := func(args ...string) *exec.Cmd {
		return exec.Command("tmux", append([]string{"-L", session}, args...)...)
	}
	// stdout only: messages on stderr are one sentence each, as kubectl prints them.
	script := fmt.Sprintf("%s 2>/dev/null; touch %s; sleep 60", strings.Join(quote(argv), " "), done)
	cmd := tmux("new-session", "-d", "-s", session, "-x", fmt.Sprint(width), "-y", "300", "sh", "-c", script)
	cmd.Env = append(os.Environ(), "TERM=xterm-256color", "NO_COLOR=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v %s", err, out)
	}
	defer func() { _ = tmux("kill-server").Run() }()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(done); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the command did not end in 30s")
		}
	}
	out, err := tmux("capture-pane", "-p", "-J", "-N", "-t", session, "-S", "-").Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	return lines
}

func quote(argv []string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return out
}

func TestHumanOutputFitsTheTerminal(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed (make deps installs it)")
	}
	bin, err := tracetest.Binary(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// The recorded node against objects that moved on: check's findings and repair's plan have
	// lines far longer than 200 columns.
	data, err := trace.EncodeObjects(tracetest.StaleDemo(t, filepath.Join(recorded.Root(), "dataplane/snapshot/demo")))
	if err != nil {
		t.Fatal(err)
	}
	objects := filepath.Join(t.TempDir(), "objects.json")
	if err := os.WriteFile(objects, data, 0o644); err != nil {
		t.Fatal(err)
	}
	dump := filepath.Join(recorded.Root(), "dataplane/snapshot/demo/iptables-save.txt")
	commands := [][]string{
		{bin, "check", "-A", "--dataplane", dump, "--objects", objects, "--node", "node1"},
		{bin, "repair", "-A", "--dataplane", dump, "--objects", objects, "--node", "node1"},
		{bin, "trace", "--demo", "default/web-lb", "--from", "198.51.100.11"},
		{bin, "trace", "--demo", "default/sticky"},
		{bin, "check", "--demo", "-A"},
		{bin, "balance", "--demo", "default/hostnames", "--conntrack", filepath.Join(recorded.Root(), "dataplane/conntrack/testdata/extended.txt")},
	}
	for _, width := range []int{80, 200} {
		longest := 0
		for _, argv := range commands {
			for _, l := range inTmux(t, width, argv...) {
				// -N keeps the spaces a program wrote, and pads nothing: a line that ends in a
				// space is the program's.
				if strings.HasSuffix(l, " ") {
					t.Errorf("%d columns, %v: trailing space in %q", width, argv[1:], l)
				}
				if n := utf8.RuneCountInString(l); n > width {
					t.Errorf("%d columns, %v: a line of %d columns: %q", width, argv[1:], n, l)
				} else if n > longest {
					longest = n
				}
			}
		}
		if longest < width-10 {
			t.Errorf("%d columns: the longest line has %d: nothing was long enough to test the cut", width, longest)
		}
	}
	// -o wide keeps lines whole: the web-lb trace has lines longer than 80 columns.
	long := 0
	for _, l := range inTmux(t, 80, bin, "trace", "--demo", "default/web-lb", "--from", "198.51.100.11", "-o", "wide") {
		long = max(long, utf8.RuneCountInString(l))
	}
	if long <= 80 {
		t.Errorf("-o wide at 80 columns: the longest line has %d columns, want the whole line", long)
	}
}
