package trace

import (
	"runtime"
	"sync/atomic"
	"testing"
)

// TestInParallel: every index runs once; after a stop, every index before the stopping one still
// runs, so the first failure in order is always found. (How many after it are skipped depends on
// the scheduler, and is not asserted.)
func TestInParallel(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	for _, block := range []int{1, 7, 64} {
		var ran [1000]atomic.Int32
		InParallel(len(ran), block, func(i int) bool {
			ran[i].Add(1)
			return false
		})
		for i := range ran {
			if ran[i].Load() != 1 {
				t.Fatalf("block %d: index %d ran %d times", block, i, ran[i].Load())
			}
		}
		var ran2 [1000]atomic.Int32
		InParallel(len(ran2), block, func(i int) bool {
			ran2[i].Add(1)
			return i == 300 || i == 600
		})
		for i := 0; i <= 300; i++ {
			if ran2[i].Load() != 1 {
				t.Fatalf("block %d: index %d before the stop ran %d times", block, i, ran2[i].Load())
			}
		}
	}
	InParallel(0, 64, func(int) bool { t.Fatal("ran with n = 0"); return false })
}
