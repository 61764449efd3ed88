package nftjson

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sort"

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

// Importable turns `nft -j list …` output into what `nft -j -f` reads back: only tables, chains,
// sets, maps, elements and rules (no metainfo), tables first and rules last, as nft needs each
// object to exist before a rule names it.
func Importable(data []byte) ([]byte, error) {
	var doc document
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	rank := map[string]int{"table": 0, "chain": 1, "set": 2, "map": 2, "element": 3, "rule": 4}
	kind := func(o map[string]json.RawMessage) string {
		for k := range o {
			return k
		}
		return ""
	}
	var keep []map[string]json.RawMessage
	for _, o := range doc.Nftables {
		if _, ok := rank[kind(o)]; ok && len(o) == 1 {
			keep = append(keep, o)
		}
	}
	sort.SliceStable(keep, func(i, j int) bool { return rank[kind(keep[i])] < rank[kind(keep[j])] })
	return json.Marshal(document{Nftables: keep})
}
