package plugin

import (
	"math"
	"runtime/debug"
	"testing"
)

// TestOneShotGC: a one-shot command collects at GOGC=400 under a 1 GiB soft limit; the agent,
// and GOGC or GOMEMLIMIT in the environment, leave Go's own pacing.
func TestOneShotGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	pacing := func() (int, int64) {
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		return p, debug.SetMemoryLimit(-1)
	}
	for _, tc := range []struct {
		args       []string
		env, value string
		percent    int
		limit      int64
	}{
		{[]string{"version"}, "", "", oneShotGCPercent, oneShotMemoryLimit},
		// The agent refuses the flag after its pre-run (its pacing decided) and ends.
		{[]string{"agent", "--interval=-1s"}, "", "", 100, math.MaxInt64},
		{[]string{"version"}, "GOGC", "50", 100, math.MaxInt64},
		{[]string{"version"}, "GOMEMLIMIT", "2GiB", 100, math.MaxInt64},
	} {
		debug.SetGCPercent(100)
		debug.SetMemoryLimit(math.MaxInt64)
		if tc.env != "" {
			t.Setenv(tc.env, tc.value)
		}
		run(t, tc.args...)
		if p, l := pacing(); p != tc.percent || l != tc.limit {
			t.Errorf("%v %s=%s: GOGC %d, limit %d; want %d, %d", tc.args, tc.env, tc.value, p, l, tc.percent, tc.limit)
		}
	}
}
