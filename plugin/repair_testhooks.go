//go:build svctrace_testhooks

package plugin

import (
	"fmt"
	"os"
	"time"
)

// In a binary built with -tags svctrace_testhooks (the e2e fault tests' own build, never a
// release), SVCTRACE_REPAIR_PAUSE=STEP stops repair before that step ("write", "verify") so a test
// can act there: kill it, or take the xtables lock. It goes on once the file named by
// SVCTRACE_REPAIR_RESUME exists, or after a minute.
func init() {
	repairPause = func(step string) {
		if os.Getenv("SVCTRACE_REPAIR_PAUSE") != step {
			return
		}
		fmt.Fprintf(os.Stderr, "paused before %s\n", step)
		resume := os.Getenv("SVCTRACE_REPAIR_RESUME")
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if _, err := os.Stat(resume); resume != "" && err == nil {
				return
			}
		}
	}
}
