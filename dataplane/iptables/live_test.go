package iptables

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	dpexec "github.com/svctrace/svctrace/dataplane/exec"
)

// fakeRunner answers commands from a table; unknown commands are "not installed".
type fakeRunner struct {
	out   map[string]string
	calls []string
}

func (f *fakeRunner) Run(_ context.Context, argv ...string) ([]byte, error) {
	cmd := strings.Join(argv, " ")
	f.calls = append(f.calls, cmd)
	if out, ok := f.out[cmd]; ok {
		return []byte(out), nil
	}
	if _, installed := f.out[argv[0]]; installed {
		return nil, &dpexec.Error{Argv: argv, ExitStatus: 1, Stderr: "table does not exist"}
	}
	return nil, fmt.Errorf("%s: %w", argv[0], dpexec.ErrNotFound)
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
	rs, _, err := ReadLive(context.Background(), r, Backend{Save: "iptables-legacy-save", Mode: "legacy"})
	if err != nil {
		t.Fatal(err)
	}
	// One exec per node matters when thousands of nodes are read through their pods.
	if rs.Tables["nat"] == nil || rs.Tables["filter"] == nil || len(r.calls) != 1 {
		t.Errorf("tables %d, calls %v", len(rs.Tables), r.calls)
	}
	if _, _, err := ReadLive(context.Background(), &fakeRunner{out: map[string]string{"iptables-legacy-save": "", "iptables-legacy-save -c": "*filter\nCOMMIT\n"}}, Backend{Save: "iptables-legacy-save"}); err == nil {
		t.Error("a node without a nat table must be an error")
	}
}
