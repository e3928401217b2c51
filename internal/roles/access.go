package roles

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Tables are the application's static roles, as the policy states them:
// the organization plugin's roles and the admin plugin's (platform) roles.
// *policy.Policy satisfies it.
type Tables interface {
	// RolePermissions returns an organization role's permissions.
	RolePermissions(role string) ([]string, bool)
	// PlatformRolePermissions returns an admin-plugin role's permissions.
	PlatformRolePermissions(role string) ([]string, bool)
	// PlatformDefaultRole is the admin plugin's defaultRole, applied when
	// user.role is empty.
	PlatformDefaultRole() string
}

// Query asks what a Subject may do under a policy's role tables.
type Query struct {
	Subject
	// Version identifies the policy whose Tables resolve the permissions.
	// It is part of every cache key, so a changed role table never serves
	// permissions computed under the old one.
	Version string
	Tables  Tables
}

// Tier names the layer that answered a query.
type Tier uint8

// The tiers, from nearest to farthest.
const (
	TierNone Tier = iota
	TierL1
	TierL2
	TierSource
)

// String returns the tier's label as used in logs and metrics.
func (t Tier) String() string {
	switch t {
	case TierL1:
		return "l1"
	case TierL2:
		return "l2"
	case TierSource:
		return "postgres"
	default:
		return "none"
	}
}

// Access is the resolved answer for one Query: everything a decision needs,
// and nothing that must be re-read per request. Values are shared between
// goroutines through the caches and must not be modified after creation.
type Access struct {
	UserFound  bool      `json:"u"`
	Banned     bool      `json:"b,omitempty"`
	BanExpires time.Time `json:"be,omitzero"`
	// User conditions (see Membership).
	EmailVerified    bool `json:"ev,omitempty"`
	Anonymous        bool `json:"an,omitempty"`
	TwoFactorEnabled bool `json:"tf,omitempty"`
	// PlatformRoles are the user's admin-plugin roles (after the default
	// role) and Platform their grants.
	PlatformRoles []string `json:"pr,omitempty"`
	Platform      Grants   `json:"pg,omitempty"`

	// OrgID is the canonical organization id; empty when the reference
	// matched no organization or none was asked for.
	OrgID string `json:"o,omitempty"`
	// Roles are the member's roles in the organization (empty: not a
	// member) and Grants the grants of those that exist (static, dynamic or
	// both merged); UnknownRoles lists held roles that are neither.
	Roles        []string `json:"r,omitempty"`
	Grants       Grants   `json:"g,omitempty"`
	UnknownRoles []string `json:"x,omitempty"`
	// InvalidRoles, when not empty, says why the organization's dynamic
	// roles cannot be used: a row Better Auth cannot parse, which makes
	// Better Auth answer every permission check in that organization with
	// an error. Permission checks then fail.
	InvalidRoles string `json:"ir,omitempty"`

	// TeamID is the team's id when the query named a team of the
	// organization, and TeamMember whether the user is in it.
	TeamID     string `json:"ti,omitempty"`
	TeamMember bool   `json:"tm,omitempty"`

	// LoadedAt is when the source query that produced this answer started,
	// on the loading process's clock. The caches compare it with the times
	// invalidations arrived: an answer loaded before an invalidation of its
	// user or organization is not served. It says nothing about what the
	// user may do, so it is no part of an answer's meaning (zero when
	// unknown).
	LoadedAt time.Time `json:"t,omitzero"`
}

// Member reports whether the user holds at least one role in the
// organization.
func (a *Access) Member() bool { return a.OrgID != "" && len(a.Roles) > 0 }

// IsBanned reports whether the user is banned at now.
func (a *Access) IsBanned(now time.Time) bool {
	return a.Banned && (a.BanExpires.IsZero() || now.Before(a.BanExpires))
}

// Resolver answers a Query. The cache tiers in internal/cache decorate it.
// Errors wrap ErrUnavailable (or a context error) when the answer cannot be
// known; the caller must then fail closed.
type Resolver interface {
	Resolve(ctx context.Context, q Query) (*Access, Tier, error)
}

// SourceResolver resolves queries from a Source, the source of truth. It is
// the innermost tier.
type SourceResolver struct {
	src Source
	now func() time.Time
}

// NewSourceResolver returns a resolver that asks src on every call. now is
// the clock stamped on answers (LoadedAt); nil means time.Now.
func NewSourceResolver(src Source, now func() time.Time) *SourceResolver {
	if now == nil {
		now = time.Now
	}
	return &SourceResolver{src: src, now: now}
}

// Resolve reads the membership and computes its grants. The answer's
// LoadedAt is taken before the query starts, so a change committed after
// that instant may or may not be in it, and one committed before is.
func (r *SourceResolver) Resolve(ctx context.Context, q Query) (*Access, Tier, error) {
	started := r.now()
	m, err := r.src.Membership(ctx, q.Subject)
	if err != nil {
		return nil, TierSource, fmt.Errorf("resolve user %q in org %q: %w", q.UserID, q.OrgRef, err)
	}
	a := Compute(m, q.Tables)
	a.LoadedAt = started
	return a, TierSource, nil
}

// Compute turns a membership into an Access under the application's static
// role tables, with Better Auth's rules (grant.go).
func Compute(m Membership, t Tables) *Access {
	a := &Access{
		UserFound:        m.UserFound,
		Banned:           m.Banned,
		BanExpires:       m.BanExpires,
		EmailVerified:    m.EmailVerified,
		Anonymous:        m.Anonymous,
		TwoFactorEnabled: m.TwoFactorEnabled,
		OrgID:            m.OrgID,
	}
	if !m.UserFound {
		return a
	}
	a.PlatformRoles = ParsePlatformRoles(m.PlatformRole, t.PlatformDefaultRole())
	a.Platform, _ = StaticGrants(a.PlatformRoles, platformTable{t})
	if m.OrgID == "" {
		return a
	}
	if m.TeamID != "" {
		a.TeamID, a.TeamMember = m.TeamID, m.TeamMember
	}
	if len(m.Roles) == 0 {
		return a
	}
	a.Roles = slices.Clone(m.Roles)
	grants, unknown, err := OrgGrants(m.Roles, t, m.DynamicRoles)
	if err != nil {
		a.InvalidRoles = err.Error()
		return a
	}
	a.Grants, a.UnknownRoles = grants, unknown
	return a
}

// platformTable adapts Tables' platform side to RoleTable.
type platformTable struct{ t Tables }

func (p platformTable) RolePermissions(role string) ([]string, bool) {
	return p.t.PlatformRolePermissions(role)
}
