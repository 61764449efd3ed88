// Package trace is svctrace's engine: it walks a concrete packet through a node's dataplane
// snapshot and joins the result with the API's view of Services, EndpointSlices, Pods and Nodes.
// It does no I/O: live, remote and offline input all reach it as snapshots.
package trace

import (
	"fmt"
	"net/netip"
	"strings"
)

// Protocol is an IP protocol a Service port can use.
type Protocol uint8

// Protocols kube-proxy programs.
const (
	TCP  Protocol = 6
	UDP  Protocol = 17
	SCTP Protocol = 132
)

// ParseProtocol accepts tcp, udp or sctp in any case.
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToLower(s) {
	case "tcp", "6":
		return TCP, nil
	case "udp", "17":
		return UDP, nil
	case "sctp", "132":
		return SCTP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q: use tcp, udp or sctp", s)
}

// String returns the protocol's lowercase name, as iptables prints it.
func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case SCTP:
		return "sctp"
	}
	return fmt.Sprintf("proto-%d", uint8(p))
}

// Origin says where a packet enters the node's netfilter hooks.
type Origin uint8

const (
	// FromNetwork is a packet arriving on an interface: from a pod on this node or from outside.
	// It starts at PREROUTING.
	FromNetwork Origin = iota
	// FromLocalProcess is a packet sent by a process in the node's network namespace
	// (hostNetwork pods, the kubelet, a shell on the node). It starts at OUTPUT.
	FromLocalProcess
)

// Packet is the first packet of a new connection, as the node sees it.
type Packet struct {
	Src, Dst netip.Addr
	Protocol Protocol
	DstPort  uint16
	// SrcPort is rarely matched by kube-proxy; zero means "any ephemeral port".
	SrcPort uint16
	// InInterface is the interface the packet arrives on; empty when unknown.
	InInterface string
	Mark        uint32
	Origin      Origin
}

// String renders the packet as "tcp 10.0.0.1 -> 10.96.0.10:53".
func (p Packet) String() string {
	return fmt.Sprintf("%s %s -> %s", p.Protocol, p.Src, netip.AddrPortFrom(p.Dst, p.DstPort))
}

// NodeContext is what the dataplane's evaluation needs to know about the node itself.
type NodeContext struct {
	Name string
	// Local holds the node's local addresses (what `-m addrtype --dst-type LOCAL` matches).
	// Loopback is always local and need not be listed.
	Local []netip.Addr
	// PodCIDRs are the node's pod address ranges (from its Node object), when known: a packet
	// from one of them comes from a pod on this node, through a pod interface.
	PodCIDRs []netip.Prefix
}

// FromLocalPod reports whether a is the address of a pod on this node; known is false when the
// node's pod ranges are not.
func (n *NodeContext) FromLocalPod(a netip.Addr) (local, known bool) {
	for _, p := range n.PodCIDRs {
		if p.Contains(a) {
			return true, true
		}
	}
	return false, len(n.PodCIDRs) > 0
}

// IsLocal reports whether a is an address of the node.
func (n *NodeContext) IsLocal(a netip.Addr) bool {
	if a.IsLoopback() {
		return true
	}
	for _, l := range n.Local {
		if l == a {
			return true
		}
	}
	return false
}
