package xtables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/trace/iptables"
)

// Backend is one iptables variant installed on the node.
type Backend struct {
	// Save is the save command, e.g. iptables-legacy-save.
	Save string
	// Mode is "legacy" or "nf_tables".
	Mode string
	// KubeRules is true when the variant holds kube-proxy's chains.
	KubeRules bool
	// Version is the iptables version ("v1.8.9"), when known.
	Version string
	// Ambiguous is set when both variants, or neither, hold kube-proxy's chains: reading then
	// picks the default command's, but writing must refuse.
	Ambiguous bool
}

// Restore is the backend's restore command ("iptables-legacy-restore").
func (b Backend) Restore() string {
	return strings.TrimSuffix(b.Save, "-save") + "-restore"
}

// kubeMarkers are chains whose presence says kube-proxy (or the kubelet) writes to a backend.
var kubeMarkers = []string{":KUBE-IPTABLES-HINT", ":KUBE-PROXY-CANARY", ":KUBE-KUBELET-CANARY", ":KUBE-SERVICES"}

// DetectBackend picks the iptables variant kube-proxy uses on this node, the way
// kubernetes-sigs/iptables-wrappers does: the variant whose mangle/nat tables hold kube-proxy's
// chains. It prefers the default `iptables` command's mode when both or neither have them.
func DetectBackend(ctx context.Context, r noderun.Runner, ipv6 bool) (Backend, error) {
	prefix := "iptables"
	if ipv6 {
		prefix = "ip6tables"
	}
	version := ""
	if _, local := r.(noderun.Local); local {
		version = localVersion(ipv6)
	}
	variants := []Backend{{Save: prefix + "-nft-save", Mode: "nf_tables", Version: version}, {Save: prefix + "-legacy-save", Mode: "legacy", Version: version}}
	present := make([]bool, len(variants))
	// The markers live in the small mangle table (kube-proxy's canary, the kubelet's hint); the
	// big nat table is never read here. Only when neither variant has them there (kube-proxy
	// versions without a canary) is filter read, for KUBE-SERVICES. Each read is an exec when the
	// node is remote, so a fleet run pays for every one.
	// The variants are asked side by side: through the API server each is a round trip.
	var failed error
	var mu sync.Mutex
	look := func(table string) {
		if failed != nil {
			return // (an earlier table's look failed; no look is running now)
		}
		var wg sync.WaitGroup
		for i := range variants {
			if table == "filter" && !present[i] {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, err := r.Run(ctx, variants[i].Save, "-t", table)
				var exited *noderun.Error
				switch {
				case errors.Is(err, noderun.ErrNotFound):
					return // not installed
				case err != nil && !errors.As(err, &exited):
					// Not an answer from the tool (interrupted, the exec stream broke, no
					// permission): the node's backend is unknown, not absent.
					mu.Lock()
					if failed == nil {
						failed = fmt.Errorf("cannot tell which iptables backend kube-proxy uses: %w", err)
					}
					mu.Unlock()
					return
				}
				// Installed; a table it cannot list (exit status) holds no markers.
				present[i] = true
				for _, m := range kubeMarkers {
					variants[i].KubeRules = variants[i].KubeRules || bytes.Contains(out, []byte(m))
				}
			}()
		}
		wg.Wait()
	}
	withRules := func() []Backend {
		var out []Backend
		for i, b := range variants {
			if present[i] && b.KubeRules {
				out = append(out, b)
			}
		}
		return out
	}
	look("mangle")
	if len(withRules()) == 0 {
		look("filter")
	}
	if failed != nil {
		return Backend{}, failed
	}
	var found []Backend
	for i, b := range variants {
		if present[i] {
			found = append(found, b)
		}
	}
	if len(found) == 0 {
		// Old distributions ship only plain iptables-save. Its variant is asked beside the
		// look: through the API server each is a round trip.
		var mode string
		asked := make(chan struct{})
		go func() {
			defer close(asked)
			mode = modeOf(ctx, r, prefix)
		}()
		_, err := r.Run(ctx, prefix+"-save", "-t", "filter")
		<-asked
		if err != nil {
			return Backend{}, fmt.Errorf("no %s-save on this node: install iptables, or pass --dataplane FILE: %w", prefix, err)
		}
		return Backend{Save: prefix + "-save", Mode: mode, KubeRules: true, Version: version}, nil
	}
	if w := withRules(); len(w) == 1 {
		return w[0], nil
	}
	// Both or neither: the default command's variant, and writers must refuse.
	defaultMode := modeOf(ctx, r, prefix)
	for _, b := range found {
		if b.Mode == defaultMode {
			b.Ambiguous = true
			return b, nil
		}
	}
	found[0].Ambiguous = true
	return found[0], nil
}

