package dataplane

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/iptables"
)

func TestDetectRecordedDumps(t *testing.T) {
	for file, want := range map[string]Format{
		"snapshot/demo/iptables-save.txt":       IptablesSave,
		"snapshot/demo-nftables/nft.json":       NftJSON,
		"snapshot/demo-ipvs/iptables-save.txt":  IptablesSave,
		"snapshot/demo-ipvs/ipvsadm-Sn.txt":     IPVSAdm,
		"snapshot/demo-ipvs/ipvsadm-Ln.txt":     IPVSAdm,
		"snapshot/demo-ipvs/proc-net-ip_vs.txt": IPVSProc,
		"snapshot/demo-ipvs/ipset-save.txt":     IPSet,
		"snapshot/demo/objects.yaml":            Unknown,
	} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if got := Detect(data); got != want {
			t.Errorf("%s detected as %s, want %s", file, got, want)
		}
	}
}

func TestLoadModes(t *testing.T) {
	read := func(f string) []byte {
		data, err := os.ReadFile("snapshot/" + f)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	for _, tc := range []struct {
		name  string
		files []string
		mode  string
		err   string
	}{
		{"iptables", []string{"demo/iptables-save.txt"}, "iptables", ""},
		{"nftables", []string{"demo-nftables/nft.json"}, "nftables", ""},
		{"ipvs", []string{"demo-ipvs/iptables-save.txt", "demo-ipvs/ipset-save.txt", "demo-ipvs/ipvsadm-Ln.txt"}, "ipvs", ""},
		{"ipvs without ipsets", []string{"demo-ipvs/iptables-save.txt", "demo-ipvs/ipvsadm-Sn.txt"}, "", "ipset save"},
		{"ipvs without iptables", []string{"demo-ipvs/ipset-save.txt", "demo-ipvs/ipvsadm-Sn.txt"}, "", "iptables-save output too"},
		{"two modes", []string{"demo/iptables-save.txt", "demo-nftables/nft.json"}, "", "one mode"},
		{"not a dump", []string{"demo/objects.yaml"}, "", "not a dump svctrace recognises"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string][]byte{}
			for _, f := range tc.files {
				files[f] = read(f)
			}
			n, err := Load(files)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || n.Dataplane.Mode() != tc.mode {
				t.Fatalf("node %v err %v, want mode %s", n, err, tc.mode)
			}
		})
	}
}

// TestDumpsAsPeopleSaveThem: the recorded dump behind a comment of the operator's own, blank
// lines, CRLF line ends or a byte order mark loads to the same rules, as iptables-restore would
// take it.
func TestDumpsAsPeopleSaveThem(t *testing.T) {
	data, err := os.ReadFile("snapshot/demo/iptables-save.txt")
	if err != nil {
		t.Fatal(err)
	}
	wantNode, err := Load(map[string][]byte{"a": data})
	if err != nil {
		t.Fatal(err)
	}
	for name, edited := range map[string]string{
		"a comment first":     "# node1, saved during the incident\n# by on-call\n" + string(data),
		"blank lines first":   "\n\n  \n" + string(data),
		"CRLF line ends":      strings.ReplaceAll(string(data), "\n", "\r\n"),
		"a byte order mark":   "\xef\xbb\xbf" + string(data),
		"all of them at once": "\xef\xbb\xbf# saved\r\n\r\n" + strings.ReplaceAll(string(data), "\n", "\r\n"),
	} {
		if f := Detect([]byte(edited)); f != IptablesSave {
			t.Errorf("%s: detected as %s", name, f)
			continue
		}
		gotNode, err := Load(map[string][]byte{"a": []byte(edited)})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if a, b := rulesOf(gotNode.Dataplane), rulesOf(wantNode.Dataplane); a != b || len(a) < 1000 {
			t.Errorf("%s: the rules differ from the recorded dump's", name)
		}
	}
}

// rulesOf lists an iptables dataplane's rules, table by table and chain by chain.
func rulesOf(dp trace.Dataplane) string {
	var b strings.Builder
	rs := dp.(*iptables.Dataplane).V4
	for _, name := range []string{"filter", "nat", "mangle", "raw"} {
		if tab := rs.Tables[name]; tab != nil {
			for _, c := range tab.Order {
				for _, r := range c.Rules {
					b.WriteString(name + " " + r.Text + "\n")
				}
			}
		}
	}
	return b.String()
}

// TestLoadWarnsOfCutDumps: a dump cut after a COMMIT still parses, and once traced as "no
// Service rule matched" without a word; one cut mid-line may parse too. Both now warn.
func TestLoadWarnsOfCutDumps(t *testing.T) {
	data, err := os.ReadFile("snapshot/demo/iptables-save.txt")
	if err != nil {
		t.Fatal(err)
	}
	n, err := Load(map[string][]byte{"whole": data})
	if err != nil || len(n.Warnings) != 0 {
		t.Fatalf("the recorded dump: node %+v, error %v", n, err)
	}
	natStart := bytes.Index(data, []byte("*nat"))
	if natStart < 0 {
		t.Fatal("the recorded dump has no nat table")
	}
	cut := data[:bytes.LastIndex(data[:natStart], []byte("COMMIT\n"))+len("COMMIT\n")]
	n, err = Load(map[string][]byte{"cut": cut})
	if err != nil || len(n.Warnings) != 2 || !strings.Contains(n.Warnings[0], "cut short") || !strings.Contains(n.Warnings[1], "no nat table") {
		t.Errorf("a dump cut after filter's COMMIT: node %+v, error %v", n, err)
	}
	mid := data[:len(data)-10]
	if n, err = Load(map[string][]byte{"mid": mid}); err == nil && (len(n.Warnings) == 0 || !strings.Contains(n.Warnings[0], "newline")) {
		t.Errorf("a dump cut mid-line: warnings %q", n.Warnings)
	}
}
