package testproc

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestNewBetterAuthRefusals(t *testing.T) {
	if _, err := NewBetterAuth(BetterAuthOptions{}, t.TempDir()); err == nil || !strings.Contains(err.Error(), "DatabaseURL") {
		t.Errorf("no database URL: %v", err)
	}
	_, err := NewBetterAuth(BetterAuthOptions{DatabaseURL: "postgres://x/y", Root: t.TempDir()}, t.TempDir())
	if !errors.Is(err, ErrBetterAuthNotInstalled) {
		t.Errorf("empty root: %v, want ErrBetterAuthNotInstalled", err)
	}
}

// A server that exits at start (here: a database that does not exist, so
// the migration fails) is reported at once, with its log.
func TestNewBetterAuthFailsFast(t *testing.T) {
	BetterAuthBun(t)
	start := time.Now()
	_, err := NewBetterAuth(BetterAuthOptions{
		DatabaseURL:  "postgres://postgres@127.0.0.1:1/none?connect_timeout=1",
		StartTimeout: 20 * time.Second,
	}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "exited at start") {
		t.Fatalf("got %v, want an exit at start", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("took %v to notice the exit", d)
	}
}
