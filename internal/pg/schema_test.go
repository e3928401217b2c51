package pg_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/pg"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// wantSchemaError checks that err is a schema error, fit for /readyz and
// the source metrics, whose message holds every part of want.
func wantSchemaError(t *testing.T, err error, want ...string) {
	t.Helper()
	if !errors.Is(err, pg.ErrSchema) || !errors.Is(err, roles.ErrUnavailable) {
		t.Fatalf("err = %v, want pg.ErrSchema and roles.ErrUnavailable", err)
	}
	var e *pg.Error
	if !errors.As(err, &e) || e.SourceCause() != pg.CauseSchema {
		t.Errorf("err = %#v, want a pg.Error with cause schema", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not say %q:\n%v", w, err)
		}
	}
}

func TestNaming(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		layout     pgtest.Layout
		empty      bool   // an empty database instead
		ddl        string // run before the check
		naming     string // schema.naming; "" is auto
		wantNaming string
		wantErr    []string
	}{
		{name: "auto finds plural", layout: pgtest.Plural, wantNaming: "plural"},
		{name: "auto finds singular", layout: pgtest.Singular, wantNaming: "singular"},
		{name: "explicit plural", layout: pgtest.Plural, naming: "plural", wantNaming: "plural"},
		{name: "explicit singular", layout: pgtest.Singular, naming: "singular", wantNaming: "singular"},
		{
			name: "auto with both sets", layout: pgtest.Singular,
			ddl: `CREATE TABLE users (id text); CREATE TABLE organizations (id text); CREATE TABLE members (id text)`,
			wantErr: []string{"both Better Auth's plural tables (users, organizations, members) and its singular tables (user, organization, member) exist",
				`in search_path "$user", public;`, "set schema.naming to plural or singular"},
		},
		{
			name: "both sets, naming says which", layout: pgtest.Singular, naming: "singular", wantNaming: "singular",
			ddl: `CREATE TABLE users (id text); CREATE TABLE organizations (id text); CREATE TABLE members (id text)`,
		},
		{
			name: "auto with neither set", empty: true,
			wantErr: []string{"neither Better Auth's plural tables (users, organizations, members) nor its singular tables (user, organization, member) all exist",
				"(found: none)", "run Better Auth's migrator, or set schema.naming"},
		},
		{
			name: "auto with an incomplete set", layout: pgtest.Singular, ddl: `DROP TABLE "member" CASCADE`,
			wantErr: []string{"neither", "(found: user, organization)"},
		},
		{
			name: "plural asked, singular found", layout: pgtest.Singular, naming: "plural",
			wantErr: []string{`table "users" (user) is missing`, `table "organizations" (organization) is missing`, `table "members" (member) is missing`,
				"state them in the policy's schema section"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var dbURL string
			if tt.empty {
				dbURL = pgtest.NewEmptyDatabase(t)
			} else {
				dbURL = pgtest.NewDatabaseWith(t, pgtest.Options{Layout: tt.layout}).URL
			}
			if tt.ddl != "" {
				pgtest.NewSeeder(t, dbURL).Exec(t, tt.ddl)
			}
			db := openDB(t, dbURL, pg.Config{Schema: policy.Schema{Naming: tt.naming}})
			_, err := db.Check(context.Background())
			if tt.wantErr != nil {
				wantSchemaError(t, err, tt.wantErr...)
				// Nothing was resolved: queries fail the same way.
				_, err := pg.NewMemberRepository(db).Membership(context.Background(), roles.Subject{UserID: "u"})
				wantSchemaError(t, err, tt.wantErr[0])
				return
			}
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if naming, _ := db.Tables(); naming != tt.wantNaming {
				t.Errorf("naming = %q, want %q", naming, tt.wantNaming)
			}
		})
	}
}

