package conntrack

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/trace"
)

// Delete removes the conntrack entries of one flush: protocol, original destination (address and
// port, or any address with "*:PORT"), the backend the reply comes from (its port too when the
// flush names one) and the zone when it names one. Entries of other services, ports, backends or
// zones are not touched. Finding none is not an error.
func Delete(ctx context.Context, r noderun.Runner, f trace.ConntrackFlush) error {
	argv, err := filter("-D", f)
	if err != nil {
		return err
	}
	_, err = r.Run(ctx, argv...)
	if noEntries(err) {
		return nil
	}
	return err
}

// noEntries reports whether err is conntrack's exit status 1 for "nothing matched".
func noEntries(err error) bool {
	var ee *noderun.Error
	return errors.As(err, &ee) && ee.ExitStatus == 1 && strings.Contains(ee.Stderr, "0 flow entries")
}

// Count returns how many conntrack entries match the flush now.
func Count(ctx context.Context, r noderun.Runner, f trace.ConntrackFlush) (int, error) {
	argv, err := filter("-L", f)
	if err != nil {
		return 0, err
	}
	out, err := r.Run(ctx, argv...)
	if noEntries(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "src=") {
			n++
		}
	}
	return n, nil
}

// filter is the conntrack command line selecting a flush's entries.
func filter(cmd string, f trace.ConntrackFlush) ([]string, error) {
	argv := []string{"conntrack", cmd, "-p", f.Protocol}
	host, port, ok := strings.Cut(f.Dst, ":")
	if ap, err := netip.ParseAddrPort(f.Dst); err == nil {
		argv = append(argv, "--orig-dst", ap.Addr().String(), "--orig-port-dst", fmt.Sprint(ap.Port()))
	} else if ok && host == "*" {
		argv = append(argv, "--orig-port-dst", port)
	} else {
		return nil, fmt.Errorf("conntrack flush: destination %q is not ADDRESS:PORT or *:PORT", f.Dst)
	}
	backend, err := netip.ParseAddr(f.Backend)
	if err != nil {
		return nil, fmt.Errorf("conntrack flush: backend %q is not an address", f.Backend)
	}
	if backend.Is6() && !backend.Is4In6() {
		// conntrack reads addresses as IPv4 unless told the family.
		argv = append(argv, "-f", "ipv6")
	}
	argv = append(argv, "--reply-src", f.Backend)
	if f.BackendPort != 0 {
		argv = append(argv, "--reply-port-src", fmt.Sprint(f.BackendPort))
	}
	if f.Zone != nil {
		argv = append(argv, "--zone", fmt.Sprint(*f.Zone))
	}
	return argv, nil
}
