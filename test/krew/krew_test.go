//go:build e2e

// Package krew tests the plugin's packaging with the real krew v0.4.4: the manifest rendered for
// the release archives passes krew's validator, and `kubectl krew install` from it gives a
// working `kubectl svctrace`. The archives are served from this process on loopback. It runs
// when SVCTRACE_E2E=1 (make test builds dist/ and krew first).
package krew

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestKrewInstallsThePlugin(t *testing.T) {
	if os.Getenv("SVCTRACE_E2E") != "1" {
		t.Skip("set SVCTRACE_E2E=1 (make test)")
	}
	dist, krewDir, k8sBin := os.Getenv("SVCTRACE_DIST"), os.Getenv("SVCTRACE_KREW_DIR"), os.Getenv("SVCTRACE_K8S_BIN")
	if dist == "" || krewDir == "" || k8sBin == "" {
		t.Fatal("SVCTRACE_DIST, SVCTRACE_KREW_DIR and SVCTRACE_K8S_BIN must be set (make test sets them)")
	}
	version := os.Getenv("SVCTRACE_DIST_VERSION")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dist))}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	// The manifest, rendered the way krew-release-bot renders krew/.krew.yaml, for this server.
	work := t.TempDir()
	for _, f := range mustGlob(t, filepath.Join(dist, "*.tar.gz")) {
		link := filepath.Join(work, filepath.Base(f))
		if err := os.Symlink(f, link); err != nil {
			t.Fatal(err)
		}
	}
	// make test builds this machine's archive only (make dist-host): the manifest names the
	// platforms whose archives exist.
	run(t, append(os.Environ(), "KREW_PARTIAL=1"), "../../hack/krew-manifest.sh", work, version, "http://"+ln.Addr().String())
	manifest := filepath.Join(work, "svctrace.yaml")

	// kubectl finds krew as its plugin; krew installs into a root of its own.
	pathDir := t.TempDir()
	for name, target := range map[string]string{"kubectl-krew": filepath.Join(krewDir, "krew"), "kubectl": filepath.Join(k8sBin, "kubectl")} {
		if err := os.Symlink(target, filepath.Join(pathDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	root := t.TempDir()
	env := append(os.Environ(), "KREW_ROOT="+root, "PATH="+filepath.Join(root, "bin")+":"+pathDir+":"+os.Getenv("PATH"))
	run(t, env, filepath.Join(krewDir, "validate-krew-manifest"), "-manifest", manifest)
	run(t, env, "kubectl", "krew", "install", "--manifest="+manifest)
	out := run(t, env, "kubectl", "svctrace", "version")
	if !strings.HasPrefix(out, "svctrace "+version) {
		t.Fatalf("kubectl svctrace version printed %q, want svctrace %s", out, version)
	}
	out = run(t, env, "kubectl", "svctrace", "trace", "--demo", "default/hostnames", "-o", "json")
	if !strings.Contains(out, `"name": "hostnames-a"`) {
		t.Fatalf("the installed plugin did not trace the demo:\n%s", out)
	}

	// The manifest make dist renders (file:// URIs) installs from the local archive, as a user
	// does before a release exists: krew checks the archive's sha256 against the manifest.
	// (A krew root of its own: uninstalling needs krew's index, which needs the internet.)
	root2 := t.TempDir()
	env2 := append(os.Environ(), "KREW_ROOT="+root2, "PATH="+filepath.Join(root2, "bin")+":"+pathDir+":"+os.Getenv("PATH"))
	archives := mustGlob(t, filepath.Join(dist, "*.tar.gz"))
	out = run(t, env2, "kubectl", "krew", "install", "--manifest="+filepath.Join(dist, "svctrace.yaml"), "--archive="+archives[0])
	if !strings.Contains(out, "Installed plugin: svctrace") || !strings.Contains(out, "kubectl svctrace rbac --user YOU --exec") {
		t.Fatalf("krew install --archive (its caveats name the rbac command):\n%s", out)
	}
	out = run(t, env2, "kubectl", "svctrace", "trace", "--demo", "default/hostnames")
	if !strings.Contains(out, "hostnames-a") {
		t.Fatalf("the plugin installed from the archive did not trace the demo:\n%s", out)
	}
}

func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	if env != nil {
		cmd.Env = env
		// exec.Command resolved name with this process's PATH; resolve it with the test's.
		for _, e := range env {
			if p, ok := strings.CutPrefix(e, "PATH="); ok && !strings.Contains(name, "/") {
				for _, d := range filepath.SplitList(p) {
					if _, err := os.Stat(filepath.Join(d, name)); err == nil {
						cmd.Path = filepath.Join(d, name)
						break
					}
				}
			}
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func mustGlob(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil || len(m) == 0 {
		t.Fatalf("no archives match %s (make dist)", pattern)
	}
	return m
}
