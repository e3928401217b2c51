package pgtest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Seeder writes Better Auth rows the way Better Auth would, over its own
// writable connection pool (the sidecar's pool is read-only), in the names
// and columns of its database's layout. Every method takes the calling
// (sub)test so a failure is reported where it happened; it is safe for
// concurrent use.
type Seeder struct {
	pool *pgxpool.Pool
	db   Database
	// L is the database's layout, for statements a test writes itself
	// (seed.L.T("member"), seed.L.C("member", "role")).
	L Layout
}

// NewSeeder connects to databaseURL, a Plural database with every part
// (typically from NewDatabase), and closes the connections when t
// finishes.
func NewSeeder(t testing.TB, databaseURL string) *Seeder {
	t.Helper()
	return newSeeder(t, Database{URL: databaseURL, Layout: Plural})
}

// Seeder returns a Seeder writing to d in d's layout; it leaves out the
// columns of the parts d lacks.
func (d *Database) Seeder(t testing.TB) *Seeder {
	t.Helper()
	return newSeeder(t, *d)
}

func newSeeder(t testing.TB, d Database) *Seeder {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(d.URL)
	if err != nil {
		t.Fatalf("pgtest: seeder: %v", err)
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("pgtest: seeder: %v", err)
	}
	t.Cleanup(pool.Close)
	return &Seeder{pool: pool, db: d, L: d.Layout}
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

// Int runs a query that returns one integer (a count, say).
func (s *Seeder) Int(t testing.TB, sql string, args ...any) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var n int64
	if err := s.pool.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("pgtest: %s: %v", sql, err)
	}
	return n
}

// insert writes one row of model; values maps logical fields to values.
// Fields whose part the database lacks are left out.
func (s *Seeder) insert(t testing.TB, model string, fields []string, values ...any) {
	t.Helper()
	var cols, params []string
	var args []any
	for i, f := range fields {
		if !s.has(model, f) {
			continue
		}
		cols = append(cols, s.L.C(model, f))
		args = append(args, values[i])
		params = append(params, "$"+strconv.Itoa(len(args)))
	}
	s.Exec(t, "INSERT INTO "+s.L.T(model)+" ("+strings.Join(cols, ", ")+") VALUES ("+strings.Join(params, ", ")+")", args...)
}

// has reports whether the database has model.field (its part was not
// dropped).
func (s *Seeder) has(model, field string) bool {
	switch {
	case model == "user" && (field == "role" || field == "banned" || field == "banReason" || field == "banExpires"),
		model == "session" && field == "impersonatedBy":
		return s.db.Has(Admin)
	case model == "user" && field == "isAnonymous":
		return s.db.Has(Anonymous)
	case model == "user" && field == "twoFactorEnabled":
		return s.db.Has(TwoFactor)
	case model == "session" && field == "activeTeamId":
		return s.db.Has(Teams)
	}
	return true
}

// User inserts a user row as Better Auth's sign-up does: banned = false,
// role "user" (when the admin columns exist), email <id>@example.test.
func (s *Seeder) User(t testing.TB, id, name string) {
	t.Helper()
	s.insert(t, "user", []string{"id", "name", "email", "emailVerified", "role", "banned"},
		id, name, id+"@example.test", false, "user", false)
}

// SetUser sets one field of a user row (emailVerified, isAnonymous,
// twoFactorEnabled, role, banned, ...); value nil stores NULL.
func (s *Seeder) SetUser(t testing.TB, id, field string, value any) {
	t.Helper()
	s.Exec(t, "UPDATE "+s.L.T("user")+" SET "+s.L.C("user", field)+" = $2 WHERE "+s.L.C("user", "id")+" = $1", id, value)
}

// Ban bans a user as the admin plugin does; expires nil = forever.
func (s *Seeder) Ban(t testing.TB, userID string, expires *time.Time) {
	t.Helper()
	s.Exec(t, "UPDATE "+s.L.T("user")+" SET "+s.L.C("user", "banned")+" = true, "+s.L.C("user", "banReason")+" = 'test', "+
		s.L.C("user", "banExpires")+" = $2 WHERE "+s.L.C("user", "id")+" = $1", userID, expires)
}

// Org inserts an organization row named after its slug.
func (s *Seeder) Org(t testing.TB, id, slug string) {
	t.Helper()
	s.insert(t, "organization", []string{"id", "name", "slug", "createdAt"}, id, slug, slug, time.Now())
}

// Member inserts a member row and returns its id. role is stored verbatim
// ("admin,member" included); calling it twice for the same (org, user)
// creates two rows, which Better Auth's schema allows.
func (s *Seeder) Member(t testing.TB, orgID, userID, role string) string {
	t.Helper()
	id := "mem_" + randomHex(8)
	// clock_timestamp, not now(): rows inserted in one transaction keep their order.
	s.Exec(t, "INSERT INTO "+s.L.T("member")+" ("+s.L.C("member", "id")+", "+s.L.C("member", "organizationId")+", "+
		s.L.C("member", "userId")+", "+s.L.C("member", "role")+", "+s.L.C("member", "createdAt")+
		") VALUES ($1, $2, $3, $4, clock_timestamp())", id, orgID, userID, role)
	return id
}

