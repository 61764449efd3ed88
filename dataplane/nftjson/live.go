package nftjson

import (
	"bytes"
	"context"
	"errors"

	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/trace/nftables"
)

// HasKubeProxyTable reports whether kube-proxy runs in nftables mode on this node: its
// `kube-proxy` table exists. `nft list tables` is cheap, whatever the size of the ruleset.
func HasKubeProxyTable(ctx context.Context, r noderun.Runner) bool {
	out, err := r.Run(ctx, "nft", "list", "tables")
	if err != nil {
		return false
	}
	return bytes.Contains(out, []byte("ip kube-proxy")) || bytes.Contains(out, []byte("ip6 kube-proxy"))
}

// ReadLive reads the whole ruleset as JSON (`nft -j list ruleset`) and parses it.
func ReadLive(ctx context.Context, r noderun.Runner) (*nftables.Ruleset, []byte, error) {
	out, err := r.Run(ctx, "nft", "-j", "list", "ruleset")
	if err != nil {
		if errors.Is(err, noderun.ErrNotFound) {
			return nil, nil, errors.New("nft is not installed on this node: install nftables, or pass --dataplane FILE")
		}
		return nil, nil, err
	}
	rs, err := Parse(out)
	return rs, out, err
}
