package nftjson

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace/nftables"
)

// serving is the node side of an exec: it runs `kubectl-svctrace nft-objects REQUEST` against an
// ObjectReader, and can tamper with the answer.
type serving struct {
	objects ObjectReader
	tamper  func([]byte) []byte
	argv    [][]string
}

func (s *serving) Run(_ context.Context, argv ...string) ([]byte, error) {
	s.argv = append(s.argv, argv)
	if len(argv) != 3 || argv[0] != "kubectl-svctrace" || argv[1] != ObjectsCommand {
		return nil, fmt.Errorf("unexpected command %q", argv)
	}
	out, err := ServeObjects(s.objects, []byte(argv[2]))
	if err == nil && s.tamper != nil {
		out = s.tamper(out)
	}
	return out, err
}

// A scoped walk whose objects come through the exec answers (as from the agent's pod) walks
// every packet of the recorded node exactly as the whole ruleset does, and moves a fraction of
// the whole ruleset's bytes.
func TestScopedThroughExecWalksLikeTheWholeRuleset(t *testing.T) {
	data, rs := recorded(t)
	whole := &nftables.Dataplane{Rules: rs}
	cl := tracetest.LoadObjects(t, "../snapshot/demo-nftables/objects.yaml")
	node := cl.NodeContextFor("node1", nil)
	ctx := context.Background()
	pkts := tracetest.PacketsTo(whole.Entries())
	for _, p := range pkts {
		_, fresh := recorded(t)
		x := &ExecReader{Ctx: ctx, Runner: &serving{objects: &fakeObjects{rs: fresh}}, Argv0: "kubectl-svctrace"}
		run := &noNft{data: data}
		sc := NewScoped(run, x)
		tracetest.SameWalk(t, whole, sc, p, node)
		if sc.full || len(run.calls) > 0 {
			t.Errorf("%v: ran nft %q (%s)", p, run.calls, sc.Fallback)
		}
		if x.Bytes == 0 || x.Bytes > len(data)/2 || !strings.Contains(sc.Summary(), "KB from the svctrace binary on the node") {
			t.Errorf("%v: %d bytes through exec (the whole ruleset is %d): %s", p, x.Bytes, len(data), sc.Summary())
		}
	}
}

// The node side refuses requests that are not reads of kube-proxy-shaped objects; the laptop
// side refuses answers that are not what it asked for.
func TestObjectsRequestsAndAnswersAreChecked(t *testing.T) {
	_, rs := recorded(t)
	objs := &fakeObjects{rs: rs}
	for _, bad := range []string{
		``, `[]`, `{"family":"ip"}`, `{"family":"arp","table":"kube-proxy"}`,
		`{"family":"ip","table":"a b"}`, `{"family":"ip","table":"kube-proxy","objects":[{"Family":"ip","Table":"kube-proxy","Kind":"rule","Name":"x"}]}`,
		`{"family":"ip","table":"kube-proxy","objects":[{"Family":"ip","Table":"kube-proxy","Kind":"element","Name":"service-ips","Key":"10.0.0.0/8"}]}`,
		`{"family":"ip","table":"kube-proxy","objects":[{"Family":"ip6","Table":"kube-proxy","Kind":"chain","Name":"services"}]}`,
		`{"family":"ip","table":"kube-proxy","objects":[{"Family":"ip","Table":"kube-proxy","Kind":"chain","Name":"services","Key":"1"}]}`,
		`{"family":"ip","table":"kube-proxy","extra":1}`,
		`{"family":"ip","table":"kube-proxy","objects":[` + strings.Repeat(`{"Family":"ip","Table":"kube-proxy","Kind":"chain","Name":"x"},`, maxObjects) + `{"Family":"ip","Table":"kube-proxy","Kind":"chain","Name":"x"}]}`,
	} {
		if out, err := ServeObjects(objs, []byte(bad)); err == nil {
			t.Errorf("request %.80q was served: %.80s", bad, out)
		}
	}
	good, err := json.Marshal(objectRequest{Family: "ip", Table: "kube-proxy", Objects: []nftables.Object{
		{Family: "ip", Table: "kube-proxy", Kind: "chain", Name: "services"},
		{Family: "ip", Table: "kube-proxy", Kind: "element", Name: "service-ips", Key: "10.96.10.10 . tcp . 80"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for name, tamper := range map[string]func([]byte) []byte{
		"not JSON":          func([]byte) []byte { return []byte("<html>") },
		"no nftables array": func([]byte) []byte { return []byte(`{"probed":[]}`) },
		"a key not asked for": func(b []byte) []byte {
			return []byte(strings.Replace(string(b), `"keys":["10.96.10.10 . tcp . 80"]`, `"keys":["10.96.10.11 . tcp . 80"]`, 1))
		},
		"a probe of no set": func(b []byte) []byte {
			return []byte(strings.Replace(string(b), `"set":"service-ips"`, `"set":"nope"`, 1))
		},
		"too big": func([]byte) []byte { return make([]byte, maxAnswer+1) },
		"a table name": func([]byte) []byte {
			return []byte(`{"nftables":[],"tables":[{"Family":"ip","Table":"a;b","Kind":"table","Name":"a;b"}]}`)
		},
	} {
		x := &ExecReader{Ctx: context.Background(), Runner: &serving{objects: objs, tamper: tamper}, Argv0: "kubectl-svctrace"}
		var err error
		if name == "a table name" {
			_, err = x.Tables()
		} else {
			var q objectRequest
			_ = json.Unmarshal(good, &q)
			_, err = x.Read(q.Family, q.Table, q.Objects, nil)
		}
		if err == nil {
			t.Errorf("%s: the answer was taken", name)
		}
	}
	// The untampered answer is taken, the set partial with the key asked.
	x := &ExecReader{Ctx: context.Background(), Runner: &serving{objects: objs}, Argv0: "kubectl-svctrace"}
	var q objectRequest
	_ = json.Unmarshal(good, &q)
	got, err := x.Read(q.Family, q.Table, q.Objects, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := got.Tables[0].Sets["service-ips"]
	if s == nil || !s.Partial || !s.Probed("10.96.10.10 . tcp . 80") || len(s.Elems) != 1 || got.Tables[0].Chains["services"] == nil {
		t.Errorf("answer read as %+v", got.Tables[0])
	}
}
