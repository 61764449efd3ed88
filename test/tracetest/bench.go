package tracetest

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchFile reads a file of the large benchmark dumps hack/bench-dump.sh records (under
// $SVCTRACE_BENCH, default /var/cache/svctrace/bench), or skips the benchmark when it is missing.
func BenchFile(b testing.TB, name string) []byte {
	b.Helper()
	dir := os.Getenv("SVCTRACE_BENCH")
	if dir == "" {
		dir = "/var/cache/svctrace/bench"
	}
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		b.Skipf("no benchmark input (%v): run make bench-dump first", err)
	}
	return data
}
