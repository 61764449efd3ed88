//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svctrace/svctrace/test/e2e/harness"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
)

// repairNS holds the recorded demo node's rules for the fault tests.
const repairNS = "svct-repair"

// TestRepairFaults: the rules the real kube-proxy wrote on the demo node, loaded into a network
// namespace of their own with the legacy iptables backend (which serialises writers with the
// xtables lock), against API objects edited the way a stale node sees them. Whatever goes wrong —
// a malformed plan, another writer holding the lock, svctrace killed before it writes or before it
// verifies, an unclear backend — the rules end either as they were or as planned, and
// iptables-save is unchanged when nothing was applied; --undo puts them back.
func TestRepairFaults(t *testing.T) {
	needCluster(t)
	if _, err := exec.Command("ip", "netns", "add", repairNS).CombinedOutput(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = exec.Command("ip", "netns", "del", repairNS).Run() }()
	dir := t.TempDir()
	dump, err := os.ReadFile("../../dataplane/snapshot/demo/iptables-save.txt")
	if err != nil {
		t.Fatal(err)
	}
	// nfacct objects do not exist in a fresh namespace, and kube-proxy writes its nfacct matches
	// only where they do: the node is loaded as kube-proxy writes it there, without them. repair
	// must then write none either.
	noAcct := strings.NewReplacer(" -m nfacct --nfacct-name  localhost_nps_accepted_pkts", "", " -m nfacct --nfacct-name  ct_state_invalid_dropped_pkts", "").Replace(string(dump))
	rules := filepath.Join(dir, "rules")
	if err := os.WriteFile(rules, []byte(noAcct), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := harness.NS(repairNS, "iptables-legacy-restore", rules); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	// The tables repair may write. (Reading a legacy table that does not exist yet, as the
	// backend detection does with raw and mangle, makes the kernel create it empty.)
	save := func() string {
		var keep []string
		for _, table := range []string{"filter", "nat"} {
			out, err := harness.NS(repairNS, "iptables-legacy-save", "-t", table)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range strings.Split(string(out), "\n") {
				if !strings.HasPrefix(l, "#") {
					keep = append(keep, l)
				}
			}
		}
		return strings.Join(keep, "\n")
	}
	orig := save()

	objects, err := trace.EncodeObjects(tracetest.StaleDemo(t, "../../dataplane/snapshot/demo"))
	if err != nil {
		t.Fatal(err)
	}
	objPath := filepath.Join(dir, "objects.json")
	if err := os.WriteFile(objPath, objects, 0o644); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(dir, "state")
	resume := filepath.Join(dir, "resume")
	// svctrace runs the shipped binary; with a pause step, the one built with the test hooks
	// (-tags svctrace_testhooks), which stops before that step until the resume file exists.
	svctrace := func(pause string, args ...string) *exec.Cmd {
		bin := filepath.Join(os.Getenv("SVCTRACE_PLUGIN_DIR"), "kubectl-svctrace")
		if pause != "" {
			bin = os.Getenv("SVCTRACE_TESTHOOKS_BIN")
		}
		argv := append([]string{"netns", "exec", repairNS, "env", "SVCTRACE_REPAIR_PAUSE=" + pause, "SVCTRACE_REPAIR_RESUME=" + resume,
			"KUBECONFIG=/nonexistent", bin}, args...)
		return exec.Command("ip", argv...)
	}
	run := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := svctrace("", args...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return stdout.String(), stderr.String(), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), 0
	}
	repair := []string{"repair", "-A", "--objects", objPath, "--node", "node1", "--state-dir", stateDir}
	applyPlan := func(p string) []string {
		return []string{"repair", "--plan", p, "--apply", "--objects", objPath, "--node", "node1", "--state-dir", stateDir}
	}
	unchanged := func(what string) {
		t.Helper()
		if now := save(); now != orig {
			t.Fatalf("%s: iptables-save changed although nothing was applied", what)
		}
	}

	// The dry run changes nothing and says so.
	if _, stderr, code := run(repair...); code != 1 || !strings.Contains(stderr, "dry run") {
		t.Fatalf("dry run: exit %d %q", code, stderr)
	}
	unchanged("dry run")
	planJSON, _, _ := run(append(repair, "-o", "json")...)
	if strings.Contains(planJSON, "nfacct") || !strings.Contains(planJSON, "10.244.1.15:9376") {
		t.Fatalf("the plan for a node without nfacct writes nfacct matches, or misses the new endpoint:\n%s", planJSON)
	}

	t.Run("malformed plan", func(t *testing.T) {
		// A rule the kernel does not accept, in the restore input of an otherwise valid plan.
		var plan trace.RepairPlan
		if err := json.Unmarshal([]byte(planJSON), &plan); err != nil {
			t.Fatal(err)
		}
		in := plan.IPTables[len(plan.IPTables)-1].Input
		plan.IPTables[len(plan.IPTables)-1].Input = strings.Replace(in, "-m tcp -j DNAT --to-destination 10.244.1.15:9376", "-m nosuchmatch -j DNAT --to-destination 10.244.1.15:9376", 1)
		if plan.IPTables[len(plan.IPTables)-1].Input == in {
			t.Fatal("the plan has no rule to break")
		}
		bad, _ := json.Marshal(plan)
		p := filepath.Join(dir, "bad.json")
		if err := os.WriteFile(p, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		_, stderr, code := run(applyPlan(p)...)
		if code != 2 || !strings.Contains(stderr, "nothing was written") {
			t.Fatalf("exit %d %q", code, stderr)
		}
		unchanged("malformed plan")
	})

	t.Run("the node changed since the plan", func(t *testing.T) {
		// Another writer (kube-proxy waking up) changes a chain the plan touches: applying the
		// saved plan is refused, and nothing is written.
		p := filepath.Join(dir, "plan.json")
		if err := os.WriteFile(p, []byte(planJSON), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := harness.NS(repairNS, "iptables-legacy", "-t", "nat", "-A", "KUBE-SVC-ODX2UBAZM7RQWOIU", "-j", "RETURN"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		changed := save()
		_, stderr, code := run(applyPlan(p)...)
		if code != 2 || !strings.Contains(stderr, "the node changed since the plan was made") || !strings.Contains(stderr, "KUBE-SVC-ODX2UBAZM7RQWOIU") {
			t.Fatalf("exit %d %q", code, stderr)
		}
		if save() != changed {
			t.Fatal("iptables-save changed although the plan was refused")
		}
		if out, err := harness.NS(repairNS, "iptables-legacy", "-t", "nat", "-D", "KUBE-SVC-ODX2UBAZM7RQWOIU", "-j", "RETURN"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		unchanged("after putting the other writer's rule back")
	})

	// unexpected writes the dry run's plan edited to expect a rule its input does not write (a
	// hand-edited plan, or an iptables that prints rules differently) and returns its path.
	unexpected := func(t *testing.T, name string) string {
		var plan trace.RepairPlan
		if err := json.Unmarshal([]byte(planJSON), &plan); err != nil {
			t.Fatal(err)
		}
		last := &plan.IPTables[len(plan.IPTables)-1]
		last.After[0].Rules = append(last.After[0].Rules, "-A "+last.After[0].Chain+" -j RETURN")
		edited, _ := json.Marshal(plan)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, edited, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	t.Run("a result that is not the plan's is rolled back", func(t *testing.T) {
		// The plan expects a chain to end up with a rule its input does not write (a hand-edited
		// plan, or an iptables that prints rules differently): the write succeeds, the check of
		// the result fails, and everything goes back.
		_, stderr, code := run(applyPlan(unexpected(t, "unexpected.json"))...)
		if code != 4 || !strings.Contains(stderr, "is not what was planned") || !strings.Contains(stderr, "rolled back: the touched chains were read back as they were before") {
			t.Fatalf("exit %d %q", code, stderr)
		}
		unchanged("rolled back")
	})

	t.Run("a rollback that fails is said loudly", func(t *testing.T) {
		// The write succeeds, the result is not the plan's, and another writer takes the xtables
		// lock between the write and the rollback: the rollback cannot write. repair must say
		// so with its own exit code and name the state file, which --undo then restores from.
		_ = os.Remove(resume)
		cmd := svctrace("verify", applyPlan(unexpected(t, "unexpected-locked.json"))...)
		var stderr strings.Builder
		pipe, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			stderr.WriteString(sc.Text() + "\n")
			if sc.Text() == "paused before verify" {
				break
			}
		}
		holder := exec.Command("flock", "--no-fork", "-x", "/run/xtables.lock", "sleep", "40")
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = holder.Process.Kill(); _ = holder.Wait() }()
		time.Sleep(300 * time.Millisecond)
		if err := os.WriteFile(resume, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		for sc.Scan() {
			stderr.WriteString(sc.Text() + "\n")
		}
		err = cmd.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		out := stderr.String()
		state := ""
		for _, l := range strings.Split(out, "\n") {
			if s, ok := strings.CutPrefix(l, "saved the state being replaced to "); ok {
				state = s
			}
		}
		if code != 5 || !strings.Contains(out, "ROLLBACK FAILED") || state == "" || !strings.Contains(out, "repair --undo "+state+" --force") {
			t.Fatalf("exit %d (want 5), state %q:\n%s", code, state, out)
		}
		var s struct{ Status string }
		data, _ := os.ReadFile(state)
		if err := json.Unmarshal(data, &s); err != nil || s.Status != "rollback failed" {
			t.Fatalf("state file %s: %v %s", state, err, data)
		}
		if save() == orig {
			t.Fatal("the node is as before although the rollback failed: the write did not happen")
		}
		_ = holder.Process.Kill()
		_ = holder.Wait()
		if _, stderr, code := run("repair", "--undo", state, "--node", "node1", "--force"); code != 0 {
			t.Fatalf("undo: exit %d %q", code, stderr)
		}
		unchanged("after undo of a failed rollback")
	})

	t.Run("another writer holds the xtables lock", func(t *testing.T) {
		holder := exec.Command("flock", "--no-fork", "-x", "/run/xtables.lock", "sleep", "30")
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = holder.Process.Kill(); _ = holder.Wait() }()
		time.Sleep(300 * time.Millisecond)
		start := time.Now()
		_, stderr, code := run(append(repair, "--apply")...)
		if code == 0 || !strings.Contains(stderr, "xtables lock") || time.Since(start) < 9*time.Second {
			t.Fatalf("exit %d after %s: %q", code, time.Since(start), stderr)
		}
		unchanged("lock held")
	})

	t.Run("an unclear iptables backend", func(t *testing.T) {
		if out, err := harness.NS(repairNS, "iptables-nft", "-t", "mangle", "-N", "KUBE-PROXY-CANARY"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		defer func() { _, _ = harness.NS(repairNS, "iptables-nft", "-t", "mangle", "-X", "KUBE-PROXY-CANARY") }()
		_, stderr, code := run(append(repair, "--apply")...)
		if code != 2 || !strings.Contains(stderr, "both iptables backends") {
			t.Fatalf("exit %d %q", code, stderr)
		}
		unchanged("ambiguous backend")
	})

	t.Run("tampered files are refused: nothing written, nothing run", func(t *testing.T) {
		// Each file an attacker could hand a root user is refused before anything is written or
		// run. The marker shows a named program never ran; save() that no rule changed.
		marker := filepath.Join(dir, "ran")
		evil := filepath.Join(dir, "evil")
		if err := os.WriteFile(evil, []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		var plan map[string]any
		if err := json.Unmarshal([]byte(planJSON), &plan); err != nil {
			t.Fatal(err)
		}
		clone := func(v map[string]any) map[string]any {
			b, _ := json.Marshal(v)
			var c map[string]any
			_ = json.Unmarshal(b, &c)
			return c
		}
		write := func(name string, v any) string {
			b, _ := json.Marshal(v)
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}
		firstTable := func(p map[string]any) map[string]any {
			return p["iptables"].([]any)[0].(map[string]any)
		}
		// A state file as --apply writes it, for the plan of the dry run.
		state := func() map[string]any {
			return map[string]any{"apiVersion": "svctrace/v1", "kind": "RepairState", "time": "2026-11-30T00:00:00Z", "status": "applied",
				"node": "node1", "mode": "iptables", "backend": "iptables-legacy", "plan": clone(plan)}
		}
		smuggled := "-A PREROUTING -p tcp -j DNAT --to-destination 6.6.6.6:80"
		for _, c := range []struct {
			name, want string
			args       func() []string
		}{
			{"state naming a program as its backend", "backend", func() []string {
				s := state()
				s["backend"] = evil
				return []string{"repair", "--undo", write("s1.json", s), "--node", "node1", "--force"}
			}},
			{"state putting back a rule in a chain that is not kube-proxy's", "PREROUTING", func() []string {
				s := state()
				tb := firstTable(s["plan"].(map[string]any))
				tb["before"] = append(tb["before"].([]any), map[string]any{"chain": "PREROUTING", "exists": true, "rules": []any{smuggled}})
				return []string{"repair", "--undo", write("s2.json", s), "--node", "node1", "--force"}
			}},
			{"state for a node name that leaves the state directory", "node", func() []string {
				s := state()
				s["node"] = "../../etc"
				s["plan"].(map[string]any)["node"] = "../../etc"
				return []string{"repair", "--undo", write("s3.json", s), "--node", "node1", "--force"}
			}},
			{"plan writing a chain it does not list", "PREROUTING", func() []string {
				p := clone(plan)
				tb := firstTable(p)
				tb["input"] = strings.Replace(tb["input"].(string), "COMMIT", smuggled+"\nCOMMIT", 1)
				return applyPlan(write("p1.json", p))
			}},
			{"plan for a node name that leaves the state directory", "node", func() []string {
				p := clone(plan)
				p["node"] = "../x"
				return applyPlan(write("p2.json", p))
			}},
			{"plan flushing conntrack with a shell command as protocol", "protocol", func() []string {
				p := clone(plan)
				p["conntrack"] = []any{map[string]any{"protocol": "udp; " + evil, "dst": "10.96.10.53:53", "backend": "10.244.1.51"}}
				return applyPlan(write("p3.json", p))
			}},
			{"objects carrying iptables-restore lines in a port name", "port name", func() []string {
				obj, err := os.ReadFile(objPath)
				if err != nil {
					t.Fatal(err)
				}
				bad := strings.Replace(string(obj), `"name":"default"`, `"name":"x\" -j ACCEPT\n`+smuggled+`\n#"`, 1)
				if bad == string(obj) {
					t.Fatal("no port named default in the objects")
				}
				p := filepath.Join(dir, "bad-objects.json")
				if err := os.WriteFile(p, []byte(bad), 0o600); err != nil {
					t.Fatal(err)
				}
				return []string{"repair", "-A", "--apply", "--objects", p, "--node", "node1", "--state-dir", stateDir}
			}},
		} {
			t.Run(c.name, func(t *testing.T) {
				before, _ := os.ReadDir(stateDir)
				_, stderr, code := run(c.args()...)
				if code != 2 || !strings.Contains(stderr, c.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
					t.Fatalf("exit %d (want 2, one sentence naming %q): %q", code, c.want, stderr)
				}
				t.Logf("refused: %s", strings.TrimSpace(stderr))
				unchanged(c.name)
				if _, err := os.Stat(marker); err == nil {
					t.Fatal("a program named by the file ran")
				}
				if after, _ := os.ReadDir(stateDir); len(after) != len(before) {
					t.Fatalf("a state file was saved for a refused input (%d files, were %d)", len(after), len(before))
				}
			})
		}
		t.Run("snapshot into a directory with a planted link", func(t *testing.T) {
			victim := filepath.Join(dir, "victim")
			if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
				t.Fatal(err)
			}
			snap := filepath.Join(dir, "snap")
			if err := os.MkdirAll(snap, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(snap, "snapshot.yaml"), []byte("apiVersion: svctrace/v1\nkind: Snapshot\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(victim, filepath.Join(snap, "iptables-save.txt")); err != nil {
				t.Fatal(err)
			}
			_, stderr, code := run("snapshot", snap, "--objects", objPath, "--node", "node1")
			if code != 2 || !strings.Contains(stderr, "link") {
				t.Fatalf("exit %d %q", code, stderr)
			}
			if data, _ := os.ReadFile(victim); string(data) != "keep" {
				t.Fatalf("the link's target was written: %q", data)
			}
		})
	})

	// killedAt starts --apply paused before a step, kills it there with SIGKILL and returns the
	// state file it saved.
	killedAt := func(t *testing.T, step string) string {
		_ = os.Remove(resume)
		cmd := svctrace(step, append(repair, "--apply")...)
		pipe, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		state := ""
		var said []string
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			l := sc.Text()
			said = append(said, l)
			if s, ok := strings.CutPrefix(l, "saved the state being replaced to "); ok {
				state = s
			}
			if strings.HasPrefix(l, "paused before "+step) {
				break
			}
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if state == "" {
			t.Fatalf("no state file named before the kill: %q", said)
		}
		return state
	}

	t.Run("killed before writing", func(t *testing.T) {
		state := killedAt(t, "write")
		unchanged("killed before writing")
		var s struct{ Status string }
		data, _ := os.ReadFile(state)
		if err := json.Unmarshal(data, &s); err != nil || s.Status != "writing" {
			t.Fatalf("state file %s: %v %s", state, err, data)
		}
	})

	t.Run("killed before verifying, then undone", func(t *testing.T) {
		state := killedAt(t, "verify")
		if save() == orig {
			t.Fatal("nothing was written before the verify step")
		}
		// The node is in the planned state: a new plan finds nothing to do.
		if out, stderr, code := run(repair...); code != 0 || !strings.Contains(out, "nothing to repair") {
			t.Fatalf("after the write: exit %d %s %s", code, out, stderr)
		}
		if _, stderr, code := run("repair", "--undo", state, "--node", "node1"); code != 0 {
			t.Fatalf("undo: exit %d %q", code, stderr)
		}
		unchanged("after undo")
	})

	t.Run("apply, verify, undo", func(t *testing.T) {
		_, stderr, code := run(append(repair, "--apply")...)
		if code != 0 || !strings.Contains(stderr, "read back as planned and traced clean") || !strings.Contains(stderr, "kube-proxy owns these rules") {
			t.Fatalf("apply: exit %d %q", code, stderr)
		}
		now := save()
		if strings.Contains(now, "default/multi:") || !strings.Contains(now, "--to-destination 10.244.1.15:9376") {
			t.Fatalf("the applied rules are not the plan's:\n%s", now)
		}
		for _, l := range strings.Split(now, "\n") {
			// Nothing but kube-proxy's service chains changed.
			if strings.HasPrefix(l, "-A ") && !strings.Contains(orig, l) {
				c := strings.Fields(l)[1]
				if !strings.HasPrefix(c, "KUBE-S") {
					t.Errorf("rule added outside kube-proxy's service chains: %s", l)
				}
			}
		}
		if _, _, code := run(repair...); code != 0 {
			t.Errorf("a dry run after the repair still finds work (exit %d)", code)
		}
		undo := undoState(t, stderr)
		if _, stderr, code := run("repair", "--undo", undo, "--node", "node1"); code != 0 {
			t.Fatalf("undo %q: exit %d %q", undo, code, stderr)
		}
		unchanged("after undo")
	})
}
