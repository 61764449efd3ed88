package xtables

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"testing"

	"github.com/svctrace/svctrace/test/netnstest"
)

var regexpNfacct = regexp.MustCompile(` -m nfacct --nfacct-name +[^ ]+`)

// TestLegacyEntriesInNetns: in a network namespace holding the recorded demo node's rules (legacy
// backend), the kernel's entry count is exactly the dump's rules, plus a policy entry per
// built-in chain, a head and a return entry per user chain, and one end entry per table.
func TestLegacyEntriesInNetns(t *testing.T) {
	if !netnstest.Inside(t) {
		return
	}
	dump, err := os.ReadFile("../snapshot/demo/iptables-save.txt")
	if err != nil {
		t.Fatal(err)
	}
	// kube-proxy's nfacct counter object is not in a fresh namespace: that match goes.
	dump = regexpNfacct.ReplaceAll(dump, nil)
	restore := exec.Command("iptables-legacy-restore", "-c")
	restore.Stdin = bytes.NewReader(dump)
	if out, err := restore.CombinedOutput(); err != nil {
		t.Fatalf("iptables-legacy-restore: %v: %s", err, out)
	}
	rs, err := Parse(dump)
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, tb := range rs.Tables {
		want++ // the table's end
		for _, c := range tb.Order {
			want += len(c.Rules) + 1
			if !c.Builtin() {
				want++
			}
		}
	}
	if got := legacyEntries(); got != want {
		t.Errorf("the kernel holds %d entries, the dump says %d", got, want)
	}
	t.Logf("%d entries for %d rules", want, rs.RuleCount())
}
