package pg_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/pg"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

func TestMembership(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	seed := pgtest.NewSeeder(t, dbURL)
	future := time.Date(2099, 1, 2, 3, 4, 5, 0, time.UTC)
	past := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

	seed.Org(t, "org1", "acme")
	seed.Org(t, "org2", "globex")
	seed.Org(t, "org3", "org1") // a slug equal to org1's id
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank", "ivy", "jack", "kate", "liam", "mia"} {
		seed.User(t, u, u)
	}
	seed.Member(t, "org1", "alice", "admin")
	seed.Member(t, "org3", "alice", "owner")
	seed.Member(t, "org1", "bob", "admin,member")
	seed.Member(t, "org1", "carol", " admin , member ")
	seed.Member(t, "org1", "dave", "member")
	seed.Member(t, "org1", "dave", "admin,member") // Better Auth does not forbid a second row
	seed.Member(t, "org2", "erin", "owner")        // erin is not in org1
	seed.Member(t, "org1", "frank", "member")
	seed.Ban(t, "frank", nil)
	seed.Member(t, "org1", "gina", "member")
	seed.Ban(t, "gina", &past)
	seed.Member(t, "org1", "hank", "member")
	seed.Exec(t, `UPDATE users SET banned = NULL WHERE id = 'hank'`)
	seed.Member(t, "org1", "liam", "member")
	seed.Ban(t, "liam", &future)
	seed.Member(t, "org1", "mia", " , ,")

	// Dynamic roles. Both organizations define "billing", differently;
	// "support" exists only in org2; "viewer" exists in org1 but nobody
	// holding it is asked about.
	seed.CustomRole(t, "org1", "billing", `{"project":["update","read"],"invitation":["create"]}`)
	seed.CustomRole(t, "org2", "billing", `{"project":["delete"]}`)
	seed.CustomRole(t, "org2", "support", `{"ticket":["read"]}`)
	seed.CustomRole(t, "org1", "viewer", `{"project":["read"]}`)
	seed.CustomRole(t, "org1", "auditor", `{"audit":["read"]}`)
	seed.CustomRole(t, "org1", "broken", `{"project":["read"`)
	seed.CustomRole(t, "org1", "wrongshape", `{"project":"read"}`)
	seed.Member(t, "org1", "ivy", "member, billing,support")
	seed.Member(t, "org2", "ivy", "billing")
	seed.Member(t, "org1", "jack", "member,Auditor") // case differs from the stored "auditor"
	seed.Member(t, "org1", "kate", "broken,wrongshape,viewer")

	repo := pg.NewMemberRepository(openDB(t, dbURL, pg.Config{}))
	now := time.Now()
	tests := []struct {
		name       string
		user, org  string
		want       roles.Membership
		wantBanned bool
	}{
		{
			name: "single role by id",
			user: "alice", org: "org1",
			want: roles.Membership{UserID: "alice", UserFound: true, OrgID: "org1", Roles: []string{"admin"}},
		},
		{
			name: "by slug",
			user: "alice", org: "acme",
			want: roles.Membership{UserID: "alice", UserFound: true, OrgID: "org1", Roles: []string{"admin"}},
		},
		{
			name: "id wins over another organization's slug",
			user: "alice", org: "org1",
			want: roles.Membership{UserID: "alice", UserFound: true, OrgID: "org1", Roles: []string{"admin"}},
		},
		{
			name: "slug equal to another id, asked by its own id",
			user: "alice", org: "org3",
			want: roles.Membership{UserID: "alice", UserFound: true, OrgID: "org3", Roles: []string{"owner"}},
		},
		{
			name: "comma-joined roles",
			user: "bob", org: "org1",
			want: roles.Membership{UserID: "bob", UserFound: true, OrgID: "org1", Roles: []string{"admin", "member"}},
		},
		{
			name: "roles with spaces",
			user: "carol", org: "org1",
			want: roles.Membership{UserID: "carol", UserFound: true, OrgID: "org1", Roles: []string{"admin", "member"}},
		},
		{
			name: "two members rows aggregated in first-seen order",
			user: "dave", org: "org1",
			want: roles.Membership{UserID: "dave", UserFound: true, OrgID: "org1", Roles: []string{"member", "admin"}},
		},
		{
			name: "member of another organization only",
			user: "erin", org: "org1",
			want: roles.Membership{UserID: "erin", UserFound: true, OrgID: "org1"},
		},
		{
			name: "role made only of separators is not a membership",
			user: "mia", org: "org1",
			want: roles.Membership{UserID: "mia", UserFound: true, OrgID: "org1"},
		},
		{
			name: "unknown user",
			user: "nobody", org: "org1",
			want: roles.Membership{UserID: "nobody", OrgID: "org1"},
		},
		{
			name: "unknown organization",
			user: "alice", org: "nope",
			want: roles.Membership{UserID: "alice", UserFound: true},
		},
		{
			name: "organization reference is case-sensitive",
			user: "alice", org: "ACME",
			want: roles.Membership{UserID: "alice", UserFound: true},
		},
		{
			name: "banned forever",
			user: "frank", org: "org1",
			want:       roles.Membership{UserID: "frank", UserFound: true, Banned: true, OrgID: "org1", Roles: []string{"member"}},
			wantBanned: true,
		},
		{
			name: "banned until a future date",
			user: "liam", org: "org1",
			want:       roles.Membership{UserID: "liam", UserFound: true, Banned: true, BanExpires: future, OrgID: "org1", Roles: []string{"member"}},
			wantBanned: true,
		},
		{
			name: "ban expired",
			user: "gina", org: "org1",
			want: roles.Membership{UserID: "gina", UserFound: true, Banned: true, BanExpires: past, OrgID: "org1", Roles: []string{"member"}},
		},
		{
			name: "NULL banned is not banned",
			user: "hank", org: "org1",
			want: roles.Membership{UserID: "hank", UserFound: true, OrgID: "org1", Roles: []string{"member"}},
		},
		{
			name: "custom roles of this organization only, for held roles only",
			user: "ivy", org: "org1",
			want: roles.Membership{
				UserID: "ivy", UserFound: true, OrgID: "org1",
				Roles:       []string{"member", "billing", "support"},
				CustomRoles: map[string][]string{"billing": {"invitation:create", "project:read", "project:update"}},
			},
		},
		{
			name: "same role name in another organization",
			user: "ivy", org: "globex",
			want: roles.Membership{
				UserID: "ivy", UserFound: true, OrgID: "org2",
				Roles:       []string{"billing"},
				CustomRoles: map[string][]string{"billing": {"project:delete"}},
			},
		},
		{
			name: "custom role names match case-sensitively",
			user: "jack", org: "org1",
			want: roles.Membership{UserID: "jack", UserFound: true, OrgID: "org1", Roles: []string{"member", "Auditor"}},
		},
		{
			name: "malformed permission JSON grants nothing",
			user: "kate", org: "org1",
			want: roles.Membership{
				UserID: "kate", UserFound: true, OrgID: "org1",
				Roles: []string{"broken", "wrongshape", "viewer"},
				CustomRoles: map[string][]string{
					"broken":     {},
					"wrongshape": {},
					"viewer":     {"project:read"},
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := repo.Membership(context.Background(), tt.user, tt.org)
			if err != nil {
				t.Fatalf("Membership: %v", err)
			}
			if !got.BanExpires.Equal(tt.want.BanExpires) {
				t.Errorf("BanExpires = %v, want %v", got.BanExpires, tt.want.BanExpires)
			}
			if b := got.IsBanned(now); b != tt.wantBanned {
				t.Errorf("IsBanned = %v, want %v", b, tt.wantBanned)
			}
			got.BanExpires, tt.want.BanExpires = time.Time{}, time.Time{}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Membership =\n %#v\nwant\n %#v", got, tt.want)
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
		got, err := repo.Membership(context.Background(), "u", "o-slug")
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
	repo := pg.NewMemberRepository(openDB(b, dbURL, pg.Config{}))
	ctx := context.Background()

	for _, bc := range []struct{ name, user, org string }{
		{"member by id", "user_7", "org_7"},
		{"member by slug", "user_7", "slug-7"},
		{"non-member", "user_8", "org_7"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := repo.Membership(ctx, bc.user, bc.org); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := repo.Membership(ctx, "user_7", "org_7"); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// seedBulk creates orgs organizations (org_<i>, slug-<i>), members users
// (user_<i>) and one members row per user in organization i % orgs, in
// three statements.
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
