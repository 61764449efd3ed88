package xtables

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"time"

	"bytes"
	"golang.org/x/sys/unix"
	"os"
	"os/exec"
	"regexp"
	"testing"

	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/test/netnstest"
)

var regexpNfacct = regexp.MustCompile(` -m nfacct --nfacct-name +[^ ]+`)

// TestLegacyEntriesInNetns: in a network namespace holding the recorded demo node's rules (legacy
// backend), the kernel's entry count is exactly the dump's rules, plus a policy entry per
// built-in chain, a head and a return entry per user chain, and one end entry per table.
func TestLegacyEntriesInNetns(t *testing.T) {
	if !netnstest.Inside(t) {
		return
	}
	dump, err := os.ReadFile("../snapshot/demo/iptables-save.txt")
	if err != nil {
		t.Fatal(err)
	}
	// kube-proxy's nfacct counter object is not in a fresh namespace: that match goes.
	dump = regexpNfacct.ReplaceAll(dump, nil)
	restore := exec.Command("iptables-legacy-restore", "-c")
	restore.Stdin = bytes.NewReader(dump)
	if out, err := restore.CombinedOutput(); err != nil {
		t.Fatalf("iptables-legacy-restore: %v: %s", err, out)
	}
	rs, err := Parse(dump)
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, tb := range rs.Tables {
		want++ // the table's end
		for _, c := range tb.Order {
			want += len(c.Rules) + 1
			if !c.Builtin() {
				want++
			}
		}
	}
	if got := legacyEntries(); got != want {
		t.Errorf("the kernel holds %d entries, the dump says %d", got, want)
	}
	t.Logf("%d entries for %d rules", want, rs.RuleCount())
}

// kernelCases are iptables-save texts restored into the kernel, whose reads from the kernel are
// compared with iptables-legacy-save's: every fixture recorded from a real kube-proxy, and one
// written here to reach every option the decoder prints (an odd mask, inversions, a goto, a
// rule with no target, quoting, each extension's rarer options).
var kernelCases = map[string]string{
	"demo":             "../snapshot/demo/iptables-save.txt",
	"v1.30.14":         "../../trace/kubeproxy/testdata/kube-proxy-v1.30.14/iptables-save.txt",
	"v1.33.13":         "../../trace/kubeproxy/testdata/kube-proxy-v1.33.13/iptables-save.txt",
	"dual-stack":       "../../trace/kubeproxy/testdata/kube-proxy-v1.36.3-dual-stack/iptables-save.txt",
	"interface-prefix": "../../trace/kubeproxy/testdata/kube-proxy-v1.36.3-interface-name-prefix/iptables-save.txt",
	"masquerade-all":   "../../trace/kubeproxy/testdata/kube-proxy-v1.36.3-masquerade-all-bridge/iptables-save.txt",
	"ipvs":             "../snapshot/demo-ipvs/iptables-save.txt", // its sets made from its ipset-save.txt first
	"every option":     "testdata/kernel-options.txt",
}

