package xtables

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/svctrace/svctrace/dataplane/noderun"
)

// fakeRunner answers commands from a table; unknown commands are "not installed". It may be
// called from several goroutines (DetectBackend asks the variants side by side).
type fakeRunner struct {
	out   map[string]string
	mu    sync.Mutex
	calls []string
}

func (f *fakeRunner) Run(_ context.Context, argv ...string) ([]byte, error) {
	cmd := strings.Join(argv, " ")
	f.mu.Lock()
	f.calls = append(f.calls, cmd)
	f.mu.Unlock()
	if out, ok := f.out[cmd]; ok {
		return []byte(out), nil
	}
	if _, installed := f.out[argv[0]]; installed {
		return nil, &noderun.Error{Argv: argv, ExitStatus: 1, Stderr: "table does not exist"}
	}
	return nil, fmt.Errorf("%s: %w", argv[0], noderun.ErrNotFound)
}

func TestDetectBackendPicksTheVariantWithKubeProxyChains(t *testing.T) {
	for _, tc := range []struct {
		name     string
		out      map[string]string
		wantSave string
	}{
		{"legacy holds the canary", map[string]string{
			"iptables --version":             "iptables v1.8.9 (nf_tables)",
			"iptables-nft-save":              "",
			"iptables-nft-save -t mangle":    "*mangle\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n",
			"iptables-nft-save -t filter":    "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n",
			"iptables-legacy-save":           "",
			"iptables-legacy-save -t mangle": "*mangle\n:KUBE-PROXY-CANARY - [0:0]\nCOMMIT\n",
		}, "iptables-legacy-save"},
		{"nft holds it, found in filter on an old kube-proxy", map[string]string{
			"iptables --version":             "iptables v1.8.4 (legacy)",
			"iptables-nft-save":              "",
			"iptables-nft-save -t mangle":    "*mangle\nCOMMIT\n",
			"iptables-nft-save -t filter":    "*filter\n:KUBE-SERVICES - [0:0]\nCOMMIT\n",
			"iptables-legacy-save":           "",
			"iptables-legacy-save -t mangle": "*mangle\nCOMMIT\n",
			"iptables-legacy-save -t filter": "*filter\nCOMMIT\n",
		}, "iptables-nft-save"},
		{"neither: the default command's mode wins", map[string]string{
			"iptables --version":             "iptables v1.8.9 (legacy)",
			"iptables-nft-save":              "",
			"iptables-nft-save -t mangle":    "",
			"iptables-nft-save -t filter":    "",
			"iptables-legacy-save":           "",
			"iptables-legacy-save -t mangle": "",
			"iptables-legacy-save -t filter": "",
		}, "iptables-legacy-save"},
		{"only plain iptables-save", map[string]string{
			"iptables --version":      "iptables v1.6.1",
			"iptables-save -t filter": "*filter\nCOMMIT\n",
		}, "iptables-save"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &fakeRunner{out: tc.out}
			b, err := DetectBackend(context.Background(), r, false)
			if err != nil {
				t.Fatal(err)
			}
			if b.Save != tc.wantSave {
				t.Errorf("picked %s, want %s", b.Save, tc.wantSave)
			}
			if tc.name == "legacy holds the canary" && len(r.calls) != 2 {
				t.Errorf("the common case took %d commands, want the two mangle reads: %v", len(r.calls), r.calls)
			}
			for _, c := range r.calls {
				if strings.Contains(c, "-t nat") {
					t.Errorf("detection read the big nat table: %s", c)
				}
			}
		})
	}
}

