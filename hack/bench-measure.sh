# bench-measure.sh is sourced by the bench scripts: bench_measure NS CMD... runs CMD five times in
# the network namespace NS under GNU time and prints the median wall time and the peak RSS, as
# "1.23 s | 45 MiB" (a markdown table's cells).
bench_measure() {
	local ns=$1 times
	shift
	times=$(mktemp)
	for _ in 1 2 3 4 5; do
		ip netns exec "$ns" /usr/bin/time -a -o "$times" -f "%e %M" "$@" >/dev/null 2>/dev/null || true
	done
	grep -v "^Command" "$times" | sort -n | awk 'NR == 3 { printf "%.2f s | %d MiB", $1, $2 / 1024 }'
	rm -f "$times"
}
