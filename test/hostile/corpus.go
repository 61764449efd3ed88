// Package hostile generates the hostile-input corpus: every file svctrace reads (dumps of each
// format, API objects, conntrack tables, snapshot bundles, repair plans), cut, corrupted and
// crafted to attack it, each paired with the command line that reads it. The corpus is written
// fresh by every run from the recorded fixtures (nothing of it is committed); corpus_test.go runs
// every case against the built binary under a time and memory cap.
package hostile

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/svctrace/svctrace/test/tracetest"
)

// Case is one hostile input and the command that reads it.
type Case struct {
	Name string
	// Args is the command line, after the binary.
	Args []string
	// Refuse is true when the input must be refused: exit 2 with one error sentence.
	Refuse bool
	// Names is what the error must name (the file, the snapshot, the object); empty for none.
	Names string
	// Want, when set, must appear in the error.
	Want string
	// Where, when set, is how a parse error must say where in the file it is ("line N" for
	// line-based formats, "byte N" for JSON); errors about the whole file need not.
	Where string
}

// fixture is one recorded input: its path in the repository and how a command reads it.
type fixture struct {
	name, path string
	// args returns the command line that reads the file at p.
	args func(p string) []string
	// emptyOK is true when an empty file is a valid input (an empty conntrack table).
	emptyOK bool
	// where is how the format's parse errors locate themselves (Case.Where).
	where string
}

// Generate writes the corpus under dir, from the recorded fixtures in repo, and returns its cases.
func Generate(repo, dir string) ([]Case, error) {
	g := &gen{repo: repo, dir: dir, rnd: rand.New(rand.NewSource(12))}
	snap := func(s string) string { return filepath.Join(repo, "dataplane/snapshot", s) }
	demoObjects := snap("demo/objects.yaml")
	ipvs := snap("demo-ipvs")
	fixtures := []fixture{
		{"iptables-save", snap("demo/iptables-save.txt"), func(p string) []string {
			return []string{"check", "-A", "--node", "node1", "--dataplane", p, "--objects", demoObjects}
		}, false, "line"},
		{"iptables-save-trace", snap("demo/iptables-save.txt"), func(p string) []string {
			return []string{"trace", "default/hostnames", "--node", "node1", "--dataplane", p, "--objects", demoObjects, "-o", "json"}
		}, false, "line"},
		{"iptables-save-repair", snap("demo/iptables-save.txt"), func(p string) []string {
			return []string{"repair", "-A", "--node", "node1", "--dataplane", p, "--objects", demoObjects, "-o", "json"}
		}, false, "line"},
		{"nft-json", snap("demo-nftables/nft.json"), func(p string) []string {
			return []string{"check", "-A", "--node", "node1", "--dataplane", p, "--objects", snap("demo-nftables/objects.yaml")}
		}, false, "byte"},
		{"ipvsadm-Ln", ipvs + "/ipvsadm-Ln.txt", func(p string) []string {
			return []string{"check", "-A", "--node", "node1", "--dataplane", ipvs + "/iptables-save.txt", "--dataplane", ipvs + "/ipset-save.txt", "--dataplane", p, "--objects", ipvs + "/objects.yaml"}
		}, false, "line"},
		{"ipvsadm-Sn", ipvs + "/ipvsadm-Sn.txt", func(p string) []string {
			return []string{"check", "-A", "--node", "node1", "--dataplane", ipvs + "/iptables-save.txt", "--dataplane", ipvs + "/ipset-save.txt", "--dataplane", p, "--objects", ipvs + "/objects.yaml"}
		}, false, "line"},
		{"proc-ip_vs", ipvs + "/proc-net-ip_vs.txt", func(p string) []string {
			return []string{"check", "-A", "--node", "node1", "--dataplane", ipvs + "/iptables-save.txt", "--dataplane", ipvs + "/ipset-save.txt", "--dataplane", p, "--objects", ipvs + "/objects.yaml"}
		}, false, "line"},
		{"ipset-save", ipvs + "/ipset-save.txt", func(p string) []string {
			return []string{"check", "-A", "--node", "node1", "--dataplane", ipvs + "/iptables-save.txt", "--dataplane", p, "--dataplane", ipvs + "/ipvsadm-Ln.txt", "--objects", ipvs + "/objects.yaml"}
		}, false, "line"},
		{"objects", demoObjects, func(p string) []string {
			return []string{"check", "-A", "--node", "node1", "--dataplane", snap("demo/iptables-save.txt"), "--objects", p}
		}, false, ""},
		{"conntrack", "", func(p string) []string {
			return []string{"balance", "--demo", "default/hostnames", "--conntrack", p}
		}, true, "line"},
	}
	for _, f := range fixtures {
		data := []byte(conntrackSample)
		if f.path != "" {
			var err error
			if data, err = os.ReadFile(f.path); err != nil {
				return nil, err
			}
		}
		if err := g.mutations(f, data); err != nil {
			return nil, err
		}
	}
	if err := g.crafted(); err != nil {
		return nil, err
	}
	if err := g.snapshots(); err != nil {
		return nil, err
	}
	return g.cases, nil
}

