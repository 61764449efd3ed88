package plugin

import (
	"strings"
	"testing"
	"time"
)

// TestProgressNotOnATerminal: in a CI log the fleet progress is whole lines (no carriage
// return rewriting one line), with failures and elapsed time, one every few seconds and one at
// the end.
func TestProgressNotOnATerminal(t *testing.T) {
	var b strings.Builder
	p := newProgress(&b, "checked", 3)
	p.update(1, 0)
	p.update(2, 1)
	if b.Len() != 0 {
		t.Errorf("a line before %s passed: %q", progressEvery, b.String())
	}
	p.last = time.Now().Add(-progressEvery)
	p.update(2, 1)
	p.update(3, 1)
	p.end(3, 1)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if strings.Contains(b.String(), "\r") || len(lines) != 2 || !strings.HasPrefix(lines[0], "checked 2/3 nodes, 1 failed, ") || !strings.HasPrefix(lines[1], "checked 3/3 nodes, 1 failed, ") {
		t.Errorf("progress: %q", b.String())
	}
}
