// Package watch keeps check's findings over time for an agent that checks its node again and
// again: a finding is reported only once it has lasted a grace period (kube-proxy applies API
// changes within a few seconds; what outlasts that is stale), and cleared when a check that covers
// its Service no longer finds it. It also measures programming latency: from an API change to
// the first check that finds the node agreeing with it. Pure: the caller supplies the clock.
package watch

import (
	"sort"
	"strings"
	"time"

	"github.com/svctrace/svctrace/trace"
)

// Tracker is the findings' state between checks. Not safe for concurrent use.
type Tracker struct {
	grace   time.Duration
	pending map[string]pendingFinding
	active  map[string]trace.Finding
	changed map[string]time.Time // Service "ns/name" → first unapplied API change
}

type pendingFinding struct {
	f     trace.Finding
	since time.Time
}

// NewTracker returns a tracker that reports findings that last grace.
func NewTracker(grace time.Duration) *Tracker {
	return &Tracker{grace: grace, pending: map[string]pendingFinding{}, active: map[string]trace.Finding{}, changed: map[string]time.Time{}}
}

// Key identifies a finding from one check to the next.
func Key(f trace.Finding) string {
	return f.Kind + "|" + f.Service + "|" + f.Message + "|" + strings.Join(f.Evidence, ",")
}

// ServiceOf is the "namespace/name" of a finding's service port ("ns/name:port"), "" for a
// finding about the node.
func ServiceOf(f trace.Finding) string {
	name, _, _ := strings.Cut(f.Service, ":")
	if !strings.Contains(name, "/") {
		return ""
	}
	return name
}

// Scope is what one check covered: every Service (All), or these ("ns/name").
type Scope struct {
	All      bool
	Services map[string]bool
}

func (s Scope) covers(f trace.Finding) bool {
	return s.All || s.Services[ServiceOf(f)]
}

// Update is what changed with one check.
type Update struct {
	// Appeared are findings that have now lasted the grace period; Cleared are reported
	// findings that the check no longer found.
	Appeared, Cleared []trace.Finding
	// Latencies are the programming latencies observed: Services whose API change the node
	// now agrees with.
	Latencies []time.Duration
	// NextDue is when a pending finding's grace ends (zero: none pending); the caller checks
	// those Services again then.
	NextDue time.Time
	// DueServices are the Services of pending findings.
	DueServices map[string]bool
}

// Changed records an API change of a Service at t (its EndpointSlices, for the latency).
func (t *Tracker) Changed(svc string, at time.Time) {
	if _, ok := t.changed[svc]; !ok {
		t.changed[svc] = at
	}
}

// Forget drops the API changes recorded so far: the informers' initial list is not a change
// the node has to program.
func (t *Tracker) Forget() { t.changed = map[string]time.Time{} }

// Observe takes one check's findings at now over scope.
func (t *Tracker) Observe(now time.Time, scope Scope, findings []trace.Finding) Update {
	var u Update
	seen := map[string]bool{}
	stale := map[string]bool{} // Services with an error finding: the node does not agree yet
	for _, f := range findings {
		k := Key(f)
		seen[k] = true
		if f.Severity == trace.SeverityError {
			stale[ServiceOf(f)] = true
		}
		if _, ok := t.active[k]; ok {
			t.active[k] = f
			continue
		}
		p, ok := t.pending[k]
		if !ok {
			p = pendingFinding{f: f, since: now}
		}
		p.f = f
		if now.Sub(p.since) >= t.grace {
			delete(t.pending, k)
			t.active[k] = f
			u.Appeared = append(u.Appeared, f)
			continue
		}
		t.pending[k] = p
	}
	for k, f := range t.active {
		if scope.covers(f) && !seen[k] {
			delete(t.active, k)
			u.Cleared = append(u.Cleared, f)
		}
	}
	for k, p := range t.pending {
		if scope.covers(p.f) && !seen[k] {
			delete(t.pending, k) // kube-proxy caught up within the grace period
		}
	}
	for svc, at := range t.changed {
		if (scope.All || scope.Services[svc]) && !stale[svc] {
			u.Latencies = append(u.Latencies, now.Sub(at))
			delete(t.changed, svc)
		}
	}
	for _, p := range t.pending {
		due := p.since.Add(t.grace)
		if u.NextDue.IsZero() || due.Before(u.NextDue) {
			u.NextDue = due
		}
		if u.DueServices == nil {
			u.DueServices = map[string]bool{}
		}
		u.DueServices[ServiceOf(p.f)] = true
	}
	sortFindings(u.Appeared)
	sortFindings(u.Cleared)
	return u
}

// Active are the reported findings, sorted.
func (t *Tracker) Active() []trace.Finding {
	out := make([]trace.Finding, 0, len(t.active))
	for _, f := range t.active {
		out = append(out, f)
	}
	sortFindings(out)
	return out
}

func sortFindings(fs []trace.Finding) {
	sort.Slice(fs, func(i, j int) bool { return Key(fs[i]) < Key(fs[j]) })
}
