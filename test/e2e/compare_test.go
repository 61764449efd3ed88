//go:build e2e

package e2e

import (
	"sort"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/trace"
)

// expectation is what a flow must show: svctrace's verdict and pods, and real connections that
// agree with them.
type expectation struct {
	verdict string
	pods    []string
	sticky  bool
	// nodeAddrs are the addresses a masqueraded connection appears to come from.
	nodeAddrs map[string]bool
}

// checkPrediction checks svctrace's answer alone; it returns the predicted pods and their
// masquerade flags.
func checkPrediction(t *testing.T, res *trace.Result, want expectation) map[string]bool {
	t.Helper()
	if len(res.Verdicts) == 0 || string(res.Verdicts[0].Verdict) != want.verdict || res.Verdicts[0].Probability < 0.999999 {
		t.Fatalf("predicted verdicts %+v, want all %s; notes %v", res.Verdicts, want.verdict, res.Notes)
	}
	masq := map[string]bool{}
	var names []string
	for _, b := range res.Backends {
		if b.Pod == nil {
			t.Fatalf("backend %s:%d has no pod", b.IP, b.Port)
		}
		if b.Probability > 0 {
			masq[b.Pod.Name] = b.Masquerade
			names = append(names, b.Pod.Name)
		}
	}
	sort.Strings(names)
	if want.verdict == "DNAT" && strings.Join(names, ",") != strings.Join(want.pods, ",") {
		t.Fatalf("predicted pods %v, want %v", names, want.pods)
	}
	return masq
}

// checkConnections compares real connections with the prediction: a REJECT is refused, a DROP
// times out; otherwise only predicted pods answer, each with the source svctrace said it would
// see, and every predicted pod answers (or, with affinity, exactly one).
func checkConnections(t *testing.T, res *trace.Result, masq map[string]bool, got probeResult, want expectation) {
	t.Helper()
	if want.verdict != "DNAT" {
		if len(got.Backends) != 0 {
			t.Fatalf("predicted %s, but connections reached %v", want.verdict, got.Backends)
		}
		// ACCEPT: no rule rewrote the packet and it is delivered to the node, where nothing
		// listens on a Service port.
		failure := map[string]string{"REJECT": "refused", "DROP": "timeout", "ACCEPT": "refused"}[want.verdict]
		for msg := range got.Failures {
			if !strings.Contains(msg, failure) {
				t.Errorf("predicted %s, connections failed with %q", want.verdict, msg)
			}
		}
		return
	}
	if len(got.Failures) > 0 {
		t.Errorf("connections failed: %v", got.Failures)
	}
	reached := map[string]int{}
	for answer, count := range got.Backends {
		pod, seen, _ := strings.Cut(answer, " ")
		reached[pod] += count
		m, predicted := masq[pod]
		if !predicted {
			t.Errorf("connections reached %s, which svctrace did not predict", pod)
			continue
		}
		if m != want.nodeAddrs[seen] {
			t.Errorf("%s saw the client as %s; svctrace predicted masquerade=%v", pod, seen, m)
		}
	}
	if want.sticky {
		if len(reached) != 1 || res.AffinitySeconds != 10800 {
			t.Errorf("session affinity: reached %v (want one backend), predicted affinity %ds", reached, res.AffinitySeconds)
		}
		return
	}
	for pod := range masq {
		if reached[pod] == 0 {
			t.Errorf("svctrace predicted %s with a share > 0, but connections never reached it (reached %v)", pod, reached)
		}
	}
}
