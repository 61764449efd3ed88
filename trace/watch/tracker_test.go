package watch

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svctrace/svctrace/trace"
)

func TestTrackerReportsWhatOutlastsTheGracePeriod(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	stale := trace.Finding{Kind: trace.StaleEndpoint, Severity: trace.SeverityError, Service: "default/web:http", Message: "m", Evidence: []string{"DNAT to 10.0.0.1:80"}}
	other := trace.Finding{Kind: trace.MissingEndpoint, Severity: trace.SeverityError, Service: "default/db:sql", Message: "n"}
	all := Scope{All: true}
	tr := NewTracker(10 * time.Second)

	tr.Changed("default/web", at(0))
	u := tr.Observe(at(1), all, []trace.Finding{stale})
	if len(u.Appeared) != 0 || !u.NextDue.Equal(at(11)) || !u.DueServices["default/web"] || len(u.Latencies) != 0 {
		t.Fatalf("a new finding is pending until its grace ends: %+v", u)
	}
	// Caught up within the grace period: never reported, and the latency is the time it took.
	u = tr.Observe(at(4), Scope{Services: map[string]bool{"default/web": true}}, nil)
	if len(u.Appeared)+len(u.Cleared) != 0 || len(u.Latencies) != 1 || u.Latencies[0] != 4*time.Second || !u.NextDue.IsZero() {
		t.Fatalf("caught up: %+v", u)
	}
	// Lasting: reported once, when the grace period has passed.
	tr.Observe(at(5), all, []trace.Finding{stale, other})
	if u = tr.Observe(at(14), all, []trace.Finding{stale, other}); len(u.Appeared) != 0 {
		t.Fatalf("reported before its grace ended: %+v", u.Appeared)
	}
	u = tr.Observe(at(15), all, []trace.Finding{stale, other})
	if len(u.Appeared) != 2 || len(tr.Active()) != 2 {
		t.Fatalf("after the grace period: %+v, active %v", u.Appeared, tr.Active())
	}
	if u = tr.Observe(at(16), all, []trace.Finding{stale, other}); len(u.Appeared) != 0 {
		t.Fatalf("reported twice: %+v", u.Appeared)
	}
	// A check of another Service does not clear web's finding; one of web does.
	if u = tr.Observe(at(17), Scope{Services: map[string]bool{"default/db": true}}, nil); len(u.Cleared) != 1 || u.Cleared[0].Service != "default/db:sql" {
		t.Fatalf("scoped clear: %+v", u.Cleared)
	}
	tr.Changed("default/web", at(18))
	if u = tr.Observe(at(19), Scope{Services: map[string]bool{"default/web": true}}, []trace.Finding{stale}); len(u.Cleared) != 0 || len(u.Latencies) != 0 {
		t.Fatalf("still stale: %+v", u)
	}
	if u = tr.Observe(at(30), all, nil); len(u.Cleared) != 1 || len(tr.Active()) != 0 || len(u.Latencies) != 1 || u.Latencies[0] != 12*time.Second {
		t.Fatalf("cleared: %+v", u)
	}
}

func TestStateOf(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	node := func(status corev1.ConditionStatus, age time.Duration) *corev1.Node {
		n := &corev1.Node{}
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue},
			{Type: ConditionType, Status: status, LastHeartbeatTime: metav1.NewTime(now.Add(-age))}}
		return n
	}
	for _, tc := range []struct {
		n    *corev1.Node
		want AgentState
	}{
		{node(corev1.ConditionTrue, time.Minute), AgentHealthy},
		{node(corev1.ConditionFalse, time.Minute), AgentUnhealthy},
		{node(corev1.ConditionUnknown, time.Minute), AgentUnhealthy},
		{node(corev1.ConditionTrue, 7*time.Minute), AgentSilent},
		{&corev1.Node{}, AgentAbsent},
	} {
		if got := StateOf(tc.n, now, 6*time.Minute); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.n.Status.Conditions, got, tc.want)
		}
	}
}

// The informers' initial list is no change to program: once forgotten, it gives no latency.
func TestForgetDropsTheInitialList(t *testing.T) {
	tr := NewTracker(10 * time.Second)
	t0 := time.Unix(1000, 0)
	tr.Changed("default/a", t0)
	tr.Changed("default/b", t0)
	tr.Forget()
	tr.Changed("default/b", t0.Add(time.Second))
	u := tr.Observe(t0.Add(3*time.Second), Scope{All: true}, nil)
	if len(u.Latencies) != 1 || u.Latencies[0] != 2*time.Second {
		t.Errorf("latencies %v, want only b's change of 2s", u.Latencies)
	}
}
