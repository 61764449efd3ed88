package plugin

import (
	"context"
	"fmt"
	"io"

	"github.com/svctrace/svctrace/dataplane"
	"github.com/svctrace/svctrace/dataplane/conntrack"
	"github.com/svctrace/svctrace/trace"
)

// conntrackTable is the node's conntrack table: from file (`conntrack -L -o extended` output),
// the snapshot bundle's, or the live node's (this machine, or its kube-proxy pod). ok is false
// when there is none to read: offline input without one.
func (in *Inputs) conntrackTable(ctx context.Context, file string) (conns []trace.Conn, ok bool, err error) {
	switch {
	case file != "":
		data, err := dataplane.ReadFile(file, dataplane.MaxFileBytes)
		if err != nil {
			return nil, false, usageErrorf("cannot read --conntrack: %v", err)
		}
		if conns, err = conntrack.Parse(data); err != nil {
			return nil, false, usageErrorf("--conntrack %s: %v", file, err)
		}
		return conns, true, nil
	case in.Conntrack != nil:
		if conns, err = conntrack.Parse(in.Conntrack); err != nil {
			return nil, false, fmt.Errorf("the snapshot's conntrack table: %w", err)
		}
		return conns, true, nil
	case in.Runner != nil:
		conns, err = conntrack.ReadLive(ctx, in.Runner)
		return conns, err == nil, err
	}
	return nil, false, nil
}

// staleFlows joins the node's conntrack table with the API (trace.CheckFlows). A live table that
// cannot be read is a warning on warn, not a failure: the rules were still checked. A file
// that cannot be used is an error.
func (in *Inputs) staleFlows(ctx context.Context, file string, scope trace.CheckScope, warn io.Writer) ([]trace.Finding, error) {
	conns, ok, err := in.conntrackTable(ctx, file)
	if err != nil {
		if file != "" || in.Conntrack != nil {
			return nil, err
		}
		fmt.Fprintf(warn, "warning: stale flows not checked: %v\n", err)
		return nil, nil
	}
	if !ok {
		return nil, nil
	}
	return trace.CheckFlows(ctx, in.Dataplane, in.Cluster, in.Node, scope, conns)
}
