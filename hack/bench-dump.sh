#!/usr/bin/env bash
# bench-dump.sh records the large benchmark dumps (10,000 Services x 10 endpoints, programmed by the
# real kube-proxy v1.36.3 in iptables mode with legacy iptables, then in nftables mode) into the
# cache, and times svctrace against iptables-save / nft side by side on that node. Run as root:
# make bench-dump (MODES=nftables for one mode).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(hack/k8s-binaries.sh)
cache=${SVCTRACE_CACHE:-/var/cache/svctrace}
services=${SERVICES:-10000}
endpoints=${ENDPOINTS:-10}
modes=${MODES:-iptables nftables ipvs}
CGO_ENABLED=0 go build -o "$cache/netprobe" ./test/e2e/netprobe
CGO_ENABLED=0 go build -o "$cache/kubectl-svctrace" ./cmd/kubectl-svctrace
for mode in $modes; do
	out="$cache/bench/${mode}-${services}x${endpoints}"
	mkdir -p "$out"
	extra=""
	[ "$mode" = iptables ] && extra=-legacy
	# IPVS needs the QEMU guest (Debian's cloud kernel); its timings are taken inside the guest.
	[ "$mode" = ipvs ] && extra="-kernel $(hack/ipvs-vm/kernel.sh)"
	go run ./test/e2e/record -mode "$mode" $extra -services "$services" -endpoints "$endpoints" \
		-bin "$bin" -netprobe "$cache/netprobe" -out "$out" -compare "$cache/kubectl-svctrace" | tee "$out/compare.md"
	echo "dump: $out"
done
