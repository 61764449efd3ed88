package ipvsadm

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync/atomic"
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

// sortedList is FormatList of t with its virtual servers and each one's real servers in
// address order: ipvsadm -Ln sorts, the kernel lists in hash order.
func sortedList(t *ipvs.Table) string {
	svcs := slices.Clone(t.Services)
	key := func(vs *ipvs.VirtualServer) string { return fmt.Sprintf("%s %s %d", vs.Protocol, vs.Addr, vs.FWMark) }
	slices.SortFunc(svcs, func(a, b *ipvs.VirtualServer) int { return strings.Compare(key(a), key(b)) })
	out := &ipvs.Table{}
	for _, vs := range svcs {
		c := *vs
		c.Reals = slices.Clone(vs.Reals)
		slices.SortFunc(c.Reals, func(a, b *ipvs.RealServer) int { return a.Addr.Compare(b.Addr) })
		out.Services = append(out.Services, &c)
	}
	return string(FormatList(out))
}

// TestProcTableIsTheListedTable: the kernel's /proc/net/ip_vs of the recorded node, with the
// persistence timeouts netlink lists put in (here taken from ipvsadm -Sn of the same moment), is
// exactly the table ipvsadm -Ln printed then: what ReadTable reads for trace and check is what
// ReadNetlink read before.
func TestProcTableIsTheListedTable(t *testing.T) {
	proc, err := ParseList(read(t, "proc-net-ip_vs.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if !NeedsPersistence(proc) {
		t.Fatal("the recorded /proc table has a persistent virtual server whose timeout it cannot say")
	}
	save, err := ParseSave(read(t, "ipvsadm-Sn.txt"))
	if err != nil {
		t.Fatal(err)
	}
	timeouts := map[ServiceKey]int{}
	for _, vs := range save.Services {
		if vs.Persistent > 0 {
			timeouts[KeyOf(vs)] = vs.Persistent
		}
	}
	if !FillPersistence(proc, timeouts) || NeedsPersistence(proc) {
		t.Fatal("the timeouts of the same moment did not fill the table")
	}
	listed, err := ParseList(read(t, "ipvsadm-Ln.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sortedList(proc), sortedList(listed); got != want {
		t.Fatalf("/proc/net/ip_vs read as\n%s\nipvsadm -Ln listed\n%s", got, want)
	}
	// A persistent virtual server netlink no longer lists: the table changed between the reads.
	proc, _ = ParseList(read(t, "proc-net-ip_vs.txt"))
	if FillPersistence(proc, map[ServiceKey]int{}) {
		t.Error("a persistent virtual server missing from netlink's list was not reported")
	}
}

// TestParseAsTheKernelPrints: the recorded /proc table fed a line at a time, as the kernel prints
// it, parses as the whole file does, and the persistent virtual server is reported as soon as
// its line is read (ReadTable starts the netlink listing of the timeouts then), before the rest
// of the table has arrived; a read that fails midway is an error, not a shorter table.
func TestParseAsTheKernelPrints(t *testing.T) {
	data := read(t, "proc-net-ip_vs.txt")
	whole, err := ParseList(data)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	var fed atomic.Int64
	go func() {
		rest := string(data)
		for rest != "" {
			line, after, _ := strings.Cut(rest, "\n")
			if _, err := io.WriteString(pw, line+"\n"); err != nil {
				return
			}
			fed.Add(1)
			rest = after
		}
		pw.Close()
	}()
	var linesAtReport []int64
	streamed, err := parseList(pr, func() { linesAtReport = append(linesAtReport, fed.Load()) })
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sortedList(streamed), sortedList(whole); got != want {
		t.Fatalf("streamed:\n%s\nwhole:\n%s", got, want)
	}
	total := int64(strings.Count(string(data), "\n"))
	if len(linesAtReport) == 0 || linesAtReport[0] >= total {
		t.Fatalf("the persistent virtual server was reported after %v of %d lines, want before the last", linesAtReport, total)
	}
	pr, pw = io.Pipe()
	go func() {
		pw.Write(data[:len(data)/2])
		pw.CloseWithError(errors.New("read /proc/net/ip_vs: input/output error"))
	}()
	if _, err := parseList(pr, nil); err == nil || !strings.Contains(err.Error(), "input/output error") {
		t.Fatalf("a read that failed midway: %v", err)
	}
}

// TestProcFormatIPv6AndMarks: the kernel prints IPv6 addresses in full and ports in hexadecimal
// ("[fd00:...:000a]:0050" is port 80, not 50), firewall marks in hexadecimal; ipvsadm prints
// ports and marks in decimal. The lines follow ip_vs_info_seq_show's formats.
func TestProcFormatIPv6AndMarks(t *testing.T) {
	proc := "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n" + procRealsHeader + "\n" +
		"TCP  [fd00:0010:0000:0000:0000:0000:0000:000a]:0050 rr \n" +
		"  -> [fd00:0244:0000:0000:0000:0000:0000:0011]:1F90      Masq    1      2          3         \n" +
		"UDP  0A600001:0035 rr  persistent 2700000 FFFFFFFF\n" +
		"FWM  00000010 wrr persistent 750000 00000080\n" +
		"  -> 0AF40102:1F90      Route   5      0          0         \n"
	tab, err := ParseList([]byte(proc))
	if err != nil {
		t.Fatal(err)
	}
	v6 := tab.Find("tcp", netip.MustParseAddrPort("[fd00:10::a]:80"))
	if v6 == nil || len(v6.Reals) != 1 || v6.Reals[0].Addr != netip.MustParseAddrPort("[fd00:244::11]:8080") || v6.Reals[0].ActiveConn != 2 || v6.Reals[0].InActConn != 3 {
		t.Fatalf("IPv6 virtual server: %+v", v6)
	}
	if len(tab.Services) != 3 || tab.Services[2].Protocol != "fwmark" || tab.Services[2].FWMark != 16 || tab.Services[2].Reals[0].Forward != "route" {
		t.Fatalf("firewall-mark service: %+v", tab.Services[len(tab.Services)-1])
	}
	if tab.Services[1].Persistent != PersistentUnknown || tab.Services[2].Persistent != PersistentUnknown {
		t.Errorf("persistence in jiffies must read as unknown: %d %d", tab.Services[1].Persistent, tab.Services[2].Persistent)
	}
	ok := FillPersistence(tab, map[ServiceKey]int{
		{Protocol: "udp", Addr: netip.MustParseAddrPort("10.96.0.1:53")}: 10800,
		{Protocol: "fwmark", FWMark: 16}:                                 3000,
	})
	if !ok || tab.Services[1].Persistent != 10800 || tab.Services[2].Persistent != 3000 {
		t.Errorf("filled: %v, %d %d", ok, tab.Services[1].Persistent, tab.Services[2].Persistent)
	}
	// ipvsadm -Ln's own forms of the same.
	listed, err := ParseList([]byte("TCP  [fd00:10::a]:80 rr\n  -> [fd00:244::11]:8080           Masq    1      2          3\nFWM  16 wrr persistent 3000\n"))
	if err != nil {
		t.Fatal(err)
	}
	if listed.Services[0].Addr != v6.Addr || listed.Services[0].Reals[0].Addr != v6.Reals[0].Addr || listed.Services[1].FWMark != 16 || listed.Services[1].Persistent != 3000 {
		t.Errorf("ipvsadm -Ln forms: %+v %+v", listed.Services[0], listed.Services[1])
	}
	for _, bad := range []string{"TCP  [fd00::a]:50 rr\n", "TCP  [10.0.0.1]:0050 rr\n", "FWM  zz rr\n", "TCP  0A600001:50 rr\n"} {
		if _, err := ParseList([]byte(procRealsHeader + "\n" + bad)); err == nil {
			t.Errorf("/proc line %q parsed", bad)
		}
	}
}
