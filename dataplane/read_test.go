package dataplane

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/trace/iptables"
)

// tableRunner answers commands from a table; commands of a tool it lists answer "exit 1", others
// "not installed".
type tableRunner map[string]string

func (t tableRunner) Run(_ context.Context, argv ...string) ([]byte, error) {
	if out, ok := t[strings.Join(argv, " ")]; ok {
		return []byte(out), nil
	}
	if _, installed := t[argv[0]]; installed {
		return nil, &noderun.Error{Argv: argv, ExitStatus: 1, Stderr: "table does not exist"}
	}
	return nil, fmt.Errorf("%s: %w", argv[0], noderun.ErrNotFound)
}

// TestReadNamesTheModeAndWarns: a node with kube-proxy's nftables table and also its iptables
// chains (a mode switch in progress) is read as nftables, with those chains as a leftover and a
// warning that says so; the recorded iptables node reads as iptables with its backend and source
// named, and no leftovers.
func TestReadNamesTheModeAndWarns(t *testing.T) {
	nft, err := os.ReadFile("snapshot/demo-nftables/nft.json")
	if err != nil {
		t.Fatal(err)
	}
	dump, err := os.ReadFile("snapshot/demo/iptables-save.txt")
	if err != nil {
		t.Fatal(err)
	}
	both := tableRunner{
		"nft": "", "nft list tables": "table ip kube-proxy\n", "nft -j list ruleset": string(nft),
		"iptables --version": "iptables v1.8.9 (nf_tables)", "iptables-nft-save": "",
		"iptables-nft-save -t mangle": "*mangle\n:KUBE-PROXY-CANARY - [0:0]\nCOMMIT\n", "iptables-legacy-save": "",
	}
	for _, remote := range []bool{false, true} { // (remote: the look detects the backend first)
		n, err := Read(context.Background(), both, ReadOptions{Remote: remote})
		if err != nil || n.Dataplane.Mode() != "nftables" || len(n.Warnings) != 1 || !strings.Contains(n.Warnings[0], "(iptables-nft mangle; read as nftables mode)") || n.Files["nft.json"] == nil ||
			len(n.Leftovers) != 1 || n.Leftovers[0].Chains[0].Chain != "KUBE-PROXY-CANARY" || n.ModeFrom != "detected" {
			t.Fatalf("node with both (remote %v): %+v, %v", remote, n, err)
		}
	}
	// Through the API, with no kube-proxy chains in iptables, no look is made (each is an exec).
	nftOnly := &streamingNode{detected: make(chan struct{}), tableRunner: tableRunner{"nft": "", "ip": "", "nft list tables": "table ip kube-proxy\n", "nft -j list ruleset": string(nft), "iptables-nft-save": "", "iptables-legacy-save": ""}}
	n, err := Read(context.Background(), nftOnly, ReadOptions{Remote: true})
	if err != nil || n.Dataplane.Mode() != "nftables" || len(n.Warnings) != 0 || len(n.Leftovers) != 0 {
		t.Fatalf("nftables-only node: %+v, %v", n, err)
	}
	for _, cmd := range nftOnly.execs {
		if !strings.HasPrefix(cmd, "nft ") && !strings.Contains(cmd, "-save -t ") && cmd != "iptables --version" {
			t.Errorf("the nftables-only node was looked at for leftovers: %q", nftOnly.execs)
			break
		}
	}
	xt := tableRunner{
		"iptables --version": "iptables v1.8.9 (nf_tables)", "iptables-nft-save": "",
		"iptables-nft-save -t mangle": "*mangle\n:KUBE-PROXY-CANARY - [0:0]\nCOMMIT\n", "iptables-nft-save -c": string(dump),
		"iptables-legacy-save": "",
	}
	n, err = Read(context.Background(), xt, ReadOptions{})
	if err != nil || n.Dataplane.Mode() != "iptables" || n.Backend != "iptables-nft-save" || len(n.Warnings) != 0 || !strings.Contains(n.Source, "iptables-nft-save") || len(n.Leftovers) != 0 {
		t.Fatalf("iptables node: %+v, %v", n, err)
	}
}

