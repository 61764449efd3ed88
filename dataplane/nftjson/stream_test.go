package nftjson

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/svctrace/svctrace/dataplane/noderun"
)

// chunks yields data in reads of the sizes given, in turn (a pipe or an exec stream hands a
// reader whatever has arrived).
type chunks struct {
	data  []byte
	sizes []int
	n     int
}

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	size := max(1, c.sizes[c.n%len(c.sizes)])
	c.n++
	n := copy(p[:min(len(p), size)], c.data)
	c.data = c.data[n:]
	return n, nil
}

// sameAsParse fails unless ParseReader, reading data in reads of sizes, returns what Parse returns
// (the ruleset, or the error) and the text it read; it returns how many early decodings were used.
func sameAsParse(t *testing.T, data []byte, sizes ...int) int {
	t.Helper()
	want, werr := Parse(data)
	got, text, used, err := parseReader(&chunks{data: data, sizes: sizes}, maxRuleset)
	if !bytes.Equal(text, data) {
		t.Fatalf("read %d bytes, want the %d given", len(text), len(data))
	}
	if (err == nil) != (werr == nil) || (err != nil && err.Error() != werr.Error()) {
		t.Fatalf("reads of %v: error %v, Parse's %v", sizes, err, werr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("reads of %v: a ruleset other than Parse's", sizes)
	}
	return used
}

// TestParseReaderSameAsParse: parsed as it arrives, in reads of any size, a document reads as
// Parse reads it whole, the recorded node's and a big one's, broken or not, and each top-level
// shape Parse is tested with; and nft's usual documents are decoded while they arrive (every
// object's early decoding is used), which fails if ParseReader only buffers.
func TestParseReaderSameAsParse(t *testing.T) {
	recorded, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	big := bigDocument(3000)
	for _, tc := range []struct {
		name    string
		data    []byte
		objects int // early decodings used, in reads of 4 KB (-1: Parse stops at a broken one)
	}{
		{"recorded node", recorded, objectCount(t, recorded)},
		{"big", big, 2*3000 + 3},
		{"big, broken", bigDocument(3000, 1500, 4000), -1},
		{"nftables not first", []byte(`{"x":1,` + string(big[1:])), 0},
		{"cut short", big[:len(big)/2], 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, sizes := range [][]int{{1 << 30}, {4096}, {1, 7, 300, 65536}, {1}} {
				if sizes[0] == 1 && len(tc.data) > 200_000 {
					continue
				}
				used := sameAsParse(t, tc.data, sizes...)
				if sizes[0] == 4096 && tc.objects >= 0 && used != tc.objects {
					t.Errorf("reads of 4 KB: %d early decodings used, want %d", used, tc.objects)
				}
			}
		})
	}
	const table = `{"table":{"family":"ip","name":"t"}}`
	for _, in := range []string{
		`{"nftables":[` + table + `],"z":null}`,
		`{"NFTABLES":[` + table + `]}`,
		`{"nftables":[{"table":{"family":"ip","name":"first"}}],"nftables":[` + table + `]}`,
		`{"nftables":[` + table + `],"nftables":[` + table + `]}`,
		`{"nftables":[null,` + table + `,null]}`,
		`{"nftables":[]}`, `{"nftables":null}`, `{"nftables":{"table":{}}}`,
		`{"nftables":[` + table + `,5]}`, `{"nftables":[` + table + `,{"table":{"name":tru}}]}`,
		`{"nftables":[{"table":x}],"nftables":[` + table + `]}`,
		`{"nftables":[` + table + `]} {}`, `{"nftables":[` + table, `{"nftables" : [ 12 , 3 ]}`, ``, `   `,
	} {
		for _, sizes := range [][]int{{1 << 30}, {1}, {2, 3}} {
			sameAsParse(t, []byte(in), sizes...)
		}
	}
}

// objectCount is how many objects Parse's scan finds in data.
func objectCount(t *testing.T, data []byte) int {
	t.Helper()
	objs, err := documentObjects(data)
	if err != nil {
		t.Fatal(err)
	}
	return len(objs)
}