// A mismatch names the table or column (as the app names it, with its
// model when renamed) and the Better Auth option that creates it.
func TestSchemaCheckErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		layout  pgtest.Layout
		ddl     string
		wantErr []string
	}{
		{
			name: "required column", layout: pgtest.Singular, ddl: `ALTER TABLE "member" DROP COLUMN role`,
			wantErr: []string{`column "member"."role" is missing: the organization plugin (organization()) adds it; run Better Auth's migrator`},
		},
		{
			name: "required table", layout: pgtest.Singular, ddl: `DROP TABLE "organization" CASCADE`,
			wantErr: []string{`table "organization" is missing: the organization plugin (organization()) creates it`},
		},
		{
			name: "half of teams", layout: pgtest.Singular, ddl: `DROP TABLE "teamMember"`,
			wantErr: []string{`table "teamMember" is missing: organization({ teams: { enabled: true } }) creates it; run Better Auth's migrator (table "team" exists, so teams is on)`},
		},
		{
			name: "half of the admin plugin", layout: pgtest.Singular, ddl: `ALTER TABLE "user" DROP COLUMN banned`,
			wantErr: []string{`column "user"."banned" is missing: the admin plugin (admin()) adds it; run Better Auth's migrator (column "user"."role" exists, so admin is on)`},
		},
		{
			name: "admin's session column", layout: pgtest.Singular, ddl: `ALTER TABLE "session" DROP COLUMN "impersonatedBy"`,
			wantErr: []string{`column "session"."impersonatedBy" is missing: the admin plugin (admin()) adds it`},
		},
		{
			name: "api key column", layout: pgtest.Plural, ddl: `ALTER TABLE apikeys DROP COLUMN "rateLimitMax"`,
			wantErr: []string{`column "apikeys"."rateLimitMax" (apikey.rateLimitMax) is missing: the api-key plugin (apiKey() from @better-auth/api-key) adds it`},
		},
		{
			name: "wrong type", layout: pgtest.Singular, ddl: `ALTER TABLE "member" ALTER COLUMN "createdAt" TYPE text`,
			wantErr: []string{`column "member"."createdAt" is text, want timestamp with time zone (what Better Auth's migrator creates)`},
		},
		{
			name: "bytes for text", layout: pgtest.Singular, ddl: `ALTER TABLE apikey ALTER COLUMN key TYPE bytea USING key::bytea`,
			wantErr: []string{`column "apikey"."key" is bytea, want text`},
		},
		{
			name: "renamed column", layout: pgtest.Custom, ddl: `ALTER TABLE app_org_members DROP COLUMN roles`,
			wantErr: []string{`column "app_org_members"."roles" (member.role) is missing`},
		},
		{
			name: "several at once", layout: pgtest.Singular,
			ddl: `ALTER TABLE "user" DROP COLUMN "emailVerified"; ALTER TABLE organization DROP COLUMN slug`,
			wantErr: []string{`column "user"."emailVerified" is missing: Better Auth's core schema adds it`,
				`column "organization"."slug" is missing`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := pgtest.NewDatabaseWith(t, pgtest.Options{Layout: tt.layout})
			d.Seeder(t).Exec(t, tt.ddl)
			db := openDB(t, d.URL, pg.Config{Schema: d.Schema()})
			_, err := db.Check(context.Background())
			wantSchemaError(t, err, tt.wantErr...)
			_, err = db.Warm(context.Background())
			wantSchemaError(t, err, tt.wantErr...)
		})
	}
}

