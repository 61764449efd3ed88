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
		for _, size := range []int{64, 4096, 1 << 20} {
			rs, d, err := parseReader(&chunkyReader{data: data, rnd: rand.New(rand.NewSource(int64(size)))}, 1<<30, size)
			if err != nil {
				t.Fatalf("%s, chunks of %d: %v", filepath.Base(filepath.Dir(f)), size, err)
			}
			if got, exp := describe(rs), describe(want); got != exp {
				t.Errorf("%s, chunks of %d: the streamed parse differs", f, size)
			}
			if !bytes.Equal(d.Bytes(), data) || d.Len() != len(data) {
				t.Errorf("%s, chunks of %d: the dump kept is not the input", f, size)
			}
		}
	}
	// Errors name the same line; a dump over the limit is refused.
	bad := []byte("*nat\n:PREROUTING ACCEPT [0:0]\n-A NOCHAIN -j ACCEPT\nCOMMIT\n")
	if _, _, err := parseReader(&chunkyReader{data: bad, rnd: rand.New(rand.NewSource(1))}, 1<<30, 16); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("a bad line: %v", err)
	}
	if _, _, err := parseReader(bytes.NewReader(bad), 10, 16); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("over the limit: %v", err)
	}
}