type gen struct {
	repo, dir string
	rnd       *rand.Rand
	cases     []Case
}

func (g *gen) write(name string, data []byte) (string, error) {
	p := filepath.Join(g.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", err
	}
	return p, os.WriteFile(p, data, 0o600)
}

// mutations cuts and corrupts one fixture in every way that does not depend on its format.
func (g *gen) mutations(f fixture, data []byte) error {
	type variant struct {
		name   string
		data   []byte
		refuse bool
	}
	var vs []variant
	for _, pct := range []int{1, 10, 33, 50, 77, 90, 99} {
		vs = append(vs, variant{fmt.Sprintf("cut-%d%%", pct), data[:len(data)*pct/100], false})
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i := 0; i < 3; i++ {
		k := g.rnd.Intn(len(lines))
		vs = append(vs, variant{fmt.Sprintf("cut-at-line-%d", k), bytes.Join(lines[:k], nil), false})
		d := g.rnd.Intn(len(lines))
		vs = append(vs, variant{fmt.Sprintf("without-line-%d", d), join(lines[:d], lines[d+1:]), false})
		u := g.rnd.Intn(len(lines))
		vs = append(vs, variant{fmt.Sprintf("line-%d-twice", u), join(lines[:u+1], lines[u:]), false})
	}
	for i := 0; i < 6; i++ {
		b := append([]byte(nil), data...)
		for j := 0; j < 1+i*3; j++ {
			b[g.rnd.Intn(len(b))] = byte(g.rnd.Intn(256))
		}
		vs = append(vs, variant{fmt.Sprintf("flipped-%d", i), b, false})
	}
	garbage := make([]byte, 64<<10)
	g.rnd.Read(garbage)
	long := bytes.Repeat([]byte("a"), 2<<20)
	mid := len(lines) / 2
	vs = append(vs,
		variant{"empty", nil, !f.emptyOK},
		variant{"garbage", garbage, true},
		variant{"nul-bytes", bytes.ReplaceAll(data, []byte(" "), []byte("\x00")), false},
		variant{"crlf", bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n")), false},
		variant{"bom", append([]byte("\xef\xbb\xbf"), data...), false},
		variant{"long-line", join(lines[:mid], [][]byte{long, []byte("\n")}, lines[mid:]), false},
		variant{"only-a-long-line", long, true},
	)
	for _, v := range vs {
		p, err := g.write(filepath.Join(f.name, v.name), v.data)
		if err != nil {
			return err
		}
		g.cases = append(g.cases, Case{Name: f.name + "/" + v.name, Args: f.args(p), Refuse: v.refuse, Names: p, Where: f.where})
	}
	return nil
}

func join(parts ...[][]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, bytes.Join(p, nil)...)
	}
	return out
}

