package repair

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/svctrace/svctrace/dataplane/conntrack"
	"github.com/svctrace/svctrace/dataplane/ipvsadm"
	"github.com/svctrace/svctrace/dataplane/nftwrite"
	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/dataplane/xtables"
	"github.com/svctrace/svctrace/trace"
)

// Local is this machine: the node repair runs on, as root.
type Local struct{}

var local noderun.Local

// lockWaitSeconds bounds how long a write waits for another writer's xtables lock.
const lockWaitSeconds = "10"

// saveCommand is the -save command of a backend or of its ip6tables twin (FamilyBackend).
func saveCommand(backend string) (string, error) {
	if !Backends[backend] && !Backends["ip"+strings.TrimPrefix(backend, "ip6")] {
		return "", fmt.Errorf("iptables backend %q is not one of iptables, iptables-legacy or iptables-nft (or their ip6tables twins)", backend)
	}
	return backend + "-save", nil
}

// ReadChains implements Node.
func (Local) ReadChains(ctx context.Context, backend string, want map[string][]string) (map[string]map[string]trace.ChainRules, error) {
	save, err := saveCommand(backend)
	if err != nil {
		return nil, err
	}
	return xtables.ReadChains(ctx, local, xtables.Backend{Save: save}, want)
}

// TestRestore implements Node.
func (Local) TestRestore(_ context.Context, backend, input string) error {
	save, err := saveCommand(backend)
	if err != nil {
		return err
	}
	_, err = local.RunInput([]byte(input), xtables.Backend{Save: save}.Restore(), "--test", "--noflush", "--wait", lockWaitSeconds)
	return err
}

// Restore implements Node. iptables-restore runs to its end even when svctrace is interrupted (it
// runs in its own process group): a table is written whole or not at all.
func (Local) Restore(_ context.Context, backend, input string) error {
	save, err := saveCommand(backend)
	if err != nil {
		return err
	}
	_, err = local.RunInput([]byte(input), xtables.Backend{Save: save}.Restore(), "--noflush", "--wait", lockWaitSeconds)
	return err
}

// IPVSWeights implements Node: from the kernel's listing (/proc/net/ip_vs), one read.
func (Local) IPVSWeights(_ context.Context, keys []RealKey) (map[RealKey]int, error) {
	tab, err := ipvsadm.ReadTable()
	if err != nil {
		return nil, err
	}
	want := map[RealKey]bool{}
	for _, k := range keys {
		want[k] = true
	}
	out := map[RealKey]int{}
	for _, vs := range tab.Services {
		for _, rs := range vs.Reals {
			k := RealKey{vs.Protocol, vs.Addr.String(), rs.Addr.String()}
			if want[k] {
				out[k] = rs.Weight
			}
		}
	}
	return out, nil
}

// IPVS implements Node.
func (Local) IPVS(_ context.Context, op trace.IPVSOp) (string, error) { return ipvsadm.ApplyOp(op) }

// DeleteConntrack implements Node.
func (Local) DeleteConntrack(ctx context.Context, f trace.ConntrackFlush) error {
	return conntrack.Delete(ctx, local, f)
}

// CountConntrack implements Node.
func (Local) CountConntrack(ctx context.Context, f trace.ConntrackFlush) (int, error) {
	return conntrack.Count(ctx, local, f)
}

// NftRead implements Node: over netlink (only the named objects), or with nft when that fails.
func (Local) NftRead(ctx context.Context, family string, want trace.NftState) (trace.NftState, error) {
	return nftwrite.ReadLocal(ctx, local, family, want)
}

// NftCheck implements Node.
func (Local) NftCheck(ctx context.Context, family string, from, to trace.NftState) error {
	w, err := nftwrite.New(family)
	if err != nil {
		return err
	}
	return nftwrite.Check(ctx, w, family, from, to)
}

// NftWrite implements Node. The transaction runs to its end even when svctrace is interrupted:
// nft commits it whole or not at all.
func (Local) NftWrite(ctx context.Context, family string, from, to trace.NftState) error {
	w, err := nftwrite.New(family)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	return nftwrite.Write(wctx, w, family, from, to)
}

// SaveState implements Node: the directory is created 0700, the file written 0600 next to its
// final name without following links, synced, renamed over it, and the directory synced.
func (Local) SaveState(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if fi, err := os.Lstat(dir); err != nil {
		return err
	} else if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	tmp := path + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600) // O_EXCL: never through a link
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("%s exists and is not a regular file", path)
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
