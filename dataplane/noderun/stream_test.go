package noderun

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// TestLocalStream: the consumer reads the output as the command writes it; a failing command
// is an *Error with its status and stderr; a consumer that gives up stops the command.
func TestLocalStream(t *testing.T) {
	var got string
	err := Local{}.Stream(context.Background(), func(r io.Reader) error {
		b, err := io.ReadAll(r)
		got = string(b)
		return err
	}, "sh", "-c", "printf 'a\\nb\\n'")
	if err != nil || got != "a\nb\n" {
		t.Fatalf("%q %v", got, err)
	}
	err = Local{}.Stream(context.Background(), func(r io.Reader) error { _, err := io.ReadAll(r); return err }, "sh", "-c", "echo nope >&2; exit 3")
	var e *Error
	if !errors.As(err, &e) || e.ExitStatus != 3 || !strings.Contains(e.Stderr, "nope") {
		t.Fatalf("a failing command: %v", err)
	}
	start := time.Now()
	boom := errors.New("boom")
	if err := (Local{}).Stream(context.Background(), func(io.Reader) error { return boom }, "yes"); !errors.Is(err, boom) {
		t.Fatalf("a consumer that fails: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the command was not stopped when its consumer gave up (%v)", d)
	}
	if err := (Local{}).Stream(context.Background(), func(io.Reader) error { return nil }, "no-such-tool-here"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a missing tool: %v", err)
	}
}
