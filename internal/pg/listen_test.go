package pg_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap/zaptest"

	"github.com/authz-sidecar/authz-sidecar/internal/pg"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
)

// applyTriggers installs sql/invalidation-triggers.sql, as a DBA would.
func applyTriggers(t *testing.T, s *pgtest.Seeder) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "sql", "invalidation-triggers.sql"))
	if err != nil {
		t.Fatal(err)
	}
	s.Exec(t, string(b))
}

// notification is the part of a trigger's message the test checks.
type notification struct {
	V     int      `json:"v"`
	ID    string   `json:"id"`
	Kind  string   `json:"kind"`
	User  string   `json:"user"`
	Org   string   `json:"org"`
	Role  string   `json:"role"`
	Slugs []string `json:"slugs"`
	Src   string   `json:"src"`
	At    int64    `json:"at"`
}

// patience bounds the waits for events in these tests: a failure bound far
// above what anything takes on a loaded machine, never what is asserted.
const patience = 30 * time.Second

// listen starts a Listener on databaseURL and waits until it listens; it
// returns the payloads and a channel told each time LISTEN takes effect
// again. Its ping interval is far above any test's length: a ping that
// timed out on a loaded machine would reconnect and lose a notification
// (nothing here is about pings).
func listen(t *testing.T, databaseURL, appName string) (<-chan notification, <-chan struct{}) {
	t.Helper()
	l, err := pg.NewListener(databaseURL, pg.ListenerConfig{
		ApplicationName: appName, MinBackoff: 10 * time.Millisecond, PingInterval: time.Hour,
	}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	connected := make(chan struct{}, 100)
	ch := make(chan notification, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Listen(ctx, func() { connected <- struct{}{} }, func(p string) {
			var n notification
			if err := json.Unmarshal([]byte(p), &n); err != nil {
				t.Errorf("payload %q: %v", p, err)
			}
			ch <- n
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(patience):
			t.Errorf("Listen did not return within %v of its context ending", patience)
		}
	})
	select {
	case <-connected:
	case <-time.After(patience):
		t.Fatalf("not listening after %v", patience)
	}
	return ch, connected
}

func next(t *testing.T, ch <-chan notification) notification {
	t.Helper()
	select {
	case n := <-ch:
		return n
	case <-time.After(patience):
		t.Fatalf("no notification within %v", patience)
		return notification{}
	}
}

func TestInvalidationTriggers(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	s := pgtest.NewSeeder(t, dbURL)
	applyTriggers(t, s)
	applyTriggers(t, s) // idempotent
	s.User(t, "u1", "one")
	s.User(t, "u2", "two")
	s.Org(t, "o1", "acme")
	ch, _ := listen(t, dbURL, "authz-listen-test-triggers")

	// sentinel is a change that always notifies: expecting it next proves
	// the statements before it sent nothing.
	sentinel := func() { s.Exec(t, `UPDATE users SET "banExpires" = now() + interval '1 day' WHERE id = 'u2'`) }
	isSentinel := notification{Kind: "user", User: "u2"}

	tests := []struct {
		name string
		sql  string
		want []notification // in order; nil = nothing
	}{
		{"member added", `INSERT INTO members (id, "organizationId", "userId", role, "createdAt") VALUES ('m1', 'o1', 'u1', 'member', now())`,
			[]notification{{Kind: "member", User: "u1", Org: "o1"}}},
		{"member role changed", `UPDATE members SET role = 'admin' WHERE id = 'm1'`,
			[]notification{{Kind: "member", User: "u1", Org: "o1"}}},
		{"member updated without change", `UPDATE members SET role = 'admin' WHERE id = 'm1'`, nil},
		{"member moved to another user", `UPDATE members SET "userId" = 'u2' WHERE id = 'm1'`,
			[]notification{{Kind: "member", User: "u1", Org: "o1"}, {Kind: "member", User: "u2", Org: "o1"}}},
		{"member removed", `DELETE FROM members WHERE id = 'm1'`,
			[]notification{{Kind: "member", User: "u2", Org: "o1"}}},
		{"user banned", `UPDATE users SET banned = true WHERE id = 'u1'`,
			[]notification{{Kind: "user", User: "u1"}}},
		{"user renamed", `UPDATE users SET name = 'uno', "updatedAt" = now() WHERE id = 'u1'`, nil},
		{"global role changed", `UPDATE users SET role = 'admin' WHERE id = 'u1'`,
			[]notification{{Kind: "user", User: "u1"}}},
		{"custom role created", `INSERT INTO "organizationRoles" (id, "organizationId", role, permission) VALUES ('r1', 'o1', 'approver', '{}')`,
			[]notification{{Kind: "role", Org: "o1", Role: "approver"}}},
		{"custom role changed", `UPDATE "organizationRoles" SET permission = '{"leave":["read"]}' WHERE id = 'r1'`,
			[]notification{{Kind: "role", Org: "o1", Role: "approver"}}},
		{"custom role deleted", `DELETE FROM "organizationRoles" WHERE id = 'r1'`,
			[]notification{{Kind: "role", Org: "o1", Role: "approver"}}},
		{"organization renamed", `UPDATE organizations SET name = 'Acme Inc' WHERE id = 'o1'`, nil},
		{"organization slug changed", `UPDATE organizations SET slug = 'acme2' WHERE id = 'o1'`,
			[]notification{{Kind: "org", Org: "o1", Slugs: []string{"acme", "acme2"}}}},
		{"rolled back", `BEGIN; DELETE FROM members; UPDATE users SET banned = false; ROLLBACK`, nil},
		{"organization deleted, cascading to its members", `INSERT INTO members (id, "organizationId", "userId", role, "createdAt") VALUES ('m2', 'o1', 'u1', 'owner', now()); DELETE FROM organizations WHERE id = 'o1'`,
			[]notification{
				{Kind: "member", User: "u1", Org: "o1"},
				{Kind: "org", Org: "o1", Slugs: []string{"acme2"}},
				{Kind: "member", User: "u1", Org: "o1"},
			}},
		{"user deleted", `DELETE FROM users WHERE id = 'u1'`,
			[]notification{{Kind: "user", User: "u1"}}},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		s.Exec(t, tt.sql)
		sentinel()
		for _, want := range append(tt.want, isSentinel) {
			got := next(t, ch)
			if got.V != 1 || got.ID == "" || got.Src != "pg" || got.At == 0 {
				t.Errorf("%s: envelope %+v", tt.name, got)
			}
			if seen[got.ID] {
				t.Errorf("%s: id %s repeated", tt.name, got.ID)
			}
			seen[got.ID] = true
			if got.Kind != want.Kind || got.User != want.User || got.Org != want.Org || got.Role != want.Role || !slices.Equal(got.Slugs, want.Slugs) {
				t.Errorf("%s: got %+v, want %+v", tt.name, got, want)
			}
		}
	}
}

// A lost connection is replaced, LISTEN is re-issued (the caller is told,
// so it can flush), and notifications flow again.
func TestListenerReconnects(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	s := pgtest.NewSeeder(t, dbURL)
	applyTriggers(t, s)
	s.User(t, "u1", "one")
	const app = "authz-listen-test-reconnect"
	ch, connected := listen(t, dbURL, app)

	s.Exec(t, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, app)
	select {
	case <-connected:
	case <-time.After(patience):
		t.Fatalf("listener did not reconnect within %v", patience)
	}
	s.Exec(t, `UPDATE users SET banned = true WHERE id = 'u1'`)
	if n := next(t, ch); n.Kind != "user" || n.User != "u1" {
		t.Errorf("after reconnecting: %+v", n)
	}
}

// The listener's session is read-only like the pool's; this pins down the
// PostgreSQL behaviour that relies on: LISTEN works in a read-only session,
// writes do not.
func TestListenInReadOnlySession(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["default_transaction_read_only"] = "on"
	ctx := context.Background()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `LISTEN authz_invalidate`); err != nil {
		t.Fatalf("LISTEN in a read-only session: %v", err)
	}
	_, err = conn.Exec(ctx, `CREATE TABLE should_fail (x int)`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "25006" {
		t.Fatalf("write in the read-only session: %v, want read_only_sql_transaction (25006)", err)
	}
}
