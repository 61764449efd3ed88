//go:build e2e

package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/test/e2e/harness"
	"github.com/svctrace/svctrace/trace"
)

// ipvsOnlyNames are the iptables chains only IPVS mode writes (trace.IPVSOnlyChains), as a
// grep pattern: the lines of the current (iptables) mode's rules are those without them.
const ipvsOnlyNames = `KUBE-NODE-PORT( |$)|KUBE-LOAD-BALANCER|KUBE-SOURCE-RANGES-FIREWALL|KUBE-IPVS-`

// ipvsLeftoverDump prints the guest's IPVS state and iptables rules in a stable form (sorted,
// counters dropped): the virtual servers, kube-proxy's ipsets, kube-ipvs0's addresses, then the
// iptables rules without IPVS mode's own chains ("current"), then all of them.
const ipvsLeftoverDump = `echo '-- ipvs'; ipvsadm -Sn | sort; echo '-- ipsets'; ipset save | grep ' KUBE-' | sort; ` +
	`echo '-- device'; ip -o link show kube-ipvs0 >/dev/null 2>&1 && echo kube-ipvs0; ip -o addr show dev kube-ipvs0 2>/dev/null | awk '{print $4}' | sort; ` +
	`echo '-- current'; iptables-save | grep -v '^#' | sed -E 's/ \[[0-9]+:[0-9]+\]$//' | grep -v -E '` + ipvsOnlyNames + `'; ` +
	`echo '-- all'; iptables-save | grep -v '^#' | sed -E 's/ \[[0-9]+:[0-9]+\]$//'`

// ipvsLeftoverSteps are the guest's steps after the IPVS repair (their names sort last): kube-proxy
// restarted in iptables mode over IPVS mode's state; check; repair -A's plan and apply; the state
// after; a connection through iptables mode's rules; the undo; the state after it.
func ipvsLeftoverSteps() map[string]string {
	objects := " --node vm1 --objects /objects.yaml"
	return map[string]string{
		"zzz-left-0-switch": harness.IPVSRestart([]string{"--proxy-mode=iptables"},
			"iptables-save -t nat | grep -q -- '-A KUBE-SVC-' && iptables-save -t nat | grep -q -- '-A KUBE-NODEPORTS'", "sleep 3; "+ipvsLeftoverDump),
		"zzz-left-1-check": "/bin/kubectl-svctrace check -A" + objects + " -o json" + guestStderr + "; echo exit=$?",
		"zzz-left-2-plan":  "/bin/kubectl-svctrace repair -A" + objects + " -o json 2>/dev/null",
		"zzz-left-3-apply": "/bin/kubectl-svctrace repair -A" + objects + " --apply --state-dir /tmp/state-left 2>&1; echo exit=$?",
		"zzz-left-4-after": ipvsLeftoverDump,
		"zzz-left-5-probe": "ip netns exec pvmclient /bin/netprobe probe -n 30 -timeout 2s 10.96.30.10:80",
		"zzz-left-6-undo":  "/bin/kubectl-svctrace repair --undo $(ls /tmp/state-left/*.json | tail -1) --node vm1 2>&1; echo exit=$?",
		"zzz-left-7-back":  ipvsLeftoverDump,
	}
}

// dumpParts splits ipvsLeftoverDump's output into its parts.
func dumpParts(out string) map[string]string {
	parts := map[string]string{}
	name := ""
	for _, line := range strings.Split(out, "\n") {
		if n, ok := strings.CutPrefix(line, "-- "); ok {
			name = n
			continue
		}
		if name != "" && strings.TrimSpace(line) != "" {
			parts[name] += line + "\n"
		}
	}
	return parts
}