// TestReadKernelSameAsSave: in a network namespace, for each case restored with the real
// iptables-legacy-restore, the text ReadKernel makes from the kernel's entries is byte for byte
// what iptables-legacy-save -c prints (the "# " comment lines aside: they name the printer and
// the time), and parses to the same rules.
func TestReadKernelSameAsSave(t *testing.T) {
	if !netnstest.Inside(t) {
		return
	}
	// kube-proxy's nfacct counters, and the one the options case uses (a rule can only name
	// an existing one).
	for _, name := range []string{"ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts", "svctrace_test"} {
		createNfacct(t, name)
	}
	// The IPVS node's sets (its rules match them by name; the kernel holds their indexes), and
	// one the options case matches with every direction and an inversion.
	sets, err := os.ReadFile("../snapshot/demo-ipvs/ipset-save.txt")
	if err != nil {
		t.Fatal(err)
	}
	sets = append(sets, "create svctrace-test hash:ip,port,ip family inet\n"...)
	restore := exec.Command("ipset", "restore")
	restore.Stdin = bytes.NewReader(sets)
	if out, err := restore.CombinedOutput(); err != nil {
		t.Fatalf("ipset restore: %v: %s", err, out)
	}
	for name, file := range kernelCases {
		restoreLegacy(t, file)
		want, err := exec.Command("iptables-legacy-save", "-c").Output()
		if err != nil {
			t.Fatalf("%s: iptables-legacy-save: %v", name, err)
		}
		got := kernelText(t)
		if g, w := withoutComments(got), withoutComments(want); g != w {
			gl, wl := strings.Split(g, "\n"), strings.Split(w, "\n")
			for i := range min(len(gl), len(wl)) {
				if gl[i] != wl[i] {
					t.Fatalf("%s: line %d differs:\nkernel: %s\nsave:   %s", name, i+1, gl[i], wl[i])
				}
			}
			t.Fatalf("%s: %d lines from the kernel, %d from iptables-legacy-save", name, len(gl), len(wl))
		}
		// The parse of it: the same as of iptables-legacy-save's text, or the same error.
		ref, referr := Parse(want)
		rs, d, err := ReadKernel()
		switch {
		case referr != nil && (err == nil || err.Error() != referr.Error()):
			t.Fatalf("%s: ReadKernel said %v, the parse of iptables-legacy-save's text %v", name, err, referr)
		case referr != nil:
		case err != nil:
			t.Fatalf("%s: ReadKernel: %v", name, err)
		case withoutComments(d.Bytes()) != withoutComments(got) || rs.RuleCount() != ref.RuleCount() || rs.Variant != "legacy":
			t.Errorf("%s: %d rules (%s), iptables-legacy-save's parse %d", name, rs.RuleCount(), rs.Variant, ref.RuleCount())
		}
		t.Logf("%s: %d bytes, identical (parse: %v)", name, len(got), referr)
	}
	// On this machine, the live read of the legacy backend is the kernel's, not the command's:
	// of the demo node (the cases above ran in map order, and the last may be one the parse
	// refuses).
	restoreLegacy(t, kernelCases["demo"])
	// So is plain iptables-save's where it is the legacy variant (older distributions).
	for _, save := range []string{"iptables-legacy-save", "iptables-save"} {
		if rs, _, _, from, err := ReadLive(context.Background(), noderun.Local{}, Backend{Save: save, Mode: "legacy"}); err != nil || from != KernelSource || rs.Variant != "legacy" {
			t.Errorf("ReadLive of %s read from %q (%v)", save, from, err)
		}
	}
	for _, b := range []Backend{{Save: "iptables-save", Mode: "nf_tables"}, {Save: "iptables-nft-save", Mode: "nf_tables"}, {Save: "ip6tables-legacy-save", Mode: "legacy"}, {Save: "iptables-save"}} {
		if b.fromKernel() {
			t.Errorf("%+v would be read from the kernel's IPv4 legacy tables", b)
		}
	}
	// What the decoder does not print is said, never guessed: iptables-legacy-save runs then.
	for _, rule := range []string{"-A INPUT -j LOG --log-prefix x", "-A INPUT -p tcp -m multiport --dports 1,2", "-A INPUT -p tcp -m tcp --tcp-flags SYN SYN", "-A INPUT -m conntrack --ctstatus SEEN_REPLY", "-A INPUT -p gre",
		"-A INPUT -m set --match-set svctrace-test src,dst,src --return-nomatch", "-A INPUT -m set --match-set svctrace-test dst ! --update-counters", "-A INPUT -m set --match-set svctrace-test dst --packets-gt 3"} {
		restore := exec.Command("iptables-legacy-restore")
		restore.Stdin = strings.NewReader("*filter\n:INPUT ACCEPT [0:0]\n" + rule + "\nCOMMIT\n")
		if out, err := restore.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", rule, err, out)
		}
		var u *UnsupportedError
		if _, _, err := ReadKernel(); !errors.As(err, &u) {
			t.Errorf("%s: ReadKernel said %v, want that it does not print it", rule, err)
		}
	}
}

// kernelText is the text WriteSave makes of this namespace's legacy tables.
func kernelText(t *testing.T) []byte {
	t.Helper()
	names, err := legacyTableNames()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var out []byte
	for _, name := range names {
		tb, release, err := getEntries(fd, name)
		if err != nil {
			t.Fatal(err)
		}
		err = tb.WriteSave(time.Now(), 100, func(b []byte) error { out = append(out, b...); return nil })
		release()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	return out
}

// withoutComments drops the "# " lines.
func withoutComments(b []byte) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "# ") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// createNfacct makes an extended accounting object (what `nfacct add NAME` does: there is no
// nfacct tool here) over netlink: NFNL_SUBSYS_ACCT, NFNL_MSG_ACCT_NEW, its NFACCT_NAME.
func createNfacct(t *testing.T, name string) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_NETFILTER)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	attr := make([]byte, (4+len(name)+1+3)&^3)
	binary.NativeEndian.PutUint16(attr[0:], uint16(4+len(name)+1))
	binary.NativeEndian.PutUint16(attr[2:], 1) // NFACCT_NAME
	copy(attr[4:], name)
	msg := make([]byte, 16+4, 16+4+len(attr))
	msg = append(msg, attr...)
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], 7<<8)                                                // NFNL_SUBSYS_ACCT, NFNL_MSG_ACCT_NEW
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE) // flags
	binary.NativeEndian.PutUint32(msg[8:], 1)                                                   // sequence
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n < 20 || binary.NativeEndian.Uint16(buf[4:]) != unix.NLMSG_ERROR {
		t.Fatalf("nfacct %s: unexpected answer", name)
	}
	if code := int32(binary.NativeEndian.Uint32(buf[16:])); code != 0 {
		t.Fatalf("nfacct %s: %v", name, unix.Errno(-code))
	}
}

// restoreLegacy loads a dump into this namespace's legacy tables with the real
// iptables-legacy-restore.
func restoreLegacy(t *testing.T, file string) {
	t.Helper()
	dump, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	restore := exec.Command("iptables-legacy-restore", "-c")
	restore.Stdin = bytes.NewReader(dump)
	if out, err := restore.CombinedOutput(); err != nil {
		t.Fatalf("%s: iptables-legacy-restore: %v: %s", file, err, out)
	}
}
