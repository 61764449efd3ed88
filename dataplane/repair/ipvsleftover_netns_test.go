package repair

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/test/netnstest"

	"github.com/svctrace/svctrace/dataplane"
	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/trace"
)

// TestIPVSLeftoverInNetns: the real write path on this machine (no IPVS module, no dummy devices
// here: ipsets and iptables only; the IPVS guest of the e2e tests does the virtual servers and
// kube-ipvs0). A namespace gets the recorded IPVS node's ipsets and iptables rules, then what
// kube-proxy's iptables mode rewrites when it takes over (nat KUBE-SERVICES and KUBE-POSTROUTING,
// the only ones that used ipsets); FindLeftovers reports IPVS mode's chains and ipsets, the
// engine removes them with the local node and reads them back as gone, and undo gives back the
// same `ipset save` and `iptables-save`.
func TestIPVSLeftoverInNetns(t *testing.T) {
	if !netnstest.Inside(t) {
		return
	}
	run := func(stdin []byte, argv ...string) string {
		t.Helper()
		c := exec.Command(argv[0], argv[1:]...)
		c.Stdin = bytes.NewReader(stdin)
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v: %s", argv, err, out)
		}
		return string(out)
	}
	sets := demoIPVS(t, "ipset-save.txt")
	rules := demoIPVS(t, "iptables-save.txt")
	run(sets, "ipset", "restore")
	run(rules, "iptables-legacy-restore", "-c")
	run(nil, "iptables-legacy", "-t", "nat", "-F", "KUBE-SERVICES")
	run(nil, "iptables-legacy", "-t", "nat", "-F", "KUBE-POSTROUTING")
	counters := regexp.MustCompile(`(?m)^\[\d+:\d+\] | \[\d+:\d+\]$|^#.*\n`)
	snapshot := func() (string, string) {
		s := strings.Split(strings.TrimSpace(run(nil, "ipset", "save")), "\n")
		sort.Strings(s)
		return strings.Join(s, "\n"), counters.ReplaceAllString(run(nil, "iptables-legacy-save"), "")
	}
	setsBefore, rulesBefore := snapshot()

	ctx := context.Background()
	left, err := dataplane.FindLeftovers(ctx, noderun.Local{}, "iptables")
	if err != nil {
		t.Fatal(err)
	}
	var where []string
	for _, l := range left {
		where = append(where, fmt.Sprintf("%s (%s mode, %d chains, %d jumps)", l.Where(), l.Mode, len(l.Chains), len(l.Jumps)))
	}
	if got := strings.Join(where, ", "); got != "iptables-legacy nat (ipvs mode, 2 chains, 0 jumps), iptables-legacy filter (ipvs mode, 4 chains, 3 jumps), IPVS (ipvs mode, 0 chains, 0 jumps)" {
		t.Fatalf("leftovers: %s", got)
	}
	if s := left[2].IPVS; s == nil || len(s.IPSets) != 17 || s.Device != "" || len(s.VirtualServers) != 0 {
		t.Fatalf("IPVS state: %+v", left[2].IPVS)
	}
	plan := &trace.RepairPlan{APIVersion: trace.APIVersion, Kind: "RepairPlan", Node: "node1", Mode: "iptables", Leftovers: left}
	e := &Engine{Node: Local{}, StateDir: t.TempDir()}
	res := e.Apply(ctx, plan, "node1", "")
	if res.Outcome != Applied || !strings.Contains(res.Message, "read back as gone") {
		t.Fatalf("apply: %s %s", res.Outcome, res.Message)
	}
	setsAfter, rulesAfter := snapshot()
	if strings.Contains(setsAfter, "KUBE-") || regexp.MustCompile(`KUBE-IPVS-|KUBE-NODE-PORT\b|KUBE-LOAD-BALANCER|KUBE-SOURCE-RANGES`).MatchString(rulesAfter) {
		t.Fatalf("after the removal:\n%s\n%s", setsAfter, rulesAfter)
	}
	if !strings.Contains(rulesAfter, ":KUBE-SERVICES") || !strings.Contains(rulesAfter, "-A KUBE-FORWARD") {
		t.Fatalf("the removal took chains that are iptables mode's too:\n%s", rulesAfter)
	}
	s, err := os.ReadFile(res.StatePath)
	if err != nil {
		t.Fatal(err)
	}
	state, err := DecodeState(s)
	if err != nil {
		t.Fatal(err)
	}
	if u := e.Undo(ctx, state, res.StatePath, "node1", false); u.Outcome != Undone {
		t.Fatalf("undo: %s %s", u.Outcome, u.Message)
	}
	setsBack, rulesBack := snapshot()
	if setsBack != setsBefore || rulesBack != rulesBefore {
		t.Errorf("after the undo:\n%s\n%s\nbefore:\n%s\n%s", setsBack, rulesBack, setsBefore, rulesBefore)
	}
}
