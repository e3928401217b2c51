package roles

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// table is a static role table for tests.
type table struct {
	org, platform map[string][]string
	defaultRole   string
}

func (t table) RolePermissions(role string) ([]string, bool) {
	p, ok := t.org[role]
	return p, ok
}

func (t table) PlatformRolePermissions(role string) ([]string, bool) {
	p, ok := t.platform[role]
	return p, ok
}

func (t table) PlatformDefaultRole() string { return t.defaultRole }

// appRoles mirror the fixture app's roles (expanded, literal).
var appRoles = table{
	org: map[string][]string{
		"owner":   {"leave:approve", "leave:read", "leave:request", "member:create", "member:delete", "member:update", "organization:delete"},
		"admin":   {"leave:approve", "leave:read", "leave:request", "member:create", "member:delete", "member:update"},
		"member":  {"leave:read", "leave:request"},
		"editor":  {"project:read", "project:update"},
		"billing": {"billing:read", "invoice:pay"},
	},
	platform: map[string][]string{
		"admin":   {"session:list", "user:ban", "user:list"},
		"support": {"user:list"},
		"user":    {},
	},
	defaultRole: "user",
}

// TestOneRoleMustGrantEverything is Better Auth 1.7.25's hasPermissionFn
// (dist/plugins/organization/permission.mjs):
//
//	for (const role of roles) if (acRoles[role]?.authorize(input.permissions)?.success) return true
//
// and role().authorize (dist/plugins/access/access.mjs), which with the
// default "AND" connector needs every requested action of every resource
// from that one role, and with "OR" one of them.
func TestOneRoleMustGrantEverything(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		held    []string
		all     []string
		wantAll bool
		any     []string
		wantAny bool
	}{
		{"one role, one permission", []string{"member"}, []string{"leave:read"}, true, []string{"leave:read"}, true},
		{"one role grants all", []string{"admin"}, []string{"leave:approve", "member:create"}, true, nil, false},
		{"two roles each grant half: denied", []string{"editor", "billing"}, []string{"project:update", "billing:read"}, false, []string{"project:update", "billing:read"}, true},
		{"second role grants all", []string{"member", "admin"}, []string{"leave:approve", "leave:read"}, true, nil, false},
		{"missing action", []string{"member"}, []string{"leave:read", "leave:approve"}, false, []string{"leave:approve"}, false},
		{"unknown resource", []string{"owner"}, []string{"ghost:read"}, false, []string{"ghost:read"}, false},
		{"empty request is not authorized", []string{"owner"}, nil, false, nil, false},
		{"no roles", nil, []string{"leave:read"}, false, []string{"leave:read"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			gs, _ := StaticGrants(tt.held, appRoles)
			if got := gs.All(tt.all); got != tt.wantAll {
				t.Errorf("All(%v) = %v, want %v", tt.all, got, tt.wantAll)
			}
			if got := gs.Any(tt.any); got != tt.wantAny {
				t.Errorf("Any(%v) = %v, want %v", tt.any, got, tt.wantAny)
			}
		})
	}
}