// crafted are the inputs an attack found holes with, each of which must be refused by name.
func (g *gen) crafted() error {
	snap := func(s string) string { return filepath.Join(g.repo, "dataplane/snapshot", s) }
	dump, err := os.ReadFile(snap("demo/iptables-save.txt"))
	if err != nil {
		return err
	}
	objects, err := os.ReadFile(snap("demo/objects.yaml"))
	if err != nil {
		return err
	}
	nftJSON, err := os.ReadFile(snap("demo-nftables/nft.json"))
	if err != nil {
		return err
	}
	add := func(name string, data []byte, c Case) error {
		p, err := g.write(filepath.Join("crafted", name), data)
		if err != nil {
			return err
		}
		c.Name = "crafted/" + name
		for i, a := range c.Args {
			c.Args[i] = strings.ReplaceAll(a, "FILE", p)
		}
		if c.Names == "FILE" {
			c.Names = p
		}
		g.cases = append(g.cases, c)
		return nil
	}
	dp := func(args ...string) []string {
		return append([]string{"trace", "10.96.0.1:443", "--from", "10.244.1.5", "--node", "node1", "--dataplane", "FILE", "--no-api"}, args...)
	}
	withObjects := func(cmd ...string) []string {
		return append(cmd, "--node", "node1", "--dataplane", snap("demo/iptables-save.txt"), "--objects", "FILE")
	}
	steps := "more than 1000000 rule steps"
	for _, c := range []struct {
		name string
		data []byte
		c    Case
	}{
		{"goto-loop.txt", []byte(tracetest.GotoLoop), Case{Args: dp(), Refuse: true, Names: "FILE", Want: steps}},
		{"nan-probability.txt", bytes.Replace(dump, []byte("--probability 0.50000000000"), []byte("--probability NaN"), 1),
			Case{Args: dp(), Refuse: true, Names: "FILE", Want: "probability"}},
		{"nft-numgen-huge.json", bytes.Replace(nftJSON, []byte(`"mod": 3`), []byte(`"mod": 1000000000000`), 1),
			Case{Args: []string{"check", "-A", "--node", "node1", "--dataplane", "FILE", "--objects", snap("demo-nftables/objects.yaml")}}},
		{"nft-deep.json", append(append([]byte(`{"nftables": `), bytes.Repeat([]byte("["), 200000)...), bytes.Repeat([]byte("]"), 200000)...),
			Case{Args: dp(), Refuse: true, Names: "FILE"}},
		{"cluster-ip-999.yaml", replaceService(objects, "clusterIP: 10.96.10.10", "clusterIP: 999.1.2.3"),
			Case{Args: withObjects("check", "-A"), Refuse: true, Names: "default/hostnames", Want: "999.1.2.3"}},
		{"port-70000.yaml", replaceService(objects, "port: 80\n", "port: 70000\n"),
			Case{Args: withObjects("repair", "-A"), Refuse: true, Names: "default/hostnames", Want: "70000"}},
		{"node-port-negative.yaml", []byte(strings.Replace(string(objects), "nodePort: ", "nodePort: -", 1)),
			Case{Args: withObjects("repair", "-A"), Refuse: true, Want: "-3"}},
		{"port-name-injection.yaml", []byte(strings.Replace(string(objects), "name: default\n", "name: \"x\\\" -j ACCEPT\\n-A PREROUTING -j DNAT --to-destination 6.6.6.6\\n#\"\n", 1)),
			Case{Args: withObjects("repair", "-A"), Refuse: true, Want: "port"}},
		{"alias-bomb.yaml", []byte(aliasBomb), Case{Args: withObjects("check", "-A"), Refuse: true, Names: "FILE"}},
	} {
		if err := add(c.name, c.data, c.c); err != nil {
			return err
		}
	}
	return nil
}

// replaceService changes the first occurrence of old after the hostnames Service's name.
func replaceService(objects []byte, old, new string) []byte {
	s := string(objects)
	i := strings.Index(s, "name: hostnames\n")
	if i < 0 {
		return objects
	}
	return []byte(s[:i] + strings.Replace(s[i:], old, new, 1))
}

