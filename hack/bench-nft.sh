#!/usr/bin/env bash
# bench-nft.sh times the node-side trace in nftables mode against the dump command itself, side by
# side in one run: the recorded 10,000 Services x 10 endpoints nftables node (make bench-dump
# MODES=nftables) is loaded into a throwaway network namespace, then 5 runs each of
# `nft -j list ruleset` and the node-side trace of one Service (which reads only what its packet
# touches, over netlink), with median wall time and peak RSS; the trace's output is compared byte
# for byte with the trace of that namespace's whole ruleset; and every chain and set of the node is
# read over netlink and compared with what nft lists. Root. make bench-nft.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${SVCTRACE_CACHE:-/var/cache/svctrace}
dir="$cache/bench/nftables-${SERVICES:-10000}x${ENDPOINTS:-10}"
[ -s "$dir/nft.json" ] || { echo "no recorded dump in $dir: run make bench-dump MODES=nftables first" >&2; exit 2; }
CGO_ENABLED=0 go build -o "$cache/kubectl-svctrace" ./cmd/kubectl-svctrace
bin="$cache/kubectl-svctrace"
ns=svct-bench-nft
tmp=$(mktemp -d)
trap 'ip netns del $ns 2>/dev/null || true; rm -rf "$tmp"' EXIT
ip netns del $ns 2>/dev/null || true
ip netns add $ns
ip netns exec $ns ip link set lo up
go run ./hack/nftimport < "$dir/nft.json" > "$tmp/import.json"
ip netns exec $ns nft -j -f "$tmp/import.json"
ip netns exec $ns nft -j list ruleset > "$tmp/listed.json"
# The cluster IP of scale/svc-05000:http, from the service-ips map of the dump.
vip=$(grep -o '"concat": \["10\.[0-9.]*", "tcp", 80\]}, {"goto": {"target": "service-[A-Z0-9]*-scale/svc-05000/tcp/http"' "$dir/nft.json" | head -1 | grep -o '10\.[0-9.]*' | head -1)
[ -n "$vip" ] || { echo "no scale/svc-05000 in $dir/nft.json" >&2; exit 1; }
# shellcheck source=hack/bench-measure.sh
. hack/bench-measure.sh
measure() { bench_measure "$ns" "$@"; }
trace=(trace "$vip:80" --no-api --node node1 --from 10.244.1.254 -o json)
echo "| on the ${SERVICES:-10000} x ${ENDPOINTS:-10} node (nftables) | median of 5 | peak RSS |"
echo "|---|---|---|"
echo "| nft -j list ruleset | $(measure nft -j list ruleset) |"
echo "| svctrace trace $vip:80 (node-side) | $(measure "$bin" "${trace[@]}") |"
ip netns exec $ns "$bin" "${trace[@]}" -v 1 > "$tmp/live" 2> "$tmp/live.err" || true
echo
grep -o 'scoped to the packet[^"]*' "$tmp/live.err" || { echo "the live trace did not read only what the packet touches:"; cat "$tmp/live.err"; exit 1; }
"$bin" "${trace[@]}" --dataplane "$tmp/listed.json" > "$tmp/file" 2>/dev/null || true
if cmp -s "$tmp/live" "$tmp/file"; then echo "live trace output identical to the whole ruleset's ($(wc -c < "$tmp/live") bytes)"; else echo "live trace output DIFFERS from the whole ruleset's"; diff "$tmp/live" "$tmp/file" | head -20; exit 1; fi
echo "netlink decoder against nft on every chain and set of the node:"
SVCTRACE_NFT_DUMP="$dir/nft.json" go test -count=1 -run TestReadsLikeNft ./dataplane/nftnl/