func TestReadLiveReadsAllTablesInOneCall(t *testing.T) {
	dump, err := os.ReadFile(demoDump)
	if err != nil {
		t.Fatal(err)
	}
	r := &fakeRunner{out: map[string]string{"iptables-legacy-save": "", "iptables-legacy-save -c": string(dump)}}
	rs, _, _, _, err := ReadLive(context.Background(), r, Backend{Save: "iptables-legacy-save", Mode: "legacy"})
	if err != nil {
		t.Fatal(err)
	}
	// One exec per node matters when thousands of nodes are read through their pods.
	if rs.Tables["nat"] == nil || rs.Tables["filter"] == nil || len(r.calls) != 1 {
		t.Errorf("tables %d, calls %v", len(rs.Tables), r.calls)
	}
	if _, _, _, _, err := ReadLive(context.Background(), &fakeRunner{out: map[string]string{"iptables-legacy-save": "", "iptables-legacy-save -c": "*filter\nCOMMIT\n"}}, Backend{Save: "iptables-legacy-save"}); err == nil {
		t.Error("a node without a nat table must be an error")
	}
	// Streamed (this machine's runner): the same rules, the dump kept byte for byte, one call.
	sr := &streamRunner{fakeRunner: fakeRunner{out: map[string]string{"iptables-legacy-save -c": string(dump)}}}
	srs, raw, size, _, err := ReadLive(context.Background(), sr, Backend{Save: "iptables-legacy-save", Mode: "legacy"})
	if err != nil {
		t.Fatal(err)
	}
	if describe(srs) != describe(rs) || string(raw()) != string(dump) || size != len(dump) || len(sr.calls) != 1 {
		t.Errorf("the streamed read differs: size %d, calls %v", size, sr.calls)
	}
	for out, want := range map[string]string{"": "printed no nat table", "*filter\nCOMMIT\n": "printed no nat table"} {
		sr := &streamRunner{fakeRunner: fakeRunner{out: map[string]string{"iptables-legacy-save -c": out}}}
		if _, _, _, _, err := ReadLive(context.Background(), sr, Backend{Save: "iptables-legacy-save"}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("streamed %q: %v", out, err)
		}
	}
}

// streamRunner is a fakeRunner that also streams (as noderun.Local does); with oneByte, one byte
// per read, as a slow exec stream may hand it over.
type streamRunner struct {
	fakeRunner
	oneByte   bool
	delivered int // bytes handed to the consumer so far
}

// countReads counts what the consumer has been handed.
type countReads struct {
	r io.Reader
	n *int
}

func (c countReads) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += n
	return n, err
}

func (s *streamRunner) Stream(ctx context.Context, consume func(io.Reader) error, argv ...string) error {
	out, err := s.Run(ctx, argv...)
	if err != nil {
		return err
	}
	var in io.Reader = bytes.NewReader(out)
	if s.oneByte {
		in = iotest.OneByteReader(in)
	}
	return consume(countReads{in, &s.delivered})
}

