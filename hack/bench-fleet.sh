#!/usr/bin/env bash
# bench-fleet.sh times `kubectl svctrace check -A --all-nodes` on many simulated nodes: kwok plays
# the kubelet of NODES nodes with a kube-proxy pod each, in the harness, and every exec lands in
# node1's namespace against the real kube-proxy's rules. Run as root: make bench-fleet
# (NODES=5000 PARALLEL=16,64 by default).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(hack/k8s-binaries.sh)
kwok=$(hack/kwok-binary.sh)
cache=${SVCTRACE_CACHE:-/var/cache/svctrace}
mkdir -p "$cache"
CGO_ENABLED=0 go build -o "$cache/netprobe" ./test/e2e/netprobe
CGO_ENABLED=0 go build -o "$cache/kubectl-svctrace" ./cmd/kubectl-svctrace
go run ./test/e2e/record -fleet "${NODES:-5000}" -fleet-parallel "${PARALLEL:-16,64}" -kwok "$kwok" \
	-bin "$bin" -netprobe "$cache/netprobe" -out "$cache/bench/fleet" -compare "$cache/kubectl-svctrace"