// snapshots are bundles that try to leave their directory, block, or fill memory.
func (g *gen) snapshots() error {
	demo := filepath.Join(g.repo, "dataplane/snapshot/demo")
	for _, c := range []struct {
		name     string
		manifest string
		setup    func(dir string) error
		want     string
	}{
		{"dataplane-outside", "dataplane: [\"../../../../etc/passwd\"]\n", nil, "not a file name inside"},
		{"objects-outside", "objects: /etc/passwd\n", nil, "not a file name inside"},
		{"link-to-dev-zero", "", func(dir string) error {
			return relink(filepath.Join(dir, "iptables-save.txt"), "/dev/zero")
		}, ""},
		{"link-out-of-bundle", "", func(dir string) error {
			return relink(filepath.Join(dir, "iptables-save.txt"), "/etc/hostname")
		}, ""},
		{"fifo", "", func(dir string) error {
			p := filepath.Join(dir, "iptables-save.txt")
			if err := os.Remove(p); err != nil {
				return err
			}
			return syscall.Mkfifo(p, 0o600)
		}, "not a regular file"},
		{"node-escapes", "node: ../../etc\n", nil, ""},
		{"set-escapes", "", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "snapshot.yaml"), []byte("apiVersion: svctrace/v1\nkind: SnapshotSet\nnodes: [\"../../..\"]\n"), 0o600)
		}, ""},
		{"manifest-garbage", "", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "snapshot.yaml"), []byte("\x00\x01{[: :"), 0o600)
		}, ""},
	} {
		dir := filepath.Join(g.dir, "snapshot", c.name)
		if err := copyDir(demo, dir); err != nil {
			return err
		}
		if c.manifest != "" {
			m, err := os.ReadFile(filepath.Join(dir, "snapshot.yaml"))
			if err != nil {
				return err
			}
			key := c.manifest[:strings.Index(c.manifest, ":")+1]
			var out []string
			for _, l := range strings.Split(string(m), "\n") {
				if strings.HasPrefix(l, key) || (key == "dataplane:" && strings.HasPrefix(l, "- ")) {
					continue
				}
				out = append(out, l)
			}
			if err := os.WriteFile(filepath.Join(dir, "snapshot.yaml"), []byte(strings.Join(out, "\n")+c.manifest), 0o600); err != nil {
				return err
			}
		}
		if c.setup != nil {
			if err := c.setup(dir); err != nil {
				return err
			}
		}
		g.cases = append(g.cases, Case{Name: "snapshot/" + c.name, Args: []string{"check", "-A", "--snapshot", dir}, Refuse: true, Names: dir, Want: c.want})
	}
	return nil
}

func relink(p, target string) error {
	if err := os.Remove(p); err != nil {
		return err
	}
	return os.Symlink(target, p)
}

func copyDir(from, to string) error {
	if err := os.MkdirAll(to, 0o700); err != nil {
		return err
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// aliasBomb expands to 10^9 strings if a YAML decoder follows every alias.
const aliasBomb = `a: &a ["x","x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h,*h]
`

// conntrackSample is hand-written in the format conntrack-tools 1.4.7 prints for `conntrack -L -o
// extended` (the lines of dataplane/conntrack's test sample, more of them), for the demo's
// hostnames Service: the base the corpus cuts and corrupts.
const conntrackSample = `ipv4     2 tcp      6 117 TIME_WAIT src=10.244.1.99 dst=10.96.10.10 sport=40312 dport=80 packets=6 bytes=345 src=10.244.1.12 dst=10.244.1.99 sport=9376 dport=40312 packets=4 bytes=262 [ASSURED] mark=0 use=1
ipv4     2 tcp      6 431999 ESTABLISHED src=10.244.1.41 dst=10.96.10.10 sport=51000 dport=80 packets=1200 bytes=80000 src=10.244.1.11 dst=10.244.1.41 sport=9376 dport=51000 packets=1200 bytes=90000 [ASSURED] mark=0 use=1
ipv4     2 tcp      6 431999 ESTABLISHED src=10.244.1.42 dst=10.96.10.10 sport=51001 dport=80 packets=12 bytes=800 src=10.244.1.13 dst=10.244.1.42 sport=9376 dport=51001 packets=12 bytes=900 [ASSURED] mark=0 use=1
ipv4     2 udp      17 29 src=10.244.1.99 dst=10.96.10.53 sport=33333 dport=53 packets=1 bytes=34 src=10.244.1.51 dst=10.244.1.99 sport=5353 dport=33333 packets=1 bytes=50 mark=0 use=1
ipv4     2 icmp     1 29 src=10.244.1.99 dst=10.244.1.11 type=8 code=0 id=7 src=10.244.1.11 dst=10.244.1.99 type=0 code=0 id=7 mark=0 use=1
`
