#!/usr/bin/env bash
# bench-live.sh times svctrace run live on a large node against the dump command itself, side by
# side in one run: the recorded 10,000 Services x 10 endpoints node (make bench-dump; legacy
# iptables, as large nodes use) is loaded into a throwaway network namespace, then 5 runs each of
# iptables-legacy-save -c, the node-side trace of one Service, and check -A, with median wall time
# and peak RSS; and the live trace's output is compared byte for byte with the trace of that
# namespace's dump file. Root. make bench-live.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${SVCTRACE_CACHE:-/var/cache/svctrace}
dir="$cache/bench/iptables-${SERVICES:-10000}x${ENDPOINTS:-10}"
[ -s "$dir/iptables-save.txt" ] || { echo "no recorded dump in $dir: run make bench-dump MODES=iptables first" >&2; exit 2; }
CGO_ENABLED=0 go build -o "$cache/kubectl-svctrace" ./cmd/kubectl-svctrace
bin="$cache/kubectl-svctrace"
objects="$dir/objects.json"
[ -s "$objects" ] || objects="$dir/objects.yaml"
ns=svct-bench-live
live=$(mktemp) file=$(mktemp) saved=$(mktemp)
trap 'ip netns del $ns 2>/dev/null || true; rm -f "$live" "$file" "$saved"' EXIT
ip netns del $ns 2>/dev/null || true
ip netns add $ns
ip netns exec $ns ip link set lo up
# kube-proxy's nfacct counter object is not in a fresh namespace (and there is no nfacct tool to
# make one): that match goes; the trace's reference below is this namespace's own dump.
sed 's/ -m nfacct --nfacct-name  *[^ ]*//' "$dir/iptables-save.txt" | ip netns exec $ns iptables-legacy-restore -c
ip netns exec $ns iptables-legacy-save -c > "$saved"
vip=$(grep -m1 -o -- '-d 10\.96\.[0-9.]*/32 -p tcp -m comment --comment "scale/svc-05000:http cluster IP"' "$dir/iptables-save.txt" | awk '{print $2}' | cut -d/ -f1)
[ -n "$vip" ] || vip=$(grep -m1 -o -- '-d 10\.96\.[0-9.]*/32 -p tcp -m comment --comment "scale/' "$dir/iptables-save.txt" | awk '{print $2}' | cut -d/ -f1)
# shellcheck source=hack/bench-measure.sh
. hack/bench-measure.sh
measure() { bench_measure "$ns" "$@"; }
# The trace without API objects (as record -compare times it: the engine's read and walk);
# check -A needs them (10,000 Services and their EndpointSlices, decoded from JSON).
trace=(trace "$vip:80" --no-api --node node1 --from 10.244.1.254 -o json)
echo "| on the ${SERVICES:-10000} x ${ENDPOINTS:-10} node (legacy iptables) | median of 5 | peak RSS |"
echo "|---|---|---|"
echo "| iptables-legacy-save -c | $(measure iptables-legacy-save -c) |"
echo "| svctrace trace $vip:80 (node-side) | $(measure "$bin" "${trace[@]}") |"
echo "| svctrace check -A (node-side) | $(measure "$bin" check -A --objects "$objects" --node node1 -o json) |"
ip netns exec $ns "$bin" "${trace[@]}" > "$live" 2>/dev/null || true
"$bin" "${trace[@]}" --dataplane "$saved" > "$file" 2>/dev/null || true
if cmp -s "$live" "$file"; then echo; echo "live trace output identical to the dump file's ($(wc -c < "$live") bytes)"; else echo; echo "live trace output DIFFERS from the dump file's"; diff <(head -c 2000 "$live") <(head -c 2000 "$file") | head -20; exit 1; fi
