package dataplane

import (
	"os"
	"strings"
	"testing"
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
			dp, err := Load(files)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || dp.Mode() != tc.mode {
				t.Fatalf("mode %v err %v, want %s", dp, err, tc.mode)
			}
		})
	}
}
