package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/klog/v2"

	"github.com/svctrace/svctrace/dataplane/noderun"
)

// TestExitCodes: 3 is "could not read" (the API unreachable or refusing, a node tool failing), 2
// a usage mistake or refused input, 130 an interruption; a code an error carries wins.
func TestExitCodes(t *testing.T) {
	gr := schema.GroupResource{Resource: "services"}
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{errFindings, ExitFindings},
		{usageErrorf("bad flag"), ExitUsage},
		{errors.New("a file is not a dump"), ExitUsage},
		{fmt.Errorf("listing: %w", apierrors.NewForbidden(gr, "", errors.New("no"))), ExitRead},
		{apierrors.NewUnauthorized("token"), ExitRead},
		{apierrors.NewServiceUnavailable("down"), ExitRead},
		{apierrors.NewNotFound(gr, "web"), ExitUsage},
		{&noderun.Error{Argv: []string{"nft", "-j", "list", "ruleset"}, ExitStatus: 1}, ExitRead},
		{fmt.Errorf("nft: %w", noderun.ErrNotFound), ExitRead},
		{readFailure(errors.New("iptables-save printed no nat table")), ExitRead},
		{readFailure(context.Canceled), ExitUsage},
		{&ExitError{Code: 5, Err: errors.New("rollback failed")}, 5},
	} {
		if got := codeOf(tc.err); got != tc.want {
			t.Errorf("%v: exit %d, want %d", tc.err, got, tc.want)
		}
	}
}

// TestUnreachableAPIExits3: a kubeconfig whose server refuses connections makes a command that
// needs the API exit 3 with the connection's error, not 2.
func TestUnreachableAPIExits3(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
users: [{name: u, user: {token: x}}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := run(t, "check", "-A", "--all-nodes", "--kubeconfig", kc)
	if code != ExitRead || !strings.Contains(stderr, "connection refused") {
		t.Errorf("exit %d, want %d: %s", code, ExitRead, stderr)
	}
}

// TestVerboseLogsExecs: -v 2 logs every command run on the node (klog, on stderr), with its
// argument vector, time and output size; -v beyond 10 is refused.
func TestVerboseLogsExecs(t *testing.T) {
	var buf strings.Builder
	if err := setVerbosity(2, &buf); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = setVerbosity(0, io.Discard) }()
	if _, err := (noderun.Local{}).Run(context.Background(), "echo", "hello"); err != nil {
		t.Fatal(err)
	}
	klog.Flush()
	if got := buf.String(); !strings.Contains(got, `"exec" on="local" argv="echo hello"`) || !strings.Contains(got, "bytes=6") {
		t.Errorf("log %q", got)
	}
	if _, stderr, code := run(t, "trace", "--demo", "default/hostnames", "-v", "11"); code != ExitUsage || !strings.Contains(stderr, "-v 11: use 0 to 10") {
		t.Errorf("-v 11: exit %d %s", code, stderr)
	}
}
