package xtables

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/trace/iptables"
)

// chunkyReader returns what it holds in reads of random small sizes, as a pipe does.
type chunkyReader struct {
	data []byte
	rnd  *rand.Rand
}

func (c *chunkyReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.data), 1+c.rnd.Intn(300))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// describe renders a ruleset for comparison: every chain's rules with their lines and counters.
func describe(rs *iptables.Ruleset) string {
	var b strings.Builder
	fmt.Fprintf(&b, "v6=%v variant=%s counters=%v rules=%d\n", rs.IPv6, rs.Variant, rs.Counters, rs.RuleCount())
	for _, name := range []string{"raw", "mangle", "nat", "filter"} {
		t := rs.Tables[name]
		if t == nil {
			continue
		}
		for _, c := range t.Order {
			fmt.Fprintf(&b, "%s %s %s %d\n", name, c.Name, c.Policy, c.Line)
			for _, r := range c.Rules {
				fmt.Fprintf(&b, "  %d %v %q -> %v\n", r.Line, r.Counters, r.Text, r.JumpChain != nil)
			}
		}
	}
	return b.String()
}

// TestParseReaderSameAsParse: the streamed parse of the recorded dumps, read in random small
// pieces into chunks far smaller than a line (so lines cross chunks and chunks grow), is the
// parse of the whole dump, and the dump it keeps is the input byte for byte.
func TestParseReaderSameAsParse(t *testing.T) {
	for _, f := range []string{"../snapshot/demo/iptables-save.txt", "../snapshot/demo-ipvs/iptables-save.txt", "../../trace/kubeproxy/testdata/kube-proxy-v1.30.14/iptables-save.txt"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want, err := Parse(bytes.Clone(data))
		if err != nil {
			t.Fatal(err)
		}
		// With memory made ready for fewer rules than come, about as many, and far more.
		for i, size := range []int{64, 4096, 1 << 20, 64, 4096, 1 << 20} {
			rules := []int{0, 0, 0, 7, want.RuleCount(), 50000}[i]
			rs, d, err := parseReader(&chunkyReader{data: data, rnd: rand.New(rand.NewSource(int64(size)))}, 1<<30, size, rules)
			if err != nil {
				t.Fatalf("%s, chunks of %d: %v", filepath.Base(filepath.Dir(f)), size, err)
			}
			if got, exp := describe(rs), describe(want); got != exp {
				t.Errorf("%s, chunks of %d, %d rules ready: the streamed parse differs", f, size, rules)
			}
			if !bytes.Equal(d.Bytes(), data) || d.Len() != len(data) {
				t.Errorf("%s, chunks of %d, %d rules ready: the dump kept is not the input", f, size, rules)
			}
		}
	}
	// Errors name the same line; a dump over the limit is refused.
	bad := []byte("*nat\n:PREROUTING ACCEPT [0:0]\n-A NOCHAIN -j ACCEPT\nCOMMIT\n")
	if _, _, err := parseReader(&chunkyReader{data: bad, rnd: rand.New(rand.NewSource(1))}, 1<<30, 16, 0); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("a bad line: %v", err)
	}
	if _, _, err := parseReader(bytes.NewReader(bad), 10, 16, 0); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("over the limit: %v", err)
	}
}

// FuzzParseReaderSameAsParse: the streamed parse, whose rules' arguments are parsed on workers,
// gives what the sequential parse of the whole input gives: the same ruleset, or an error on
// the same line with the same message (the first a sequential parse meets).
func FuzzParseReaderSameAsParse(f *testing.F) {
	for _, name := range []string{"../snapshot/demo/iptables-save.txt", "../snapshot/demo-ipvs/iptables-save.txt"} {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("*nat\n:A - [0:0]\n-A A -s 300.1.1.1 -j RETURN\n-A B -j RETURN\nCOMMIT\n"))
	f.Add([]byte("*nat\n:A - [0:0]\n-A B -j RETURN\n-A A --bogus -j RETURN\nCOMMIT\n"))
	f.Add([]byte("*nat\n:A - [0:0]\n-A \"A\" -j RETURN\n-A  A -j RETURN\n-A A -m comment --comment \"x -j RETURN\nCOMMIT\n"))
	f.Add([]byte("*nat\n:A - [0:0]\n" + strings.Repeat("-A A -s 10.0.0.1 -j RETURN\n", 5000) + "-A A -d fd00::1 -j RETURN\n-A A -p tcp --dport x -j RETURN\nCOMMIT\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		want, werr := Parse(bytes.Clone(data))
		got, _, gerr := parseReader(bytes.NewReader(data), 1<<30, 64, 0)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("sequential: %v; streamed: %v", werr, gerr)
		}
		if werr != nil {
			if werr.Error() != gerr.Error() {
				t.Fatalf("sequential: %v; streamed: %v", werr, gerr)
			}
			return
		}
		if describe(got) != describe(want) || got.IPv6 != want.IPv6 {
			t.Fatal("the streamed parse differs")
		}
	})
}
