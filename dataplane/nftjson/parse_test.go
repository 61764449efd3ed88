package nftjson

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/kubeproxy"
	"github.com/svctrace/svctrace/trace/nftables"
)

const fixture = "../snapshot/demo-nftables/nft.json"

func TestParseRecordedRuleset(t *testing.T) {
	_, rs := recorded(t)
	if len(rs.Tables) != 2 || rs.Tables[0].Name != "kube-proxy" {
		t.Fatalf("tables %+v", rs.Tables)
	}
	var ip4 = rs.Tables[0]
	for _, tb := range rs.Tables {
		if tb.Family == "ip" {
			ip4 = tb
		}
	}
	pre := ip4.Chains["nat-prerouting"]
	if pre == nil || pre.Hook != "prerouting" || pre.Prio != -100 || pre.Type != "nat" || len(pre.Rules) != 1 {
		t.Fatalf("nat-prerouting %+v", pre)
	}
	if got := pre.Rules[0].Text; got != "jump services" {
		t.Errorf("rule text %q", got)
	}
	m := ip4.Sets["no-endpoint-services"]
	if m == nil || m.Map != "verdict" || len(m.Elems) != 3 || m.Elems[0].Comment == "" {
		t.Fatalf("no-endpoint-services %+v", m)
	}
	aff := 0
	for name, s := range ip4.Sets {
		if strings.HasPrefix(name, "affinity-") {
			aff++
			if s.Timeout != 10800 {
				t.Errorf("%s timeout %d", name, s.Timeout)
			}
		}
	}
	if aff != 3 {
		t.Errorf("%d affinity sets, want 3", aff)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"not JSON", "table ip x {}", "nft JSON"},
		{"not a ruleset", `{"foo": []}`, "no \"nftables\" array"},
		{"jump to a missing chain", `{"nftables":[{"table":{"family":"ip","name":"t"}},{"chain":{"family":"ip","table":"t","name":"a"}},{"rule":{"family":"ip","table":"t","chain":"a","handle":3,"expr":[{"jump":{"target":"nope"}}]}}]}`, "jumps to chain nope"},
		{"wrong type", `{"nftables":[{"chain":{"family":"ip","table":"t","name":5}}]}`, "object 1 (chain)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestParseTopLevel: the document's top level is scanned, not decoded, yet it is read as
// encoding/json reads it (the key in any case, the last one winning; other keys ignored) and
// nothing that is not JSON gets through, wherever it is.
func TestParseTopLevel(t *testing.T) {
	const table = `{"table":{"family":"ip","name":"t"}}`
	for _, tc := range []struct{ name, in, want string }{
		{"other keys around it", `{"a":{"b":[1,2,{"c":"]}"}]},"nftables":[` + table + `],"z":null}`, "t"},
		{"the key in another case", `{"NFTABLES":[` + table + `]}`, "t"},
		{"the last one wins", `{"nftables":[{"table":{"family":"ip","name":"first"}}],"nftables":[` + table + `]}`, "t"},
		{"null objects", `{"nftables":[null,` + table + `,null]}`, "t"},
		{"an empty ruleset", `{"nftables":[]}`, ""},
		{"null", `{"nftables":null}`, `no "nftables" array`},
		{"not an array", `{"nftables":{"table":{}}}`, `nft JSON`},
		{"an object that is not one", `{"nftables":[` + table + `,5]}`, "nft JSON object 2"},
		{"broken inside an object", `{"nftables":[` + table + `,{"table":{"name":tru}}]}`, "nft JSON object 2"},
		{"broken in another key", `{"x":[1,,2],"nftables":[` + table + `]}`, "nft JSON, byte"},
		{"broken in an earlier nftables", `{"nftables":[{"table":x}],"nftables":[` + table + `]}`, "nft JSON, byte"},
		{"a control character in a key", "{\"nf\ttables\":[],\"nftables\":[" + table + "]}", "nft JSON, byte"},
		{"something after it", `{"nftables":[` + table + `]} {}`, "nft JSON"},
		{"cut short", `{"nftables":[` + table, "nft JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Parse([]byte(tc.in))
			var got string
			if err != nil {
				got = err.Error()
			} else {
				var names []string
				for _, tb := range rs.Tables {
					names = append(names, tb.Name)
				}
				got = strings.Join(names, ",")
			}
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("read as %q, want %q", got, tc.want)
			}
			if err == nil && !json.Valid([]byte(tc.in)) {
				t.Error("accepted what is not JSON")
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile(fixture); err == nil {
		f.Add(data)
	}
	f.Add([]byte(`{"nftables":[{"set":{"family":"ip","table":"t","name":"s","map":"verdict","elem":[[1,{"goto":{"target":"x"}}],{"elem":{"val":2}}]}}]}`))
	f.Add([]byte(`{"x":{"a":[1,"\u00e9"]},"NFTables":null,"nftables":[null,{"table":{"family":"ip","name":"t"}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Parse(data)
		if err != nil {
			return
		}
		// The top level is only scanned: what is accepted must still be JSON.
		if !json.Valid(data) {
			t.Fatalf("accepted a document that is not JSON: %q", data)
		}
		for _, tb := range rs.Tables {
			for name, c := range tb.Chains {
				if c.Name != name || c.Table != tb {
					t.Fatalf("chain %s indexed wrongly", name)
				}
			}
		}
		// Whatever the ruleset says, walking a packet through it must not panic, and what the
		// walk says must add up; reading it as repair does (every rule and element in nft's
		// syntax, kube-proxy's objects, its layout) must not panic either.
		tracetest.WalkInvariants(t, &nftables.Dataplane{Rules: rs})
		for _, tb := range rs.Tables {
			for _, c := range tb.Chains {
				for _, r := range c.Rules {
					nftables.CanonRule(r)
				}
			}
			for _, set := range tb.Sets {
				nftables.SortedElems(set)
			}
			kubeproxy.NodeNftObjects(tb)
			_, _ = kubeproxy.DetectNftLayout(tb, &trace.NodeContext{})
		}
	})
}

// bigDocument is nft JSON of n chains in kube-proxy's table, each with a rule that jumps to the
// next and a map naming it; the objects broken (by index) are replaced by a rule whose chain is
// a number.
func bigDocument(n int, broken ...int) []byte {
	objs := []string{`{"metainfo": {"version": "1.0.6"}}`, `{"table": {"family": "ip", "name": "kube-proxy"}}`}
	var elems []string
	for i := range n {
		objs = append(objs, fmt.Sprintf(`{"chain": {"family": "ip", "table": "kube-proxy", "name": "c%d"}}`, i))
		elems = append(elems, fmt.Sprintf(`["10.96.%d.%d", {"goto": {"target": "c%d"}}]`, i/256, i%256, i))
	}
	for i := range n {
		objs = append(objs, fmt.Sprintf(`{"rule": {"family": "ip", "table": "kube-proxy", "chain": "c%d", "handle": %d, "comment": "r%d", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.96.%d.%d"}}, {"jump": {"target": "c%d"}}]}}`, i, i+1, i, i/256, i%256, (i+1)%n))
	}
	objs = append(objs, `{"map": {"family": "ip", "table": "kube-proxy", "name": "m", "type": "ipv4_addr", "map": "verdict", "elem": [`+strings.Join(elems, ",")+`]}}`)
	for _, b := range broken {
		objs[b] = `{"rule": {"family": "ip", "table": "kube-proxy", "chain": 7}}`
	}
	return []byte(`{"nftables": [` + strings.Join(objs, ",") + `]}`)
}

// TestParseNftConcurrent: a document big enough to be decoded on all cores parses to what one
// core makes of it (every chain, rule text and map element), and a broken document names its
// first broken object, whichever core met it.
func TestParseNftConcurrent(t *testing.T) {
	data := bigDocument(3000)
	describe := func(rs *nftables.Ruleset) string {
		var b strings.Builder
		for _, tb := range rs.Tables {
			for _, name := range chainNames(tb) {
				for _, r := range tb.Chains[name].Rules {
					fmt.Fprintf(&b, "%s %s %d %s\n", tb.Name, name, r.Handle, r.Text)
				}
			}
			fmt.Fprintf(&b, "map %d %v\n", len(tb.Sets["m"].Elems), tb.Sets["m"].Elems[2999])
		}
		return b.String()
	}
	many, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	prev := runtime.GOMAXPROCS(1)
	one, err := Parse(data)
	runtime.GOMAXPROCS(prev)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := describe(many), describe(one); got != want || len(many.Tables[0].Chains) != 3000 {
		t.Errorf("decoded on all cores: %d chains, differs from one core's: %v", len(many.Tables[0].Chains), got != want)
	}
	for _, broken := range [][]int{{5000}, {4000, 200}, {100, 5500}} {
		first := slices.Min(broken)
		if _, err := Parse(bigDocument(3000, broken...)); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("nft JSON object %d (rule)", first+1)) {
			t.Errorf("objects %v broken: %v, want object %d named", broken, err, first+1)
		}
	}
}