func modeOf(ctx context.Context, r noderun.Runner, prefix string) string {
	out, err := r.Run(ctx, prefix, "--version")
	if err != nil {
		return ""
	}
	switch {
	case bytes.Contains(out, []byte("nf_tables")):
		return "nf_tables"
	case bytes.Contains(out, []byte("legacy")):
		return "legacy"
	}
	return "legacy"
}

// noNatError: a save command printed no nat table. variant is the one its header line named,
// when it printed one.
type noNatError struct{ what, variant string }

func (e noNatError) Error() string {
	return e.what + " printed no nat table: is kube-proxy running in iptables mode on this node?"
}

// IPv6 is the backend's ip6tables twin (iptables-nft-save's is ip6tables-nft-save).
func (b Backend) IPv6() Backend {
	b.Save = IPv6Command(b.Save)
	return b
}

// IPv6Command is an iptables command's ip6tables twin: iptables-legacy → ip6tables-legacy,
// iptables-nft-save → ip6tables-nft-save.
func IPv6Command(cmd string) string {
	return "ip6" + strings.TrimPrefix(cmd, "ip")
}

// ReadIPv6 reads the ip6tables rules of the backend's family twin, as ReadLive does, for a
// dual-stack kube-proxy's IPv6 proxier. A node without them is no error: nil when the command
// is missing, fails (no IPv6 in the kernel) or prints no kube-proxy KUBE-SERVICES chain in its
// nat table (a single-stack kube-proxy).
func ReadIPv6(ctx context.Context, r noderun.Runner, b Backend) (*iptables.Ruleset, func() []byte, error) {
	a := ReadIPv6Answer(ctx, r, b)
	return a.Rules, a.Raw, a.Err
}

// IPv6Answer is ReadIPv6's answer, with the variant (legacy or nf_tables) the command's header
// line named: "" when it printed none (no tables, or it failed).
type IPv6Answer struct {
	Rules   *iptables.Ruleset
	Raw     func() []byte
	Err     error
	Variant string
}

// ReadIPv6Answer is ReadIPv6, saying also which variant answered, even when it found no
// kube-proxy rules: a legacy answer of the default command is then the legacy twin's.
func ReadIPv6Answer(ctx context.Context, r noderun.Runner, b Backend) IPv6Answer {
	rs, raw, _, _, err := ReadLive(ctx, r, b.IPv6())
	var exited *noderun.Error
	var noNat noNatError
	switch {
	case errors.As(err, &noNat):
		return IPv6Answer{Variant: noNat.variant}
	case errors.Is(err, noderun.ErrNotFound) || errors.As(err, &exited):
		return IPv6Answer{}
	case err != nil:
		return IPv6Answer{Err: fmt.Errorf("reading the IPv6 rules: %w", err)}
	case rs.Tables["nat"].Chains["KUBE-SERVICES"] == nil:
		return IPv6Answer{Variant: rs.Variant}
	}
	rs.IPv6 = true
	return IPv6Answer{Rules: rs, Raw: raw, Variant: rs.Variant}
}

