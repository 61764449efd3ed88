// Command kubectl-svctrace is the svctrace kubectl plugin (kubectl svctrace ...), also run
// directly with sudo on a node.
package main

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/svctrace/svctrace/plugin"
)

func main() {
	os.Exit(run())
}

// run executes the command; SVCTRACE_CPUPROFILE=FILE writes a CPU profile of the whole run
// there (for docs/performance.md's measurements; go tool pprof reads it).
func run() int {
	if path := os.Getenv("SVCTRACE_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "error: SVCTRACE_CPUPROFILE: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "error: SVCTRACE_CPUPROFILE: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	return plugin.Execute()
}
