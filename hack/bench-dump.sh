#!/usr/bin/env bash
# bench-dump.sh records the large benchmark dump (10,000 Services x 10 endpoints, programmed by the
# real kube-proxy v1.36.3 with legacy iptables) into the cache, and times svctrace against
# iptables-save side by side on that node. Run as root: make bench-dump.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(hack/k8s-binaries.sh)
cache=${SVCTRACE_CACHE:-/var/cache/svctrace}
services=${SERVICES:-10000}
endpoints=${ENDPOINTS:-10}
out="$cache/bench/iptables-${services}x${endpoints}"
mkdir -p "$out"
go build -o "$cache/netprobe" ./test/e2e/netprobe
go build -o "$cache/kubectl-svctrace" ./cmd/kubectl-svctrace
go run ./test/e2e/record -mode iptables -legacy -services "$services" -endpoints "$endpoints" \
	-bin "$bin" -netprobe "$cache/netprobe" -out "$out" -compare "$cache/kubectl-svctrace" | tee "$out/compare.md"
echo "dump: $out/iptables-save.txt"
