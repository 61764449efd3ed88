package nftjson

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/nftables"
)

// aheadBatch is how many objects a worker of ParseReader decodes at a time.
const aheadBatch = 256

// ParseReader is Parse of everything r yields, which it returns too. It decodes the objects of
// the "nftables" array on all cores while the rest of the text is still arriving: nft prints a
// 10,000-Service ruleset's 13 MB in one burst at the end of its run, which a pipe or a pod's exec
// stream hands over in pieces, and the decoding overlaps their arrival.
//
// The result, and any error, is Parse's of the whole text: an object decoded early is used only
// where Parse's own scan of the whole text finds an object at the same place, so the early scan
// (of nft's usual `{"nftables": [` head alone) may guess, and stop at anything else; it never
// decides anything.
//
// A text longer than maxRuleset is an error, read no further.
func ParseReader(r io.Reader) (*nftables.Ruleset, []byte, error) {
	rs, buf, _, err := parseReader(r, maxRuleset)
	return rs, buf, err
}

// maxRuleset bounds a live `nft -j list ruleset` read (a 10,000-Service node prints 13 MB).
const maxRuleset = 1 << 30

// parseReader is ParseReader of at most limit bytes, saying too how many objects' early
// decodings Parse used.
func parseReader(r io.Reader, limit int) (*nftables.Ruleset, []byte, int, error) {
	buf := make([]byte, 0, min(limit, 1<<20))
	jobs := make(chan *decodeBatch, 64)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range jobs {
				for k, raw := range b.raws {
					b.out[k] = decodeObject(b.first+k, raw)
				}
			}
		}()
	}
	var scan arrayScan
	var batches []*decodeBatch
	next := &decodeBatch{}
	send := func() {
		if len(next.raws) > 0 {
			next.out = make([][]decodedObject, len(next.raws))
			batches = append(batches, next)
			jobs <- next
			next = &decodeBatch{first: next.first + len(next.raws)}
		}
	}
	var rerr error
	for {
		var err error
		if len(buf) >= limit {
			// Full: one more byte is an error; the end is not.
			var one [1]byte
			var n int
			if n, err = io.ReadFull(r, one[:]); n > 0 {
				rerr = fmt.Errorf("nft printed more than %d MiB of JSON", limit>>20)
				break
			}
		} else {
			if len(buf) == cap(buf) {
				buf = slices.Grow(buf, min(cap(buf), limit-len(buf)))
			}
			var n int
			n, err = r.Read(buf[len(buf):min(cap(buf), limit)])
			buf = buf[:len(buf)+n]
		}
		if err != nil {
			scan.retryAt = 0 // the text is whole: an unfinished element is scanned once more
		}
		scan.more(buf, func(from, to int) {
			next.raws = append(next.raws, buf[from:to])
			if len(next.raws) == aheadBatch {
				send()
			}
		})
		if err != nil {
			if err != io.EOF {
				rerr = err
			}
			break
		}
	}
	send()
	close(jobs)
	wg.Wait()
	if rerr != nil {
		return nil, buf, 0, rerr
	}
	var used atomic.Int64
	ahead := func(i int, raw []byte) ([]decodedObject, bool) {
		if i >= len(scan.starts) {
			return nil, false
		}
		// raw is a slice of buf (Parse's scan slices the text it is given), so its capacity
		// tells where it starts.
		from := cap(buf) - cap(raw)
		if from != scan.starts[i] || from+len(raw) != scan.ends[i] {
			return nil, false
		}
		used.Add(1)
		return batches[i/aheadBatch].out[i%aheadBatch], true
	}
	rs, err := parse(buf, ahead)
	return rs, buf, int(used.Load()), err
}

// decodeBatch is consecutive objects of a document, the first of them its first-th, and their
// decodings once a worker is done.
type decodeBatch struct {
	first int
	raws  [][]byte
	out   [][]decodedObject
}

// arrayScan finds, in a growing text, the elements of the array that nft's documents open with
// (`{"nftables": [`), as they complete. It stops, for good, at anything else.
type arrayScan struct {
	state        int // scanHead, scanElement, scanAfter or scanStopped
	pos          int
	retryAt      int // an unfinished element is scanned again once the text is this long
	starts, ends []int
}

const (
	scanHead = iota
	scanElement
	scanAfter
	scanStopped
)

// more scans what was added to buf (the text so far) and calls found with each element completed.
func (s *arrayScan) more(buf []byte, found func(from, to int)) {
	for s.state != scanStopped {
		switch s.state {
		case scanHead:
			i := 0
			for _, tok := range []string{"{", `"nftables"`, ":", "["} {
				i = trace.SkipJSONSpace(buf, i)
				if len(buf) < i+len(tok) {
					return // not all there yet
				}
				if string(buf[i:i+len(tok)]) != tok {
					s.state = scanStopped
					return
				}
				i += len(tok)
			}
			s.pos, s.state = i, scanElement
		case scanElement:
			i := trace.SkipJSONSpace(buf, s.pos)
			if i >= len(buf) || len(buf) < s.retryAt {
				return
			}
			if buf[i] != '{' {
				s.state = scanStopped // the array's end, or not what nft writes
				return
			}
			end, err := trace.JSONValueEnd(buf, i)
			if err != nil {
				// Not all there yet (or malformed, which Parse will say): scan it again only
				// once the text has grown by as much as it has of the element, so a huge
				// element costs a few scans, not one per read.
				s.pos, s.retryAt = i, len(buf)+(len(buf)-i)
				return
			}
			s.starts, s.ends = append(s.starts, i), append(s.ends, end)
			found(i, end)
			s.pos, s.state = end, scanAfter
		case scanAfter:
			i := trace.SkipJSONSpace(buf, s.pos)
			if i >= len(buf) {
				return
			}
			if buf[i] != ',' {
				s.state = scanStopped // the array's end, or not what nft writes
				return
			}
			s.pos, s.state = i+1, scanElement
		}
	}
}
