package baclient_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
	"github.com/authz-sidecar/authz-sidecar/test/baclient"
)

const adminEmail = "admin@example.test"

// Table and column names of each SCHEMA mode (test/betterauth/README.md),
// by Better Auth's model and field names; absent: the same.
var (
	tables = map[string]map[string]string{
		"plural": {
			"user": "users", "session": "sessions", "account": "accounts", "verification": "verifications",
			"organization": "organizations", "member": "members", "invitation": "invitations", "team": "teams",
			"teamMember": "teamMembers", "organizationRole": "organizationRoles", "jwks": "jwks",
			"apikey": "apikeys", "twoFactor": "twoFactors",
		},
		"singular": {},
		"custom": {
			"user": "auth_users", "session": "auth_sessions", "account": "auth_accounts",
			"verification": "auth_verifications", "organization": "auth_organizations", "member": "auth_members",
			"invitation": "auth_invitations", "team": "auth_teams", "teamMember": "auth_team_members",
			"organizationRole": "auth_org_roles", "jwks": "auth_jwks", "apikey": "auth_apikeys",
			"twoFactor": "auth_two_factors",
		},
	}
	columns = map[string]map[string]string{
		"custom": {
			"user.emailVerified": "email_verified", "session.userId": "user_id",
			"session.activeOrganizationId": "active_organization_id", "member.role": "member_role",
			"member.userId": "user_id", "organizationRole.role": "role_name", "apikey.referenceId": "owner_id",
		},
	}
)

// fixture is a Better Auth fixture server of its own database.
type fixture struct {
	*baclient.Client
	t      *testing.T
	mode   string
	dbURL  string
	server *testproc.BetterAuth
}

// newFixture starts the fixture app with TEST_ROUTES=1, ADMIN_EMAILS=adminEmail,
// SCHEMA=mode and env on a new database.
func newFixture(t *testing.T, mode string, env ...string) *fixture {
	t.Helper()
	f := &fixture{t: t, mode: mode, dbURL: pgtest.NewEmptyDatabase(t)}
	f.start(env...)
	return f
}

// start (re)starts the server on f's database.
func (f *fixture) start(env ...string) {
	f.t.Helper()
	f.server = testproc.StartBetterAuth(f.t, testproc.BetterAuthOptions{
		DatabaseURL: f.dbURL,
		Env:         append([]string{"SCHEMA=" + f.mode, "TEST_ROUTES=1", "ADMIN_EMAILS=" + adminEmail}, env...),
	})
	f.Client = baclient.New(f.server.URL)
}

// table is the quoted name of model's table in f's mode.
func (f *fixture) table(model string) string {
	name := model
	if n, ok := tables[f.mode][model]; ok {
		name = n
	}
	return pgx.Identifier{name}.Sanitize()
}

// col is the quoted name of model.field's column in f's mode.
func (f *fixture) col(model, field string) string {
	name := field
	if n, ok := columns[f.mode][model+"."+field]; ok {
		name = n
	}
	return pgx.Identifier{name}.Sanitize()
}

// query runs sql, with {model} and {model.field} replaced by f's names, and
// scans the first row into dest; false if there is none.
func (f *fixture) query(sql string, args []any, dest ...any) bool {
	f.t.Helper()
	sql = f.names(sql)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.dbURL)
	if err != nil {
		f.t.Fatal(err)
	}
	defer conn.Close(ctx)
	err = conn.QueryRow(ctx, sql, args...).Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return false
	}
	if err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
	return true
}

// exec runs sql (names as in query), for what Better Auth would refuse to write.
func (f *fixture) exec(sql string, args ...any) {
	f.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.dbURL)
	if err != nil {
		f.t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, f.names(sql), args...); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
}

// count is the number of rows of sql (a SELECT count(*) ...).
func (f *fixture) count(sql string, args ...any) int {
	f.t.Helper()
	var n int
	f.query(sql, args, &n)
	return n
}

func (f *fixture) names(sql string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(sql, '{')
		if i < 0 {
			b.WriteString(sql)
			return b.String()
		}
		j := strings.IndexByte(sql[i:], '}')
		if j < 0 {
			f.t.Fatalf("unclosed { in %q", sql)
		}
		b.WriteString(sql[:i])
		ref := sql[i+1 : i+j]
		if model, field, ok := strings.Cut(ref, "."); ok {
			b.WriteString(f.col(model, field))
		} else {
			b.WriteString(f.table(ref))
		}
		sql = sql[i+j+1:]
	}
}

// password is every test user's password.
func password(name string) string { return "password-" + name }

// signUp signs a new user up as name@example.test.
func (f *fixture) signUp(name string) *baclient.Session {
	f.t.Helper()
	s, err := f.SignUp(context.Background(), name+"@example.test", password(name), name)
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

// wantStatus checks that err is Better Auth's answer with HTTP status and,
// if code is not empty, that error code.
func wantStatus(t *testing.T, err error, status int, code string) {
	t.Helper()
	var e *baclient.Error
	if !errors.As(err, &e) {
		t.Fatalf("got error %v, want HTTP %d %s", err, status, code)
	}
	if e.Status != status || (code != "" && e.Code != code) {
		t.Fatalf("got HTTP %d %s (%s), want HTTP %d %s", e.Status, e.Code, e.Body, status, code)
	}
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 5s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// notFound reports whether err is a 404 (an endpoint the configuration lacks).
func notFound(err error) bool {
	var e *baclient.Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}