// SetRole replaces the role of every member row of (org, user).
func (s *Seeder) SetRole(t testing.TB, orgID, userID, role string) {
	t.Helper()
	s.Exec(t, "UPDATE "+s.L.T("member")+" SET "+s.L.C("member", "role")+" = $3 WHERE "+
		s.L.C("member", "organizationId")+" = $1 AND "+s.L.C("member", "userId")+" = $2", orgID, userID, role)
}

// RemoveMember deletes every member row of (org, user).
func (s *Seeder) RemoveMember(t testing.TB, orgID, userID string) {
	t.Helper()
	s.Exec(t, "DELETE FROM "+s.L.T("member")+" WHERE "+s.L.C("member", "organizationId")+" = $1 AND "+
		s.L.C("member", "userId")+" = $2", orgID, userID)
}

// CustomRole inserts an organizationRole row (a dynamic role) with its
// permission JSON stored verbatim, e.g. {"project":["read","update"]}.
// Better Auth stores role names lowercased; pass them that way unless the
// test is about something else.
func (s *Seeder) CustomRole(t testing.TB, orgID, role, permJSON string) {
	t.Helper()
	s.insert(t, "organizationRole", []string{"id", "organizationId", "role", "permission"},
		"role_"+randomHex(8), orgID, role, permJSON)
}

// Team inserts a team row of an organization.
func (s *Seeder) Team(t testing.TB, id, orgID string) {
	t.Helper()
	s.insert(t, "team", []string{"id", "name", "memberCount", "organizationId", "createdAt"}, id, id, 0, orgID, time.Now())
}

// TeamMember inserts a teamMember row.
func (s *Seeder) TeamMember(t testing.TB, teamID, userID string) {
	t.Helper()
	s.insert(t, "teamMember", []string{"id", "teamId", "userId", "createdAt"}, "tm_"+randomHex(8), teamID, userID, time.Now())
}

// Session is a session row to insert; empty optional fields are NULL.
type Session struct {
	ID, Token, UserID    string
	ExpiresAt            time.Time
	ActiveOrganizationID string
	ActiveTeamID         string
	ImpersonatedBy       string
}

// Session inserts a session row.
func (s *Seeder) Session(t testing.TB, r Session) {
	t.Helper()
	now := time.Now()
	s.insert(t, "session",
		[]string{"id", "token", "userId", "expiresAt", "createdAt", "updatedAt", "activeOrganizationId", "activeTeamId", "impersonatedBy"},
		r.ID, r.Token, r.UserID, r.ExpiresAt, now, now, nullable(r.ActiveOrganizationID), nullable(r.ActiveTeamID), nullable(r.ImpersonatedBy))
}

// APIKey is an apikey row to insert; nil pointers are NULL.
type APIKey struct {
	ID, ConfigID, ReferenceID string
	// Hash is the stored key column (SHA-256, base64url, no padding).
	Hash                string
	Enabled             *bool
	ExpiresAt           *time.Time
	Remaining           *int
	RateLimitEnabled    *bool
	RateLimitTimeWindow *int
	RateLimitMax        *int
	Permissions         *string
}

// APIKey inserts an apikey row.
func (s *Seeder) APIKey(t testing.TB, k APIKey) {
	t.Helper()
	now := time.Now()
	s.insert(t, "apikey",
		[]string{"id", "configId", "referenceId", "key", "enabled", "expiresAt", "remaining", "rateLimitEnabled",
			"rateLimitTimeWindow", "rateLimitMax", "permissions", "createdAt", "updatedAt"},
		k.ID, k.ConfigID, k.ReferenceID, k.Hash, k.Enabled, k.ExpiresAt, k.Remaining, k.RateLimitEnabled,
		k.RateLimitTimeWindow, k.RateLimitMax, k.Permissions, now, now)
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Copy bulk-writes rows of model (COPY, for data sets too large for a
// statement per row) in the database's layout, fields naming logical
// columns as the Seeder's helpers do, then ANALYZEs the table so that
// queries are planned for its size. It returns an error rather than
// failing a test: drivers use it with CreateScratch.
func (d *Database) Copy(ctx context.Context, model string, fields []string, rows [][]any) error {
	conn, err := connect(ctx, d.URL)
	if err != nil {
		return fmt.Errorf("pgtest: copy %s: %w", model, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	cols := make([]string, len(fields))
	for i, f := range fields {
		cols[i] = d.Layout.Column(model, f)
	}
	n, err := conn.CopyFrom(ctx, pgx.Identifier{"public", d.Layout.Table(model)}, cols, pgx.CopyFromRows(rows))
	if err != nil {
		return fmt.Errorf("pgtest: copy %s: %w", model, err)
	}
	if int(n) != len(rows) {
		return fmt.Errorf("pgtest: copy %s: %d rows written, want %d", model, n, len(rows))
	}
	if _, err := conn.Exec(ctx, "ANALYZE "+d.Layout.T(model)); err != nil {
		return fmt.Errorf("pgtest: analyze %s: %w", model, err)
	}
	return nil
}
