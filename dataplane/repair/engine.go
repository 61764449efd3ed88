// Package repair applies and undoes repair plans on a node. Every read and write goes through a
// small Node interface, so each step's failure can be tested without a kernel, and every outcome
// it reports is backed by the result of the step that decided it: a rollback is "done" only when
// the chains were read back equal to what they were, a repair is "verified" only when they were
// read back equal to the plan and the repaired Service ports traced clean.
package repair

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/svctrace/svctrace/dataplane/nftwrite"
	"github.com/svctrace/svctrace/dataplane/xtables"
	"github.com/svctrace/svctrace/trace"
)

// Node is what the engine needs of a node. The real one runs iptables-save/-restore, netlink and
// conntrack on this machine; tests use a fake that can fail any call.
type Node interface {
	// ReadChains reads the named chains of each table from the backend family.
	ReadChains(ctx context.Context, backend string, want map[string][]string) (map[string]map[string]trace.ChainRules, error)
	// TestRestore checks restore input without writing it (iptables-restore --test).
	TestRestore(ctx context.Context, backend, input string) error
	// Restore writes one table's restore input as one transaction (iptables-restore --noflush).
	Restore(ctx context.Context, backend, input string) error
	// IPVSWeights reads the weight of each named real server; an absent one is left out.
	IPVSWeights(ctx context.Context, keys []RealKey) (map[RealKey]int, error)
	// IPVS runs one operation; a delete that waits for connections to end returns why it waited.
	IPVS(ctx context.Context, op trace.IPVSOp) (deferred string, err error)
	// DeleteConntrack deletes one flush's conntrack entries.
	DeleteConntrack(ctx context.Context, f trace.ConntrackFlush) error
	// CountConntrack counts the conntrack entries a flush matches.
	CountConntrack(ctx context.Context, f trace.ConntrackFlush) (int, error)
	// NftRead reads the objects want names in kube-proxy's nftables table of a family.
	NftRead(ctx context.Context, family string, want trace.NftState) (trace.NftState, error)
	// NftCheck checks the transaction that turns from into to (nft --check) without writing it.
	NftCheck(ctx context.Context, family string, from, to trace.NftState) error
	// NftWrite turns from into to: one transaction, then the deletion of emptied chains.
	NftWrite(ctx context.Context, family string, from, to trace.NftState) error
	// ReadLeftover reads the node's state of a leftover's kind (backend and table, or nftables
	// family) as it is now; nil when there is none.
	ReadLeftover(ctx context.Context, l trace.Leftover) (*trace.Leftover, error)
	// RemoveLeftover removes it in one transaction; RestoreLeftover puts it back.
	RemoveLeftover(ctx context.Context, l trace.Leftover) error
	RestoreLeftover(ctx context.Context, l trace.Leftover) error
	// SaveState writes a state file durably: the file and its directory are synced before it
	// returns, so a write that follows can always be undone from it.
	SaveState(path string, data []byte) error
}

// Outcome is what a run did to the node.
type Outcome int

// The outcomes. Each has its own exit code (see ExitCode) and one sentence.
const (
	// NothingToDo: the plan was empty.
	NothingToDo Outcome = iota
	// NothingWritten: refused, or failed before the node changed (read back where a write ran).
	NothingWritten
	// Applied: written, read back as planned, and the repaired Service ports traced clean.
	Applied
	// AppliedCleanupFailed: Applied, but some conntrack entries could not be deleted.
	AppliedCleanupFailed
	// RolledBack: written, then verification (or a later write) failed, and the old state was put
	// back and read back equal to what it was.
	RolledBack
	// RollbackFailed: written, verification failed, and putting the old state back failed: the
	// node holds neither the old nor the planned state for sure.
	RollbackFailed
	// Undone: --undo put back the saved state and read it back.
	Undone
	// UndoPartial: --undo put back only part of the saved state.
	UndoPartial
)

// Exit codes of repair's outcomes; 0, 1 and 2 are shared by every command.
const (
	ExitRolledBack     = 4
	ExitRollbackFailed = 5
	ExitPartial        = 6
)

// ExitCode is the process exit code of an outcome.
func (o Outcome) ExitCode() int {
	switch o {
	case NothingWritten:
		return 2
	case RolledBack:
		return ExitRolledBack
	case RollbackFailed:
		return ExitRollbackFailed
	case AppliedCleanupFailed, UndoPartial:
		return ExitPartial
	}
	return 0
}

// String names the outcome, as the JSON result and logs spell it.
func (o Outcome) String() string {
	return [...]string{"NothingToDo", "NothingWritten", "Applied", "AppliedCleanupFailed", "RolledBack", "RollbackFailed", "Undone", "UndoPartial"}[o]
}

