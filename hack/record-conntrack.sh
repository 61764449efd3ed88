#!/usr/bin/env bash
# record-conntrack.sh OUT records real `conntrack -L -o extended` output for the conntrack parser's
# tests (dataplane/conntrack/testdata): in two throwaway network namespaces, flows of both address
# families, DNAT'ed (as kube-proxy's rules translate a Service address) and not, TCP established
# and closed, UDP, ICMP, and a flow in conntrack zone 5. Root; a few seconds. Nothing leaves the
# namespaces.
set -euo pipefail
out=${1:?usage: $0 OUT}
cd "$(dirname "$0")/.."
np=$(mktemp -d)/netprobe
go build -o "$np" ./test/e2e/netprobe
a=svct-ct-a b=svct-ct-b
cleanup() {
	ip netns pids $b 2>/dev/null | xargs -r kill 2>/dev/null || true
	ip netns pids $a 2>/dev/null | xargs -r kill 2>/dev/null || true
	ip netns del $a 2>/dev/null || true
	ip netns del $b 2>/dev/null || true
	rm -rf "$(dirname "$np")"
}
trap cleanup EXIT
cleanup_ns() { ip netns del $a 2>/dev/null || true; ip netns del $b 2>/dev/null || true; }
cleanup_ns
ip netns add $a
ip netns add $b
ip link add ct-a type veth peer name ct-b
ip link set ct-a netns $a
ip link set ct-b netns $b
for ns in $a $b; do ip -n $ns link set lo up; done
ip -n $a addr add 10.250.0.1/24 dev ct-a
ip -n $b addr add 10.250.0.2/24 dev ct-b
ip -n $a addr add fd00:250::1/64 dev ct-a nodad
ip -n $b addr add fd00:250::2/64 dev ct-b nodad
ip -n $a link set ct-a up
ip -n $b link set ct-b up
ip -n $a route add default via 10.250.0.2
ip -n $a -6 route add default via fd00:250::2
# Service-like addresses translated on the client's side, as kube-proxy's OUTPUT rules do.
ip netns exec $a iptables -t nat -A OUTPUT -d 10.96.99.10/32 -p udp --dport 53 -j DNAT --to-destination 10.250.0.2:5353
ip netns exec $a iptables -t nat -A OUTPUT -d 10.96.99.10/32 -p tcp --dport 80 -j DNAT --to-destination 10.250.0.2:8080
ip netns exec $a ip6tables -t nat -A OUTPUT -d fd00:96::10/128 -p udp --dport 53 -j DNAT --to-destination [fd00:250::2]:5353
ip netns exec $a iptables -t raw -A OUTPUT -p udp --dport 7777 -j CT --zone 5
ip netns exec $b "$np" serve server 5353/udp 8080 9999/udp 7777/udp >/dev/null 2>&1 &
sleep 0.5
ip netns exec $a "$np" probe -udp -n 2 -timeout 1s 10.96.99.10:53 >/dev/null
ip netns exec $a "$np" probe -udp -n 1 -timeout 1s '[fd00:96::10]:53' >/dev/null
ip netns exec $a "$np" probe -udp -n 1 -timeout 1s 10.250.0.2:9999 >/dev/null
ip netns exec $a "$np" probe -udp -n 1 -timeout 1s 10.250.0.2:7777 >/dev/null
ip netns exec $a "$np" probe -n 2 -timeout 1s 10.96.99.10:80 >/dev/null
# One TCP connection held open while the table is read: ESTABLISHED.
ip netns exec $a bash -c 'exec 3<>/dev/tcp/10.96.99.10/80; sleep 5' &
# No ping on a fresh machine: ICMP lines are covered by the parser test's own sample.
sleep 1
ip netns exec $a conntrack -L -o extended > "$out" 2>&1
echo "recorded $out with $(conntrack --version 2>&1 | head -1) on kernel $(uname -r)"
sleep 4 # the held connection ends; the trap stops the server
