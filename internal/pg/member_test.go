package pg_test

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/pg"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// layouts are the database layouts every repository is tested on.
var layouts = []pgtest.Layout{pgtest.Plural, pgtest.Singular, pgtest.Custom}

// newLayoutDB creates a database of layout (without the given parts) and
// opens the sidecar's pool on it, mapped through the layout's schema
// section, warmed.
func newLayoutDB(t *testing.T, layout pgtest.Layout, without ...pgtest.Part) (*pgtest.Database, *pg.DB) {
	t.Helper()
	d := pgtest.NewDatabaseWith(t, pgtest.Options{Layout: layout, Without: without})
	db := openDB(t, d.URL, pg.Config{Schema: d.Schema()})
	if _, err := db.Warm(context.Background()); err != nil {
		t.Fatalf("Warm: %v", err)
	}
	return d, db
}

var (
	future = time.Date(2099, 1, 2, 3, 4, 5, 0, time.UTC)
	past   = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
)

// seedMembers writes the rows TestMembership asks about, leaving out the
// parts d lacks.
func seedMembers(t *testing.T, d *pgtest.Database) {
	t.Helper()
	seed := d.Seeder(t)
	seed.Org(t, "org1", "acme")
	seed.Org(t, "org2", "globex")
	seed.Org(t, "org3", "org1") // a slug equal to org1's id
	seed.Org(t, "org4", "dyn")
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank", "ivy", "jack", "kate", "liam", "mia", "nora", "otto", "pat"} {
		seed.User(t, u, u)
	}
	seed.Member(t, "org1", "alice", "admin")
	seed.Member(t, "org3", "alice", "owner")
	seed.Member(t, "org1", "bob", "admin,member")
	seed.Member(t, "org1", "carol", " admin , member ")
	seed.Member(t, "org1", "dave", "member")
	seed.Member(t, "org1", "dave", "admin,member") // Better Auth does not forbid a second row
	seed.Member(t, "org2", "erin", "owner")        // erin is not in org1
	seed.Member(t, "org1", "mia", " , ,")
	seed.Member(t, "org1", "frank", "member")
	seed.Member(t, "org1", "gina", "member")
	seed.Member(t, "org1", "liam", "member")
	seed.SetUser(t, "pat", "emailVerified", true)
	if d.Has(pgtest.Admin) {
		seed.Ban(t, "frank", nil)
		seed.Ban(t, "gina", &past)
		seed.Ban(t, "liam", &future)
		seed.SetUser(t, "hank", "banned", nil)
		seed.SetUser(t, "hank", "role", nil)
		seed.SetUser(t, "bob", "role", "admin,user")
	}
	if d.Has(pgtest.Anonymous) {
		seed.SetUser(t, "nora", "isAnonymous", true)
	}
	if d.Has(pgtest.TwoFactor) {
		seed.SetUser(t, "otto", "twoFactorEnabled", true)
	}
	// Dynamic roles: org4 and org2 both define "billing", differently.
	seed.Member(t, "org4", "ivy", "member, billing,support")
	seed.Member(t, "org2", "ivy", "billing")
	seed.Member(t, "org4", "kate", "broken")
	if d.Has(pgtest.DynamicRoles) {
		seed.CustomRole(t, "org4", "billing", `{"project":["update","read"],"invitation":["create"]}`)
		seed.CustomRole(t, "org4", "broken", `{"project":["read"`)
		seed.CustomRole(t, "org2", "billing", `{"project":["delete"]}`)
		seed.CustomRole(t, "org2", "support", `{"ticket":["read"]}`)
	}
	if d.Has(pgtest.Teams) {
		seed.Team(t, "team1", "org1")
		seed.Team(t, "team2", "org2")
		seed.TeamMember(t, "team1", "alice")
		seed.TeamMember(t, "team2", "erin")
	}
}

// membershipCase is one question and Better Auth's answer with every
// optional part present.
type membershipCase struct {
	name string
	sub  roles.Subject
	want roles.Membership
}

// user is a found user with the seeder's defaults (role "user").
func user(m roles.Membership) roles.Membership {
	m.UserFound = true
	if m.PlatformRole == "" {
		m.PlatformRole = "user"
	}
	return m
}