// TestDynamicRoles is dist/plugins/organization/has-permission.mjs: each
// organizationRole row is JSON.parse'd and checked against
// z.record(z.string(), z.array(z.string())) (an invalid row fails the whole
// check); a row named like a static role is merged into it:
//
//	const merged = { ...acRoles[role]?.statements };
//	for (const [key, actions] of Object.entries(result.data)) merged[key] = [...new Set([...merged[key] ?? [], ...actions])];
//
// and actions are literal ("*" is an action named "*").
func TestDynamicRoles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		held    []string
		dynamic []DynamicRole
		has     map[string][]string // role -> permissions its grant must hold
		not     map[string][]string // role -> permissions it must not hold
		unknown []string
		invalid bool
	}{
		{
			name:    "dynamic role of its own",
			held:    []string{"member", "auditor"},
			dynamic: []DynamicRole{{"auditor", `{"audit":["read"],"leave":["read"]}`}},
			has:     map[string][]string{"auditor": {"audit:read", "leave:read"}, "member": {"leave:request"}},
			not:     map[string][]string{"auditor": {"leave:request"}},
		},
		{
			name:    "merged into the static role of the same name",
			held:    []string{"member"},
			dynamic: []DynamicRole{{"member", `{"leave":["approve"],"report":["read"]}`}},
			has:     map[string][]string{"member": {"leave:read", "leave:request", "leave:approve", "report:read"}},
		},
		{
			name:    "several rows of one name are all merged",
			held:    []string{"x"},
			dynamic: []DynamicRole{{"x", `{"a":["1"]}`}, {"x", `{"a":["2"],"b":["3"]}`}},
			has:     map[string][]string{"x": {"a:1", "a:2", "b:3"}},
		},
		{
			name:    "a wildcard action is literal",
			held:    []string{"x"},
			dynamic: []DynamicRole{{"x", `{"leave":["*"]}`}},
			has:     map[string][]string{"x": {"leave:*"}},
			not:     map[string][]string{"x": {"leave:read"}},
		},
		{
			name:    "rows of roles not held are parsed but grant nothing",
			held:    []string{"member"},
			dynamic: []DynamicRole{{"other", `{"leave":["approve"]}`}},
			not:     map[string][]string{"member": {"leave:approve"}},
		},
		{
			name:    "an unknown role grants nothing",
			held:    []string{"ghost"},
			unknown: []string{"ghost"},
		},
		{
			name:    "role names are case-sensitive",
			held:    []string{"Auditor"},
			dynamic: []DynamicRole{{"auditor", `{"audit":["read"]}`}},
			unknown: []string{"Auditor"},
		},
		{name: "invalid JSON fails the organization", held: []string{"member"}, dynamic: []DynamicRole{{"other", `{"a":["b"`}}, invalid: true},
		{name: "null fails", held: []string{"member"}, dynamic: []DynamicRole{{"x", `null`}}, invalid: true},
		{name: "an array fails", held: []string{"member"}, dynamic: []DynamicRole{{"x", `["a:b"]`}}, invalid: true},
		{name: "actions not an array fail", held: []string{"member"}, dynamic: []DynamicRole{{"x", `{"a":"b"}`}}, invalid: true},
		{name: "null actions fail", held: []string{"member"}, dynamic: []DynamicRole{{"x", `{"a":null}`}}, invalid: true},
		{name: "a non-string action fails", held: []string{"member"}, dynamic: []DynamicRole{{"x", `{"a":[1]}`}}, invalid: true},
		{name: "trailing data fails", held: []string{"member"}, dynamic: []DynamicRole{{"x", `{} {}`}}, invalid: true},
		{
			name:    "empty object and empty actions are valid",
			held:    []string{"x", "y"},
			dynamic: []DynamicRole{{"x", `{}`}, {"y", `{"a":[]}`}},
			has:     map[string][]string{"x": nil, "y": nil},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			gs, unknown, err := OrgGrants(tt.held, appRoles, tt.dynamic)
			if tt.invalid {
				if !errors.Is(err, ErrInvalidRole) {
					t.Fatalf("err = %v, want ErrInvalidRole", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(unknown, tt.unknown) {
				t.Errorf("unknown = %v, want %v", unknown, tt.unknown)
			}
			for role, perms := range tt.has {
				g := find(t, gs, role)
				for _, p := range perms {
					if !g.Has(p) {
						t.Errorf("role %s lacks %s (grant %v)", role, p, g.Perms)
					}
				}
			}
			for role, perms := range tt.not {
				g := find(t, gs, role)
				for _, p := range perms {
					if g.Has(p) {
						t.Errorf("role %s holds %s", role, p)
					}
				}
			}
		})
	}
}

func find(t *testing.T, gs Grants, role string) *Grant {
	t.Helper()
	for i := range gs {
		if gs[i].Role == role {
			return &gs[i]
		}
	}
	t.Fatalf("no grant for role %s in %v", role, gs.Roles())
	return nil
}

func TestParseRoleList(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		values []string
		want   []string
	}{
		{"no rows", nil, nil},
		{"single", []string{"owner"}, []string{"owner"}},
		{"comma-joined", []string{"admin,member"}, []string{"admin", "member"}},
		{"spaces trimmed", []string{" admin ,\tmember\n"}, []string{"admin", "member"}},
		{"inner space kept", []string{"team lead"}, []string{"team lead"}},
		{"empties dropped", []string{",admin,,", " , "}, []string{"admin"}},
		{"duplicates dropped", []string{"admin,admin,member"}, []string{"admin", "member"}},
		{"first-seen order across rows", []string{"member", "admin,member,billing"}, []string{"member", "admin", "billing"}},
		{"case preserved", []string{"Admin,admin"}, []string{"Admin", "admin"}},
	}
	for _, tt := range tests {
		if got := ParseRoleList(tt.values...); !slices.Equal(got, tt.want) {
			t.Errorf("%s: ParseRoleList(%q) = %q, want %q", tt.name, tt.values, got, tt.want)
		}
	}
}

