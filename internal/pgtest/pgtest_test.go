package pgtest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func query[T any](t *testing.T, databaseURL, sql string, args ...any) T {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var v T
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

func TestNewDatabase(t *testing.T) {
	t.Parallel()
	var first, second string
	t.Run("create", func(t *testing.T) {
		first, second = NewDatabase(t), NewDatabase(t)
		if first == second {
			t.Fatalf("two calls returned the same database %s", first)
		}
		for _, u := range []string{first, second} {
			tables := query[[]string](t, u, `SELECT array_agg(tablename::text ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'`)
			want := []string{"accounts", "invitations", "jwks", "members", "organizationRoles", "organizations", "sessions", "teamMembers", "teams", "users", "verifications"}
			if fmt.Sprint(tables) != fmt.Sprint(want) {
				t.Errorf("tables = %v, want %v", tables, want)
			}
		}
	})
	// The subtest has finished: its databases must be gone.
	admin := os.Getenv(EnvURL)
	if admin == "" {
		admin = DefaultURL
	}
	for _, u := range []string{first, second} {
		if u == "" {
			continue // skipped above
		}
		name := u[strings.LastIndex(u, "/")+1 : strings.Index(u, "?")]
		if query[bool](t, admin, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name) {
			t.Errorf("database %s still exists after its test ended", name)
		}
	}
}

// The schema must keep the Better Auth quirks the sidecar is written for.
func TestSchemaFacts(t *testing.T) {
	t.Parallel()
	dbURL := NewDatabase(t)
	seed := NewSeeder(t, dbURL)
	seed.Org(t, "o", "o")
	seed.Exec(t, `INSERT INTO users (id, name, email, "emailVerified") VALUES ('u', 'u', 'u@example.test', false)`)

	t.Run("users.banned has no default", func(t *testing.T) {
		if query[*bool](t, dbURL, `SELECT banned FROM users WHERE id = 'u'`) != nil {
			t.Error("banned is not NULL")
		}
	})
	t.Run("two members rows for one (org, user) are allowed", func(t *testing.T) {
		seed.Member(t, "o", "u", "member")
		seed.Member(t, "o", "u", "admin")
		if n := query[int](t, dbURL, `SELECT count(*) FROM members WHERE "userId" = 'u'`); n != 2 {
			t.Errorf("members rows = %d, want 2", n)
		}
	})
	t.Run("indexes", func(t *testing.T) {
		got := query[[]string](t, dbURL, `SELECT array_agg(indexname::text ORDER BY indexname) FROM pg_indexes
			WHERE schemaname = 'public' AND indexname LIKE '%\_idx'`)
		// As Better Auth 1.7.25's migrator creates them (test/betterauth/schema.sql).
		want := []string{"accounts_userId_idx", "invitations_email_idx", "invitations_organizationId_idx",
			"members_organizationId_idx", "members_userId_idx", "organizationRoles_organizationId_idx",
			"organizationRoles_role_idx", "sessions_userId_idx", "teamMembers_teamId_idx", "teamMembers_userId_idx",
			"teams_organizationId_idx", "verifications_identifier_idx"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("indexes = %v, want %v", got, want)
		}
	})
	t.Run("deleting an organization cascades to members and roles", func(t *testing.T) {
		seed.Org(t, "gone", "gone")
		seed.Member(t, "gone", "u", "owner")
		seed.CustomRole(t, "gone", "billing", `{}`)
		seed.Exec(t, `DELETE FROM organizations WHERE id = 'gone'`)
		n := query[int](t, dbURL, `SELECT (SELECT count(*) FROM members WHERE "organizationId" = 'gone')
			+ (SELECT count(*) FROM "organizationRoles" WHERE "organizationId" = 'gone')`)
		if n != 0 {
			t.Errorf("%d rows survived the organization", n)
		}
	})
}

func TestSeeder(t *testing.T) {
	t.Parallel()
	dbURL := NewDatabase(t)
	seed := NewSeeder(t, dbURL)
	until := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	seed.User(t, "u", "User")
	seed.User(t, "v", "Other")
	seed.Org(t, "o", "slug")

	tests := []struct {
		name   string
		change func(t *testing.T)
		sql    string
		want   string
	}{
		{"user", func(*testing.T) {}, `SELECT concat_ws('|', name, email, role, banned) FROM users WHERE id = 'u'`, "User|u@example.test|user|f"},
		{"ban forever", func(t *testing.T) { seed.Ban(t, "u", nil) }, `SELECT concat_ws('|', banned, coalesce("banExpires"::text, 'never')) FROM users WHERE id = 'u'`, "t|never"},
		{"ban until", func(t *testing.T) { seed.Ban(t, "v", &until) }, `SELECT concat_ws('|', banned, "banExpires" = '2030-01-01Z') FROM users WHERE id = 'v'`, "t|t"},
		{"org", func(*testing.T) {}, `SELECT concat_ws('|', name, slug) FROM organizations WHERE id = 'o'`, "slug|slug"},
		{"member", func(t *testing.T) { seed.Member(t, "o", "u", "admin,member") }, `SELECT string_agg(role, ';') FROM members WHERE "userId" = 'u'`, "admin,member"},
		{"set role", func(t *testing.T) { seed.SetRole(t, "o", "u", "owner") }, `SELECT string_agg(role, ';') FROM members WHERE "userId" = 'u'`, "owner"},
		{"remove member", func(t *testing.T) { seed.RemoveMember(t, "o", "u") }, `SELECT count(*)::text FROM members WHERE "userId" = 'u'`, "0"},
		{"custom role", func(t *testing.T) { seed.CustomRole(t, "o", "billing", `{"project":["read"]}`) }, `SELECT concat_ws('|', role, permission) FROM "organizationRoles" WHERE "organizationId" = 'o'`, `billing|{"project":["read"]}`},
	}
	// Sequential: later steps build on earlier ones.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.change(t)
			if got := query[string](t, dbURL, tt.sql); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// fakeTB records what unreachable asks of a test.
type fakeTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Skip(args ...any)  { f.skipped, f.msg = true, fmt.Sprint(args...) }
func (f *fakeTB) Fatal(args ...any) { f.failed, f.msg = true, fmt.Sprint(args...) }

func TestUnreachable(t *testing.T) {
	tests := []struct {
		ci          string
		wantSkipped bool
		wantFailed  bool
	}{
		{ci: "", wantSkipped: true},
		{ci: "false", wantSkipped: true},
		{ci: "true", wantFailed: true},
	}
	for _, tt := range tests {
		t.Run("CI="+tt.ci, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			f := &fakeTB{}
			unreachable(f, "postgres://postgres:hunter2@127.0.0.1:1/postgres", fmt.Errorf("connection refused"))
			if f.skipped != tt.wantSkipped || f.failed != tt.wantFailed {
				t.Errorf("skipped=%v failed=%v, want %v %v", f.skipped, f.failed, tt.wantSkipped, tt.wantFailed)
			}
			if !strings.Contains(f.msg, "unreachable") || !strings.Contains(f.msg, EnvURL) {
				t.Errorf("message %q does not say what is wrong and how to fix it", f.msg)
			}
			if strings.Contains(f.msg, "hunter2") {
				t.Errorf("message %q leaks the password", f.msg)
			}
		})
	}
}

// schema.sql must be the dump of what Better Auth's own migrator creates, so
// unit tests run on the schema the e2e suite gets from the real thing.
// Regenerate both with the steps in test/betterauth/README.md.
func TestSchemaIsBetterAuthsDump(t *testing.T) {
	t.Parallel()
	dump, err := os.ReadFile("../../test/betterauth/schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	if string(dump) != schemaSQL {
		t.Fatal("internal/pgtest/schema.sql differs from test/betterauth/schema.sql; copy the migrator's dump over")
	}
}
