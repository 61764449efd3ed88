package dataplane

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/svctrace/svctrace/dataplane/ipvsadm"
	"github.com/svctrace/svctrace/dataplane/nftjson"
	"github.com/svctrace/svctrace/dataplane/nftnl"
	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/dataplane/xtables"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/iptables"
	"github.com/svctrace/svctrace/trace/ipvs"
	"github.com/svctrace/svctrace/trace/nftables"
)

// Node is one node's dataplane as read, live or from files.
type Node struct {
	// Dataplane is what the engine walks; its Mode says the kube-proxy mode.
	Dataplane trace.Dataplane
	// Backend is the iptables command family read ("iptables-legacy-save"), empty for nftables
	// and for files.
	Backend string
	// Source says, for people, where it came from ("live (iptables-nft-save, iptables nf_tables)").
	Source string
	// Files are the dumps as read (name → content), which a snapshot writes; each is joined
	// only when asked for (a streamed read keeps the iptables dump in parts).
	Files map[string]func() []byte
	// Warnings are what the reader should know: cut dumps, a mode switch in progress.
	Warnings []string
	// ModeFrom says how the mode was known: "kube-proxy" (its /proxyMode answered), "flag"
	// (--mode), or "detected" (from which rules the node has).
	ModeFrom string
	// Leftovers are kube-proxy state of other modes than Dataplane's (read live only).
	Leftovers []trace.Leftover
}

// ReadOptions says how to read a node.
type ReadOptions struct {
	// Mode is iptables, nftables or ipvs; empty detects it.
	Mode string
	// Remote is true when every command is an exec through the API server (a kube-proxy or
	// debug pod): one call settles the common case, and IPVS is read with ipvsadm, not netlink.
	Remote bool
	// Progress, when set, is told the size of reads that took over a second.
	Progress io.Writer
	// Scoped says the Node serves only walks of a few packets (trace): in nftables mode it then
	// reads, walk by walk, only what the packet can touch (nftjson.Scoped), and has no Files.
	Scoped bool
	// Objects reads kube-proxy's nftables objects one by one on a remote node (the svctrace
	// agent's pod): with Scoped, a remote read then reads only what the packet touches too.
	Objects nftjson.ObjectReader
	// NoLeftovers skips the look for other modes' state (the agent's checks of a few Services:
	// its whole-node checks look).
	NoLeftovers bool
	// Counters asks for the dataplane's own per-backend counters where they cost an extra read
	// (balance): on the node in IPVS mode, the real servers' statistics, which take a netlink
	// request per virtual server; without it the table comes from /proc/net/ip_vs.
	Counters bool
	// WalksOnly says the Node serves walks of a few packets and nothing that lists or compares
	// the whole dataplane (trace; not a repair's plan, not a check): on the node in IPVS mode the
	// virtual servers are then listed over netlink, and the real servers of the packets' virtual
	// servers and the ipset lookups of their paths asked of the kernel as the walks need them
	// (ipvsadm.Scoped); there are no IPVS or ipset Files.
	WalksOnly bool
}