// TestParsePlatformRoles is dist/plugins/admin/has-permission.mjs:
// (input.role || input.options?.defaultRole || "user").split(",") — not
// trimmed.
func TestParsePlatformRoles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		role, def string
		want      []string
	}{
		{"admin", "user", []string{"admin"}},
		{"", "user", []string{"user"}},
		{"", "", []string{"user"}},
		{"", "member", []string{"member"}},
		{"user,admin", "user", []string{"user", "admin"}},
		{"user, admin", "user", []string{"user", " admin"}},
		{"admin,,admin", "user", []string{"admin"}},
	}
	for _, tt := range tests {
		if got := ParsePlatformRoles(tt.role, tt.def); !slices.Equal(got, tt.want) {
			t.Errorf("ParsePlatformRoles(%q, %q) = %q, want %q", tt.role, tt.def, got, tt.want)
		}
	}
}

func TestCompute(t *testing.T) {
	t.Parallel()
	future := time.Now().Add(time.Hour)
	tests := []struct {
		name     string
		m        Membership
		member   bool
		roles    []string
		platform []string
		invalid  bool
		team     bool
	}{
		{name: "no user", m: Membership{OrgID: "o", Roles: []string{"admin"}}},
		{name: "user without organization", m: Membership{UserFound: true}, platform: []string{"user"}},
		{name: "member", m: Membership{UserFound: true, OrgID: "o", Roles: []string{"member"}}, member: true, roles: []string{"member"}, platform: []string{"user"}},
		{name: "platform admin", m: Membership{UserFound: true, PlatformRole: "admin,support"}, platform: []string{"admin", "support"}},
		{name: "not a member", m: Membership{UserFound: true, OrgID: "o"}, platform: []string{"user"}},
		{
			name:   "invalid dynamic roles",
			m:      Membership{UserFound: true, OrgID: "o", Roles: []string{"member"}, DynamicRoles: []DynamicRole{{"x", "{"}}},
			member: true, roles: []string{"member"}, platform: []string{"user"}, invalid: true,
		},
		{
			name:   "team member",
			m:      Membership{UserFound: true, OrgID: "o", Roles: []string{"member"}, TeamID: "t", TeamMember: true, Banned: true, BanExpires: future},
			member: true, roles: []string{"member"}, platform: []string{"user"}, team: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := Compute(tt.m, appRoles)
			if a.Member() != tt.member {
				t.Errorf("Member() = %v, want %v", a.Member(), tt.member)
			}
			wantGrants := tt.roles
			if tt.invalid {
				wantGrants = nil // an organization whose roles cannot be read grants nothing
			}
			if !slices.Equal(a.Roles, tt.roles) || !slices.Equal(a.Grants.Roles(), wantGrants) {
				t.Errorf("Roles = %v, grants %v, want %v and %v", a.Roles, a.Grants.Roles(), tt.roles, wantGrants)
			}
			if !slices.Equal(a.PlatformRoles, tt.platform) {
				t.Errorf("PlatformRoles = %v, want %v", a.PlatformRoles, tt.platform)
			}
			if (a.InvalidRoles != "") != tt.invalid {
				t.Errorf("InvalidRoles = %q, want invalid %v", a.InvalidRoles, tt.invalid)
			}
			if a.TeamMember != tt.team || (a.TeamID != "") != tt.team {
				t.Errorf("team = %q %v, want %v", a.TeamID, a.TeamMember, tt.team)
			}
			if a.Banned != tt.m.Banned || !a.BanExpires.Equal(tt.m.BanExpires) {
				t.Errorf("ban = %v %v, want %v %v", a.Banned, a.BanExpires, tt.m.Banned, tt.m.BanExpires)
			}
		})
	}
}