var membershipCases = []membershipCase{
	{"single role by id", roles.Subject{UserID: "alice", OrgRef: "org1"}, user(roles.Membership{OrgID: "org1", Roles: []string{"admin"}})},
	{"by slug", roles.Subject{UserID: "alice", OrgRef: "acme"}, user(roles.Membership{OrgID: "org1", Roles: []string{"admin"}})},
	{"slug equal to another id, asked by its own id", roles.Subject{UserID: "alice", OrgRef: "org3"}, user(roles.Membership{OrgID: "org3", Roles: []string{"owner"}})},
	{"comma-joined roles", roles.Subject{UserID: "bob", OrgRef: "org1"}, user(roles.Membership{PlatformRole: "admin,user", OrgID: "org1", Roles: []string{"admin", "member"}})},
	{"roles with spaces", roles.Subject{UserID: "carol", OrgRef: "org1"}, user(roles.Membership{OrgID: "org1", Roles: []string{"admin", "member"}})},
	{"two member rows aggregated in first-seen order", roles.Subject{UserID: "dave", OrgRef: "org1"}, user(roles.Membership{OrgID: "org1", Roles: []string{"member", "admin"}})},
	{"member of another organization only", roles.Subject{UserID: "erin", OrgRef: "org1"}, user(roles.Membership{OrgID: "org1"})},
	{"role made only of separators is not a membership", roles.Subject{UserID: "mia", OrgRef: "org1"}, user(roles.Membership{OrgID: "org1"})},
	{"unknown user", roles.Subject{UserID: "nobody", OrgRef: "org1"}, roles.Membership{OrgID: "org1"}},
	{"unknown organization", roles.Subject{UserID: "alice", OrgRef: "nope"}, user(roles.Membership{})},
	{"organization reference is case-sensitive", roles.Subject{UserID: "alice", OrgRef: "ACME"}, user(roles.Membership{})},
	{"no organization asked", roles.Subject{UserID: "alice"}, user(roles.Membership{})},
	{"banned forever", roles.Subject{UserID: "frank", OrgRef: "org1"}, user(roles.Membership{Banned: true, OrgID: "org1", Roles: []string{"member"}})},
	{"banned until a future date", roles.Subject{UserID: "liam", OrgRef: "org1"}, user(roles.Membership{Banned: true, BanExpires: future, OrgID: "org1", Roles: []string{"member"}})},
	{"ban expired", roles.Subject{UserID: "gina", OrgRef: "org1"}, user(roles.Membership{Banned: true, BanExpires: past, OrgID: "org1", Roles: []string{"member"}})},
	{"NULL banned is not banned, NULL role is none", roles.Subject{UserID: "hank"}, roles.Membership{UserFound: true}},
	{"email verified", roles.Subject{UserID: "pat"}, user(roles.Membership{EmailVerified: true})},
	{"anonymous", roles.Subject{UserID: "nora"}, user(roles.Membership{Anonymous: true})},
	{"two-factor", roles.Subject{UserID: "otto"}, user(roles.Membership{TwoFactorEnabled: true})},
	{
		"every dynamic role of the organization, for a member", roles.Subject{UserID: "ivy", OrgRef: "dyn"},
		user(roles.Membership{OrgID: "org4", Roles: []string{"member", "billing", "support"}, DynamicRoles: []roles.DynamicRole{
			{Name: "billing", Permission: `{"project":["update","read"],"invitation":["create"]}`},
			{Name: "broken", Permission: `{"project":["read"`},
		}}),
	},
	{
		"same role name in another organization", roles.Subject{UserID: "ivy", OrgRef: "globex"},
		user(roles.Membership{OrgID: "org2", Roles: []string{"billing"}, DynamicRoles: []roles.DynamicRole{
			{Name: "billing", Permission: `{"project":["delete"]}`},
			{Name: "support", Permission: `{"ticket":["read"]}`},
		}}),
	},
	{"no dynamic roles for a non-member", roles.Subject{UserID: "alice", OrgRef: "dyn"}, user(roles.Membership{OrgID: "org4"})},
	{"team member", roles.Subject{UserID: "alice", OrgRef: "org1", TeamRef: "team1"}, user(roles.Membership{OrgID: "org1", Roles: []string{"admin"}, TeamID: "team1", TeamMember: true})},
	{"team of the organization, not a member of it", roles.Subject{UserID: "bob", OrgRef: "acme", TeamRef: "team1"}, user(roles.Membership{PlatformRole: "admin,user", OrgID: "org1", Roles: []string{"admin", "member"}, TeamID: "team1"})},
	{"team of another organization", roles.Subject{UserID: "alice", OrgRef: "org1", TeamRef: "team2"}, user(roles.Membership{OrgID: "org1", Roles: []string{"admin"}})},
	{"unknown team", roles.Subject{UserID: "alice", OrgRef: "org1", TeamRef: "nope"}, user(roles.Membership{OrgID: "org1", Roles: []string{"admin"}})},
}

