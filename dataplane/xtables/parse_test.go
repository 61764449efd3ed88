package xtables

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace/iptables"
)

const demoDump = "../snapshot/demo/iptables-save.txt"

func TestParseRecordedDump(t *testing.T) {
	data, err := os.ReadFile(demoDump)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if rs.Variant != "nf_tables" || !rs.Counters || rs.IPv6 {
		t.Errorf("variant %q counters %v ipv6 %v; want nf_tables, true, false", rs.Variant, rs.Counters, rs.IPv6)
	}
	nat := rs.Tables["nat"]
	if nat == nil || rs.Tables["filter"] == nil {
		t.Fatalf("tables %v", rs.Tables)
	}
	mm := nat.Chains["KUBE-MARK-MASQ"]
	if x := mm.Rules[0].Extra; len(mm.Rules) != 1 || x == nil || x.MarkOp != "set-xmark" || x.MarkVal != 0x4000 || x.MarkMk != 0x4000 {
		t.Errorf("KUBE-MARK-MASQ parsed as %+v", mm.Rules[0].Extra)
	}
	// Every jump resolved to its chain, and every rule is in the slab.
	n := 0
	for _, tb := range rs.Tables {
		for _, c := range tb.Order {
			for _, r := range c.Rules {
				n++
				if r.Target != "" && !isBuiltinTarget(r.Target) && r.JumpChain == nil {
					t.Errorf("line %d: jump to %s unresolved", r.Line, r.Target)
				}
			}
		}
	}
	if n != rs.RuleCount() || n != strings.Count(string(data), "\n[") {
		t.Errorf("%d rules in chains, %d in blocks, %d lines with counters", n, rs.RuleCount(), strings.Count(string(data), "\n["))
	}
}

func TestParseRuleForms(t *testing.T) {
	dump := `*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-SEP-A - [0:0]
-A PREROUTING ! -s 10.0.0.0/255.255.0.0 -d 10.96.0.1/32 -p tcp -m tcp ! --dport 80:90 -j KUBE-SVC-A
-A KUBE-SVC-A -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-A --mask 255.255.255.255 --rsource -j KUBE-SEP-A
-A KUBE-SVC-A -m statistic --mode random --probability 0.33332999982 -g KUBE-SEP-A
-A KUBE-SVC-A -m comment --comment "quoted \"word\" inside" -m multiport --dports 80,443,8000:8080 -j KUBE-SEP-A
-A KUBE-SVC-A -m set --match-set KUBE-CLUSTER-IP dst,dst -m mark ! --mark 0x8000/0x8000 -j RETURN
-A KUBE-SEP-A -p udp -m udp -j DNAT --to-destination [fd00::1]:53
COMMIT
`
	rs, err := Parse([]byte(dump))
	if err != nil {
		t.Fatal(err)
	}
	r := rs.Tables["nat"].Chains["PREROUTING"].Rules[0]
	if !r.Src.Neg || r.Src.Prefix.String() != "10.0.0.0/16" || r.Dst.Prefix.String() != "10.96.0.1/32" || r.Proto != 6 {
		t.Errorf("addresses/proto: %+v %+v %d", r.Src, r.Dst, r.Proto)
	}
	if !r.DPort.Neg || r.DPort.Lo != 80 || r.DPort.Hi != 90 {
		t.Errorf("dport %+v", r.DPort)
	}
	svc := rs.Tables["nat"].Chains["KUBE-SVC-A"].Rules
	if rc := svc[0].Extra.Recent; rc == nil || rc.Op != "rcheck" || rc.Seconds != 10800 || rc.Name != "KUBE-SEP-A" || !rc.Reap {
		t.Errorf("recent %+v", svc[0].Extra.Recent)
	}
	if st := svc[1].Statistic; st == nil || st.Probability != 0.33332999982 || !svc[1].Goto {
		t.Errorf("statistic %+v goto %v", svc[1].Statistic, svc[1].Goto)
	}
	if x := svc[2].Extra; svc[2].Comment != `quoted "word" inside` || len(x.MultiDPorts) != 3 || x.MultiDPorts[2].Hi != 8080 {
		t.Errorf("comment %q multiport %+v", svc[2].Comment, x.MultiDPorts)
	}
	if x := svc[3].Extra; len(x.Sets) != 1 || x.Sets[0].Name != "KUBE-CLUSTER-IP" || x.Mark == nil || !x.Mark.Neg {
		t.Errorf("set %+v mark %+v", x.Sets, x.Mark)
	}
	if svc[0].Extra == nil || rs.Tables["nat"].Chains["KUBE-SEP-A"].Rules[0].Extra != nil {
		t.Error("Extra is allocated exactly for rules that need it")
	}
	if rs.IPv6 {
		t.Error("an IPv6 DNAT target does not make the ruleset IPv6; only its matches do")
	}
}

func TestParseErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct{ name, dump, want string }{
		{"rule outside a table", "-A FOO -j ACCEPT\n", "line 1: rule outside a table"},
		{"undeclared chain", "*nat\n:PREROUTING ACCEPT [0:0]\n-A NOPE -j ACCEPT\nCOMMIT\n", "line 3: rule for chain NOPE"},
		{"unterminated quote", "*nat\n:P ACCEPT [0:0]\n-A P -m comment --comment \"abc\nCOMMIT\n", "line 3: unterminated quote"},
		{"bad address", "*nat\n:P ACCEPT [0:0]\n-A P -s 10.0.0.300 -j ACCEPT\nCOMMIT\n", "line 3: bad address"},
		{"bad probability", "*nat\n:P ACCEPT [0:0]\n-A P -m statistic --mode random --probability 2 -j ACCEPT\nCOMMIT\n", "line 3: probability"},
		{"NaN probability", "*nat\n:P ACCEPT [0:0]\n-A P -m statistic --mode random --probability NaN -j ACCEPT\nCOMMIT\n", "line 3: probability"},
		{"jump to missing KUBE chain", "*nat\n:P ACCEPT [0:0]\n-A P -j KUBE-SVC-X\nCOMMIT\n", "line 3: jump to chain KUBE-SVC-X"},
		{"truncated", "*nat\n:P ACCEPT [0:0]\n", "no COMMIT"},
		{"not a dump", "hello world\n", "line 1: unrecognised line"},
		{"bad counters", "*nat\n:P ACCEPT [0:0]\n[1:x] -A P -j ACCEPT\nCOMMIT\n", "line 3: counters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.dump))
			var pe *ParseError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want a ParseError containing %q", err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile(demoDump); err == nil {
		f.Add(data)
	}
	if data, err := os.ReadFile("../../trace/iptables/testdata/v1.20-layout.iptables"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("*nat\n:P ACCEPT [0:0]\n-A P ! -s 1.2.3.4 -m statistic --mode nth --every 3 --packet 0 -j DNAT --to-destination 1.1.1.1:80-90\nCOMMIT\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Parse(data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line < 0 {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		for _, tb := range rs.Tables {
			for _, c := range tb.Order {
				for _, r := range c.Rules {
					if r.Goto && r.JumpChain == nil {
						t.Fatalf("line %d: goto without a chain", r.Line)
					}
				}
			}
		}
		dp := &iptables.Dataplane{V4: rs}
		if rs.IPv6 {
			dp = &iptables.Dataplane{V6: rs}
		}
		tracetest.WalkInvariants(t, dp)
	})
}

func TestParseInterleavedChainsKeepTheirOrder(t *testing.T) {
	dump := "*nat\n:A - [0:0]\n:B - [0:0]\n" +
		"-A A -s 10.0.0.1 -j RETURN\n-A B -s 10.0.0.2 -j RETURN\n-A A -s 10.0.0.3 -j RETURN\n" +
		"-A A -s 10.0.0.4 -j RETURN\n-A B -s 10.0.0.5 -j RETURN\n-A B -s 10.0.0.6 -j RETURN\nCOMMIT\n"
	rs, err := Parse([]byte(dump))
	if err != nil {
		t.Fatal(err)
	}
	for chain, want := range map[string]string{"A": "10.0.0.1 10.0.0.3 10.0.0.4", "B": "10.0.0.2 10.0.0.5 10.0.0.6"} {
		var got []string
		for _, r := range rs.Tables["nat"].Chains[chain].Rules {
			got = append(got, r.Src.Prefix.Addr().String())
		}
		if strings.Join(got, " ") != want {
			t.Errorf("chain %s: %v, want %s", chain, got, want)
		}
	}
}