// TestParseReaderReadError: a read that fails is ParseReader's error, not a parse of half a text.
func TestParseReaderReadError(t *testing.T) {
	broken := errors.New("the exec stream broke")
	data := bigDocument(500)
	r := io.MultiReader(bytes.NewReader(data[:len(data)/2]), iotest.ErrReader(broken))
	if _, _, err := ParseReader(r); !errors.Is(err, broken) {
		t.Fatalf("error %v, want the read's", err)
	}
}

// TestParseReaderLimit: a text longer than the limit is an error, read no further than the byte
// past it; one
// of the limit's length is read whole.
func TestParseReaderLimit(t *testing.T) {
	data := bigDocument(500)
	r := &chunks{data: data, sizes: []int{1000}}
	if _, _, _, err := parseReader(r, len(data)-1); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("error %v, want the limit's", err)
	}
	if read := len(data) - len(r.data); read > len(data) {
		t.Errorf("read %d bytes, more than the limit of %d and the byte that tells", read, len(data)-1)
	}
	if _, _, _, err := parseReader(&chunks{data: data, sizes: []int{1000}}, len(data)); err != nil {
		t.Errorf("a text of the limit's length: %v", err)
	}
}

// FuzzParseReaderSameAsParse: whatever the text and however it arrives, ParseReader says what
// Parse says.
func FuzzParseReaderSameAsParse(f *testing.F) {
	if data, err := os.ReadFile(fixture); err == nil {
		f.Add(data, uint16(4096))
	}
	f.Add(bigDocument(20, 5), uint16(3))
	f.Add([]byte(`{"nftables":[{"table":{"family":"ip","name":"first"}}],"nftables":[{"table":{"family":"ip","name":"t"}}]}`), uint16(1))
	f.Add([]byte(`{ "nftables" :[ {"table":{"family":"ip","name":"t\"]}"}} ,{"chain":{}} ]}`), uint16(2))
	f.Fuzz(func(t *testing.T, data []byte, size uint16) {
		if len(data) > 1<<20 {
			return
		}
		sameAsParse(t, data, int(size), int(size)/3+1)
	})
}

// streamer is a node whose nft prints data in small reads, then fails with err (nil: it
// succeeded); it records how it was asked.
type streamer struct {
	data  []byte
	err   error
	asked []string
}

func (s *streamer) Run(_ context.Context, argv ...string) ([]byte, error) {
	s.asked = append(s.asked, "run "+strings.Join(argv, " "))
	return s.data, s.err
}

func (s *streamer) Stream(_ context.Context, consume func(io.Reader) error, argv ...string) error {
	s.asked = append(s.asked, "stream "+strings.Join(argv, " "))
	if errors.Is(s.err, noderun.ErrNotFound) {
		return s.err
	}
	if err := consume(&chunks{data: s.data, sizes: []int{1000}}); err != nil {
		return err
	}
	return s.err
}

// TestReadLiveStreams: where the node streams, the ruleset is parsed as nft prints it (one
// streamed exec, no second read) into what Parse makes of the text; nft's own failure is the
// error, not the parse of what it printed before failing.
func TestReadLiveStreams(t *testing.T) {
	data := bigDocument(300)
	s := &streamer{data: data}
	rs, raw, err := ReadLive(context.Background(), s)
	want, _ := Parse(data)
	if err != nil || !reflect.DeepEqual(rs, want) || !bytes.Equal(raw, data) {
		t.Fatalf("streamed read: %v, or not Parse's ruleset", err)
	}
	if !slices.Equal(s.asked, []string{"stream nft -j list ruleset"}) {
		t.Errorf("asked %q", s.asked)
	}
	failed := &noderun.Error{Argv: []string{"nft"}, ExitStatus: 1, Stderr: "netlink: Error: cache initialization failed"}
	if _, _, err := ReadLive(context.Background(), &streamer{data: data[:100], err: failed}); !errors.As(err, &failed) {
		t.Errorf("nft failed, yet the error is %v", err)
	}
	if _, _, err := ReadLive(context.Background(), &streamer{err: fmt.Errorf("nft: %w", noderun.ErrNotFound)}); err == nil || !strings.Contains(err.Error(), "nft is not installed") {
		t.Errorf("no nft, yet the error is %v", err)
	}
	if _, _, err := ReadLive(context.Background(), &streamer{data: data[:100]}); err == nil || !strings.Contains(err.Error(), "nft JSON") {
		t.Errorf("half a document read, yet the error is %v", err)
	}
}
