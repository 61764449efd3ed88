// Package docs_test runs the examples of README.md and docs/*.md: every `$ kubectl svctrace …`
// line of a console block that reads offline input (the demo, a snapshot, dump files in the
// repository) is run from the repository root (or the directory a `$ cd` before it names), must
// not fail (exit 0 or 1), and must print every output line the block shows, except lines the
// block elides with "…".
package docs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svctrace/svctrace/test/tracetest"
)

// example is one command of a console block and the output shown under it.
type example struct {
	file, dir string
	line      int
	args      []string
	shown     []string
}

// examples reads the console blocks of a Markdown file.
func examples(t *testing.T, repo, file string) []example {
	data, err := os.ReadFile(filepath.Join(repo, file))
	if err != nil {
		t.Fatal(err)
	}
	var out []example
	in := false
	dir := repo
	var cur *example
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(l, "```") {
			in = !in && strings.HasPrefix(l, "```console")
			if cur != nil {
				out = append(out, *cur)
				cur = nil
			}
			dir = repo
			continue
		}
		if !in {
			continue
		}
		if cmd, ok := strings.CutPrefix(l, "$ "); ok {
			if cur != nil {
				out = append(out, *cur)
				cur = nil
			}
			for strings.HasSuffix(cmd, `\`) && i+1 < len(lines) {
				i++
				cmd = strings.TrimSuffix(cmd, `\`) + " " + strings.TrimSpace(lines[i])
			}
			if d, ok := strings.CutPrefix(cmd, "cd "); ok {
				dir = filepath.Join(repo, d)
				continue
			}
			if rest, ok := strings.CutPrefix(cmd, "kubectl svctrace "); ok {
				cur = &example{file: file, dir: dir, line: i + 1, args: strings.Fields(rest)}
			}
			continue
		}
		if cur != nil {
			cur.shown = append(cur.shown, l)
		}
	}
	return out
}

// runnable reports whether an example reads only offline input that exists here.
func runnable(e example) (bool, string) {
	offline := false
	for i, a := range e.args {
		switch a {
		case "--demo":
			offline = true
		case "--snapshot", "--dataplane", "--objects", "--conntrack", "--plan":
			if i+1 >= len(e.args) {
				return false, "flag without a value"
			}
			p := e.args[i+1]
			if !filepath.IsAbs(p) {
				p = filepath.Join(e.dir, p)
			}
			if _, err := os.Stat(p); err != nil {
				return false, fmt.Sprintf("%s %s is not in the repository (an illustration)", a, e.args[i+1])
			}
			if a != "--objects" && a != "--conntrack" && a != "--plan" {
				offline = true
			}
		}
	}
	if !offline {
		return false, "reads a live node or cluster"
	}
	return true, ""
}

func TestDocumentedExamplesRun(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin, err := tracetest.Binary(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"README.md"}
	docs, _ := filepath.Glob(filepath.Join(repo, "docs", "*.md"))
	for _, d := range docs {
		files = append(files, filepath.Join("docs", filepath.Base(d)))
	}
	ran := 0
	for _, f := range files {
		for _, e := range examples(t, repo, f) {
			name := fmt.Sprintf("%s:%d", e.file, e.line)
			ok, why := runnable(e)
			if !ok {
				t.Logf("%s: not run: %s", name, why)
				continue
			}
			ran++
			t.Run(name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, bin, e.args...)
				cmd.Dir = e.dir
				cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "KUBECONFIG=/nonexistent", "HOME=" + t.TempDir(), "NO_COLOR=1"}
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				err := cmd.Run()
				var ee *exec.ExitError
				if err != nil && (!errors.As(err, &ee) || ee.ExitCode() > 1) {
					t.Fatalf("kubectl svctrace %s: %v\n%s", strings.Join(e.args, " "), err, stderr.String())
				}
				got := map[string]bool{}
				for _, l := range strings.Split(stdout.String(), "\n") {
					got[strings.TrimRight(l, " ")] = true
				}
				for _, l := range e.shown {
					l = strings.TrimRight(l, " ")
					if l == "" || strings.Contains(l, "…") {
						continue
					}
					if !got[l] {
						t.Errorf("the example shows a line the command does not print:\n  %s\nit printed:\n%s", l, stdout.String())
					}
				}
			})
		}
	}
	if ran < 5 {
		t.Fatalf("only %d documented examples could be run; the parser lost them", ran)
	}
	t.Logf("%d documented examples run", ran)
}