// neutral is what a case answers when the database lacks parts: their
// facts take their neutral values (seedMembers leaves their rows out).
func neutral(m roles.Membership, d *pgtest.Database) roles.Membership {
	if !d.Has(pgtest.Admin) {
		m.Banned, m.BanExpires, m.PlatformRole = false, time.Time{}, ""
	}
	if !d.Has(pgtest.Anonymous) {
		m.Anonymous = false
	}
	if !d.Has(pgtest.TwoFactor) {
		m.TwoFactorEnabled = false
	}
	if !d.Has(pgtest.DynamicRoles) {
		m.DynamicRoles = nil
	}
	if !d.Has(pgtest.Teams) {
		m.TeamID, m.TeamMember = "", false
	}
	return m
}

func TestMembership(t *testing.T) {
	t.Parallel()
	type variant struct {
		layout  pgtest.Layout
		without []pgtest.Part
	}
	variants := []variant{{layout: pgtest.Plural}, {layout: pgtest.Singular}, {layout: pgtest.Custom}}
	// Every optional part absent, on the default and the renamed layout.
	for _, l := range []pgtest.Layout{pgtest.Singular, pgtest.Custom} {
		variants = append(variants, variant{l, []pgtest.Part{pgtest.DynamicRoles, pgtest.Teams, pgtest.Admin, pgtest.Anonymous, pgtest.TwoFactor, pgtest.APIKeys, pgtest.Sessions}})
	}
	for _, v := range variants {
		t.Run(fmt.Sprintf("%s without %v", v.layout, v.without), func(t *testing.T) {
			t.Parallel()
			d, db := newLayoutDB(t, v.layout, v.without...)
			seedMembers(t, d)
			repo := pg.NewMemberRepository(db)
			for _, tt := range membershipCases {
				t.Run(tt.name, func(t *testing.T) {
					got, err := repo.Membership(context.Background(), tt.sub)
					if err != nil {
						t.Fatalf("Membership: %v", err)
					}
					want := neutral(tt.want, d)
					if !got.BanExpires.Equal(want.BanExpires) {
						t.Errorf("BanExpires = %v, want %v", got.BanExpires, want.BanExpires)
					}
					got.BanExpires, want.BanExpires = time.Time{}, time.Time{}
					// Dynamic roles come in id order, and seeded ids are random.
					slices.SortFunc(got.DynamicRoles, func(a, b roles.DynamicRole) int { return cmp.Compare(a.Name, b.Name) })
					if !reflect.DeepEqual(got, want) {
						t.Errorf("Membership =\n %#v\nwant\n %#v", got, want)
					}
				})
			}
		})
	}
}

// Changes are visible on the next call: nothing is cached in pg (caching
// is internal/cache's job, which relies on this).
func TestMembershipReadsCurrentRows(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	seed := pgtest.NewSeeder(t, dbURL)
	seed.User(t, "u", "u")
	seed.Org(t, "o", "o-slug")
	repo := pg.NewMemberRepository(openDB(t, dbURL, pg.Config{}))

	steps := []struct {
		name   string
		change func()
		want   []string
	}{
		{"not yet a member", func() {}, nil},
		{"added", func() { seed.Member(t, "o", "u", "member") }, []string{"member"}},
		{"promoted", func() { seed.SetRole(t, "o", "u", "admin,member") }, []string{"admin", "member"}},
		{"removed", func() { seed.RemoveMember(t, "o", "u") }, nil},
	}
	for _, s := range steps {
		s.change()
		got, err := repo.Membership(context.Background(), roles.Subject{UserID: "u", OrgRef: "o-slug"})
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if !reflect.DeepEqual(got.Roles, s.want) {
			t.Errorf("%s: Roles = %q, want %q", s.name, got.Roles, s.want)
		}
	}
}