func checkIPVSLeftovers(t *testing.T, sec map[string]string) {
	before, after, back := dumpParts(sec["zzz-left-0-switch"]), dumpParts(sec["zzz-left-4-after"]), dumpParts(sec["zzz-left-7-back"])
	if before["ipvs"] == "" || before["device"] == "" || strings.Count(before["ipsets"], "create ") != 17 ||
		!strings.Contains(before["all"], ":KUBE-IPVS-FILTER") || !strings.Contains(before["current"], "-A KUBE-SVC-") {
		t.Fatalf("kube-proxy switched to iptables mode should have left IPVS mode's state beside its own rules:\n%s", sec["zzz-left-0-switch"])
	}
	// check: IPVS mode's state and its iptables chains, as ModeLeftover.
	out, code, _ := strings.Cut(sec["zzz-left-1-check"], "exit=")
	var doc struct{ Findings []trace.Finding }
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("check: %v\n%s", err, sec["zzz-left-1-check"])
	}
	var state, chains int
	for _, f := range doc.Findings {
		if f.Kind != trace.ModeLeftover {
			continue
		}
		switch {
		case strings.Contains(f.Message, "kube-proxy's IPVS state (the kube-ipvs0 device") && strings.Contains(f.Message, "17 ipsets"):
			state++
		case strings.Contains(f.Message, "iptables chains") && strings.Contains(f.Message, "left from ipvs mode"):
			chains++
		}
	}
	if state != 1 || chains == 0 || strings.TrimSpace(code) == "0" {
		t.Errorf("check -A (exit %s): %d IPVS state findings, %d chain findings:\n%s", strings.TrimSpace(code), state, chains, out)
	}
	// The plan: the chains first (they use the ipsets), then the state; every virtual server.
	var plan trace.RepairPlan
	if err := json.Unmarshal([]byte(sec["zzz-left-2-plan"]), &plan); err != nil {
		t.Fatalf("plan: %v\n%s", err, sec["zzz-left-2-plan"])
	}
	n := len(plan.Leftovers)
	if n < 2 || plan.Leftovers[n-1].IPVS == nil || plan.Leftovers[0].IPVS != nil {
		t.Fatalf("plan's leftovers: %+v", plan.Leftovers)
	}
	if got, want := len(plan.Leftovers[n-1].IPVS.VirtualServers), strings.Count(before["ipvs"], "-A "); got != want {
		t.Errorf("the plan removes %d virtual servers; the node has %d, all kube-proxy's", got, want)
	}
	apply := sec["zzz-left-3-apply"]
	if !strings.Contains(apply, "exit=0") || !strings.Contains(apply, "read back as gone") || !strings.Contains(apply, "IPVS (from ipvs mode)") {
		t.Fatalf("apply:\n%s", apply)
	}
	// Gone: every virtual server, ipset, the device and IPVS mode's chains; iptables mode's rules
	// exactly as they were.
	if after["ipvs"] != "" || after["ipsets"] != "" || after["device"] != "" {
		t.Errorf("after the removal, IPVS state is left:\n%s", sec["zzz-left-4-after"])
	}
	if after["current"] != before["current"] || after["all"] != after["current"] {
		t.Errorf("after the removal the iptables rules are not the current mode's alone, unchanged:\n%s\nbefore:\n%s", after["all"], before["current"])
	}
	var got probeResult
	if err := json.Unmarshal([]byte(jsonLine(sec["zzz-left-5-probe"])), &got); err != nil || len(got.Failures) > 0 || len(got.Backends) < 2 {
		t.Errorf("connections through iptables mode's rules after the removal: %v %+v", err, got)
	}
	// Undo: everything back as it was.
	if u := sec["zzz-left-6-undo"]; !strings.Contains(u, "exit=0") || !strings.Contains(u, "read back as before") {
		t.Fatalf("undo:\n%s", u)
	}
	for _, part := range []string{"ipvs", "ipsets", "device", "all"} {
		if back[part] != before[part] {
			t.Errorf("after the undo, %s is not as before:\n%s\nbefore:\n%s", part, back[part], before[part])
		}
	}
}
