package conntrack

import (
	"os"
	"strings"
	"testing"
)

// Lines in the formats conntrack-tools 1.4.7 prints (`conntrack -L` and `-o extended`).
const sample = `ipv4     2 tcp      6 117 TIME_WAIT src=10.244.1.99 dst=10.96.10.10 sport=40312 dport=80 packets=6 bytes=345 src=10.244.1.12 dst=10.244.1.99 sport=9376 dport=40312 packets=4 bytes=262 [ASSURED] mark=0 use=1
tcp      6 431999 ESTABLISHED src=10.244.1.41 dst=10.96.10.10 sport=51000 dport=80 packets=1200 bytes=80000 src=10.244.1.11 dst=10.244.1.41 sport=9376 dport=51000 packets=1200 bytes=90000 [ASSURED] mark=0 use=1
udp      17 29 src=10.244.1.99 dst=10.96.10.53 sport=33333 dport=53 packets=1 bytes=34 src=10.244.1.51 dst=10.244.1.99 sport=5353 dport=33333 packets=1 bytes=50 mark=0 use=1
icmp     1 29 src=10.244.1.99 dst=10.244.1.11 type=8 code=0 id=7 src=10.244.1.11 dst=10.244.1.99 type=0 code=0 id=7 mark=0 use=1
conntrack v1.4.7 (conntrack-tools): 4 flow entries have been shown.
`

func TestParse(t *testing.T) {
	conns, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(conns) != 3 {
		t.Fatalf("%d connections, want 3 (icmp skipped)", len(conns))
	}
	c := conns[1]
	if c.Client.String() != "10.244.1.41" || c.Dst.String() != "10.96.10.10:80" || c.Backend.String() != "10.244.1.11:9376" || c.Bytes != 170000 || c.Packets != 2400 || c.State != "ESTABLISHED" {
		t.Errorf("parsed %+v", c)
	}
	if conns[0].State != "TIME_WAIT" || conns[2].Protocol.String() != "udp" {
		t.Errorf("parsed %+v / %+v", conns[0], conns[2])
	}
}

func TestParseErrors(t *testing.T) {
	_, err := Parse([]byte("tcp 6 10 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=x dport=80\n"))
	if err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("error %v", err)
	}
	_, err = Parse([]byte("tcp 6 10 ESTABLISHED src=10.0.0.1\n"))
	if err == nil || !strings.Contains(err.Error(), "no original and reply tuple") {
		t.Fatalf("error %v", err)
	}
}

// TestParseRefuses: lines that are not connections (once skipped, so any file gave "0
// connections") and counters whose sum passes 2^64 (once wrapped to small numbers) are errors
// naming the line.
func TestParseRefuses(t *testing.T) {
	for input, want := range map[string]string{
		"hello world\n": "line 1: not a connection",
		"tcp 6 10 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1 dport=80 packets=18446744073709551615 bytes=1 src=10.0.0.3 dst=10.0.0.1 sport=80 dport=1 packets=1 bytes=1\n": "line 1: the packets counters add up past 2^64",
		strings.Repeat("x", 2<<20) + "\n": "line 1: a line longer than 1 MiB",
	} {
		if _, err := Parse([]byte(input)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%.40q: %v, want %q", input, err, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(sample))
	f.Fuzz(func(t *testing.T, data []byte) {
		conns, err := Parse(data)
		if err != nil {
			return
		}
		for _, c := range conns {
			if !c.Client.IsValid() || !c.Backend.IsValid() {
				t.Fatalf("connection without addresses: %+v", c)
			}
		}
	})
}

// TestParseRecorded reads real `conntrack -L -o extended` output (testdata/README.md): both
// families, translated and untranslated entries, TCP states and a zone.
func TestParseRecorded(t *testing.T) {
	data, err := os.ReadFile("testdata/extended.txt")
	if err != nil {
		t.Fatal(err)
	}
	conns, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(conns) != 9 {
		t.Fatalf("%d connections, want 9", len(conns))
	}
	var v6, zoned, translated, established, timeWait int
	for _, c := range conns {
		if c.Client.Is6() {
			v6++
			if c.Dst.String() != "[fd00:96::10]:53" || c.Backend.String() != "[fd00:250::2]:5353" {
				t.Errorf("IPv6 entry: %+v", c)
			}
		}
		if c.Zone == 5 {
			zoned++
		}
		if c.Dst != c.Backend {
			translated++
		}
		switch c.State {
		case "ESTABLISHED":
			established++
		case "TIME_WAIT":
			timeWait++
		}
	}
	// Translated: 3 UDP to 10.96.99.10 / fd00:96::10 and 3 TCP; the zone 5 flow and its
	// counterpart and the direct UDP flow are not.
	if v6 != 1 || zoned != 1 || translated != 6 || established != 1 || timeWait != 2 {
		t.Errorf("v6 %d zoned %d translated %d established %d time-wait %d", v6, zoned, translated, established, timeWait)
	}
	// A garbage line among real ones is an error naming its line.
	bad := strings.Replace(string(data), "mark=0 zone=5", "mark=0 zone=five", 1)
	if _, err := Parse([]byte(bad)); err == nil || !strings.Contains(err.Error(), "line 4") {
		t.Errorf("a bad zone: %v", err)
	}
}
