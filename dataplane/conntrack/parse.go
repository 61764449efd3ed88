// Package conntrack reads connection tracking tables: `conntrack -L` output (plain or
// `-o extended`), from a file or the live node.
package conntrack

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unsafe"

	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/trace"
)

// Parse reads `conntrack -L [-o extended]` output. Lines for protocols other than TCP, UDP and
// SCTP are skipped; a malformed line is an error naming it.
func Parse(data []byte) ([]trace.Conn, error) {
	// One allocation for the result and one reused field slice: a node's table can hold
	// hundreds of thousands of entries.
	out := make([]trace.Conn, 0, bytes.Count(data, []byte{'\n'})+1)
	var f []string
	n := 0
	for rest := data; len(rest) > 0; {
		n++
		b := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			b, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if len(b) > 1<<20 {
			return nil, fmt.Errorf("conntrack, line %d: a line longer than 1 MiB (conntrack lines are a few hundred bytes)", n)
		}
		if len(b) == 0 {
			continue
		}
		// The line is read in place: nothing parsed from it keeps a reference (the state is
		// one of the constant names below).
		line := unsafe.String(&b[0], len(b))
		f = appendFields(f[:0], line)
		if len(f) == 0 || strings.HasPrefix(line, "conntrack v") {
			continue
		}
		if f[0] == "ipv4" || f[0] == "ipv6" {
			if len(f) < 3 {
				return nil, fmt.Errorf("conntrack, line %d: too short (%q)", n, clip(line))
			}
			f = f[2:]
		}
		proto, err := trace.ParseProtocol(f[0])
		if err != nil {
			if otherProtocols[f[0]] {
				continue // icmp and friends: not Service traffic
			}
			return nil, fmt.Errorf("conntrack, line %d: not a connection (%q)", n, clip(line))
		}
		c := trace.Conn{Protocol: proto}
		tuple := 0
		var src, dst netip.Addr
		var sport, dport uint16
		for _, kv := range f[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				if state, known := tcpStates[kv]; known && tuple == 0 {
					c.State = state
				}
				continue
			}
			switch k {
			case "src":
				if tuple > 0 || src.IsValid() {
					tuple = 1
				}
				src, err = netip.ParseAddr(v)
			case "dst":
				dst, err = netip.ParseAddr(v)
			case "sport", "dport":
				var p uint64
				p, err = strconv.ParseUint(v, 10, 16)
				if k == "sport" {
					sport = uint16(p)
				} else {
					dport = uint16(p)
				}
			case "zone":
				var z uint64
				z, err = strconv.ParseUint(v, 10, 16)
				c.Zone = uint16(z)
			case "packets", "bytes":
				var x uint64
				x, err = strconv.ParseUint(v, 10, 64)
				sum := &c.Bytes
				if k == "packets" {
					sum = &c.Packets
				}
				if *sum+x < *sum {
					return nil, fmt.Errorf("conntrack, line %d: the %s counters add up past 2^64 (%q)", n, k, clip(line))
				}
				*sum += x
			}
			if err != nil {
				return nil, fmt.Errorf("conntrack, line %d: bad %s (%q)", n, clip(kv), clip(line))
			}
			if k == "dport" && tuple == 0 {
				c.Client, c.ClientPort, c.Dst = src, sport, netip.AddrPortFrom(dst, dport)
			}
			if k == "dport" && tuple == 1 {
				c.Backend = netip.AddrPortFrom(src, sport)
				tuple = 2
			}
		}
		if !c.Client.IsValid() || !c.Backend.IsValid() {
			return nil, fmt.Errorf("conntrack, line %d: no original and reply tuple (%q)", n, clip(line))
		}
		out = append(out, c)
	}
	return out, nil
}

// tcpStates maps the TCP states conntrack prints to constant strings (a Conn keeps no part of
// the line).
var tcpStates = map[string]string{"ESTABLISHED": "ESTABLISHED", "TIME_WAIT": "TIME_WAIT", "SYN_SENT": "SYN_SENT",
	"SYN_RECV": "SYN_RECV", "CLOSE": "CLOSE", "CLOSE_WAIT": "CLOSE_WAIT", "FIN_WAIT": "FIN_WAIT", "LAST_ACK": "LAST_ACK"}

// otherProtocols are the protocols conntrack tracks that no Service uses; their lines are skipped.
var otherProtocols = map[string]bool{"icmp": true, "icmpv6": true, "igmp": true, "gre": true, "dccp": true, "udplite": true, "unknown": true}

// clip shortens a line quoted in an error to what a person can read.
func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}

// ReadLive runs `conntrack -L -o extended` on the node.
func ReadLive(ctx context.Context, r noderun.Runner) ([]trace.Conn, error) {
	out, err := r.Run(ctx, "conntrack", "-L", "-o", "extended")
	if err != nil {
		return nil, fmt.Errorf("reading conntrack: %w", err)
	}
	return Parse(out)
}

// appendFields appends line's space-separated fields to f (strings.Fields without its
// allocation).
func appendFields(f []string, line string) []string {
	start := -1
	for i := 0; i < len(line); i++ {
		if line[i] == ' ' || line[i] == '\t' {
			if start >= 0 {
				f = append(f, line[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		f = append(f, line[start:])
	}
	return f
}
