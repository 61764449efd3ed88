#!/usr/bin/env bash
# record-fixtures.sh re-records the fixtures the unit tests and the demo use, from a real
# kube-proxy in the e2e harness. Run as root: make record-fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(hack/k8s-binaries.sh)
cache=${SVCTRACE_CACHE:-/var/cache/svctrace}
mkdir -p "$cache"
go build -o "$cache/netprobe" ./test/e2e/netprobe
go run ./test/e2e/record -mode iptables -bin "$bin" -netprobe "$cache/netprobe" -out dataplane/snapshot/demo
# The demo's conntrack sample (balance --demo): the balance e2e scenario's traffic to hostnames.
go run ./test/e2e/record -mode iptables -bin "$bin" -netprobe "$cache/netprobe" -conntrack dataplane/snapshot/demo/conntrack.txt
grep -q '^conntrack:' dataplane/snapshot/demo/snapshot.yaml || echo 'conntrack: conntrack.txt' >> dataplane/snapshot/demo/snapshot.yaml
# nftables mode (--demo=nftables, and the nftables planner's test).
go run ./test/e2e/record -mode nftables -bin "$bin" -netprobe "$cache/netprobe" -out dataplane/snapshot/demo-nftables
go run ./test/e2e/record -mode nftables -bin "$bin" -netprobe "$cache/netprobe" -conntrack dataplane/snapshot/demo-nftables/conntrack.txt
grep -q '^conntrack:' dataplane/snapshot/demo-nftables/snapshot.yaml || echo 'conntrack: conntrack.txt' >> dataplane/snapshot/demo-nftables/snapshot.yaml
# IPVS mode runs in a QEMU guest with Debian's cloud kernel (make vm-deps).
go run ./test/e2e/record -mode ipvs -bin "$bin" -netprobe "$cache/netprobe" -kernel "$(hack/ipvs-vm/kernel.sh)" -out dataplane/snapshot/demo-ipvs
go run ./test/e2e/record -mode ipvs -bin "$bin" -netprobe "$cache/netprobe" -kernel "$(hack/ipvs-vm/kernel.sh)" -conntrack dataplane/snapshot/demo-ipvs/conntrack.txt
grep -q '^conntrack:' dataplane/snapshot/demo-ipvs/snapshot.yaml || echo 'conntrack: conntrack.txt' >> dataplane/snapshot/demo-ipvs/snapshot.yaml
# iptables mode with other local-traffic detectors (the repair planner's and check's tests).
go run ./test/e2e/record -mode iptables -bin "$bin" -netprobe "$cache/netprobe" -detect-local-mode InterfaceNamePrefix -pod-interface-name-prefix vp -out trace/kubeproxy/testdata/kube-proxy-v1.36.3-interface-name-prefix
go run ./test/e2e/record -mode iptables -bin "$bin" -netprobe "$cache/netprobe" -masquerade-all -detect-local-mode BridgeInterface -pod-bridge-interface cbr0 -out trace/kubeproxy/testdata/kube-proxy-v1.36.3-masquerade-all-bridge
# A dual-stack cluster (IPv4 and IPv6 ranges, a PreferDualStack Service) in both write modes.
go run ./test/e2e/record -mode iptables -dual-stack -bin "$bin" -netprobe "$cache/netprobe" -out trace/kubeproxy/testdata/kube-proxy-v1.36.3-dual-stack
go run ./test/e2e/record -mode nftables -dual-stack -bin "$bin" -netprobe "$cache/netprobe" -out trace/kubeproxy/testdata/kube-proxy-v1.36.3-dual-stack-nftables
# The conntrack parser's fixture (two throwaway namespaces, no cluster).
hack/record-conntrack.sh dataplane/conntrack/testdata/extended.txt