// newRole creates a login role (cluster-wide: a name of its own) with the
// given options, runs grants (with %[1]s for its quoted name) in d, and
// returns d's URL for that role. The role goes at the end, its grants first.
func newRole(t *testing.T, d *pgtest.Database, options string, grants ...string) (string, string) {
	t.Helper()
	seed := d.Seeder(t)
	role := fmt.Sprintf("authz_test_reader_%d_%d", os.Getpid(), time.Now().UnixNano())
	quoted := `"` + role + `"`
	seed.Exec(t, `CREATE ROLE `+quoted+` LOGIN `+options)
	t.Cleanup(func() {
		seed.Exec(t, `DROP OWNED BY `+quoted)
		seed.Exec(t, `DROP ROLE `+quoted)
	})
	for _, g := range grants {
		seed.Exec(t, fmt.Sprintf(g, quoted))
	}
	u, err := url.Parse(d.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	return role, u.String()
}

// A role that may not read a column is told which GRANT it lacks.
func TestSchemaCheckPrivileges(t *testing.T) {
	t.Parallel()
	d := pgtest.NewDatabaseWith(t, pgtest.Options{Layout: pgtest.Singular})
	role, roleURL := newRole(t, d, "",
		`GRANT SELECT ON "user", organization, "organizationRole", team, "teamMember", session, apikey TO %[1]s`,
		`GRANT SELECT (id, "organizationId", "userId", "createdAt") ON "member" TO %[1]s`)
	db := openDB(t, roleURL, pg.Config{})
	_, err := db.Check(context.Background())
	wantSchemaError(t, err, `role "`+role+`" may not read "member" (columns role): GRANT SELECT ON "public"."member" TO "`+role+`"`)

	d.Seeder(t).Exec(t, `GRANT SELECT ON "member" TO "`+role+`"`)
	if _, err := db.Warm(context.Background()); err != nil {
		t.Fatalf("Warm after the grant: %v", err)
	}
}

// Warm takes the connections it can get: a server that allows fewer than
// MaxConns still lets the sidecar become ready.
func TestWarmWithFewerConnections(t *testing.T) {
	t.Parallel()
	d := pgtest.NewDatabaseWith(t, pgtest.Options{Layout: pgtest.Singular})
	_, roleURL := newRole(t, d, "CONNECTION LIMIT 2",
		`GRANT SELECT ON "user", organization, "member", "organizationRole", team, "teamMember", session, apikey TO %[1]s`)
	db := openDB(t, roleURL, pg.Config{MaxConns: 4})
	if _, err := db.Warm(context.Background()); err != nil {
		t.Fatalf("Warm: %v", err)
	}
	if n := pg.PoolOf(db).Stat().TotalConns(); n != 2 {
		t.Errorf("%d connections, want the 2 the role may open", n)
	}
}

// Optional parts may be absent: the check passes, Features says what is
// off, and no query names what does not exist.
func TestFeatures(t *testing.T) {
	t.Parallel()
	all := pg.Features{DynamicRoles: true, Teams: true, Admin: true, Anonymous: true, TwoFactor: true, APIKeys: true, Sessions: true, ReadOnly: true}
	tests := []struct {
		without   []pgtest.Part
		want      pg.Features
		notInSQL  []string // table or column names no statement may hold
		wantOff   []string
		wantBuilt []string // statements built
	}{
		{want: all, wantBuilt: []string{"membership", "session by token", "session by id", "api key"}},
		{
			without:  []pgtest.Part{pgtest.DynamicRoles},
			want:     pg.Features{Teams: true, Admin: true, Anonymous: true, TwoFactor: true, APIKeys: true, Sessions: true, ReadOnly: true},
			notInSQL: []string{`"organizationRole"`}, wantOff: []string{"dynamic_roles"},
			wantBuilt: []string{"membership", "session by token", "session by id", "api key"},
		},
		{
			without:  []pgtest.Part{pgtest.Teams},
			want:     pg.Features{DynamicRoles: true, Admin: true, Anonymous: true, TwoFactor: true, APIKeys: true, Sessions: true, ReadOnly: true},
			notInSQL: []string{`"team"`, `"teamMember"`, `"activeTeamId"`}, wantOff: []string{"teams"},
			wantBuilt: []string{"membership", "session by token", "session by id", "api key"},
		},
		{
			without:  []pgtest.Part{pgtest.Admin},
			want:     pg.Features{DynamicRoles: true, Teams: true, Anonymous: true, TwoFactor: true, APIKeys: true, Sessions: true, ReadOnly: true},
			notInSQL: []string{`"banned"`, `"banExpires"`, `"impersonatedBy"`, `u."role"`}, wantOff: []string{"admin"},
			wantBuilt: []string{"membership", "session by token", "session by id", "api key"},
		},
		{
			without:  []pgtest.Part{pgtest.Anonymous, pgtest.TwoFactor},
			want:     pg.Features{DynamicRoles: true, Teams: true, Admin: true, APIKeys: true, Sessions: true, ReadOnly: true},
			notInSQL: []string{`"isAnonymous"`, `"twoFactorEnabled"`}, wantOff: []string{"anonymous", "two_factor"},
			wantBuilt: []string{"membership", "session by token", "session by id", "api key"},
		},
		{
			without:  []pgtest.Part{pgtest.APIKeys, pgtest.Sessions},
			want:     pg.Features{DynamicRoles: true, Teams: true, Admin: true, Anonymous: true, TwoFactor: true, ReadOnly: true},
			notInSQL: []string{`"apikey"`, `"session"`}, wantOff: []string{"api_keys", "sessions"},
			wantBuilt: []string{"membership"},
		},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.wantOff, ","), func(t *testing.T) {
			t.Parallel()
			_, db := newLayoutDB(t, pgtest.Singular, tt.without...)
			got, err := db.Check(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Features = %+v, want %+v", got, tt.want)
			}
			if !reflect.DeepEqual(got.Off(), tt.wantOff) {
				t.Errorf("Off() = %q, want %q", got.Off(), tt.wantOff)
			}
			var built []string
			for _, name := range []string{"membership", "membership with team", "session by token", "session by id", "api key"} {
				sql := pg.Statements(db)[name]
				if sql != "" && name != "membership with team" {
					built = append(built, name)
				}
				for _, absent := range tt.notInSQL {
					if strings.Contains(sql, absent) {
						t.Errorf("%s statement names %s:\n%s", name, absent, sql)
					}
				}
			}
			if !reflect.DeepEqual(built, tt.wantBuilt) {
				t.Errorf("statements built: %q, want %q", built, tt.wantBuilt)
			}
		})
	}
}

