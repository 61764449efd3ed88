package nftjson

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"sort"
	"strings"

	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/trace/nftables"
)

// HasKubeProxyTable reports whether kube-proxy runs in nftables mode on this node: its
// `kube-proxy` table (ip or ip6) exists. nft 1.0's `nft list tables` fetches every set's elements
// before it prints the names (4 s through the API server at 10,000 Services, more than half the
// whole listing); `nft list flowtables` fetches the tables and their flowtables alone and prints
// every table (nft has listed each table there, flowtables or not, since flowtables came in 0.9),
// so it is asked; `nft list tables` only where it fails (an nft without flowtables).
func HasKubeProxyTable(ctx context.Context, r noderun.Runner) bool {
	out, err := r.Run(ctx, "nft", "list", "flowtables")
	if err != nil {
		if out, err = r.Run(ctx, "nft", "list", "tables"); err != nil {
			return false
		}
	}
	return namesKubeProxyTable(out)
}

// namesKubeProxyTable reports whether a listing of tables (`nft list tables`, or `nft list
// flowtables`, whose tables end in " {") names kube-proxy's table, ip or ip6.
func namesKubeProxyTable(out []byte) bool {
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSuffix(strings.TrimSpace(line), " {")
		if line == "table ip kube-proxy" || line == "table ip6 kube-proxy" {
			return true
		}
	}
	return false
}

// ReadLive reads the whole ruleset as JSON (`nft -j list ruleset`) and parses it: as it arrives
// where r can stream (ParseReader), else once nft is done.
func ReadLive(ctx context.Context, r noderun.Runner) (*nftables.Ruleset, []byte, error) {
	argv := []string{"nft", "-j", "list", "ruleset"}
	var (
		rs   *nftables.Ruleset
		out  []byte
		perr error
		err  error
	)
	if st, ok := r.(noderun.Streamer); ok {
		err = st.Stream(ctx, func(rd io.Reader) error {
			rs, out, perr = ParseReader(rd)
			return nil // nft's own failure, when it failed, says more than its output's parse
		}, argv...)
	} else if out, err = r.Run(ctx, argv...); err == nil {
		rs, perr = Parse(out)
	}
	if err != nil {
		if errors.Is(err, noderun.ErrNotFound) {
			return nil, nil, errors.New("nft is not installed on this node: install nftables, or pass --dataplane FILE")
		}
		return nil, nil, err
	}
	if perr != nil {
		return nil, out, perr
	}
	return rs, out, nil
}

// Importable turns `nft -j list …` output into what `nft -j -f` reads back: only tables, chains,
// sets, maps, elements and rules (no metainfo), tables first and rules last, as nft needs each
// object to exist before a rule names it.
func Importable(data []byte) ([]byte, error) {
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
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
	doc.Nftables = keep
	return json.Marshal(doc)
}
