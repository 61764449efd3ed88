package ipvsadm

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// TestReadAhead: what readAhead gives out is the source's bytes in order, whatever the chunk
// size and however little each read of the source returns; a failed read is the reader's error
// after the bytes before it, not an early end; stop while the source still has bytes returns.
func TestReadAhead(t *testing.T) {
	data := read(t, "proc-net-ip_vs.txt")
	for _, size := range []int{1, 7, 4096, readAheadChunk} {
		for name, src := range map[string]io.Reader{"whole": bytes.NewReader(data), "one byte a read": iotest.OneByteReader(bytes.NewReader(data))} {
			r, stop := readAhead(src, size)
			got, err := io.ReadAll(iotest.HalfReader(r))
			stop()
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("chunks of %d, %s: %d of %d bytes, %v", size, name, len(got), len(data), err)
			}
		}
	}
	broken := io.MultiReader(bytes.NewReader(data[:1000]), iotest.ErrReader(errors.New("input/output error")))
	r, stop := readAhead(broken, 300)
	got, err := io.ReadAll(r)
	stop()
	if err == nil || !strings.Contains(err.Error(), "input/output error") || !bytes.Equal(got, data[:1000]) {
		t.Fatalf("a failed read: %d bytes, %v", len(got), err)
	}
	endless := iotest.OneByteReader(io.MultiReader(bytes.NewReader(data), bytes.NewReader(data), bytes.NewReader(data)))
	r, stop = readAhead(endless, 64)
	if _, err := io.ReadFull(r, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	stop()
	stop()
}
