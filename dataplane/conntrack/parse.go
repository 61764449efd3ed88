// Package conntrack reads connection tracking tables: `conntrack -L` output (plain or
// `-o extended`), from a file or the live node.
package conntrack

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/trace"
)

// Parse reads `conntrack -L [-o extended]` output. Lines for protocols other than TCP, UDP and
// SCTP are skipped; a malformed line is an error naming it.
func Parse(data []byte) ([]trace.Conn, error) {
	var out []trace.Conn
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		f := strings.Fields(line)
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
				if tuple == 0 && (kv == "ESTABLISHED" || kv == "TIME_WAIT" || kv == "SYN_SENT" || kv == "SYN_RECV" || kv == "CLOSE" || kv == "CLOSE_WAIT" || kv == "FIN_WAIT" || kv == "LAST_ACK") {
					c.State = kv
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
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("conntrack, line %d: %w", n+1, lineError(err))
	}
	return out, nil
}

// otherProtocols are the protocols conntrack tracks that no Service uses; their lines are skipped.
var otherProtocols = map[string]bool{"icmp": true, "icmpv6": true, "igmp": true, "gre": true, "dccp": true, "udplite": true, "unknown": true}

// clip shortens a line quoted in an error to what a person can read.
func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}

// lineError says what a scanner error means for the file.
func lineError(err error) error {
	if errors.Is(err, bufio.ErrTooLong) {
		return errors.New("a line longer than 1 MiB (conntrack lines are a few hundred bytes)")
	}
	return err
}

// ReadLive runs `conntrack -L -o extended` on the node.
func ReadLive(ctx context.Context, r noderun.Runner) ([]trace.Conn, error) {
	out, err := r.Run(ctx, "conntrack", "-L", "-o", "extended")
	if err != nil {
		return nil, fmt.Errorf("reading conntrack: %w", err)
	}
	return Parse(out)
}
