package testproc

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ErrBetterAuthNotInstalled is wrapped by NewBetterAuth when the fixture's
// dependencies are missing (make betterauth, part of make test, sets them up).
var ErrBetterAuthNotInstalled = errors.New("better auth fixture missing: make test sets it up once (make betterauth)")

// BetterAuthOptions says how to run the Better Auth fixture app of
// test/betterauth (server.ts on the Bun binary its npm install ships).
type BetterAuthOptions struct {
	// DatabaseURL is Better Auth's database (required). It must exist; the
	// server creates its tables (MIGRATE=1) unless NoMigrate is set.
	DatabaseURL string
	// Env holds more of server.ts's variables (SCHEMA=singular,
	// ADMIN_EMAILS=..., BETTER_AUTH_URL=...; see test/betterauth/README.md).
	// They come after the defaults PORT, DATABASE_URL, MIGRATE and
	// BETTER_AUTH_URL, so they override them.
	Env []string
	// NoMigrate leaves MIGRATE unset: the tables must exist already.
	NoMigrate bool
	// Root is the repository root; empty: RepoRoot().
	Root string
	// Name names the process and its log file; empty: betterauth-<port>.
	Name string
	// StartTimeout bounds the wait for /healthz (Bun starts and migrates);
	// zero: a minute.
	StartTimeout time.Duration
}

// BetterAuth is a running fixture server.
type BetterAuth struct {
	// URL is where it listens, http://127.0.0.1:<port>. Its BETTER_AUTH_URL
	// (the JWT issuer) is the same unless Env overrides it.
	URL  string
	Proc *Process
}

// NewBetterAuth starts the fixture server on a free loopback port, its log
// in logDir, and waits until /healthz answers 200 (the database answers and
// the migration, if any, is done). The caller must Stop or Kill it. The
// error wraps ErrBetterAuthNotInstalled when the fixture is not installed.
func NewBetterAuth(opts BetterAuthOptions, logDir string) (*BetterAuth, error) {
	if opts.DatabaseURL == "" {
		return nil, errors.New("better auth: DatabaseURL is required")
	}
	root := opts.Root
	if root == "" {
		var err error
		if root, err = RepoRoot(); err != nil {
			return nil, err
		}
	}
	dir, bun, err := betterAuthBun(root)
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	env := []string{"PORT=" + fmt.Sprint(port), "DATABASE_URL=" + opts.DatabaseURL, "BETTER_AUTH_URL=" + url}
	if !opts.NoMigrate {
		env = append(env, "MIGRATE=1")
	}
	name := opts.Name
	if name == "" {
		name = fmt.Sprintf("betterauth-%d", port)
	}
	p, err := Start(Spec{Name: name, Dir: dir, Env: append(env, opts.Env...), Bin: bun, Args: []string{"server.ts"}}, logDir)
	if err != nil {
		return nil, err
	}
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = time.Minute
	}
	if err := waitBetterAuth(p, url+"/healthz", timeout); err != nil {
		p.Kill()
		return nil, err
	}
	return &BetterAuth{URL: url, Proc: p}, nil
}

// betterAuthBun returns the fixture's directory under root and the Bun
// binary its npm dependencies ship; the error wraps
// ErrBetterAuthNotInstalled when they are missing.
func betterAuthBun(root string) (dir, bun string, err error) {
	dir = filepath.Join(root, "test", "betterauth")
	bun = filepath.Join(dir, "node_modules", ".bin", "bun")
	if _, err := os.Stat(bun); err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrBetterAuthNotInstalled, err)
	}
	return dir, bun, nil
}

// BetterAuthBun is betterAuthBun for a test that runs the fixture's
// scripts itself: a missing fixture fails the test under CI and skips it
// otherwise (RequireOrSkip).
func BetterAuthBun(t testing.TB) (dir, bun string) {
	t.Helper()
	dir, bun, err := betterAuthBun(RepoRootT(t))
	if err != nil {
		RequireOrSkip(t, "%v", err)
	}
	return dir, bun
}

// StartBetterAuth is NewBetterAuth for a test: a fixture that is not
// installed fails the test under CI and skips it otherwise (RequireOrSkip),
// the log goes to t.TempDir(), and the server is killed at cleanup (see
// KillAtCleanup).
func StartBetterAuth(t testing.TB, opts BetterAuthOptions) *BetterAuth {
	t.Helper()
	b, err := NewBetterAuth(opts, t.TempDir())
	if errors.Is(err, ErrBetterAuthNotInstalled) {
		RequireOrSkip(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	b.Proc.KillAtCleanup(t)
	return b
}

// Stop asks the server to stop (SIGTERM: it closes its pools), then kills
// it after grace.
func (b *BetterAuth) Stop(grace time.Duration) { b.Proc.Stop(grace) }

// Kill kills the server at once.
func (b *BetterAuth) Kill() { b.Proc.Kill() }

// waitBetterAuth polls url until it answers 200, for up to timeout; it
// returns at once, with the log's tail, if the process exits (a bad
// variable, a database that does not exist).
func waitBetterAuth(p *Process, url string, timeout time.Duration) error {
	c := http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		if state, exited := p.exited(); exited {
			return fmt.Errorf("%s exited at start (%v):\n%s", p.Name(), state, p.Tail(20))
		}
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s not healthy after %v (last error %v):\n%s", p.Name(), url, timeout, err, p.Tail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// BetterAuthSecret is the fixture app's development secret
// (test/betterauth/server.ts's DEV_SECRET), which signs its session cookies
// and bearer tokens; a sidecar in front of it needs it.
const BetterAuthSecret = "authz-sidecar-dev-secret-do-not-use-in-production"

// WriteSecretFile writes BetterAuthSecret to dir/better-auth-secret (mode
// 0600) for the sidecar's --better-auth-secret-file, and returns its path.
func WriteSecretFile(dir string) (string, error) {
	p := filepath.Join(dir, "better-auth-secret")
	if err := os.WriteFile(p, []byte(BetterAuthSecret), 0o600); err != nil {
		return "", fmt.Errorf("write the fixture secret: %w", err)
	}
	return p, nil
}