// ReadDefault settles a remote node in one exec only when the answer is unambiguous; a streamed
// answer whose header says legacy (or no variant) is told to the caller once, before the answer
// is parsed to its end.
func TestReadDefaultOnlyWhenTheAnswerSettlesTheBackend(t *testing.T) {
	dump, err := os.ReadFile(demoDump) // iptables-save v1.8.9 (nf_tables), kube-proxy's chains
	if err != nil {
		t.Fatal(err)
	}
	legacy := strings.ReplaceAll(string(dump), "(nf_tables)", "")
	for _, tc := range []struct {
		name, out string
		ok        bool
		legacy    bool // returned as the legacy backend's read, for the caller to use once detected
		head      bool // the header says legacy (told while streaming)
	}{
		{"nf_tables with kube-proxy's chains", string(dump), true, false, false},
		{"legacy tables exist too", string(dump) + "# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n", false, false, false},
		{"the default command is legacy", legacy, false, true, true},
		{"legacy, named so", strings.ReplaceAll(string(dump), "(nf_tables)", "(legacy)"), false, true, true},
		{"no kube-proxy chains", "# Generated by iptables-save v1.8.9 (nf_tables)\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", false, false, false},
		{"legacy, no kube-proxy chains", "# Generated by iptables-save v1.8.9\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", false, false, true},
		{"no header", "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", false, false, false},
		{"empty", "", false, false, false},
	} {
		for _, how := range []string{"run", "streamed", "streamed a byte at a time"} {
			out := map[string]string{"iptables-save": "", "iptables-save -c": tc.out}
			f := &fakeRunner{out: out}
			var r noderun.Runner = f
			if how != "run" {
				r = &streamRunner{fakeRunner: fakeRunner{out: out}, oneByte: how != "streamed"}
			}
			heads, early := 0, true
			read, ok, old := ReadDefault(context.Background(), r, false, func() {
				heads++
				// A byte at a time, the header is told as soon as its line has come.
				if sr := r.(*streamRunner); sr.oneByte && sr.delivered != strings.Index(tc.out, "\n")+1 {
					early = false
				}
			})
			calls := f.calls
			if how != "run" {
				calls = r.(*streamRunner).calls
			}
			if ok != tc.ok || (old != nil) != tc.legacy || len(calls) != 1 {
				t.Errorf("%s (%s): ok=%v, legacy %v, after %v", tc.name, how, ok, old != nil, calls)
			}
			if want := tc.head && how != "run"; heads != map[bool]int{true: 1}[want] || !early {
				t.Errorf("%s (%s): told of a legacy header %d times, want it %v", tc.name, how, heads, want)
			}
			if ok && (read.Rules.Tables["nat"] == nil || read.Backend.Save != "iptables-save" || read.Backend.Mode != "nf_tables" || read.Size != len(tc.out)) {
				t.Errorf("%s (%s): %+v, %d bytes", tc.name, how, read.Backend, read.Size)
			}
			if old != nil && (old.Rules == nil || old.Rules.Variant != "legacy" || old.Backend.Mode != "legacy" || string(old.Raw()) != tc.out) {
				t.Errorf("%s (%s): legacy read %+v, variant %q", tc.name, how, old.Backend, old.Rules.Variant)
			}
		}
	}
}

// brokenRunner fails one command as an exec stream or a timeout does, not as the tool would.
type brokenRunner struct {
	fakeRunner
	broken string
	err    error
}

func (b *brokenRunner) Run(ctx context.Context, argv ...string) ([]byte, error) {
	if strings.Join(argv, " ") == b.broken {
		return nil, b.err
	}
	return b.fakeRunner.Run(ctx, argv...)
}

// TestDetectBackendReturnsRealErrors: a read that failed for another reason than the tool's own
// answer (the exec stream broke, the context ended) leaves the backend unknown: an error, never a
// guess that the variant is present without kube-proxy's chains.
func TestDetectBackendReturnsRealErrors(t *testing.T) {
	out := map[string]string{
		"iptables --version":             "iptables v1.8.9 (nf_tables)",
		"iptables-nft-save":              "",
		"iptables-nft-save -t mangle":    "*mangle\n:KUBE-PROXY-CANARY - [0:0]\nCOMMIT\n",
		"iptables-legacy-save":           "",
		"iptables-legacy-save -t mangle": "*mangle\nCOMMIT\n",
	}
	for _, err := range []error{context.DeadlineExceeded, fmt.Errorf("error dialing backend: EOF")} {
		r := &brokenRunner{fakeRunner: fakeRunner{out: out}, broken: "iptables-legacy-save -t mangle", err: err}
		if b, got := DetectBackend(context.Background(), r, false); got == nil || !strings.Contains(got.Error(), "cannot tell which iptables backend") {
			t.Errorf("%v: backend %+v, error %v", err, b, got)
		}
	}
	// The same node read whole: the nf_tables variant.
	if b, err := DetectBackend(context.Background(), &fakeRunner{out: out}, false); err != nil || b.Save != "iptables-nft-save" || b.Ambiguous {
		t.Errorf("backend %+v, error %v", b, err)
	}
}
