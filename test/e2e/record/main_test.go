package main

import (
	"strings"
	"testing"
)

// TestIPVSCompareTable: the guest's timing lines become medians, and the trace's ratio is to the
// slowest of the reads it needs (not to the whole IPVS table's listings, which it does not run:
// the ratio to /proc/net/ip_vs is given apart); lines that are not timings are skipped, and a
// missing read is an error, not a ratio to nothing.
func TestIPVSCompareTable(t *testing.T) {
	var lines []string
	for _, round := range [][5]string{{"3.0", "1.0", "2.0", "9.0", "3.3"}, {"3.2", "1.1", "2.1", "9.0", "3.5"}, {"2.8", "0.9", "5.0", "9.0", "3.1"}} {
		lines = append(lines,
			"iptables-save -c: "+round[0]+" s 2048 KB", "ipset save: 9.9 s 1024 KB", "ipset list -t: "+round[1]+" s 1024 KB", "netprobe ipvs-services: 1.5 s 8192 KB", "ipvsadm -Ln -t VIP: 0.4 s 1024 KB", "ip -o addr show dev kube-ipvs0: 0.2 s 1024 KB", "cat /proc/net/ip_vs: "+round[2]+" s 4096 KB", "ipvsadm -Ln: 20.0 s 4096 KB",
			"ipvsadm -Sn: "+round[3]+" s 4096 KB", "kubectl-svctrace trace (live): "+round[4]+" s 204800 KB", "Command exited with non-zero status 1")
	}
	table, err := ipvsCompareTable(strings.Join(lines, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| iptables-save -c | 3.00 s | 2 MiB |", "| cat /proc/net/ip_vs | 2.10 s | 4 MiB |", "| ipvsadm -Ln | 20.00 s | 4 MiB |", "| kubectl-svctrace trace (live) | 3.30 s (1.10× iptables-save -c, the slowest read it needs; 1.57× cat /proc/net/ip_vs, the whole IPVS table, which it does not read) | 200 MiB |"} {
		if !strings.Contains(table, want) {
			t.Errorf("no %q in\n%s", want, table)
		}
	}
	if _, err := ipvsCompareTable(strings.Join(lines[1:], "\n")); err != nil {
		t.Errorf("one round's iptables-save line missing: %v", err)
	}
	if _, err := ipvsCompareTable(strings.ReplaceAll(strings.Join(lines, "\n"), "ipset list -t", "ipset list")); err == nil {
		t.Error("no ipset list -t timed, but a ratio was given")
	}
	// kube-ipvs0's addresses, when they are the slowest read, are the one; the listing of
	// every virtual server, which trace does not make, never is.
	table, err = ipvsCompareTable(strings.ReplaceAll(strings.Join(lines, "\n"), "kube-ipvs0: 0.2 s", "kube-ipvs0: 4.0 s"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "3.30 s (0.82× ip -o addr show dev kube-ipvs0, the slowest read it needs"; !strings.Contains(table, want) {
		t.Errorf("no %q in\n%s", want, table)
	}
	table, err = ipvsCompareTable(strings.ReplaceAll(strings.Join(lines, "\n"), "netprobe ipvs-services: 1.5 s", "netprobe ipvs-services: 40.0 s"))
	if err != nil || !strings.Contains(table, "(1.10× iptables-save -c, the slowest read it needs") {
		t.Errorf("the listing of every virtual server taken for a read trace needs: %v\n%s", err, table)
	}
}
