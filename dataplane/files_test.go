package dataplane

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestReadFileRefusesWhatIsNotAFile: a FIFO (which once hung a read), a device (/dev/zero, which
// once filled memory) and a file over the limit are refused by name; a regular file is read.
func TestReadFileRefusesWhatIsNotAFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, 2048), 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{fifo: "not a regular file", "/dev/zero": "not a regular file", big: "larger than"} {
		if _, err := ReadFile(path, 1024); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v, want an error naming it: %s", path, err, want)
		}
	}
	if data, err := ReadFile(big, 4096); err != nil || len(data) != 2048 {
		t.Errorf("a regular file within the limit: %d bytes, %v", len(data), err)
	}
}