func TestPlatformGrants(t *testing.T) {
	t.Parallel()
	a := Compute(Membership{UserFound: true, PlatformRole: "support,admin"}, appRoles)
	if !a.Platform.All([]string{"user:ban", "session:list"}) {
		t.Error("admin should grant user:ban and session:list")
	}
	b := Compute(Membership{UserFound: true, PlatformRole: "support"}, appRoles)
	if b.Platform.All([]string{"user:ban"}) {
		t.Error("support should not grant user:ban")
	}
	c := Compute(Membership{UserFound: true}, appRoles)
	if c.Platform.Any([]string{"user:list"}) {
		t.Error("the default role user grants nothing")
	}
}

func TestIsBanned(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, tt := range []struct {
		name string
		a    Access
		want bool
	}{
		{"not banned", Access{}, false},
		{"banned forever", Access{Banned: true}, true},
		{"ban expires later", Access{Banned: true, BanExpires: now.Add(time.Hour)}, true},
		{"ban expired", Access{Banned: true, BanExpires: now.Add(-time.Second)}, false},
		{"ban expires now", Access{Banned: true, BanExpires: now}, false},
	} {
		if got := tt.a.IsBanned(now); got != tt.want {
			t.Errorf("%s: IsBanned = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestGrantHasLargeRole(t *testing.T) {
	t.Parallel()
	var perms []string
	for _, r := range []string{"a", "b", "c", "d", "e"} {
		for _, a := range []string{"1", "2", "3", "4", "5"} {
			perms = append(perms, r+":"+a)
		}
	}
	g := Grant{Role: "big", Perms: perms}
	for _, p := range perms {
		if !g.Has(p) {
			t.Errorf("Has(%s) = false", p)
		}
	}
	for _, p := range []string{"a:0", "e:6", "", "z:1", "c:"} {
		if g.Has(p) {
			t.Errorf("Has(%q) = true", p)
		}
	}
}

// source is a fake Source: memberships by user, or an error.
type source struct {
	m   map[string]Membership
	err error
}

func (s source) Membership(_ context.Context, sub Subject) (Membership, error) {
	return s.m[sub.UserID], s.err
}

func TestSourceResolver(t *testing.T) {
	t.Parallel()
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := NewSourceResolver(source{m: map[string]Membership{"u": {UserFound: true, OrgID: "o", Roles: []string{"member"}}}}, func() time.Time { return clock })
	a, tier, err := r.Resolve(context.Background(), Query{Subject: Subject{UserID: "u", OrgRef: "o"}, Tables: appRoles})
	if err != nil || tier != TierSource || !a.Member() || !a.LoadedAt.Equal(clock) || !a.Grants.All([]string{"leave:read"}) {
		t.Fatalf("Resolve = %+v, %v, %v", a, tier, err)
	}
	down := NewSourceResolver(source{err: fmt.Errorf("pg: %w", ErrUnavailable)}, nil)
	if _, tier, err := down.Resolve(context.Background(), Query{Subject: Subject{UserID: "u"}, Tables: appRoles}); !errors.Is(err, ErrUnavailable) || tier != TierSource {
		t.Fatalf("err = %v, tier %v", err, tier)
	}
	if got := NewSourceResolver(source{}, nil); got.now == nil {
		t.Error("no default clock")
	}
	for tier, want := range map[Tier]string{TierNone: "none", TierL1: "l1", TierL2: "l2", TierSource: "postgres", Tier(9): "none"} {
		if tier.String() != want {
			t.Errorf("%d: %s", tier, tier.String())
		}
	}
}
