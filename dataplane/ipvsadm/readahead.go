package ipvsadm

import (
	"errors"
	"io"
	"sync"
)

// readAheadChunk is how much readAhead reads before handing it over: the kernel prints
// /proc/net/ip_vs a page per read, and a hand-over per page between two goroutines cost more
// than the parse under emulation.
const readAheadChunk = 256 << 10

// readAhead reads src on its own goroutine, in chunks of about size bytes, while the returned
// reader gives them out in order; at most two chunks wait. stop ends the reading early (the
// consumer gave up); it is safe to call more than once and after the end.
func readAhead(src io.Reader, size int) (r io.Reader, stop func()) {
	a := &aheadReader{chunks: make(chan []byte, 2), done: make(chan struct{})}
	go a.fill(src, size)
	return a, sync.OnceFunc(func() { close(a.done) })
}

type aheadReader struct {
	chunks chan []byte
	done   chan struct{}
	err    error // set before chunks is closed
	cur    []byte
}

func (a *aheadReader) fill(src io.Reader, size int) {
	defer close(a.chunks)
	for {
		buf := make([]byte, 0, size)
		var err error
		for len(buf) < cap(buf) && err == nil {
			var n int
			n, err = src.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
		}
		if len(buf) > 0 {
			select {
			case a.chunks <- buf:
			case <-a.done:
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				a.err = err
			}
			return
		}
	}
}

// Read implements io.Reader.
func (a *aheadReader) Read(p []byte) (int, error) {
	for len(a.cur) == 0 {
		next, ok := <-a.chunks
		if !ok {
			if a.err != nil {
				return 0, a.err
			}
			return 0, io.EOF
		}
		a.cur = next
	}
	n := copy(p, a.cur)
	a.cur = a.cur[n:]
	return n, nil
}