// TestReadsTheIPv6RulesOfADualStackKubeProxy: on the node recorded with a dual-stack kube-proxy
// the read takes the backend's ip6tables twin too (the IPv6 proxier's rules), keeps it as a dump
// of its own and names it in the source, locally and through the API's one-call read; a node
// whose ip6tables has no kube-proxy chains, or that has no ip6tables at all, reads as before.
func TestReadsTheIPv6RulesOfADualStackKubeProxy(t *testing.T) {
	const dir = "../trace/kubeproxy/testdata/kube-proxy-v1.36.3-dual-stack/"
	v4, err := os.ReadFile(dir + "iptables-save.txt")
	if err != nil {
		t.Fatal(err)
	}
	v6, err := os.ReadFile(dir + "ip6tables-save.txt")
	if err != nil {
		t.Fatal(err)
	}
	node := func(ip6 string) tableRunner {
		r := tableRunner{
			"iptables --version": "iptables v1.8.9 (nf_tables)", "iptables-nft-save": "",
			"iptables-nft-save -t mangle": "*mangle\n:KUBE-PROXY-CANARY - [0:0]\nCOMMIT\n", "iptables-nft-save -c": string(v4),
			"iptables-legacy-save": "",
			// The API's one-call read: the default commands.
			"iptables-save -c": string(v4),
		}
		if ip6 != "" {
			r["ip6tables-nft-save -c"], r["ip6tables-save -c"] = ip6, ip6
		}
		return r
	}
	for _, remote := range []bool{false, true} {
		n, err := Read(context.Background(), node(string(v6)), ReadOptions{Mode: "iptables", Remote: remote})
		if err != nil {
			t.Fatal(err)
		}
		dp := n.Dataplane.(*iptables.Dataplane)
		if dp.V6 == nil || dp.V6.Tables["nat"].Chains["KUBE-SVC-FWEJ5PXIIDWNU55J"] == nil || n.Files["ip6tables-save.txt"] == nil || string(n.Files["ip6tables-save.txt"]()) != string(v6) ||
			!strings.Contains(n.Source, "ip6tables") {
			t.Errorf("remote %v: the IPv6 rules were not read: V6 %v, files %d, source %q", remote, dp.V6 != nil, len(n.Files), n.Source)
		}
	}
	bare := "# Generated by ip6tables-save v1.8.9 (nf_tables)\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n# Completed on x\n"
	for name, ip6 := range map[string]string{"no kube-proxy chains": bare, "no ip6tables": ""} {
		n, err := Read(context.Background(), node(ip6), ReadOptions{Mode: "iptables"})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if dp := n.Dataplane.(*iptables.Dataplane); dp.V6 != nil || n.Files["ip6tables-save.txt"] != nil || strings.Contains(n.Source, "ip6tables") {
			t.Errorf("%s: an IPv6 read was kept: source %q", name, n.Source)
		}
	}
}

// streamingNode is a remote node through the API: tableRunner's answers, each exec logged (from
// any goroutine), and the big `iptables-save -c` streamed as an exec stream hands it over: its
// first line, then the rest only once the backend detection has begun (or after 20 seconds, when
// nothing starts it while the answer streams).
type streamingNode struct {
	tableRunner
	mu       sync.Mutex
	execs    []string
	detected chan struct{} // closed by the first detection read
	once     sync.Once
	waited   bool // the rest was sent only because the 20 seconds ran out
}

func (s *streamingNode) Run(ctx context.Context, argv ...string) ([]byte, error) {
	cmd := strings.Join(argv, " ")
	s.mu.Lock()
	s.execs = append(s.execs, cmd)
	s.mu.Unlock()
	if strings.HasSuffix(cmd, "-save -t mangle") {
		s.once.Do(func() { close(s.detected) })
	}
	return s.tableRunner.Run(ctx, argv...)
}

func (s *streamingNode) Stream(ctx context.Context, consume func(io.Reader) error, argv ...string) error {
	out, err := s.Run(ctx, argv...)
	if err != nil {
		return err
	}
	if strings.Join(argv, " ") != "iptables-save -c" {
		return consume(bytes.NewReader(out))
	}
	pr, pw := io.Pipe()
	go func() {
		first := bytes.IndexByte(out, '\n') + 1
		if _, err := pw.Write(out[:first]); err != nil {
			return
		}
		select {
		case <-s.detected:
		case <-time.After(20 * time.Second):
			s.waited = true
		}
		_, _ = pw.Write(out[first:])
		pw.Close()
	}()
	err = consume(pr)
	pr.Close()
	return err
}

