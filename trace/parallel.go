package trace

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// InParallel calls do(i) for every i in [0, n) on all cores (the engine's checks and decoding, and
// the dataplane readers' decoding), handing out block indexes at a
// time in increasing order. When do(i) returns true (a failure), the indexes after i that have
// not started are skipped; every index before i still runs, so the first failure in order is
// always found.
func InParallel(n, block int, do func(i int) (stop bool)) {
	var next, stopAt atomic.Int64
	stopAt.Store(int64(n))
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), (n+block-1)/block) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				start := int(next.Add(int64(block))) - block
				if start >= n {
					return
				}
				for i := start; i < min(start+block, n); i++ {
					if int64(i) > stopAt.Load() {
						return
					}
					if do(i) {
						for s := stopAt.Load(); int64(i) < s && !stopAt.CompareAndSwap(s, int64(i)); s = stopAt.Load() {
						}
					}
				}
			}
		}()
	}
	wg.Wait()
}