// The schema can change under a running sidecar. A query that meets a
// table or column that is gone reports a schema error naming it; so does
// the next Check, which readiness runs. Parts added later are ignored
// until a restart.
func TestSchemaChangedAfterStart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		ddl     string
		query   func(db *pg.DB) error
		wantErr []string
	}{
		{
			name: "dynamic roles dropped", ddl: `DROP TABLE "organizationRole"`,
			query: func(db *pg.DB) error {
				_, err := pg.NewMemberRepository(db).Membership(context.Background(), roles.Subject{UserID: "u", OrgRef: "o"})
				return err
			},
			wantErr: []string{`table "organizationRole" is missing`, "dynamic_roles existed when the sidecar started", `relation "public.organizationRole" does not exist (SQLSTATE 42P01)`},
		},
		{
			name: "two-factor column dropped", ddl: `ALTER TABLE "user" DROP COLUMN "twoFactorEnabled"`,
			query: func(db *pg.DB) error {
				_, err := pg.NewMemberRepository(db).Membership(context.Background(), roles.Subject{UserID: "u"})
				return err
			},
			wantErr: []string{`column "user"."twoFactorEnabled" is missing: the two-factor plugin (twoFactor()) adds it`, "SQLSTATE 42703"},
		},
		{
			name: "session table dropped", ddl: `DROP TABLE "session"`,
			query: func(db *pg.DB) error {
				_, err := pg.NewSessionRepository(db).SessionByToken(context.Background(), "t")
				return err
			},
			wantErr: []string{`table "session" is missing`},
		},
		{
			name: "api key column renamed", ddl: `ALTER TABLE apikey RENAME COLUMN key TO hashed`,
			query: func(db *pg.DB) error {
				_, err := pg.NewAPIKeyRepository(db).APIKeyByHash(context.Background(), "h")
				return err
			},
			wantErr: []string{`column "apikey"."key" is missing`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, db := newLayoutDB(t, pgtest.Singular)
			d.Seeder(t).Exec(t, tt.ddl)
			err := tt.query(db)
			wantSchemaError(t, err, tt.wantErr...)
			_, err = db.Check(context.Background())
			wantSchemaError(t, err, tt.wantErr[0])
		})
	}

	t.Run("parts added later are ignored", func(t *testing.T) {
		t.Parallel()
		d, db := newLayoutDB(t, pgtest.Singular, pgtest.APIKeys)
		// Half a table: it would be an error at start.
		d.Seeder(t).Exec(t, `CREATE TABLE apikey (id text)`)
		f, err := db.Check(context.Background())
		if err != nil || f.APIKeys {
			t.Errorf("Check = %+v, %v; want api keys still off, no error", f, err)
		}
	})
}

