package docs_test

import (
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/svctrace/svctrace/"

// TestLayoutIsDocumented: every package `go list` knows (with the e2e tag too) has its row in
// docs/architecture.md's layout table, and the table names no package that is gone.
func TestLayoutIsDocumented(t *testing.T) {
	repo, _ := filepath.Abs("../..")
	list := exec.Command("go", "list", "-tags", "e2e", "./...")
	list.Dir = repo
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	doc, err := os.ReadFile(filepath.Join(repo, "docs/architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	layout := string(doc[strings.Index(string(doc), "## Layout"):])
	listed := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		p = strings.TrimPrefix(p, module)
		listed[p] = true
		if !strings.Contains(layout, "`"+p+"`") {
			t.Errorf("package %s has no row in docs/architecture.md's layout", p)
		}
	}
	for _, line := range strings.Split(layout, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first := strings.SplitN(line, "|", 3)[1]
		for _, f := range strings.Split(first, ",") {
			if p := strings.Trim(strings.TrimSpace(f), "`"); p != "" && !listed[p] {
				t.Errorf("docs/architecture.md's layout names %s, which is not a package", p)
			}
		}
	}
}

// TestNoImportAliases: project packages are imported under their own names everywhere (their
// names were chosen so that none clash).
func TestNoImportAliases(t *testing.T) {
	repo, _ := filepath.Abs("../..")
	out, err := exec.Command("git", "-C", repo, "ls-files", "*.go").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	files := strings.Fields(string(out))
	if len(files) < 50 {
		t.Fatalf("only %d Go files found", len(files))
	}
	for _, f := range files {
		parsed, err := parser.ParseFile(token.NewFileSet(), filepath.Join(repo, f), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range parsed.Imports {
			if im.Name != nil && strings.HasPrefix(strings.Trim(im.Path.Value, `"`), module) {
				t.Errorf("%s imports %s as %s", f, im.Path.Value, im.Name.Name)
			}
		}
	}
}