// Result is the outcome of a run and the sentence that says what the node now has.
type Result struct {
	Outcome Outcome
	// Message is one sentence: what the node has now, and what to do next if anything.
	Message string
	// StatePath is the state file saved before writing ("" when none was).
	StatePath string
	// Notes are further lines: deferred IPVS deletions, the undo command.
	Notes []string
}

// Engine applies plans and undoes them on one node.
type Engine struct {
	Node Node
	// StateDir is where Apply saves the state it replaces.
	StateDir string
	// Log receives a line per step taken (stderr); nil discards them.
	Log io.Writer
	// Check traces the repaired Service ports on the node as it is now and returns what is wrong
	// with them; nil when the API cannot be reached (verification then stops at reading back).
	Check func(ctx context.Context, plan *trace.RepairPlan, deferred []string) ([]string, error)
	// Pause is a test seam called before the "write" and "verify" steps; nil in the shipped tool.
	Pause func(step string)
	// Now is the clock (state file names).
	Now func() time.Time
	// RollbackTimeout bounds the rollback, which runs even when ctx was cancelled.
	RollbackTimeout time.Duration
}

func (e *Engine) logf(format string, a ...any) {
	if e.Log != nil {
		fmt.Fprintf(e.Log, format+"\n", a...)
	}
}

func (e *Engine) pause(step string) {
	if e.Pause != nil {
		e.Pause(step)
	}
}

// FamilyBackend is the command family that writes a family's tables: the node's iptables
// backend (a key of Backends), or its ip6tables twin for IPv6 ("ip6tables-legacy").
func FamilyBackend(backend string, v6 bool) string {
	if v6 {
		return xtables.IPv6Command(backend)
	}
	return backend
}

// readTables reads the chains the tables touch, each family with its own command, keyed by
// TableRestore.Key.
func (e *Engine) readTables(ctx context.Context, backend string, ts []trace.TableRestore) (map[string]map[string]trace.ChainRules, error) {
	out := map[string]map[string]trace.ChainRules{}
	for _, v6 := range []bool{false, true} {
		want := map[string][]string{}
		for _, t := range ts {
			if t.IPv6() == v6 {
				for _, c := range t.Before {
					want[t.Table] = append(want[t.Table], c.Chain)
				}
			}
		}
		if len(want) == 0 {
			continue
		}
		got, err := e.Node.ReadChains(ctx, FamilyBackend(backend, v6), want)
		if err != nil {
			return nil, err
		}
		for table, chains := range got {
			out[trace.TableKey(table, v6)] = chains
		}
	}
	return out, nil
}

// chainCount is how many chains the tables touch.
func chainCount(ts []trace.TableRestore) int {
	n := 0
	for _, t := range ts {
		n += len(t.Before)
	}
	return n
}

