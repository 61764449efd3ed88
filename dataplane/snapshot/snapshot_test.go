package snapshot

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestWriteNeverFollowsLinks: a snapshot holds Pod specs with their environment: its directory
// is 0700, its files 0600, and saving never writes through a link someone planted, nor into a
// directory that holds something else.
func TestWriteNeverFollowsLinks(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "snap")
	if err := PrepareDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(dir, "objects.json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	di, _ := os.Stat(dir)
	fi, _ := os.Stat(filepath.Join(dir, "objects.json"))
	if di.Mode().Perm() != 0o700 || fi.Mode().Perm() != 0o600 {
		t.Errorf("directory %v, file %v", di.Mode(), fi.Mode())
	}
	victim := filepath.Join(tmp, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "iptables-save.txt")); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(dir, "iptables-save.txt", []byte("x")); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("wrote through a link: %v", err)
	}
	if data, _ := os.ReadFile(victim); string(data) != "keep" {
		t.Errorf("the link's target changed: %q", data)
	}
	if err := WriteFile(dir, "../escape", []byte("x")); err == nil {
		t.Error("wrote outside the directory")
	}
	// A linked directory, and a directory of something else, are refused.
	if err := os.Symlink(tmp, filepath.Join(tmp, "link")); err != nil {
		t.Fatal(err)
	}
	if err := PrepareDir(filepath.Join(tmp, "link")); err == nil {
		t.Error("prepared a link to a directory")
	}
	if err := PrepareDir(tmp); err == nil || !strings.Contains(err.Error(), "not empty and not a snapshot") {
		t.Errorf("prepared a directory of something else: %v", err)
	}
	if err := WriteFile(dir, ManifestName, []byte("kind: Snapshot")); err != nil {
		t.Fatal(err)
	}
	if err := PrepareDir(dir); err != nil {
		t.Errorf("an existing snapshot is refused: %v", err)
	}
}

// TestReadStaysInside: what a snapshot's manifest names is read only from inside it, only as
// regular files, and node names of a set are names, not paths.
func TestReadStaysInside(t *testing.T) {
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("*nat\n:SECRET - [0:0]\nCOMMIT\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bundle := func(t *testing.T, manifest string, files map[string]string) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ManifestName), []byte(manifest), 0o600); err != nil {
			t.Fatal(err)
		}
		for name, target := range files {
			if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	for _, tc := range []struct {
		name, manifest string
		links          map[string]string
		want           string
	}{
		{"a path out of the bundle", "kind: Snapshot\ndataplane: [../../../etc/passwd]\n", nil, "not a file name inside the snapshot"},
		{"an absolute path", "kind: Snapshot\ndataplane: [/etc/passwd]\n", nil, "dataplane file"},
		{"a link out of the bundle", "kind: Snapshot\ndataplane: [dump]\n", map[string]string{"dump": secret}, "dataplane file"},
		{"a link to a device", "kind: Snapshot\ndataplane: [dump]\n", map[string]string{"dump": "/dev/zero"}, "dataplane file"},
		{"a node name that is a path", "kind: Snapshot\nnode: ../../etc\ndataplane: [dump]\n", nil, "not a valid Kubernetes node name"},
		{"an unknown mode", "kind: Snapshot\nnode: node1\nmode: userspace\ndataplane: [dump]\n", nil, "is not iptables, nftables or ipvs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadDir(bundle(t, tc.manifest, tc.links))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want %q", err, tc.want)
			}
		})
	}
	t.Run("a FIFO", func(t *testing.T) {
		dir := bundle(t, "kind: Snapshot\ndataplane: [fifo]\n", nil)
		if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
			t.Skip(err)
		}
		if _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("%v", err)
		}
	})
	t.Run("a set whose node is a path", func(t *testing.T) {
		dir := bundle(t, "kind: SnapshotSet\nnodes: [\"../../..\"]\n", nil)
		if _, _, err := ReadSet(dir); err == nil || !strings.Contains(err.Error(), "not a valid Kubernetes node name") {
			t.Fatalf("%v", err)
		}
	})
	if b, err := LoadDir("demo"); err != nil || len(b.Dataplane) != 1 {
		t.Fatalf("the demo bundle: %v", err)
	}
}
