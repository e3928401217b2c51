package pgtest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
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
			want := []string{"accounts", "apikeys", "invitations", "jwks", "members", "organizationRoles", "organizations", "sessions", "teamMembers", "teams", "twoFactors", "users", "verifications"}
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
		// As Better Auth 1.7.25's migrator creates them (schema.sql).
		want := []string{"accounts_userId_idx", "apikeys_configId_idx", "apikeys_key_idx", "apikeys_referenceId_idx",
			"invitations_email_idx", "invitations_organizationId_idx",
			"members_organizationId_idx", "members_userId_idx", "organizationRoles_organizationId_idx",
			"organizationRoles_role_idx", "sessions_userId_idx", "teamMembers_teamId_idx", "teamMembers_userId_idx",
			"teams_organizationId_idx", "twoFactors_secret_idx", "twoFactors_userId_idx", "verifications_identifier_idx"}
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

// columns is Columns without the nullability.
func columns(t *testing.T, databaseURL string) map[string]string {
	t.Helper()
	m := Columns(t, databaseURL)
	for col, typ := range m {
		m[col] = strings.TrimSuffix(typ, " not null")
	}
	return m
}

// Each layout names the tables and columns it says it does, with the
// types of the dump.
func TestLayouts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		layout Layout
		want   map[string]string // "table.column" -> type
		absent []string
	}{
		{Plural, map[string]string{"users.emailVerified": "boolean", "apikeys.key": "text", "teamMembers.userId": "text",
			"users.isAnonymous": "boolean", "users.twoFactorEnabled": "boolean", "apikeys.rateLimitMax": "integer"}, []string{"user.id"}},
		{Singular, map[string]string{"user.emailVerified": "boolean", "session.token": "text", "apikey.key": "text",
			"organizationRole.permission": "text", "teamMember.userId": "text", "account.userId": "text"}, []string{"users.id", "sessions.id"}},
		{Custom, map[string]string{"AppUser.email_verified": "boolean", "AppUser.ban_expires": "timestamp with time zone",
			"app_orgs.handle": "text", "app_org_members.organization_id": "text", "app_org_members.roles": "text",
			"app_sessions.session_token": "text", "app_team_members.user_id": "text", "app_api_keys.key_hash": "text",
			"app_api_keys.owner_id": "text"}, []string{"user.id", "users.id", "AppUser.emailVerified"}},
	}
	for _, tt := range tests {
		t.Run(tt.layout.String(), func(t *testing.T) {
			t.Parallel()
			d := NewDatabaseWith(t, Options{Layout: tt.layout})
			cols := columns(t, d.URL)
			for col, typ := range tt.want {
				if cols[col] != typ {
					t.Errorf("%s is %q, want %q", col, cols[col], typ)
				}
			}
			for _, col := range tt.absent {
				if _, ok := cols[col]; ok {
					t.Errorf("%s exists", col)
				}
			}
			// The layout's accessors name what exists.
			for _, mf := range [][2]string{{"user", "emailVerified"}, {"member", "organizationId"}, {"apikey", "key"}, {"session", "token"}} {
				if _, ok := cols[d.Layout.Table(mf[0])+"."+d.Layout.Column(mf[0], mf[1])]; !ok {
					t.Errorf("Table/Column(%s, %s) = %s.%s does not exist", mf[0], mf[1], d.Layout.Table(mf[0]), d.Layout.Column(mf[0], mf[1]))
				}
			}
		})
	}
}

// Without drops exactly the optional parts asked for, and the Seeder still
// writes every row it has a table for.
func TestWithout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		part   Part
		absent []string // in the Singular layout
	}{
		{DynamicRoles, []string{"organizationRole.id"}},
		{Teams, []string{"team.id", "teamMember.id", "session.activeTeamId", "invitation.teamId"}},
		{Admin, []string{"user.role", "user.banned", "user.banReason", "user.banExpires", "session.impersonatedBy"}},
		{Anonymous, []string{"user.isAnonymous"}},
		{TwoFactor, []string{"user.twoFactorEnabled"}},
		{APIKeys, []string{"apikey.id"}},
		{Sessions, []string{"session.id"}},
	}
	all := make([]Part, 0, len(tests))
	for _, tt := range tests {
		all = append(all, tt.part)
		t.Run(string(tt.part), func(t *testing.T) {
			t.Parallel()
			d := NewDatabaseWith(t, Options{Layout: Singular, Without: []Part{tt.part}})
			cols := columns(t, d.URL)
			for _, col := range tt.absent {
				if _, ok := cols[col]; ok {
					t.Errorf("%s exists", col)
				}
			}
			if _, ok := cols["user.emailVerified"]; !ok {
				t.Error("user.emailVerified is gone too")
			}
		})
	}
	t.Run("all at once, seeded", func(t *testing.T) {
		t.Parallel()
		d := NewDatabaseWith(t, Options{Layout: Custom, Without: all})
		seed := d.Seeder(t)
		seed.User(t, "u", "U")
		seed.SetUser(t, "u", "emailVerified", true)
		seed.Org(t, "o", "o")
		seed.Member(t, "o", "u", "owner")
		if got := query[string](t, d.URL, `SELECT string_agg(roles, ',') FROM app_org_members`); got != "owner" {
			t.Errorf("roles = %q", got)
		}
	})
}