func TestSupports(t *testing.T) {
	t.Parallel()
	all := pg.Features{DynamicRoles: true, Teams: true, Admin: true, Anonymous: true, TwoFactor: true, APIKeys: true, Sessions: true}
	without := func(change func(*pg.Features)) pg.Features {
		f := all
		change(&f)
		return f
	}
	routes := []*policy.Route{
		{Name: "team", Team: true},
		{Name: "platform", RequirePlatform: []string{"user:ban"}},
		{Name: "2fa", Authenticated: true, Conditions: policy.Conditions{TwoFactor: true}},
		{Name: "anon", Authenticated: true, Conditions: policy.Conditions{NotAnonymous: true}},
		{Name: "imp", Authenticated: true, DenyImpersonation: true},
	}
	full := &policy.Policy{
		APIKeys: policy.APIKeys{Enabled: true},
		Session: policy.Session{Enabled: true, Storage: policy.StorageDatabase},
		JWT:     policy.JWT{Enabled: true, SessionClaim: "sid"},
		Routes:  routes,
	}
	tests := []struct {
		name     string
		features pg.Features
		policy   *policy.Policy
		wantErr  []string // nil: supported
	}{
		{"everything present", all, full, nil},
		{"no api keys", without(func(f *pg.Features) { f.APIKeys = false }), full,
			[]string{"the policy's api_keys section needs the apikey table"}},
		{"no session table", without(func(f *pg.Features) { f.Sessions = false }), full,
			[]string{"storage: database", "set session.storage: secondary", "jwt.session_claim"}},
		{"no session table, sessions in secondary storage, no session claim", without(func(f *pg.Features) { f.Sessions = false }),
			&policy.Policy{Session: policy.Session{Enabled: true, Storage: policy.StorageSecondary}}, nil},
		{"no teams", without(func(f *pg.Features) { f.Teams = false }), full,
			[]string{`routes "team" need team membership`, "organization({ teams: { enabled: true } })"}},
		{"no teams, a team source", without(func(f *pg.Features) { f.Teams = false }),
			&policy.Policy{TeamSources: []policy.Source{{Kind: policy.FromHeader, Name: "x-team"}}},
			[]string{"the policy's team section need team membership"}},
		{"no admin plugin", without(func(f *pg.Features) { f.Admin = false }), full,
			[]string{`routes "platform" check platform roles`, "the admin plugin (admin())"}},
		{"no two-factor plugin", without(func(f *pg.Features) { f.TwoFactor = false }), full,
			[]string{`routes "2fa" require two_factor`}},
		// Without them nobody is anonymous or impersonated, which is right.
		{"no anonymous plugin, no dynamic roles", without(func(f *pg.Features) { f.Anonymous, f.DynamicRoles = false, false }), full, nil},
		{"nothing optional, nothing asked", pg.Features{}, &policy.Policy{Routes: routes[3:]}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.features.Supports(tt.policy)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Supports: %v", err)
				}
				return
			}
			if !errors.Is(err, pg.ErrSchema) {
				t.Fatalf("err = %v, want pg.ErrSchema", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}
