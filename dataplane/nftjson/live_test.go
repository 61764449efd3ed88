package nftjson

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/test/netnstest"
)

// TestNamesKubeProxyTable: kube-proxy's table is found in either listing, ip or ip6, and never
// taken for another family's or a look-alike name.
func TestNamesKubeProxyTable(t *testing.T) {
	for out, want := range map[string]bool{
		"table ip kube-proxy {\n}\ntable ip6 filter {\n}\n":                                                       true,
		"table inet f {\n\tflowtable ft {\n\t\thook ingress priority filter\n\t}\n}\ntable ip6 kube-proxy {\n}\n": true,
		"table ip filter\ntable ip kube-proxy\n":                                                                  true,
		"table ip filter {\n}\ntable ip nat {\n}\n":                                                               false,
		"table ip kube-proxy-old {\n}\n":                                                                          false,
		"table inet kube-proxy\n":                                                                                 false,
		"":                                                                                                        false,
	} {
		if got := namesKubeProxyTable([]byte(out)); got != want {
			t.Errorf("%q: %v, want %v", out, got, want)
		}
	}
}

// inNetns runs commands in this test's network namespace (the test binary runs in it), logging
// them.
type inNetns struct {
	mu   sync.Mutex
	argv []string
}

func (n *inNetns) Run(ctx context.Context, argv ...string) ([]byte, error) {
	n.mu.Lock()
	n.argv = append(n.argv, strings.Join(argv, " "))
	n.mu.Unlock()
	return noderun.Local{}.Run(ctx, argv...)
}

// TestHasKubeProxyTableAsksTheCheapListing: with the real nft in a network namespace, the
// absence of kube-proxy's table (no table at all, another table) and a kube-proxy table holding a
// map of 20,000 elements are each told by one `nft list flowtables`.
func TestHasKubeProxyTableAsksTheCheapListing(t *testing.T) {
	if !netnstest.Inside(t) {
		return
	}
	ask := func(want bool, execs ...string) {
		t.Helper()
		r := &inNetns{}
		if got := HasKubeProxyTable(context.Background(), r); got != want || !slices.Equal(r.argv, execs) {
			t.Errorf("found %v after %q, want %v after %q", got, r.argv, want, execs)
		}
	}
	ask(false, "nft list flowtables")
	var rules strings.Builder
	rules.WriteString("table ip filter {\n}\n")
	load := func(text string) {
		t.Helper()
		cmd := exec.Command("nft", "-f", "-")
		cmd.Stdin = strings.NewReader(text)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft -f: %v: %s", err, out)
		}
	}
	load(rules.String())
	ask(false, "nft list flowtables")
	rules.Reset()
	rules.WriteString("table ip kube-proxy {\n\tchain svc { }\n\tmap service-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t\telements = { ")
	for i := range 20000 {
		if i > 0 {
			rules.WriteString(", ")
		}
		fmt.Fprintf(&rules, "10.96.%d.%d . tcp . 80 : goto svc", i/256, i%256)
	}
	rules.WriteString(" }\n\t}\n}\n")
	load(rules.String())
	ask(true, "nft list flowtables")
}

// oldNft is an nft that knows no flowtables.
type oldNft struct{ argv []string }

func (o *oldNft) Run(_ context.Context, argv ...string) ([]byte, error) {
	o.argv = append(o.argv, strings.Join(argv, " "))
	if argv[2] == "tables" {
		return []byte("table ip kube-proxy\n"), nil
	}
	return nil, &noderun.Error{Argv: argv, ExitStatus: 1, Stderr: "syntax error"}
}

// TestHasKubeProxyTableWithoutFlowtables: an nft that fails `nft list flowtables` is asked
// `nft list tables`.
func TestHasKubeProxyTableWithoutFlowtables(t *testing.T) {
	o := &oldNft{}
	if !HasKubeProxyTable(context.Background(), o) || !slices.Equal(o.argv, []string{"nft list flowtables", "nft list tables"}) {
		t.Errorf("asked %q", o.argv)
	}
}