// The Seeder writes every helper's row in each layout.
func TestSeederLayouts(t *testing.T) {
	t.Parallel()
	for _, l := range []Layout{Plural, Singular, Custom} {
		t.Run(l.String(), func(t *testing.T) {
			t.Parallel()
			d := NewDatabaseWith(t, Options{Layout: l})
			seed := d.Seeder(t)
			seed.User(t, "u", "U")
			seed.Ban(t, "u", nil)
			seed.SetUser(t, "u", "isAnonymous", true)
			seed.Org(t, "o", "slug")
			seed.Member(t, "o", "u", "admin")
			seed.SetRole(t, "o", "u", "owner")
			seed.CustomRole(t, "o", "billing", `{}`)
			seed.Team(t, "t", "o")
			seed.TeamMember(t, "t", "u")
			seed.Session(t, Session{ID: "s", Token: "tok", UserID: "u", ExpiresAt: time.Now().Add(time.Hour), ActiveOrganizationID: "o", ActiveTeamID: "t"})
			enabled := true
			seed.APIKey(t, APIKey{ID: "k", ConfigID: "default", ReferenceID: "u", Hash: "h", Enabled: &enabled})
			count := func(model string) int {
				return query[int](t, d.URL, "SELECT count(*)::int FROM "+l.T(model))
			}
			for _, m := range []string{"user", "organization", "member", "organizationRole", "team", "teamMember", "session", "apikey"} {
				if n := count(m); n != 1 {
					t.Errorf("%s rows = %d, want 1", m, n)
				}
			}
			if got := query[string](t, d.URL, "SELECT concat_ws('|', "+l.C("user", "banned")+", "+l.C("user", "isAnonymous")+") FROM "+l.T("user")); got != "t|t" {
				t.Errorf("banned|isAnonymous = %q", got)
			}
			seed.RemoveMember(t, "o", "u")
			if n := count("member"); n != 0 {
				t.Errorf("member rows after RemoveMember = %d", n)
			}
		})
	}
}

// Schema returns a copy: a test cannot change the layout for the others.
func TestLayoutSchemaIsACopy(t *testing.T) {
	t.Parallel()
	s := Custom.Schema()
	s.Tables["user"] = "changed"
	s.Fields["member"]["role"] = "changed"
	if Custom.Schema().Tables["user"] != "AppUser" || Custom.Column("member", "role") != "roles" {
		t.Error("changing a Schema() result changed the layout")
	}
}

// NewPgBouncer reaches the database through a transaction-pooling
// pgbouncer, which runs the connect query on its server connections.
func TestNewPgBouncer(t *testing.T) {
	t.Parallel()
	dbURL := NewDatabase(t)
	through := NewPgBouncer(t, dbURL, PgBouncerOptions{ConnectQuery: "SET default_transaction_read_only = on"})
	if through == dbURL {
		t.Fatal("the URL does not go through pgbouncer")
	}
	got := query[string](t, through, `SELECT current_database() || '|' || current_setting('default_transaction_read_only')`)
	want := dbURL[strings.LastIndex(dbURL, "/")+1:strings.Index(dbURL, "?")] + "|on"
	if got != want {
		t.Errorf("through pgbouncer: %q, want %q", got, want)
	}
}

// TestScratch: a driver's database has the layout's tables (or none),
// takes rows in bulk in its layout (Copy), and is gone after Drop.
func TestScratch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tt := range []struct {
		layout *Layout
		tables int
	}{{&Custom, 1}, {nil, 0}} {
		d, err := CreateScratch(ctx, "", "authz_scratch", tt.layout)
		if err != nil {
			testproc.RequireOrSkip(t, "%v", err)
		}
		if !strings.HasPrefix(d.Name, "authz_scratch_") {
			t.Errorf("name %q lacks its prefix", d.Name)
		}
		s := d.Seeder(t)
		n := s.Int(t, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name = $1", Custom.Table("member"))
		if n != int64(tt.tables) {
			t.Errorf("layout %v: %d member tables, want %d", tt.layout, n, tt.tables)
		}
		if tt.layout != nil {
			rows := [][]any{{"u1", "One", "u1@example.test", false}, {"u2", "Two", "u2@example.test", true}}
			if err := d.Copy(ctx, "user", []string{"id", "name", "email", "emailVerified"}, rows); err != nil {
				t.Fatal(err)
			}
			if n := s.Int(t, "SELECT count(*) FROM "+s.L.T("user")+" WHERE "+s.L.C("user", "emailVerified")); n != 1 {
				t.Errorf("%d verified users, want 1", n)
			}
		}
		if err := d.Drop(ctx); err != nil {
			t.Fatal(err)
		}
		admin := NewSeeder(t, AdminURL())
		if n := admin.Int(t, "SELECT count(*) FROM pg_database WHERE datname = $1", d.Name); n != 0 {
			t.Errorf("%s still exists after Drop", d.Name)
		}
	}
}

func TestNewCluster(t *testing.T) {
	t.Parallel()
	c := NewCluster(t)
	db, standbyURL := c.NewDatabase(t)
	s := db.Seeder(t)
	s.User(t, "u1", "Ann")
	c.WaitReplayed(t)
	if got := query[int64](t, standbyURL, `SELECT count(*) FROM public.users`); got != 1 {
		t.Fatalf("standby has %d users, want 1", got)
	}
	if !query[bool](t, standbyURL, `SELECT pg_is_in_recovery()`) {
		t.Fatal("standby is not in recovery")
	}

	// Paused replay holds the standby at its position.
	c.PauseReplay(t)
	s.User(t, "u2", "Bob")
	if got := query[int64](t, standbyURL, `SELECT count(*) FROM public.users`); got != 1 {
		t.Fatalf("paused standby has %d users, want 1", got)
	}
	c.ResumeReplay(t)
	c.WaitReplayed(t)
	if got := query[int64](t, standbyURL, `SELECT count(*) FROM public.users`); got != 2 {
		t.Fatalf("standby has %d users after resume, want 2", got)
	}
}
