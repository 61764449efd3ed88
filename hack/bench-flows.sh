#!/usr/bin/env bash
# bench-flows.sh times what stale flows add to `check -A`: the recorded demo node checked without
# and with a 100,000-entry conntrack table (written by BenchmarkCheckFlows100k: 90% established
# TCP and 9% UDP entries to current endpoints, 1% stale), side by side, 5 runs each; it prints the
# median wall time and peak RSS of each. make bench-flows.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${SVCTRACE_CACHE:-/var/cache/svctrace}
mkdir -p "$cache/bench"
ct="$cache/bench/conntrack-100k.txt"
SVCTRACE_CONNTRACK_OUT="$ct" go test -run XXX -bench CheckFlows100k -benchtime 1x -cpu 1 ./trace/ >/dev/null
CGO_ENABLED=0 go build -o "$cache/kubectl-svctrace" ./cmd/kubectl-svctrace
times=$(mktemp)
trap 'rm -f "$times"' EXIT
measure() {
	: > "$times"
	for _ in 1 2 3 4 5; do
		# Findings exit 1: expected here.
		/usr/bin/time -a -o "$times" -f "%e %M" "$cache/kubectl-svctrace" check -A --snapshot dataplane/snapshot/demo -o json "$@" >/dev/null || true
	done
	grep -v "^Command" "$times" | sort -n | awk 'NR == 3 { printf "%.2f s, %d MiB", $1, $2 / 1024 }'
}
echo "| check -A on the demo node | median of 5 (wall, peak RSS) |"
echo "|---|---|"
echo "| rules only | $(measure) |"
echo "| with --conntrack (100,000 entries, $(du -m "$ct" | cut -f1) MB) | $(measure --conntrack "$ct") |"