// ReadLive dumps all of the backend's tables with counters in one call (one exec on a remote
// node) and parses them. from says what printed them: the save command, or KernelSource.
func ReadLive(ctx context.Context, r noderun.Runner, b Backend) (rs *iptables.Ruleset, raw func() []byte, size int, from string, err error) {
	var noNat error = noNatError{what: b.Save}
	if _, local := r.(noderun.Local); local && b.fromKernel() {
		// On the node the legacy tables are read from the kernel directly, as
		// iptables-legacy-save reads them, and printed as it prints them; it runs only when
		// they hold what the decoder does not print.
		start := time.Now()
		rs, d, err := ReadKernel()
		if err == nil && rs.Tables["nat"] != nil {
			rs.Variant = b.Mode
			klog.V(2).Infof("read the legacy iptables tables from the kernel: %d bytes of iptables-save text in %v", d.Len(), time.Since(start).Round(time.Millisecond))
			return rs, d.Bytes, d.Len(), KernelSource, nil
		}
		if err == nil {
			err = noNat
		}
		klog.V(2).Infof("reading the legacy tables from the kernel: %v; running %s", err, b.Save)
	}
	if s, ok := r.(noderun.Streamer); ok {
		// Parsed as iptables-save writes it: on a big node the parse then costs little more
		// wall time than the save itself. On the node, with the legacy backend, the kernel
		// says first about how many rules will come (their memory is made ready meanwhile).
		rules := 0
		if _, local := r.(noderun.Local); local && b.fromKernel() {
			// (IPv4 alone: the count is of the IPv4 tables.)
			rules = legacyEntries() * rulesPerEntry / 100
		}
		var d *Dump
		err = s.Stream(ctx, func(out io.Reader) error {
			var perr error
			rs, d, perr = parseReader(out, maxDump, 1<<20, rules)
			if perr != nil && d != nil && d.Len() == 0 {
				return noNat
			}
			return perr
		}, b.Save, "-c")
		if err != nil {
			return nil, nil, 0, "", err
		}
		raw, size = d.Bytes, d.Len()
	} else {
		all, err := r.Run(ctx, b.Save, "-c")
		if err != nil {
			return nil, nil, 0, "", err
		}
		if !bytes.Contains(all, []byte("*nat")) {
			return nil, nil, 0, "", noNatError{b.Save, headerVariant(all)}
		}
		if rs, err = Parse(all); err != nil {
			return nil, nil, 0, "", err
		}
		raw, size = func() []byte { return all }, len(all)
	}
	if rs.Tables["nat"] == nil {
		return nil, nil, 0, "", noNatError{b.Save, rs.Variant}
	}
	if rs.Variant == "" {
		rs.Variant = b.Mode
	}
	return rs, raw, size, b.Save, nil
}

// fromKernel reports whether ReadLive reads the backend's tables from the kernel on the node: the
// IPv4 legacy tables, named iptables-legacy-save, or plain iptables-save where that is the legacy
// variant (older distributions, and nodes that install iptables without alternatives).
func (b Backend) fromKernel() bool {
	return b.Mode == "legacy" && (b.Save == "iptables-legacy-save" || b.Save == "iptables-save")
}

// KernelSource names, for people, where ReadLive read the rules when it read the kernel's legacy
// tables itself.
const KernelSource = "legacy tables read from the kernel"

// rulesPerEntry is the share (percent) of a legacy table's kernel entries that iptables-save
// prints as rules: each chain has two entries more (its head and its policy or return), and
// kube-proxy's chains hold two or three rules each (the recorded 10,000 × 10 node: 320,024 rules
// in 540,065 entries: 59 %).
const rulesPerEntry = 60

// maxDump bounds a live iptables-save read (the largest nodes print a few hundred MB).
const maxDump = 1 << 30

// legacyPresent is what iptables-nft-save prints when the legacy backend has tables too.
var legacyPresent = []byte("iptables-legacy tables present")

// DefaultRead is the default iptables-save's answer, parsed.
type DefaultRead struct {
	Rules   *iptables.Ruleset
	Raw     func() []byte
	Size    int
	Backend Backend
}

