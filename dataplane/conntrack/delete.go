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
// port, or any address with "*:PORT") and the backend the reply comes from. Entries of other
// services, ports or backends are not touched. Finding none is not an error.
func Delete(ctx context.Context, r noderun.Runner, f trace.ConntrackFlush) error {
	argv := []string{"conntrack", "-D", "-p", f.Protocol}
	host, port, ok := strings.Cut(f.Dst, ":")
	if ap, err := netip.ParseAddrPort(f.Dst); err == nil {
		argv = append(argv, "--orig-dst", ap.Addr().String(), "--orig-port-dst", fmt.Sprint(ap.Port()))
	} else if ok && host == "*" {
		argv = append(argv, "--orig-port-dst", port)
	} else {
		return fmt.Errorf("conntrack flush: destination %q is not ADDRESS:PORT or *:PORT", f.Dst)
	}
	if _, err := netip.ParseAddr(f.Backend); err != nil {
		return fmt.Errorf("conntrack flush: backend %q is not an address", f.Backend)
	}
	argv = append(argv, "--reply-src", f.Backend)
	_, err := r.Run(ctx, argv...)
	var ee *noderun.Error
	if errors.As(err, &ee) && ee.ExitStatus == 1 && strings.Contains(ee.Stderr, "0 flow entries") {
		return nil
	}
	return err
}
