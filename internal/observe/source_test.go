package observe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// sourceErr is a data-layer error that says its cause, as *pg.Error does.
type sourceErr struct {
	cause string
	err   error
}

func (e *sourceErr) Error() string       { return "pg: " + e.err.Error() }
func (e *sourceErr) Unwrap() error       { return e.err }
func (e *sourceErr) SourceCause() string { return e.cause }

// fakeSource fails with err (nil: succeeds), for every kind of read.
type fakeSource struct{ err error }

func (f fakeSource) Membership(context.Context, roles.Subject) (roles.Membership, error) {
	return roles.Membership{UserFound: f.err == nil}, f.err
}

func (f fakeSource) SessionByToken(context.Context, string) (authn.Session, error) {
	return authn.Session{Found: f.err == nil}, f.err
}

func (f fakeSource) SessionByID(context.Context, string) (authn.Session, error) {
	return authn.Session{Found: f.err == nil}, f.err
}

func (f fakeSource) APIKeyByHash(context.Context, string) (authn.APIKey, error) {
	return authn.APIKey{Found: f.err == nil}, f.err
}

// fakeSecondary is Better Auth's secondary storage failing with err.
type fakeSecondary struct{ err error }

func (f fakeSecondary) SessionByToken(context.Context, string) (*authn.Session, roles.Tier, error) {
	return &authn.Session{Found: f.err == nil}, roles.TierSource, f.err
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestSources(t *testing.T) (*Sources, *observer.ObservedLogs, *fakeClock) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s, err := NewSources(zap.New(core), prometheus.NewRegistry(), SourcesConfig{Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	return s, logs, clock
}

// Every read is timed and every failure counted under its op and a
// bounded cause.
func TestSourcesCount(t *testing.T) {
	t.Parallel()
	schemaErr := &sourceErr{"schema", errors.New(`table "member" is missing`)}
	tests := []struct {
		name       string
		err        error
		wantCause  string
		wantResult string
	}{
		{"ok", nil, "", "ok"},
		{"cause from the data layer", &sourceErr{"connection", errors.New("refused")}, "connection", "error"},
		{"schema", schemaErr, "schema", "error"},
		{"timeout from the data layer", &sourceErr{"timeout", errors.New("statement timeout")}, "timeout", "timeout"},
		{"bare deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), "timeout", "timeout"},
		{"bare cancel", context.Canceled, "canceled", "canceled"},
		{"unknown cause is other", &sourceErr{"bogus", errors.New("?")}, "other", "error"},
		{"plain error", errors.New("boom"), "other", "error"},
		{"network refused (Redis)", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, "connection", "error"},
		{"network timeout (Redis)", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, "timeout", "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, _, _ := newTestSources(t)
			src := fakeSource{tt.err}
			ctx := context.Background()
			reads := map[string]func() error{
				OpMembership: func() error {
					_, err := s.Members(src).Membership(ctx, roles.Subject{UserID: "u"})
					return err
				},
				OpSessionByToken: func() error { _, err := s.Sessions(src).SessionByToken(ctx, "t"); return err },
				OpSessionByID:    func() error { _, err := s.Sessions(src).SessionByID(ctx, "i"); return err },
				OpAPIKey:         func() error { _, err := s.APIKeys(src).APIKeyByHash(ctx, "h"); return err },
				OpSecondarySession: func() error {
					_, _, err := s.Secondary(fakeSecondary{tt.err}).SessionByToken(ctx, "t")
					return err
				},
			}
			for op, read := range reads {
				if err := read(); err != tt.err {
					t.Errorf("%s: err = %v, want %v passed through", op, err, tt.err)
				}
				for _, c := range causes {
					want := 0.0
					if c == tt.wantCause {
						want = 1
					}
					if got := testutil.ToFloat64(s.errors[op][c]); got != want {
						t.Errorf("authz_source_errors_total{op=%s,cause=%s} = %v, want %v", op, c, got, want)
					}
				}
				if n := testutil.CollectAndCount(s.duration[op][tt.wantResult].(prometheus.Histogram)); n != 1 {
					t.Errorf("%s: no %s duration series", op, tt.wantResult)
				}
			}
		})
	}
}

// Failures are logged with their cause, at most once per cause per
// LogEvery; the next line says how many were left out.
func TestSourcesLogRateLimited(t *testing.T) {
	t.Parallel()
	s, logs, clock := newTestSources(t)
	ctx := context.Background()
	conn := s.Members(fakeSource{&sourceErr{"connection", errors.New("connection refused")}})
	schema := s.APIKeys(fakeSource{&sourceErr{"schema", errors.New(`table "apikey" is missing: the api-key plugin creates it`)}})

	for range 5 {
		conn.Membership(ctx, roles.Subject{})
	}
	schema.APIKeyByHash(ctx, "secret-hash")
	clock.add(5 * time.Second)
	conn.Membership(ctx, roles.Subject{})
	if n := logs.Len(); n != 2 {
		t.Fatalf("%d lines, want 2 (one per cause)", n)
	}
	clock.add(6 * time.Second)
	conn.Membership(ctx, roles.Subject{})

	entries := logs.All()
	if len(entries) != 3 {
		t.Fatalf("%d lines, want 3", len(entries))
	}
	for i, want := range []struct {
		op, cause, errText string
		suppressed         int64
	}{
		{OpMembership, "connection", "connection refused", 0},
		{OpAPIKey, "schema", `table "apikey" is missing`, 0},
		{OpMembership, "connection", "connection refused", 5},
	} {
		f := entries[i].ContextMap()
		if f["op"] != want.op || f["cause"] != want.cause || f["suppressed"] != want.suppressed ||
			!strings.Contains(fmt.Sprint(f["error"]), want.errText) {
			t.Errorf("line %d: %v, want op %s cause %s suppressed %d error %q", i, f, want.op, want.cause, want.suppressed, want.errText)
		}
	}
	for _, e := range entries {
		if strings.Contains(fmt.Sprint(e.ContextMap()), "secret-hash") {
			t.Error("a log line holds the looked-up value")
		}
	}
}
