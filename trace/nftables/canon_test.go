package nftables

import (
	"encoding/json"
	"testing"
)

func rule(t *testing.T, exprs string, comment string) *Rule {
	t.Helper()
	var e []map[string]any
	if err := json.Unmarshal([]byte(exprs), &e); err != nil {
		t.Fatal(err)
	}
	return &Rule{Exprs: e, Comment: comment}
}

// TestCanonRule: the forms kube-proxy writes, in nft's input syntax (the recorded node's rules
// are covered by the planner's test); anything else is flagged, never rendered as if understood.
func TestCanonRule(t *testing.T) {
	for _, tc := range []struct {
		exprs, comment, want string
		ok                   bool
	}{
		{`[{"match":{"op":"==","left":{"meta":{"key":"l4proto"}},"right":"tcp"}},{"dnat":{"family":"ip6","addr":{"map":{"key":{"numgen":{"mode":"random","mod":2,"offset":0}},"data":{"set":[[0,{"concat":["fd00::1",8080]}],[1,{"concat":["fd00::2",8080]}]]}}}}}]`, "",
			"meta l4proto tcp dnat ip6 addr . port to numgen random mod 2 map { 0 : fd00::1 . 8080, 1 : fd00::2 . 8080 }", true},
		{`[{"match":{"op":"==","left":{"meta":{"key":"l4proto"}},"right":"udp"}},{"dnat":{"addr":"fd00::1","port":53}}]`, "",
			"meta l4proto udp dnat to [fd00::1]:53", true},
		{`[{"match":{"op":"==","left":{"meta":{"key":"iifname"}},"right":"veth*"}},{"goto":{"target":"service-X"}}]`, "short-circuit pod traffic",
			`iifname "veth*" goto service-X comment "short-circuit pod traffic"`, true},
		{`[{"match":{"op":"!=","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"set":["10.0.0.0/8",{"prefix":{"addr":"192.168.0.0","len":16}}]}}},{"drop":null}]`, "",
			"ip saddr != { 10.0.0.0/8, 192.168.0.0/16 } drop", true},
		{`[{"mangle":{"key":{"meta":{"key":"mark"}},"value":{"|":[{"meta":{"key":"mark"}},16384]}}}]`, "masquerade",
			`meta mark set meta mark | 0x00004000 comment "masquerade"`, true},
		{`[{"counter":{"packets":1,"bytes":2}}]`, "", `<{"counter":{"bytes":2,"packets":1}}>`, false},
		{`[{"match":{"op":"<","left":{"meta":{"key":"mark"}},"right":1}}]`, "", "", false},
		{`[{"dnat":{"addr":"10.0.0.1","port":80,"flags":"random"}}]`, "", "", false},
		{`[{"dnat":{"addr":7}}]`, "", "", true},
		{`[{"match":{"op":"==","left":{"payload":[1,2]},"right":{"set":"x"}}}]`, "", "", false},
		{`[{"jump":{"target":5}}]`, "", "", false},
		{`[{"set":{"op":"delete","elem":{"payload":{"protocol":"ip","field":"saddr"}},"set":"@a"}}]`, "", "", false},
		{`[{"match":{"op":"==","left":{"numgen":{"mode":"random","mod":-1}},"right":1.5}}]`, "", "", false},
	} {
		got, ok := CanonRule(rule(t, tc.exprs, tc.comment))
		if ok != tc.ok || tc.want != "" && got != tc.want {
			t.Errorf("%s:\n got %q %v\nwant %q %v", tc.exprs, got, ok, tc.want, tc.ok)
		}
	}
}