// TestRemoteLegacyDetectsWhileTheDumpStreams: through the API, on a node whose default
// iptables-save is legacy (kube-proxy's image on a legacy node), the backend detection and the
// look for kube-ipvs0 begin as soon as the dump's first line says legacy, before the rest has
// come; that one dump is the read (iptables-legacy-save -c never runs), and so is the default
// ip6tables-save's when it answered as the legacy variant too; otherwise the legacy IPv6 twin is
// read. A node whose answer is nf_tables runs none of those follow-up reads.
func TestRemoteLegacyDetectsWhileTheDumpStreams(t *testing.T) {
	const dir = "../trace/kubeproxy/testdata/kube-proxy-v1.36.3-dual-stack/"
	var dumps [2]string
	for i, name := range []string{"iptables-save.txt", "ip6tables-save.txt"} {
		b, err := os.ReadFile(dir + name)
		if err != nil {
			t.Fatal(err)
		}
		dumps[i] = strings.ReplaceAll(string(b), "(nf_tables)", "(legacy)")
	}
	node := &streamingNode{detected: make(chan struct{}), tableRunner: tableRunner{
		"nft": "", "ip": "", "iptables-nft-save": "", "iptables-legacy-save": "", "ip6tables-legacy-save": "",
		"nft list flowtables":            "", // (no nftables tables)
		"iptables-save -c":               dumps[0],
		"ip6tables-save -c":              dumps[1],
		"iptables-legacy-save -t mangle": "*mangle\n:KUBE-PROXY-CANARY - [0:0]\nCOMMIT\n",
		"ip6tables-legacy-save -c":       dumps[1],
	}}
	n, err := Read(context.Background(), node, ReadOptions{Remote: true})
	if err != nil {
		t.Fatal(err)
	}
	if node.waited {
		t.Error("the backend detection did not begin while the legacy dump streamed")
	}
	dp, _ := n.Dataplane.(*iptables.Dataplane)
	if n.Backend != "iptables-legacy-save" || dp == nil || dp.V6 == nil || string(n.Files["iptables-save.txt"]()) != dumps[0] || string(n.Files["ip6tables-save.txt"]()) != dumps[1] ||
		n.Source != "live (iptables-save and ip6tables-save, iptables legacy)" {
		t.Fatalf("read as %q (%s), files %d", n.Backend, n.Source, len(n.Files))
	}
	slices.Sort(node.execs)
	want := []string{"ip -o link show kube-ipvs0", "ip6tables-save -c", "iptables-legacy-save -t mangle", "iptables-nft-save -t mangle", "iptables-save -c", "nft list flowtables"}
	if !slices.Equal(node.execs, want) {
		t.Errorf("execs %q, want %q", node.execs, want)
	}

	// The default ip6tables-save is the nf_tables variant (it holds nothing of kube-proxy's):
	// the legacy twin is read. Or it is legacy and holds no kube-proxy rules (a single-stack
	// kube-proxy): nothing more is read, and there are no IPv6 rules.
	for _, tc := range []struct {
		v6      string
		twin    bool
		wantV6  bool
		wantSrc string
	}{
		{"# Generated by ip6tables-save v1.8.9 (nf_tables) on Mon\n*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n", true, true, "live (iptables-save and ip6tables-legacy-save, iptables legacy)"},
		{"# Generated by ip6tables-save v1.8.9 (legacy) on Mon\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", false, false, "live (iptables-save, iptables legacy)"},
		{"# Generated by ip6tables-save v1.8.9 (legacy) on Mon\n*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n", false, false, "live (iptables-save, iptables legacy)"},
	} {
		other := &streamingNode{detected: make(chan struct{}), tableRunner: maps.Clone(node.tableRunner)}
		other.tableRunner["ip6tables-save -c"] = tc.v6
		n, err := Read(context.Background(), other, ReadOptions{Remote: true})
		if err != nil {
			t.Fatal(err)
		}
		dp, _ := n.Dataplane.(*iptables.Dataplane)
		if dp == nil || (dp.V6 != nil) != tc.wantV6 || n.Source != tc.wantSrc || slices.Contains(other.execs, "ip6tables-legacy-save -c") != tc.twin {
			t.Errorf("default ip6tables-save %.60q: source %q, IPv6 rules %v, execs %q", tc.v6, n.Source, dp != nil && dp.V6 != nil, other.execs)
		}
	}

	nft, err := os.ReadFile(dir + "iptables-save.txt")
	if err != nil {
		t.Fatal(err)
	}
	plain := &streamingNode{detected: make(chan struct{}), tableRunner: tableRunner{"nft": "", "nft list flowtables": "", "iptables-save -c": string(nft)}}
	close(plain.detected) // (nothing waits for detection here)
	if n, err := Read(context.Background(), plain, ReadOptions{Remote: true}); err != nil || n.Backend != "iptables-save" {
		t.Fatalf("nf_tables node read as %v: %v", n, err)
	}
	slices.Sort(plain.execs)
	if want := []string{"ip6tables-save -c", "iptables-save -c", "nft list flowtables"}; !slices.Equal(plain.execs, want) {
		t.Errorf("nf_tables node: execs %q, want %q", plain.execs, want)
	}
}