func BenchmarkMembership(b *testing.B) {
	dbURL := pgtest.NewDatabase(b)
	seed := pgtest.NewSeeder(b, dbURL)
	seedBulk(b, seed, 100, 5000)
	seed.Exec(b, `UPDATE members SET role = 'member,billing' WHERE "organizationId" = 'org_7' AND "userId" = 'user_7'`)
	seed.CustomRole(b, "org_7", "billing", `{"project":["read","update"],"invitation":["create"]}`)
	seed.Exec(b, "ANALYZE")
	ctx := context.Background()

	for _, mode := range []pg.QueryMode{pg.QueryPrepare, pg.QueryDescribe, pg.QuerySimple} {
		db := openDB(b, dbURL, pg.Config{QueryMode: mode})
		if _, err := db.Warm(ctx); err != nil {
			b.Fatal(err)
		}
		repo := pg.NewMemberRepository(db)
		for _, bc := range []struct{ name, user, org string }{
			{"member by id", "user_7", "org_7"},
			{"member by slug", "user_7", "slug-7"},
			{"non-member", "user_8", "org_7"},
		} {
			b.Run(mode.String()+"/"+bc.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := repo.Membership(ctx, roles.Subject{UserID: bc.user, OrgRef: bc.org}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		b.Run(mode.String()+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := repo.Membership(ctx, roles.Subject{UserID: "user_7", OrgRef: "org_7"}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// seedBulk creates orgs organizations (org_<i>, slug-<i>), members users
// (user_<i>) and one members row per user in organization i % orgs, in
// three statements (Plural layout).
func seedBulk(t testing.TB, seed *pgtest.Seeder, orgs, members int) {
	t.Helper()
	seed.Exec(t, `INSERT INTO organizations (id, name, slug, "createdAt")
		SELECT 'org_' || i, 'Org ' || i, 'slug-' || i, now() FROM generate_series(0, $1 - 1) i`, orgs)
	seed.Exec(t, `INSERT INTO users (id, name, email, "emailVerified", role, banned)
		SELECT 'user_' || i, 'User ' || i, 'user' || i || '@example.test', false, 'user', false
		FROM generate_series(0, $1 - 1) i`, members)
	seed.Exec(t, fmt.Sprintf(`INSERT INTO members (id, "organizationId", "userId", role, "createdAt")
		SELECT 'mem_' || i, 'org_' || (i %% %d), 'user_' || i,
			(ARRAY['owner', 'admin', 'member', 'admin,member'])[1 + i %% 4], now()
		FROM generate_series(0, $1 - 1) i`, orgs), members)
}

// BenchmarkMembershipLargeOrgs is the membership query on make bench's
// layout (organizations of 1000 members, every user in ten), one
// connection, and reports the PostgreSQL backend's CPU per query
// (pg-cpu-ns/op, from /proc: PostgreSQL on this machine), which other load
// on the machine hardly moves.
func BenchmarkMembershipLargeOrgs(b *testing.B) {
	dbURL := pgtest.NewDatabase(b)
	seed := pgtest.NewSeeder(b, dbURL)
	seedBulk(b, seed, 100, 10000)
	seed.Exec(b, `INSERT INTO members (id, "organizationId", "userId", role, "createdAt")
		SELECT 'big_' || u || '_' || k, 'org_' || ((u + k) % 100), 'user_' || u, 'member', now()
		FROM generate_series(0, 9999) u, generate_series(1, 9) k`)
	seed.Exec(b, "ANALYZE")
	ctx := context.Background()
	db := openDB(b, dbURL, pg.Config{MaxConns: 1})
	if _, err := db.Warm(ctx); err != nil {
		b.Fatal(err)
	}
	var pid int
	if err := pg.PoolOf(db).QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		b.Fatal(err)
	}
	repo := pg.NewMemberRepository(db)
	b.ReportAllocs()
	cpu0, ok := backendCPU(pid)
	i := 0
	for b.Loop() {
		u := i % 10000
		i++
		if _, err := repo.Membership(ctx, roles.Subject{UserID: fmt.Sprintf("user_%d", u), OrgRef: fmt.Sprintf("org_%d", (u+1+i%9)%100)}); err != nil {
			b.Fatal(err)
		}
	}
	if cpu1, ok1 := backendCPU(pid); ok && ok1 {
		b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "pg-cpu-ns/op")
	}
}

// backendCPU is a local process's user+system CPU time from /proc.
func backendCPU(pid int) (time.Duration, bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	// Clock ticks of 10 ms (USER_HZ is 100 on Linux).
	return time.Duration(ut+st) * 10 * time.Millisecond, true
}