// realKeys are the real servers the plan's IPVS operations touch, each once, in order.
func realKeys(p *trace.RepairPlan) []RealKey {
	var out []RealKey
	seen := map[RealKey]bool{}
	for _, op := range p.IPVS {
		k := RealKey{op.Protocol, op.Virtual, op.Real}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// Apply writes the plan on the node (whose name, mode and iptables backend family the caller
// read from the node itself), verifies it and rolls it back if it is not what was planned.
func (e *Engine) Apply(ctx context.Context, plan *trace.RepairPlan, node, backend string) Result {
	if plan.Empty() {
		return Result{Outcome: NothingToDo, Message: "nothing to repair: the node already does what the API says for the Services in scope"}
	}
	refuse := func(format string, a ...any) Result {
		return Result{Outcome: NothingWritten, Message: fmt.Sprintf(format, a...) + "; nothing was written"}
	}
	if err := ValidNodeName(node); err != nil {
		return refuse("refusing to write: this node's %v", err)
	}
	if plan.Node != node {
		return refuse("refusing to write: the plan is for node %s, this is node %s", plan.Node, node)
	}
	flowsOnly := len(plan.IPTables) == 0 && len(plan.IPVS) == 0 && len(plan.Nftables) == 0 && len(plan.Leftovers) == 0
	if err := ValidatePlan(plan); err != nil {
		return refuse("refusing to write: the plan is not valid: %v", err)
	}
	if flowsOnly {
		// Only conntrack entries: nothing to save or roll back (a deleted entry cannot be put
		// back; the client's next packet creates a new one through the rules).
		done, failed := e.deleteFlows(ctx, plan.Conntrack)
		msg := fmt.Sprintf("deleted stale conntrack entries on %s: %s", node, strings.Join(done, "; "))
		if len(done) == 0 {
			msg = fmt.Sprintf("deleted no conntrack entries on %s", node)
		}
		if len(failed) > 0 {
			return Result{Outcome: AppliedCleanupFailed, Message: msg + fmt.Sprintf("; but %d of %d conntrack deletion(s) failed: %s", len(failed), len(plan.Conntrack), strings.Join(failed, "; "))}
		}
		return Result{Outcome: Applied, Message: msg}
	}
	if len(plan.IPTables) > 0 && !Backends[backend] {
		return refuse("refusing to write: the iptables backend %q is not clear", backend)
	}
	state := &State{APIVersion: trace.APIVersion, Kind: stateKind, Time: e.now(), Status: "writing", Node: node, Mode: plan.Mode, Plan: plan}
	if len(plan.IPTables) > 0 {
		state.Backend = backend
		now, err := e.readTables(ctx, backend, plan.IPTables)
		if err != nil {
			return refuse("could not read the chains the plan touches: %v", err)
		}
		if diff := xtables.Differences(now, plan.IPTables, false); len(diff) > 0 {
			return refuse("the node changed since the plan was made (is kube-proxy running?): %s", strings.Join(diff, "; "))
		}
		for _, v6 := range []bool{false, true} {
			input := joinInputs(plan, v6)
			if input == "" {
				continue
			}
			cmd := FamilyBackend(backend, v6)
			if err := e.Node.TestRestore(ctx, cmd, input); err != nil {
				return refuse("%s-restore --test did not accept the plan's input: %v", cmd, err)
			}
			e.logf("the touched chains are as planned and %s-restore --test accepts the input", cmd)
		}
	}
	for _, c := range plan.Nftables {
		now, err := e.Node.NftRead(ctx, c.Family, c.Before)
		if err != nil {
			return refuse("could not read the nftables objects the plan touches: %v", err)
		}
		if diff := nftwrite.Differences(now, c.Before); len(diff) > 0 {
			return refuse("the node changed since the plan was made (is kube-proxy running?): %s", strings.Join(diff, "; "))
		}
		if err := e.Node.NftCheck(ctx, c.Family, c.Before, c.After); err != nil {
			return refuse("nft --check did not accept the %s transaction: %v", c.Family, err)
		}
		e.logf("the touched %s kube-proxy objects are as planned and nft --check accepts the transaction", c.Family)
	}
	for _, l := range plan.Leftovers {
		now, err := e.Node.ReadLeftover(ctx, l)
		if err != nil {
			return refuse("could not read %s: %v", l.Where(), err)
		}
		if diff := leftoverDifferences(now, l); len(diff) > 0 {
			return refuse("the node changed since the plan was made: %s", strings.Join(diff, "; "))
		}
	}
	if keys := realKeys(plan); len(keys) > 0 {
		w, err := e.Node.IPVSWeights(ctx, keys)
		if err != nil {
			return refuse("could not read the IPVS real servers the plan touches: %v", err)
		}
		for _, k := range keys {
			weight, ok := w[k]
			if !ok {
				weight = -1
			}
			state.IPVSBefore = append(state.IPVSBefore, RealState{Protocol: k.Protocol, Virtual: k.Virtual, Real: k.Real, Weight: weight})
		}
	}
	if err := ctx.Err(); err != nil {
		return refuse("interrupted before writing (%v)", err)
	}
	path := filepath.Join(e.StateDir, fmt.Sprintf("repair-%s-%s.json", node, state.Time.Format("20060102T150405.000Z")))
	if err := e.save(path, state); err != nil {
		return refuse("could not save the state being replaced to %s, so there would be nothing to undo from: %v", path, err)
	}
	e.logf("saved the state being replaced to %s", path)

	e.pause("write")
	wrote := false
	if err := ctx.Err(); err != nil {
		return e.recover(ctx, state, path, fmt.Sprintf("interrupted before writing (%v)", err), wrote)
	}
	for _, t := range plan.IPTables {
		if err := e.Node.Restore(ctx, FamilyBackend(backend, t.IPv6()), t.Input); err != nil {
			return e.recover(ctx, state, path, fmt.Sprintf("writing the %s table failed: %v", t.Key(), err), wrote)
		}
		wrote = true
		e.logf("wrote the %s table (%d chain(s))", t.Key(), len(t.Before))
	}
	for _, c := range plan.Nftables {
		if err := ctx.Err(); err != nil {
			return e.recover(ctx, state, path, fmt.Sprintf("interrupted while writing (%v)", err), wrote)
		}
		if err := e.Node.NftWrite(ctx, c.Family, c.Before, c.After); err != nil {
			return e.recover(ctx, state, path, fmt.Sprintf("writing the %s kube-proxy table failed: %v", c.Family, err), wrote)
		}
		wrote = true
		e.logf("wrote the %s kube-proxy table (%d chain(s), %d set(s), %d element(s))", c.Family, len(c.After.Chains), len(c.After.Sets), len(c.After.Elements))
	}
	for _, op := range plan.IPVS {
		if err := ctx.Err(); err != nil {
			return e.recover(ctx, state, path, fmt.Sprintf("interrupted while writing (%v)", err), wrote)
		}
		deferred, err := e.Node.IPVS(ctx, op)
		if err != nil {
			return e.recover(ctx, state, path, fmt.Sprintf("IPVS %s %s on %s %s failed: %v", op.Op, op.Real, op.Protocol, op.Virtual, err), wrote)
		}
		wrote = true
		if deferred != "" {
			state.Deferred = append(state.Deferred, deferred)
		}
	}

	for _, l := range plan.Leftovers {
		if err := ctx.Err(); err != nil {
			return e.recover(ctx, state, path, fmt.Sprintf("interrupted while writing (%v)", err), wrote)
		}
		if err := e.Node.RemoveLeftover(ctx, l); err != nil {
			return e.recover(ctx, state, path, fmt.Sprintf("removing %s failed: %v", l.Where(), err), wrote)
		}
		wrote = true
		e.logf("removed %s, left from %s mode", l.Where(), l.Mode)
	}

	e.pause("verify")
	problems, traced := e.verify(ctx, state)
	if len(problems) > 0 {
		return e.recover(ctx, state, path, "the repaired dataplane is not what was planned: "+strings.Join(problems, "; "), true)
	}
	flushed, failed := e.deleteFlows(ctx, plan.Conntrack)
	state.Status = "applied"
	var notes []string
	if err := e.save(path, state); err != nil {
		notes = append(notes, fmt.Sprintf("warning: could not mark %s as applied (%v); it still holds the state to undo from", path, err))
	}
	notes = append(notes, state.Deferred...)
	notes = append(notes, "undo with: kubectl svctrace repair --undo "+path)
	verified := "read back as planned and traced clean"
	if !traced {
		verified = "read back as planned (not traced against the API, which could not be reached)"
	}
	msg := fmt.Sprintf("repaired %d service port(s) on %s, %s: %s", len(plan.Services), node, verified, strings.Join(plan.Services, ", "))
	if len(plan.Leftovers) > 0 {
		var where []string
		for _, l := range plan.Leftovers {
			where = append(where, l.Where()+" (from "+l.Mode+" mode)")
		}
		removed := fmt.Sprintf("removed what another kube-proxy mode left on %s, read back as gone: %s", node, strings.Join(where, ", "))
		if len(plan.Services) == 0 {
			msg = removed
		} else {
			msg += "; " + removed
		}
	}
	if len(flushed) > 0 {
		msg += "; deleted conntrack entries: " + strings.Join(flushed, "; ")
	}
	if len(failed) > 0 {
		return Result{Outcome: AppliedCleanupFailed, StatePath: path, Notes: notes,
			Message: msg + fmt.Sprintf("; but %d of %d conntrack deletion(s) failed, so flows to removed endpoints may persist: %s", len(failed), len(plan.Conntrack), strings.Join(failed, "; "))}
	}
	return Result{Outcome: Applied, StatePath: path, Notes: notes, Message: msg}
}

// touchedWords names what a plan writes, for the rollback sentence.
func touchedWords(p *trace.RepairPlan) string {
	var w []string
	if len(p.IPTables) > 0 {
		w = append(w, "chains")
	}
	if len(p.Nftables) > 0 {
		w = append(w, "nftables objects")
	}
	if len(p.IPVS) > 0 {
		w = append(w, "real servers")
	}
	if len(p.Leftovers) > 0 {
		w = append(w, "leftovers of another mode")
	}
	return strings.Join(w, " and ")
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now().UTC()
	}
	return time.Now().UTC()
}

func (e *Engine) save(path string, s *State) error {
	data, err := s.Encode()
	if err != nil {
		return err
	}
	return e.Node.SaveState(path, data)
}

// joinInputs is the restore input of one family's tables.
func joinInputs(p *trace.RepairPlan, v6 bool) string {
	var b strings.Builder
	for _, t := range p.IPTables {
		if t.IPv6() == v6 {
			b.WriteString(t.Input)
		}
	}
	return b.String()
}

// ErrNotTraced is what Check returns when the API cannot be read: verification then stops at
// reading the node back, and the outcome says so.
var ErrNotTraced = errors.New("the API could not be read")

// verify reads the node back: the touched chains must hold the plan's rules, the real servers the
// planned weights, and the repaired Service ports must trace clean. It returns what is wrong, and
// whether the trace ran.
func (e *Engine) verify(ctx context.Context, s *State) ([]string, bool) {
	plan := s.Plan
	if len(plan.IPTables) > 0 {
		now, err := e.readTables(ctx, s.Backend, plan.IPTables)
		if err != nil {
			return []string{"reading the chains back failed: " + err.Error()}, false
		}
		if diff := xtables.Differences(now, plan.IPTables, true); len(diff) > 0 {
			return diff, false
		}
	}
	for _, c := range plan.Nftables {
		now, err := e.Node.NftRead(ctx, c.Family, c.After)
		if err != nil {
			return []string{"reading the nftables objects back failed: " + err.Error()}, false
		}
		if diff := nftwrite.Differences(now, c.After); len(diff) > 0 {
			return diff, false
		}
	}
	for _, l := range plan.Leftovers {
		now, err := e.Node.ReadLeftover(ctx, l)
		if err != nil {
			return []string{"reading " + l.Where() + " back failed: " + err.Error()}, false
		}
		if now != nil {
			return []string{l.Where() + " is still there after its removal"}, false
		}
	}
	if keys := realKeys(plan); len(keys) > 0 {
		w, err := e.Node.IPVSWeights(ctx, keys)
		if err != nil {
			return []string{"reading the real servers back failed: " + err.Error()}, false
		}
		// The last operation on a real server decides what it must be now; a deletion that waits
		// for connections to end leaves it at weight 0.
		final := map[RealKey]trace.IPVSOp{}
		for _, op := range plan.IPVS {
			final[RealKey{op.Protocol, op.Virtual, op.Real}] = op
		}
		var problems []string
		for _, k := range keys {
			op := final[k]
			got, ok := w[k]
			switch {
			case op.Op == "delete-real" && ok && got != 0:
				problems = append(problems, fmt.Sprintf("real server %s of %s %s is still there with weight %d", op.Real, op.Protocol, op.Virtual, got))
			case op.Op != "delete-real" && (!ok || got != op.Weight):
				problems = append(problems, fmt.Sprintf("real server %s of %s %s does not have weight %d", op.Real, op.Protocol, op.Virtual, op.Weight))
			}
		}
		if len(problems) > 0 {
			return problems, false
		}
	}
	if e.Check == nil {
		return nil, false
	}
	problems, err := e.Check(ctx, plan, s.Deferred)
	if errors.Is(err, ErrNotTraced) {
		e.logf("not traced against the API: %v", err)
		return nil, false
	}
	if err != nil {
		return []string{"tracing the repaired Service ports failed: " + err.Error()}, false
	}
	return problems, true
}

// recover runs after something failed once the node may have changed: it puts back the saved
// state, reads it back, and says which of the outcomes happened. It runs to its end even when ctx
// was cancelled (Ctrl-C must not leave a half-written node), within RollbackTimeout.
func (e *Engine) recover(ctx context.Context, s *State, path, cause string, wrote bool) Result {
	timeout := e.RollbackTimeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	e.logf("%s; putting the old state back", cause)
	changed, err := e.restore(rctx, s)
	if err != nil {
		s.Status = "rollback failed"
		serr := e.save(path, s)
		msg := fmt.Sprintf("ROLLBACK FAILED: %s, and putting the old state back failed too (%v): this node may hold part of the repair. The state it had is saved in %s; restore it by hand with: sudo kubectl-svctrace repair --undo %s --force", cause, err, path, path)
		if serr != nil {
			msg += fmt.Sprintf(" (the state file could not be marked as such: %v)", serr)
		}
		return Result{Outcome: RollbackFailed, StatePath: path, Message: msg}
	}
	if !wrote && !changed {
		s.Status = "write failed"
		_ = e.save(path, s) // the file still holds the (unchanged) state; its status is a courtesy
		return Result{Outcome: NothingWritten, StatePath: path, Message: cause + "; the node was read back unchanged, nothing was written"}
	}
	s.Status = "rolled back"
	var note []string
	if err := e.save(path, s); err != nil {
		note = append(note, fmt.Sprintf("warning: could not mark %s as rolled back: %v", path, err))
	}
	return Result{Outcome: RolledBack, StatePath: path, Notes: note, Message: cause + "; rolled back: the touched " + touchedWords(s.Plan) + " were read back as they were before"}
}

// restore puts the state's "before" back wherever the node differs from it, and reads it back. It
// reports whether anything had to be put back, and an error unless the node now equals "before".
func (e *Engine) restore(ctx context.Context, s *State) (bool, error) {
	changed := false
	var failed []string
	if len(s.Plan.IPTables) > 0 {
		c, err := e.restoreTables(ctx, s)
		changed = changed || c
		if err != nil {
			failed = append(failed, err.Error())
		}
	}
	if len(s.Plan.Nftables) > 0 {
		c, err := e.restoreNft(ctx, s)
		changed = changed || c
		if err != nil {
			failed = append(failed, err.Error())
		}
	}
	if len(s.IPVSBefore) > 0 {
		c, err := e.restoreReals(ctx, s)
		changed = changed || c
		if err != nil {
			failed = append(failed, err.Error())
		}
	}
	if len(s.Plan.Leftovers) > 0 {
		c, err := e.restoreLeftovers(ctx, s)
		changed = changed || c
		if err != nil {
			failed = append(failed, err.Error())
		}
	}
	if len(failed) > 0 {
		return changed, errors.New(strings.Join(failed, "; "))
	}
	return changed, nil
}

// restoreLeftovers puts back every removed leftover that is not there, and reads it back: in
// the reverse order of the removal (IPVS mode's ipsets before the iptables rules that use them).
// IPVS state that is there in part (a removal cut short) is completed.
func (e *Engine) restoreLeftovers(ctx context.Context, s *State) (bool, error) {
	changed := false
	for i := len(s.Plan.Leftovers) - 1; i >= 0; i-- {
		l := s.Plan.Leftovers[i]
		now, err := e.Node.ReadLeftover(ctx, l)
		if err != nil {
			return changed, fmt.Errorf("reading %s failed: %w", l.Where(), err)
		}
		if len(leftoverDifferences(now, l)) == 0 {
			continue
		}
		if now != nil && !partOf(now, l) {
			return changed, fmt.Errorf("%s is there, but not as it was: not overwritten", l.Where())
		}
		changed = true
		if err := e.Node.RestoreLeftover(ctx, l); err != nil {
			return true, fmt.Errorf("putting back %s failed: %w", l.Where(), err)
		}
		now, err = e.Node.ReadLeftover(ctx, l)
		if err != nil {
			return true, fmt.Errorf("reading %s back failed: %w", l.Where(), err)
		}
		if diff := leftoverDifferences(now, l); len(diff) > 0 {
			return true, fmt.Errorf("%s read back, not as before: %s", l.Where(), strings.Join(diff, "; "))
		}
	}
	return changed, nil
}

// restoreNft puts every touched nftables object back as it was before, from what the node has
// now, and reads it back.
func (e *Engine) restoreNft(ctx context.Context, s *State) (bool, error) {
	changed := false
	for _, c := range s.Plan.Nftables {
		now, err := e.Node.NftRead(ctx, c.Family, c.Before)
		if err != nil {
			return changed, fmt.Errorf("reading the %s kube-proxy objects failed: %w", c.Family, err)
		}
		if len(nftwrite.Differences(now, c.Before)) == 0 {
			continue
		}
		changed = true
		if err := e.Node.NftWrite(ctx, c.Family, now, c.Before); err != nil {
			return true, fmt.Errorf("writing the old %s kube-proxy objects failed: %w", c.Family, err)
		}
		now, err = e.Node.NftRead(ctx, c.Family, c.Before)
		if err != nil {
			return true, fmt.Errorf("reading the %s kube-proxy objects back failed: %w", c.Family, err)
		}
		if diff := nftwrite.Differences(now, c.Before); len(diff) > 0 {
			return true, fmt.Errorf("%s kube-proxy objects read back, not as before: %s", c.Family, strings.Join(diff, "; "))
		}
	}
	return changed, nil
}

func (e *Engine) restoreTables(ctx context.Context, s *State) (bool, error) {
	now, err := e.readTables(ctx, s.Backend, s.Plan.IPTables)
	if err != nil {
		return false, fmt.Errorf("reading the chains failed: %w", err)
	}
	changed := false
	for _, t := range s.Plan.IPTables {
		if len(xtables.Differences(now, []trace.TableRestore{t}, false)) == 0 {
			continue
		}
		changed = true
		if err := e.Node.Restore(ctx, FamilyBackend(s.Backend, t.IPv6()), xtables.RollbackInput(t, now[t.Key()])); err != nil {
			return true, fmt.Errorf("writing the old %s chains failed: %w", t.Key(), err)
		}
	}
	if !changed {
		return false, nil
	}
	now, err = e.readTables(ctx, s.Backend, s.Plan.IPTables)
	if err != nil {
		return true, fmt.Errorf("reading the chains back failed: %w", err)
	}
	if diff := xtables.Differences(now, s.Plan.IPTables, false); len(diff) > 0 {
		return true, fmt.Errorf("read back, not as before: %s", strings.Join(diff, "; "))
	}
	return true, nil
}

// restoreReals gives every touched real server its weight from before (adding or deleting it).
func (e *Engine) restoreReals(ctx context.Context, s *State) (bool, error) {
	keys := make([]RealKey, len(s.IPVSBefore))
	for i, r := range s.IPVSBefore {
		keys[i] = r.key()
	}
	now, err := e.Node.IPVSWeights(ctx, keys)
	if err != nil {
		return false, fmt.Errorf("reading the real servers failed: %w", err)
	}
	changed := false
	var failed []string
	for _, r := range s.IPVSBefore {
		got, ok := now[r.key()]
		op := trace.IPVSOp{Protocol: r.Protocol, Virtual: r.Virtual, Real: r.Real, Weight: r.Weight}
		switch {
		case r.Weight < 0 && !ok, r.Weight >= 0 && ok && got == r.Weight:
			continue
		case r.Weight < 0:
			op.Op, op.Weight = "delete-real", 0
		case !ok:
			op.Op = "add-real"
		default:
			op.Op = "set-weight"
		}
		changed = true
		if _, err := e.Node.IPVS(ctx, op); err != nil {
			failed = append(failed, fmt.Sprintf("%s %s on %s %s: %v", op.Op, op.Real, op.Protocol, op.Virtual, err))
		}
	}
	if len(failed) > 0 {
		return changed, errors.New(strings.Join(failed, "; "))
	}
	if !changed {
		return false, nil
	}
	now, err = e.Node.IPVSWeights(ctx, keys)
	if err != nil {
		return true, fmt.Errorf("reading the real servers back failed: %w", err)
	}
	var wrong []string
	for _, r := range s.IPVSBefore {
		got, ok := now[r.key()]
		if (r.Weight < 0) == ok || ok && got != r.Weight {
			wrong = append(wrong, r.Real+" of "+r.Protocol+" "+r.Virtual)
		}
	}
	if len(wrong) > 0 {
		sort.Strings(wrong)
		return true, fmt.Errorf("real servers read back, not as before: %s", strings.Join(wrong, ", "))
	}
	return true, nil
}

// Undo puts back the state a run saved in path. Unless force, it refuses when the touched chains
// no longer hold what that run wrote (kube-proxy synced them since).
func (e *Engine) Undo(ctx context.Context, s *State, path, node string, force bool) Result {
	if s.Node != node {
		return Result{Outcome: NothingWritten, Message: fmt.Sprintf("refusing to undo: %s was saved on node %s, this is node %s; nothing was written", path, s.Node, node)}
	}
	if len(s.Plan.IPTables) > 0 && !force {
		now, err := e.readTables(ctx, s.Backend, s.Plan.IPTables)
		if err != nil {
			return Result{Outcome: NothingWritten, Message: fmt.Sprintf("could not read the chains the repair touched: %v; nothing was written", err)}
		}
		if diff := xtables.Differences(now, s.Plan.IPTables, true); len(diff) > 0 && len(xtables.Differences(now, s.Plan.IPTables, false)) > 0 {
			return Result{Outcome: NothingWritten, Message: fmt.Sprintf("the chains changed since the repair (kube-proxy synced them?): %s; undoing would overwrite that, so nothing was written; add --force to undo anyway", strings.Join(diff, "; "))}
		}
	}
	if !force {
		for _, l := range s.Plan.Leftovers {
			now, err := e.Node.ReadLeftover(ctx, l)
			if err != nil {
				return Result{Outcome: NothingWritten, Message: fmt.Sprintf("could not read %s: %v; nothing was written", l.Where(), err)}
			}
			if now != nil && len(leftoverDifferences(now, l)) > 0 {
				return Result{Outcome: NothingWritten, Message: fmt.Sprintf("%s was written again since the repair: undoing would overwrite that, so nothing was written; add --force to undo anyway", l.Where())}
			}
		}
		for _, c := range s.Plan.Nftables {
			now, err := e.Node.NftRead(ctx, c.Family, c.After)
			if err != nil {
				return Result{Outcome: NothingWritten, Message: fmt.Sprintf("could not read the nftables objects the repair touched: %v; nothing was written", err)}
			}
			if diff := nftwrite.Differences(now, c.After); len(diff) > 0 && len(nftwrite.Differences(now, c.Before)) > 0 {
				return Result{Outcome: NothingWritten, Message: fmt.Sprintf("the %s kube-proxy objects changed since the repair (kube-proxy synced them?): %s; undoing would overwrite that, so nothing was written; add --force to undo anyway", c.Family, strings.Join(diff, "; "))}
			}
		}
	}
	var parts, failed []string
	wrote := false
	if len(s.Plan.Nftables) > 0 {
		changed, err := e.restoreNft(ctx, s)
		wrote = wrote || changed
		if err != nil {
			failed = append(failed, "nftables: "+err.Error())
		} else {
			n := 0
			for _, c := range s.Plan.Nftables {
				n += len(c.Before.Chains) + len(c.Before.Sets) + len(c.Before.Elements)
			}
			parts = append(parts, fmt.Sprintf("%d nftables object(s)", n))
		}
	}
	if len(s.Plan.IPTables) > 0 {
		changed, err := e.restoreTables(ctx, s)
		wrote = wrote || changed
		if err != nil {
			failed = append(failed, "iptables: "+err.Error())
		} else {
			parts = append(parts, fmt.Sprintf("%d chain(s)", chainCount(s.Plan.IPTables)))
		}
	}
	if len(s.IPVSBefore) > 0 {
		changed, err := e.restoreReals(ctx, s)
		wrote = wrote || changed
		if err != nil {
			failed = append(failed, "IPVS: "+err.Error())
		} else {
			parts = append(parts, fmt.Sprintf("%d real server(s)", len(s.IPVSBefore)))
		}
	}
	if len(s.Plan.Leftovers) > 0 {
		changed, err := e.restoreLeftovers(ctx, s)
		wrote = wrote || changed
		if err != nil {
			failed = append(failed, "leftovers: "+err.Error())
		} else {
			parts = append(parts, fmt.Sprintf("%d leftover(s) of another mode", len(s.Plan.Leftovers)))
		}
	}
	if len(failed) > 0 && !wrote {
		// Every part failed before anything was written: not partial, nothing.
		return Result{Outcome: NothingWritten, StatePath: path, Message: fmt.Sprintf("could not undo %s: %s; nothing was written", path, strings.Join(failed, "; "))}
	}
	if len(failed) > 0 {
		done := "nothing of it was read back as before"
		if len(parts) > 0 {
			done = strings.Join(parts, " and ") + " were read back as before"
		}
		return Result{Outcome: UndoPartial, StatePath: path, Message: fmt.Sprintf("undo was partial: %s; but %s. Try again, or restart kube-proxy to have it rewrite its rules", done, strings.Join(failed, "; "))}
	}
	s.Status = "undone"
	var notes []string
	if err := e.save(path, s); err != nil {
		notes = append(notes, fmt.Sprintf("warning: could not mark %s as undone: %v", path, err))
	}
	return Result{Outcome: Undone, StatePath: path, Notes: notes, Message: fmt.Sprintf("restored the state saved in %s (%s read back as before)", path, strings.Join(parts, " and "))}
}

// deleteFlows deletes each flush's conntrack entries, counting the entries it matches before and
// after: a flush is done when none is left. It returns a line per flush done and per failure.
func (e *Engine) deleteFlows(ctx context.Context, flushes []trace.ConntrackFlush) (done, failed []string) {
	for _, f := range flushes {
		what := fmt.Sprintf("%s to %s via %s", f.Protocol, f.Dst, f.Backend)
		if f.BackendPort != 0 {
			what += fmt.Sprintf(":%d", f.BackendPort)
		}
		if f.Zone != nil {
			what += fmt.Sprintf(" in zone %d", *f.Zone)
		}
		before, err := e.Node.CountConntrack(ctx, f)
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: counting the entries: %v", what, err))
			continue
		}
		if err := e.Node.DeleteConntrack(ctx, f); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", what, err))
			continue
		}
		after, err := e.Node.CountConntrack(ctx, f)
		switch {
		case err != nil:
			failed = append(failed, fmt.Sprintf("%s: %d entries before; counting them after the deletion failed: %v", what, before, err))
		case after > 0:
			failed = append(failed, fmt.Sprintf("%s: %d entries before, %d after the deletion (the dataplane still sends new flows there)", what, before, after))
		default:
			done = append(done, fmt.Sprintf("%s: %d before, 0 after", what, before))
			e.logf("deleted the conntrack entries %s: %d before, 0 after", what, before)
		}
	}
	return done, failed
}
