package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Seeder writes Better Auth rows the way Better Auth would, over its own
// writable connection pool (the sidecar's pool is read-only). Every method
// takes the calling (sub)test so a failure is reported where it happened;
// it is safe for concurrent use.
type Seeder struct {
	pool *pgxpool.Pool
}

// NewSeeder connects to databaseURL (typically from NewDatabase) and closes
// the connections when t finishes.
func NewSeeder(t testing.TB, databaseURL string) *Seeder {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		t.Fatalf("pgtest: seeder: %v", err)
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("pgtest: seeder: %v", err)
	}
	t.Cleanup(pool.Close)
	return &Seeder{pool: pool}
}

// Exec runs one statement, for rows the helpers below do not cover (for
// example users.banned = NULL, or bulk rows with generate_series).
func (s *Seeder) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.pool.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("pgtest: %s: %v", sql, err)
	}
}

// User inserts a users row as Better Auth's sign-up does: banned = false,
// role "user", email <id>@example.test.
func (s *Seeder) User(t testing.TB, id, name string) {
	t.Helper()
	s.Exec(t, `INSERT INTO users (id, name, email, "emailVerified", role, banned)
		VALUES ($1, $2, $1 || '@example.test', false, 'user', false)`, id, name)
}

// Ban bans a user as the admin plugin does; expires nil = forever.
func (s *Seeder) Ban(t testing.TB, userID string, expires *time.Time) {
	t.Helper()
	s.Exec(t, `UPDATE users SET banned = true, "banReason" = 'test', "banExpires" = $2 WHERE id = $1`, userID, expires)
}

// Org inserts an organizations row named after its slug.
func (s *Seeder) Org(t testing.TB, id, slug string) {
	t.Helper()
	s.Exec(t, `INSERT INTO organizations (id, name, slug, "createdAt") VALUES ($1, $2, $2, now())`, id, slug)
}

// Member inserts a members row and returns its id. role is stored verbatim
// ("admin,member" included); calling it twice for the same (org, user)
// creates two rows, which Better Auth's schema allows.
func (s *Seeder) Member(t testing.TB, orgID, userID, role string) string {
	t.Helper()
	id := "mem_" + randomHex(8)
	// clock_timestamp, not now(): rows inserted in one transaction keep their order.
	s.Exec(t, `INSERT INTO members (id, "organizationId", "userId", role, "createdAt")
		VALUES ($1, $2, $3, $4, clock_timestamp())`, id, orgID, userID, role)
	return id
}

// SetRole replaces the role of every members row of (org, user).
func (s *Seeder) SetRole(t testing.TB, orgID, userID, role string) {
	t.Helper()
	s.Exec(t, `UPDATE members SET role = $3 WHERE "organizationId" = $1 AND "userId" = $2`, orgID, userID, role)
}

// RemoveMember deletes every members row of (org, user).
func (s *Seeder) RemoveMember(t testing.TB, orgID, userID string) {
	t.Helper()
	s.Exec(t, `DELETE FROM members WHERE "organizationId" = $1 AND "userId" = $2`, orgID, userID)
}

// CustomRole inserts an "organizationRoles" row (a dynamic role) with its
// permission JSON stored verbatim, e.g. {"project":["read","update"]}.
// Better Auth stores role names lowercased; pass them that way unless the
// test is about something else.
func (s *Seeder) CustomRole(t testing.TB, orgID, role, permJSON string) {
	t.Helper()
	s.Exec(t, `INSERT INTO "organizationRoles" (id, "organizationId", role, permission)
		VALUES ($1, $2, $3, $4)`, "role_"+randomHex(8), orgID, role, permJSON)
}