// Read reads a node's dataplane through r: the kube-proxy mode detected (or opts.Mode), the
// iptables backend kube-proxy writes to, and for IPVS mode the IPVS table and the ipsets too.
func Read(ctx context.Context, r noderun.Runner, opts ReadOptions) (*Node, error) {
	start := time.Now()
	progress := func(what string, n int) {
		if d := time.Since(start); d > time.Second && opts.Progress != nil {
			fmt.Fprintf(opts.Progress, "read %d MB of %s in %.1fs\n", n>>20, what, d.Seconds())
		}
	}
	mode := opts.Mode
	n := &Node{ModeFrom: "flag"}
	if mode == "" {
		n.ModeFrom = "detected"
		// On the node itself, kube-proxy says which mode it runs in: with state of two modes
		// on the node, that is the one to read (the other is a leftover).
		if _, local := r.(noderun.Local); local {
			if m := KubeProxyMode(ctx); m != "" {
				mode, n.ModeFrom = m, "kube-proxy"
			}
		}
	}
	var hasNft, hasIPVS bool
	var b xtables.Backend
	var berr error
	// On the node, IPVS mode's reads (the IPVS table, the ipsets) start as soon as the mode is
	// known or kube-ipvs0 is seen, while the backend is detected (on a node where nftables
	// turns out to be the mode, a leftover table is read for nothing).
	var ipvsRead func() ipvsState
	if opts.Remote {
		switch {
		case mode == "nftables":
			hasNft = true
		case mode == "" && opts.Scoped && opts.Objects != nil:
			// The svctrace binary on the node lists the tables over netlink; `nft list
			// tables` through kube-proxy's pod fetches every set first (4 s at 10,000 Services).
			if ts, err := opts.Objects.Tables(); err == nil {
				hasNft = hasKubeProxyTable(ts)
			} else {
				hasNft = HasNftKubeProxy(ctx, r)
			}
		case mode == "":
			hasNft = HasNftKubeProxy(ctx, r)
		}
		if !hasNft {
			// The default command's IPv6 twin is read alongside: two execs side by side cost
			// one round trip. Its answer is dropped when the default command's does not
			// settle the backend (the backend is then detected, and its twin read).
			v6done := make(chan struct{})
			var v6answer xtables.IPv6Answer
			go func() {
				defer close(v6done)
				v6answer = xtables.ReadIPv6Answer(ctx, r, xtables.DefaultBackend)
			}()
			defaultV6 := func() xtables.IPv6Answer { <-v6done; return v6answer }
			// A legacy answer still needs the backend detected (and, in IPVS mode, kube-ipvs0
			// looked for): those small reads start as soon as its first line says legacy,
			// while the rest of it (33 MB on a big node) arrives; never on other nodes.
			follow := newLegacyFollowUp(ctx, r, mode, defaultV6)
			read, ok, legacy := xtables.ReadDefault(ctx, r, false, follow.start)
			if ok {
				progress(read.Backend.Mode+" iptables rules", read.Size)
				ipvsMode := mode == "ipvs" || mode == "" && hasIPVSChains(read.Rules)
				a := defaultV6()
				v6 := family{rs: a.Rules, raw: a.Raw, err: a.Err}
				if ipvsMode {
					v6 = family{}
				}
				return n.iptables(ctx, r, opts, read.Rules, read.Raw, v6, read.Backend, read.Backend.Save, ipvsMode, nil)
			}
			f := follow.wait(legacy != nil)
			b, berr, hasIPVS = f.b, f.berr, f.hasIPVS
			if legacy != nil && f.legacy() {
				// The default command is kube-proxy's legacy one: what it printed is the
				// backend's read, not read a second time.
				progress("legacy iptables rules", legacy.Size)
				return n.iptables(ctx, r, opts, legacy.Rules, legacy.Raw, f.v6, b, legacy.Backend.Save, mode == "ipvs" || hasIPVS, nil)
			}
		}
		// (In nftables mode the iptables backend matters only for the look for leftovers,
		// which detects it beside the read, below.)
	} else {
		if mode == "" && opts.NoLeftovers && HasNftKubeProxy(ctx, r) {
			// kube-proxy's nftables table is read whenever it is there (below); with no look
			// for leftovers, nothing else needs detecting (netlink said it, in a millisecond).
			mode = "nftables"
		}
		// On this machine the small detection reads run side by side: each is a process of
		// its own, and they come before the big read.
		var wg sync.WaitGroup
		wg.Add(3)
		go func() {
			defer wg.Done()
			hasNft = mode == "nftables" || mode == "" && HasNftKubeProxy(ctx, r)
		}()
		go func() {
			defer wg.Done()
			if mode != "nftables" || !opts.NoLeftovers { // the backend is for iptables rules and leftovers
				b, berr = xtables.DetectBackend(ctx, r, false)
			}
		}()
		go func() {
			defer wg.Done()
			hasIPVS = mode == "" && ipvsadm.HasKubeIPVS(ctx, r)
			if mode == "ipvs" || hasIPVS {
				ipvsRead = startIPVSRead(ctx, r, opts)
			}
		}()
		wg.Wait()
	}
	var objects nftjson.ObjectReader
	if hasNft && opts.Scoped {
		// On the node itself kube-proxy's chains and sets are read one by one over netlink (nft
		// cannot list one chain without fetching every set's elements first). Through a pod,
		// by the svctrace binary in the agent's pod when the caller found one (Objects);
		// kube-proxy's pod has nft alone, and the whole ruleset is read.
		if _, local := r.(noderun.Local); local {
			if nl, err := nftnl.Open(nil); err == nil {
				objects = nl
			}
		} else if opts.Objects != nil {
			objects = opts.Objects
		}
	}
	if hasNft {
		// Other modes' state is looked for while the ruleset is read. Through the API every
		// read is an exec: leftovers are looked for there only when the backend detection
		// saw kube-proxy's markers in iptables too.
		var left []trace.Leftover
		var lerr error
		looked := false
		lookDone := make(chan struct{})
		go func() {
			defer close(lookDone)
			if opts.NoLeftovers {
				return
			}
			if opts.Remote {
				if b, err := xtables.DetectBackend(ctx, r, false); err != nil || !b.KubeRules {
					return
				}
			}
			looked = true
			left, lerr = FindLeftovers(ctx, r, "nftables")
		}()
		if objects != nil {
			n.Dataplane, n.Source, n.Files = nftjson.NewScoped(r, objects), "live (nftables, only what the packet touches)", map[string]func() []byte{}
		} else {
			rs, raw, err := nftjson.ReadLive(ctx, r)
			if err != nil {
				<-lookDone
				return nil, err
			}
			progress("nftables rules", len(raw))
			n.Dataplane, n.Source, n.Files = &nftables.Dataplane{Rules: rs}, "live (nft -j list ruleset)", map[string]func() []byte{"nft.json": func() []byte { return raw }}
		}
		<-lookDone
		if looked {
			if err := n.setLeftovers(left, lerr); err != nil {
				return nil, err
			}
		}
		return n, nil
	}
	ipvsMode := mode == "ipvs" || hasIPVS
	if berr != nil {
		return nil, berr
	}
	if b.Ambiguous {
		n.Warnings = append(n.Warnings, fmt.Sprintf("both iptables backends (legacy and nf_tables), or neither, hold kube-proxy's chains; reading %s, this node's default", b.Mode))
	}
	// On the node, the look for other modes' state (a few small commands) runs while the big
	// read does: iptables-save prints nothing for most of its run.
	var left []trace.Leftover
	var lerr error
	looked := make(chan struct{})
	if !opts.Remote && !opts.NoLeftovers {
		mode := "iptables"
		if ipvsMode {
			mode = "ipvs"
		}
		go func() { defer close(looked); left, lerr = FindLeftovers(ctx, r, mode) }()
	} else {
		close(looked)
	}
	// A dual-stack kube-proxy's IPv6 rules are in the backend's ip6tables twin, read alongside.
	// In IPVS mode the ipsets and the IPVS table are read alongside instead.
	var v6 family
	v6read := make(chan struct{})
	if !ipvsMode {
		go func() { defer close(v6read); v6.rs, v6.raw, v6.err = xtables.ReadIPv6(ctx, r, b) }()
	} else {
		close(v6read)
		if ipvsRead == nil {
			ipvsRead = startIPVSRead(ctx, r, opts)
		}
	}
	rs, raw, size, from, err := xtables.ReadLive(ctx, r, b)
	<-looked
	<-v6read
	if err != nil {
		return nil, err
	}
	progress(b.Mode+" iptables rules", size)
	if _, err := n.iptables(ctx, r, opts, rs, raw, v6, b, from, ipvsMode, ipvsRead); err != nil {
		return nil, err
	}
	if !opts.Remote && !opts.NoLeftovers {
		if err := n.setLeftovers(left, lerr); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// legacyFollowUp is what a remote node whose default iptables-save is legacy still needs read
// after that answer: the backend (nf_tables may hold kube-proxy's chains too), whether IPVS mode's
// kube-ipvs0 is there (when the mode is detected), and, when the backend is legacy and the mode
// is not IPVS, the legacy IPv6 twin, unless the default ip6tables-save read beside it answered as
// the legacy variant (its answer is then the twin's). The reads run one after another, in one
// goroutine, once started.
type legacyFollowUp struct {
	once sync.Once
	done chan struct{}
	run  func(v6 bool)
	legacyFollowUpResult
}

type legacyFollowUpResult struct {
	b       xtables.Backend
	berr    error
	hasIPVS bool
	v6      family // read only when legacy() and the mode is not IPVS
}

// legacy reports whether the backend detected is legacy and settled: the default answer is then
// the backend's read.
func (f legacyFollowUpResult) legacy() bool {
	return f.berr == nil && f.b.Mode == "legacy" && !f.b.Ambiguous
}

func newLegacyFollowUp(ctx context.Context, r noderun.Runner, mode string, defaultV6 func() xtables.IPv6Answer) *legacyFollowUp {
	f := &legacyFollowUp{done: make(chan struct{})}
	f.run = func(v6 bool) {
		defer close(f.done)
		f.b, f.berr = xtables.DetectBackend(ctx, r, false)
		f.hasIPVS = mode == "" && ipvsadm.HasKubeIPVS(ctx, r)
		if !v6 || !f.legacy() || mode == "ipvs" || f.hasIPVS {
			return
		}
		if a := defaultV6(); a.Err == nil && a.Variant == "legacy" {
			f.v6 = family{rs: a.Rules, raw: a.Raw, from: xtables.IPv6Command(xtables.DefaultBackend.Save)}
			return
		}
		f.v6.rs, f.v6.raw, f.v6.err = xtables.ReadIPv6(ctx, r, f.b)
	}
	return f
}

// start begins the reads in the background (once): the default answer's header said legacy.
func (f *legacyFollowUp) start() { f.once.Do(func() { go f.run(true) }) }

// wait returns what the reads found; when nothing started them, they run now, with the IPv6
// twin only when the default answer turned out legacy (v6).
func (f *legacyFollowUp) wait(v6 bool) legacyFollowUpResult {
	f.once.Do(func() { f.run(v6) })
	<-f.done
	return f.legacyFollowUpResult
}

// HasNftKubeProxy reports whether the node has kube-proxy's nftables table (ip or ip6). On the
// node itself it asks netlink: `nft list tables` fetches every set's elements first, seconds on a
// node with 10,000 Services.
func HasNftKubeProxy(ctx context.Context, r noderun.Runner) bool {
	if _, local := r.(noderun.Local); local {
		if nl, err := nftnl.Open(nil); err == nil {
			defer nl.Close()
			if ts, err := nl.Tables(); err == nil {
				return hasKubeProxyTable(ts)
			}
		}
	}
	return nftjson.HasKubeProxyTable(ctx, r)
}

// hasKubeProxyTable reports whether tables hold kube-proxy's (ip or ip6).
func hasKubeProxyTable(tables []nftables.Object) bool {
	for _, t := range tables {
		if t.Table == "kube-proxy" && (t.Family == "ip" || t.Family == "ip6") {
			return true
		}
	}
	return false
}

// setLeftovers records what FindLeftovers found (or why it failed), with a warning.
func (n *Node) setLeftovers(l []trace.Leftover, err error) error {
	if err != nil {
		return fmt.Errorf("looking for state other kube-proxy modes left: %w", err)
	}
	n.Leftovers = l
	if len(l) > 0 {
		var where []string
		for _, x := range l {
			where = append(where, x.Where())
		}
		how := map[string]string{"kube-proxy": "kube-proxy runs in", "flag": "--mode says", "detected": "read as"}[n.ModeFrom]
		n.Warnings = append(n.Warnings, fmt.Sprintf("this node also has kube-proxy state of another mode (%s; %s %s mode): a mode switch left it, or one is in progress; check reports it as %s", strings.Join(where, ", "), how, n.Dataplane.Mode(), trace.ModeLeftover))
	}
	return nil
}

// family is the read of one address family's ip6tables rules (nil rs: none of kube-proxy's).
type family struct {
	rs  *iptables.Ruleset
	raw func() []byte
	err error
	// from is the command that printed rs, when it is not the backend's IPv6 twin.
	from string
}

// iptables completes a read in iptables mode (with IPv6's rules when v6 has them), or in IPVS
// mode with the IPVS table and ipsets.
//
// In IPVS mode ipvsRead gives the ipsets and the IPVS table (nil: they are read now).
func (n *Node) iptables(ctx context.Context, r noderun.Runner, opts ReadOptions, rs *iptables.Ruleset, raw func() []byte, v6 family, b xtables.Backend, from string, ipvsMode bool, ipvsRead func() ipvsState) (*Node, error) {
	if v6.err != nil {
		return nil, v6.err
	}
	dp := &iptables.Dataplane{V4: rs, V6: v6.rs}
	n.Dataplane, n.Backend, n.Files = dp, b.Save, map[string]func() []byte{"iptables-save.txt": raw}
	n.Source = fmt.Sprintf("live (%s, iptables %s)", from, b.Mode)
	if v6.rs != nil {
		n.Files["ip6tables-save.txt"] = v6.raw
		v6from := v6.from
		if v6from == "" {
			v6from = b.IPv6().Save
		}
		n.Source = fmt.Sprintf("live (%s and %s, iptables %s)", from, v6from, b.Mode)
	}
	if !ipvsMode {
		return n, nil
	}
	if ipvsRead == nil {
		ipvsRead = startIPVSRead(ctx, r, opts)
	}
	st := ipvsRead()
	if st.err != nil {
		return nil, st.err
	}
	dp.Sets, dp.IPVS = st.sets, st.table
	if st.scoped {
		n.Dataplane = ipvsadm.NewScoped(dp, st.bound, ipvsadm.ScopedReads{Service: ipvsadm.ReadService, Member: ipvsadm.TestMember, AllSets: func() (ipvs.Sets, error) {
			sets, _, err := ipvsadm.ReadIPSets(ctx, r)
			return sets, err
		}})
		n.Source = fmt.Sprintf("live (%s, %s)", st.how, from)
		return n, nil
	}
	n.Files["ipset-save.txt"] = func() []byte { return st.setsRaw }
	n.Source = fmt.Sprintf("live (%s, ipset save, %s)", st.how, from)
	// The table in ipvsadm -Ln form is written only when a snapshot asks for it (a second of
	// formatting at 10,000 Services under emulation, for nothing, otherwise).
	n.Files["ipvsadm-Ln.txt"] = sync.OnceValue(func() []byte { return ipvsadm.FormatList(dp.IPVS) })
	return n, nil
}

// ipvsState is what IPVS mode adds to the iptables rules: the ipsets they match and the IPVS
// table.
type ipvsState struct {
	sets    ipvs.Sets
	setsRaw []byte
	table   *ipvs.Table
	// scoped says the table is not read: a Scoped dataplane reads the packets' virtual servers
	// as its walks need them (WalksOnly); bound are kube-ipvs0's addresses.
	scoped bool
	bound  []netip.Addr
	how    string // how the table was read, for the Source line
	err    error
}

// startIPVSRead reads the ipsets and the IPVS table, one beside the other, while the caller does
// something else (the iptables read, on a big node the longest); the function returned waits for
// them.
func startIPVSRead(ctx context.Context, r noderun.Runner, opts ReadOptions) func() ipvsState {
	var st ipvsState
	var setsErr, tableErr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if walksOnly(opts) {
			st.sets, setsErr = ipvsadm.ReadIPSetHeaders(ctx, r)
			return
		}
		st.sets, st.setsRaw, setsErr = ipvsadm.ReadIPSets(ctx, r)
	}()
	go func() {
		defer wg.Done()
		if opts.Remote {
			st.how = "ipvsadm -Ln"
			st.table, tableErr = ipvsadm.ReadRemote(ctx, r)
		} else if opts.Counters {
			st.how = "IPVS over netlink"
			st.table, tableErr = ipvsadm.ReadNetlink()
		} else if walksOnly(opts) {
			st.how = "IPVS and ipsets over netlink, only what the packet touches"
			st.scoped = true
			st.bound, tableErr = ipvsadm.BoundAddresses()
		} else {
			st.how = "/proc/net/ip_vs"
			st.table, tableErr = ipvsadm.ReadTable()
		}
	}()
	return sync.OnceValue(func() ipvsState {
		wg.Wait()
		switch {
		case setsErr != nil:
			st.err = fmt.Errorf("IPVS mode: %w", setsErr)
		case tableErr != nil:
			st.err = tableErr
		}
		return st
	})
}

// walksOnly says an IPVS read is Scoped's: on the node itself, for walks alone.
func walksOnly(opts ReadOptions) bool { return opts.WalksOnly && !opts.Remote && !opts.Counters }

// hasIPVSChains reports whether kube-proxy's IPVS mode wrote these rules (a KUBE-IPVS- chain).
func hasIPVSChains(rs *iptables.Ruleset) bool {
	for _, t := range rs.Tables {
		for name := range t.Chains {
			if strings.HasPrefix(name, "KUBE-IPVS-") {
				return true
			}
		}
	}
	return false
}
