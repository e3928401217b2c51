package roles

import (
	"slices"
	"testing"
	"time"
)

type table map[string][]string

func (t table) RolePermissions(role string) ([]string, bool) {
	p, ok := t[role]
	return p, ok
}

var policyRoles = table{
	"owner":  {"leave:approve", "leave:read", "leave:request", "member:*", "organization:delete"},
	"admin":  {"leave:approve", "leave:read", "leave:request", "member:*"},
	"member": {"leave:read", "leave:request"},
}

func TestCompute(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		m        Membership
		member   bool
		perms    []string
		unknown  []string
		has, not []string
	}{
		{
			name:   "single role",
			m:      Membership{UserFound: true, OrgID: "o", Roles: []string{"member"}},
			member: true, perms: []string{"leave:read", "leave:request"},
			not: []string{"leave:approve"},
		},
		{
			name:   "multi-role union",
			m:      Membership{UserFound: true, OrgID: "o", Roles: []string{"admin", "member"}},
			member: true, perms: []string{"leave:approve", "leave:read", "leave:request", "member:*"},
			has: []string{"member:invite", "member:remove"}, not: []string{"organization:delete", "members:x"},
		},
		{
			name: "custom role from the organization",
			m: Membership{UserFound: true, OrgID: "o", Roles: []string{"member", "billing"},
				CustomRoles: map[string][]string{"billing": {"invoice:read", "invoice:pay"}}},
			member: true, perms: []string{"invoice:pay", "invoice:read", "leave:read", "leave:request"},
		},
		{
			name: "policy role wins over an organization's role of the same name",
			m: Membership{UserFound: true, OrgID: "o", Roles: []string{"member"},
				CustomRoles: map[string][]string{"member": {"organization:delete"}}},
			member: true, perms: []string{"leave:read", "leave:request"},
			not: []string{"organization:delete"},
		},
		{
			name:   "unknown role grants nothing",
			m:      Membership{UserFound: true, OrgID: "o", Roles: []string{"ghost"}},
			member: true, unknown: []string{"ghost"},
			not: []string{"leave:read"},
		},
		{
			name: "no organization",
			m:    Membership{UserFound: true, Roles: []string{"owner"}},
			not:  []string{"organization:delete"},
		},
		{
			name: "not a member",
			m:    Membership{UserFound: true, OrgID: "o"},
			not:  []string{"leave:read"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := Compute(tt.m, policyRoles)
			if a.Member() != tt.member {
				t.Errorf("Member() = %v, want %v", a.Member(), tt.member)
			}
			if !slices.Equal(a.Permissions, tt.perms) {
				t.Errorf("Permissions = %v, want %v", a.Permissions, tt.perms)
			}
			if !slices.Equal(a.UnknownRoles, tt.unknown) {
				t.Errorf("UnknownRoles = %v, want %v", a.UnknownRoles, tt.unknown)
			}
			for _, p := range tt.has {
				if !a.Has(p) {
					t.Errorf("Has(%q) = false, want true", p)
				}
			}
			for _, p := range tt.not {
				if a.Has(p) {
					t.Errorf("Has(%q) = true, want false", p)
				}
			}
		})
	}
}

func TestHasWildcardIsPerResource(t *testing.T) {
	t.Parallel()
	a := &Access{Permissions: []string{"member:*"}}
	for perm, want := range map[string]bool{
		"member:invite": true,
		"member:*":      true,
		"members:x":     false,
		"mem:x":         false,
		"member":        false,
		"leave:read":    false,
		"":              false,
	} {
		if got := a.Has(perm); got != want {
			t.Errorf("Has(%q) = %v, want %v", perm, got, want)
		}
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
	} {
		if got := tt.a.IsBanned(now); got != tt.want {
			t.Errorf("%s: IsBanned = %v, want %v", tt.name, got, tt.want)
		}
	}
}