// ReadDefault is the one-call read for remote nodes, where every command is an exec through the
// API server: `iptables-save -c` of the default command, parsed as it arrives. It is used (ok)
// only when that answer settles the backend by itself: the nf_tables variant, holding kube-proxy's
// chains, and saying that the legacy backend has no tables. When the default command is the
// legacy variant and holds kube-proxy's chains (kube-proxy's image on a legacy node), that read
// is returned as legacy: the caller still detects the backend (nf_tables may hold kube-proxy's
// chains too), and when it is legacy uses this read instead of reading the same tables again.
//
// legacyHead, when set, is called once a streamed answer's first line has arrived and says the
// legacy variant (or an iptables too old to name one): the caller can then start the small reads
// a legacy answer still needs while the rest arrives. It is called at most once, from the
// reading goroutine, and must return at once.
func ReadDefault(ctx context.Context, r noderun.Runner, ipv6 bool, legacyHead func()) (read DefaultRead, ok bool, legacy *DefaultRead) {
	save := "iptables-save"
	if ipv6 {
		save = "ip6tables-save"
	}
	var rs *iptables.Ruleset
	var contains func([]byte) bool
	if st, streams := r.(noderun.Streamer); streams {
		var d *Dump
		err := st.Stream(ctx, func(out io.Reader) error {
			if legacyHead != nil {
				out = &headWatch{r: out, legacy: legacyHead}
			}
			var perr error
			rs, d, perr = parseReader(out, maxDump, 1<<20, 0)
			return perr
		}, save, "-c")
		if err != nil {
			return DefaultRead{}, false, nil
		}
		read.Raw, read.Size = d.Bytes, d.Len()
		contains = func(b []byte) bool {
			for _, part := range d.parts { // whole lines each
				if bytes.Contains(part, b) {
					return true
				}
			}
			return false
		}
	} else {
		out, err := r.Run(ctx, save, "-c")
		if err != nil {
			return DefaultRead{}, false, nil
		}
		if rs, err = Parse(out); err != nil {
			return DefaultRead{}, false, nil
		}
		read.Raw, read.Size = func() []byte { return out }, len(out)
		contains = func(b []byte) bool { return bytes.Contains(out, b) }
	}
	if rs.Tables["nat"] == nil || !hasKubeMarker(rs) {
		return DefaultRead{}, false, nil
	}
	read.Rules = rs
	switch {
	case rs.Variant == "nf_tables" && !contains(legacyPresent):
		read.Backend = DefaultBackend
		if ipv6 {
			read.Backend = read.Backend.IPv6()
		}
		return read, true, nil
	case rs.Variant != "nf_tables":
		read.Backend = Backend{Save: save, Mode: "legacy", KubeRules: true}
		rs.Variant = "legacy"
		kept := read // (read, the result, is zeroed by the return)
		return DefaultRead{}, false, &kept
	}
	return DefaultRead{}, false, nil
}

// headWatch passes a save command's output through and, once the first line has arrived, calls
// legacy when that line is a dump header that does not name the nf_tables variant: the variant
// ReadDefault then reads the answer as.
type headWatch struct {
	r      io.Reader
	legacy func()
	head   []byte // the first line so far, at most maxHead bytes
	done   bool
}

// maxHead bounds the first line headWatch looks at (a header is about 60 bytes).
const maxHead = 256

func (h *headWatch) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if !h.done {
		part := p[:n]
		end := bytes.IndexByte(part, '\n')
		if end >= 0 {
			part = part[:end]
		}
		h.head = append(h.head, part[:min(len(part), maxHead-len(h.head))]...)
		if end >= 0 || len(h.head) == maxHead || err != nil {
			h.done = true
			if line := string(h.head); strings.HasPrefix(line, "# Generated by ") && !strings.Contains(line, "(nf_tables)") {
				h.legacy()
			}
		}
	}
	return n, err
}

// hasKubeMarker reports whether a ruleset declares one of kubeMarkers' chains.
func hasKubeMarker(rs *iptables.Ruleset) bool {
	for _, t := range rs.Tables {
		for _, m := range kubeMarkers {
			if t.Chains[strings.TrimPrefix(m, ":")] != nil {
				return true
			}
		}
	}
	return false
}

// DefaultBackend is the backend ReadDefault settles on: the default iptables-save, nf_tables.
var DefaultBackend = Backend{Save: "iptables-save", Mode: "nf_tables", KubeRules: true}
