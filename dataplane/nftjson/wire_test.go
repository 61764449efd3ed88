package nftjson

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
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
	out, err := ServeObjects(context.Background(), s.objects, []byte(argv[2]))
	if err == nil && s.tamper != nil {
		out = s.tamper(out)
	}
	return out, err
}

// A scoped walk whose objects come through the exec answers (as from the agent's pod) walks
// every packet of the recorded node exactly as the whole ruleset does, and moves a fraction of
// the whole ruleset's bytes. The binary on the node walks the packet itself, so that is one exec
// a packet; when that walk fails there (tamper), the walk here reads level by level, as before,
// to the same result.
func TestScopedThroughExecWalksLikeTheWholeRuleset(t *testing.T) {
	data, rs := recorded(t)
	whole := &nftables.Dataplane{Rules: rs}
	cl := tracetest.LoadObjects(t, "../snapshot/demo-nftables/objects.yaml")
	node := cl.NodeContextFor("node1", nil)
	ctx := context.Background()
	pkts := tracetest.PacketsTo(whole.Entries())
	walkFails := func(b []byte) []byte {
		if bytes.Contains(b, []byte(`"tables":[`)) && bytes.Contains(b, []byte(`"chain"`)) {
			return []byte("not an answer")
		}
		return b
	}
	for _, tamper := range []func([]byte) []byte{nil, walkFails} {
		for _, p := range pkts {
			_, fresh := recorded(t)
			node2 := &serving{objects: &fakeObjects{rs: fresh}, tamper: tamper}
			x := &ExecReader{Ctx: ctx, Runner: node2, Argv0: "kubectl-svctrace"}
			run := &noNft{data: data}
			sc := NewScoped(run, x)
			tracetest.SameWalk(t, whole, sc, p, node)
			if sc.full || len(run.calls) > 0 {
				t.Errorf("%v: ran nft %q (%s)", p, run.calls, sc.Fallback)
			}
			if x.Bytes == 0 || x.Bytes > len(data)/2 || !strings.Contains(sc.Summary(), "KB from the svctrace binary on the node") {
				t.Errorf("%v: %d bytes through exec (the whole ruleset is %d): %s", p, x.Bytes, len(data), sc.Summary())
			}
			switch walked := strings.Contains(string(strings.Join(node2.argv[0], " ")), `"walk"`); {
			case tamper == nil && (len(node2.argv) != 1 || !walked):
				t.Errorf("%v: %d execs, want one walk there", p, len(node2.argv))
			case tamper != nil && len(node2.argv) < 3:
				t.Errorf("%v: the walk there failed, yet %d execs read the path", p, len(node2.argv))
			}
			if tamper != nil {
				// A binary that cannot walk (an older agent) is not asked again.
				other := pkts[(len(pkts)/2)%len(pkts)]
				other.SrcPort = 40000
				tracetest.SameWalk(t, whole, sc, other, node)
				walks := 0
				for _, argv := range node2.argv {
					if strings.Contains(argv[2], `"walk"`) {
						walks++
					}
				}
				if walks != 1 {
					t.Errorf("%v: the binary on the node was asked to walk %d times, though its first walk failed", p, walks)
				}
			}
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
		// Walks: a family, addresses, protocol, origin or lists svctrace would not send.
		`{"walk":{"family":"arp","src":"10.244.1.99","dst":"10.96.10.40","protocol":6,"dstPort":80}}`,
		`{"walk":{"family":"ip","src":"10.244.1.99; rm","dst":"10.96.10.40","protocol":6,"dstPort":80}}`,
		`{"walk":{"family":"ip","src":"fe80::1%eth0","dst":"10.96.10.40","protocol":6,"dstPort":80}}`,
		`{"walk":{"family":"ip","src":"10.244.1.99","dst":"10.96.10.40","protocol":6,"dstPort":80,"protocol":1}}`,
		`{"walk":{"family":"ip","src":"10.244.1.99","dst":"10.96.10.40","protocol":6,"dstPort":80,"origin":2}}`,
		`{"walk":{"family":"ip","src":"10.244.1.99","dst":"10.96.10.40","protocol":6,"dstPort":80,"inInterface":"a-name-far-too-long"}}`,
		`{"walk":{"family":"ip","src":"10.244.1.99","dst":"10.96.10.40","protocol":6,"dstPort":80,"podCIDRs":["10.244.1.0/33"]}}`,
		`{"walk":{"family":"ip","src":"10.244.1.99","dst":"10.96.10.40","protocol":6,"dstPort":80,"local":["node1"]}}`,
		`{"walk":{"family":"ip","src":"10.244.1.99","dst":"10.96.10.40","protocol":6,"dstPort":80,"extra":1}}`,
		`{"walk":{"family":"ip","src":"10.244.1.99","dst":"10.96.10.40","protocol":6,"dstPort":80},"tables":true}`,
		`{"walk":{"family":"ip","src":"10.244.1.99","dst":"10.96.10.40","protocol":6,"dstPort":80},"family":"ip","table":"kube-proxy","objects":[{"Family":"ip","Table":"kube-proxy","Kind":"chain","Name":"services"}]}`,
		`{"family":"ip","table":"kube-proxy","objects":[` + strings.Repeat(`{"Family":"ip","Table":"kube-proxy","Kind":"chain","Name":"x"},`, maxObjects) + `{"Family":"ip","Table":"kube-proxy","Kind":"chain","Name":"x"}]}`,
	} {
		if out, err := ServeObjects(context.Background(), objs, []byte(bad)); err == nil {
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
		"a walk's answer with another table": func([]byte) []byte {
			return []byte(`{"nftables":[{"table":{"family":"ip","name":"filter"}},{"chain":{"family":"ip","table":"filter","name":"x"}}],"tables":[]}`)
		},
		"a table name": func([]byte) []byte {
			return []byte(`{"nftables":[],"tables":[{"Family":"ip","Table":"a;b","Kind":"table","Name":"a;b"}]}`)
		},
	} {
		x := &ExecReader{Ctx: context.Background(), Runner: &serving{objects: objs, tamper: tamper}, Argv0: "kubectl-svctrace"}
		var err error
		switch name {
		case "a table name":
			_, err = x.Tables()
		case "a walk's answer with another table":
			_, _, err = x.WalkObjects("ip", trace.Packet{Src: netip.MustParseAddr("10.244.1.99"), Dst: netip.MustParseAddr("10.96.10.40"), Protocol: trace.TCP, DstPort: 80}, nil)
		default:
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
