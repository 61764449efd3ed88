package ipvsadm

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/dataplane/xtables"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace/iptables"
	"github.com/svctrace/svctrace/trace/ipvs"
)

// The fixture is kube-proxy v1.36.3 in IPVS mode inside the QEMU guest (see its README).
const fixture = "../snapshot/demo-ipvs/"

func read(t testing.TB, name string) []byte {
	data, err := os.ReadFile(fixture + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestThreeFormsAgree parses ipvsadm -Sn, ipvsadm -Ln and /proc/net/ip_vs of the same moment:
// the same services, schedulers, real servers and weights.
func TestThreeFormsAgree(t *testing.T) {
	save, err := ParseSave(read(t, "ipvsadm-Sn.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ipvsadm-Ln.txt", "proc-net-ip_vs.txt"} {
		list, err := ParseList(read(t, name))
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Services) != len(save.Services) || len(save.Services) != 15 {
			t.Fatalf("%s: %d services, ipvsadm -Sn has %d", name, len(list.Services), len(save.Services))
		}
		for _, s := range save.Services {
			o := list.Find(s.Protocol, s.Addr)
			if o == nil || o.Scheduler != s.Scheduler || len(o.Reals) != len(s.Reals) || (s.Persistent > 0) != (o.Persistent != 0) {
				t.Errorf("%s: service %s differs: %+v vs %+v", name, s.Addr, o, s)
				continue
			}
			for _, r := range s.Reals {
				found := false
				for _, q := range o.Reals {
					found = found || q.Addr == r.Addr && q.Weight == r.Weight && q.Forward == r.Forward
				}
				if !found {
					t.Errorf("%s: %s lacks real server %s", name, s.Addr, r.Addr)
				}
			}
		}
	}
	if s := save.Find("tcp", netip.MustParseAddrPort("10.96.30.40:80")); s == nil || s.Persistent != 10800 {
		t.Errorf("persistence of the affinity service: %+v", s)
	}
}

func TestIPSetMembership(t *testing.T) {
	sets, err := ParseIPSet(read(t, "ipset-save.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		set  string
		vals []string
		want bool
	}{
		{"KUBE-CLUSTER-IP", []string{"10.96.30.10", "tcp:80"}, true},
		{"KUBE-CLUSTER-IP", []string{"10.96.30.10", "tcp:81"}, false},
		{"KUBE-NODE-PORT-LOCAL-TCP", []string{"30201"}, true},
		{"KUBE-NODE-PORT-LOCAL-TCP", []string{"30200"}, false},
		{"KUBE-LOOP-BACK", []string{"10.244.3.11", "tcp:8080", "10.244.3.11"}, true},
		{"KUBE-IPVS-IPS", []string{"10.96.30.30"}, true},
	} {
		if got := sets[tc.set].Contains(tc.vals); got != tc.want {
			t.Errorf("%s contains %v = %v, want %v", tc.set, tc.vals, got, tc.want)
		}
	}
	nets := &ipvs.Set{Name: "S", Type: "hash:ip,port,net", Members: map[string]bool{}, List: [][]string{{"203.0.113.100", "tcp:80", "198.51.100.0/24"}}}
	if !nets.Contains([]string{"203.0.113.100", "tcp:80", "198.51.100.77"}) || nets.Contains([]string{"203.0.113.100", "tcp:80", "192.0.2.1"}) {
		t.Error("net dimensions must match by prefix")
	}
}

func TestIPSetListFormat(t *testing.T) {
	list := "Name: KUBE-CLUSTER-IP\nType: hash:ip,port\nRevision: 6\nHeader: family inet hashsize 1024 maxelem 65536\n" +
		"Size in memory: 600\nReferences: 2\nNumber of entries: 2\nMembers:\n10.96.30.10,tcp:80\n10.96.0.1,tcp:443\n\n" +
		"Name: KUBE-NODE-PORT-TCP\nType: bitmap:port\nMembers:\n30200\n"
	sets, err := ParseIPSet([]byte(list))
	if err != nil {
		t.Fatal(err)
	}
	if !sets["KUBE-CLUSTER-IP"].Contains([]string{"10.96.0.1", "tcp:443"}) || sets["KUBE-NODE-PORT-TCP"].Type != "bitmap:port" || !sets["KUBE-NODE-PORT-TCP"].Contains([]string{"30200"}) {
		t.Fatalf("parsed %+v %+v", sets["KUBE-CLUSTER-IP"], sets["KUBE-NODE-PORT-TCP"])
	}
}

func TestParseErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   func([]byte) error
		in   string
		want string
	}{
		{"save: real server before its service", func(b []byte) error { _, err := ParseSave(b); return err }, "-a -t 10.0.0.1:80 -r 10.1.1.1:80 -m -w 1\n", "line 1: real server"},
		{"save: bad weight", func(b []byte) error { _, err := ParseSave(b); return err }, "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.1.1.1:80 -m -w x\n", "line 2: bad weight"},
		{"list: real server first", func(b []byte) error { _, err := ParseList(b); return err }, "  -> 0A000001:0050 Masq 1 0 0\n", "line 1: real server before any service"},
		{"list: bad hex", func(b []byte) error { _, err := ParseList(b); return err }, "TCP  0A0000ZZ:0050 rr\n", "line 1: bad address"},
		{"ipset: add before create", func(b []byte) error { _, err := ParseIPSet(b); return err }, "add X 1.2.3.4\n", "line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.fn([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func FuzzParseIPVS(f *testing.F) {
	for _, n := range []string{"ipvsadm-Sn.txt", "ipvsadm-Ln.txt", "proc-net-ip_vs.txt", "ipset-save.txt"} {
		if data, err := os.ReadFile(fixture + n); err == nil {
			f.Add(data)
		}
	}
	// The recorded node's iptables rules and sets, to walk each parsed IPVS table with.
	rules, err := os.ReadFile(fixture + "iptables-save.txt")
	if err != nil {
		f.Fatal(err)
	}
	rs, err := xtables.Parse(rules)
	if err != nil {
		f.Fatal(err)
	}
	setsData, err := os.ReadFile(fixture + "ipset-save.txt")
	if err != nil {
		f.Fatal(err)
	}
	recordedSets, err := ParseIPSet(setsData)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if tab, err := ParseSave(data); err == nil {
			for _, s := range tab.Services {
				s.Share()
			}
			tracetest.WalkInvariants(t, &iptables.Dataplane{V4: rs, Sets: recordedSets, IPVS: tab})
		}
		if tab, err := ParseList(data); err == nil {
			for _, s := range tab.Services {
				s.Share()
			}
			tracetest.WalkInvariants(t, &iptables.Dataplane{V4: rs, Sets: recordedSets, IPVS: tab})
		}
		if sets, err := ParseIPSet(data); err == nil {
			for _, s := range sets {
				s.Contains([]string{"10.0.0.1", "tcp:80"})
			}
		}
	})
}
