package roles

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// RoleTable is the policy's view of the built-in roles: the permissions a
// role grants, inherited ones included. *policy.Policy satisfies it.
type RoleTable interface {
	RolePermissions(role string) ([]string, bool)
}

// Query asks what UserID may do in the organization OrgRef (an id or a
// slug; empty when the route needs no organization and only the user's
// standing, such as a ban, matters).
type Query struct {
	UserID string
	OrgRef string
	// Version identifies the policy whose Roles resolve the permissions.
	// It is part of every cache key, so a changed role table never serves
	// permission sets computed under the old one.
	Version string
	Roles   RoleTable
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
	// OrgID is the canonical organization id; empty when the reference
	// matched no organization or none was asked for.
	OrgID string   `json:"o,omitempty"`
	Roles []string `json:"r,omitempty"`
	// Permissions is the union of the roles' permissions, sorted and
	// de-duplicated; entries may be "resource:*".
	Permissions []string `json:"p,omitempty"`
	// UnknownRoles lists held roles that neither the policy nor the
	// organization defines; they grant nothing.
	UnknownRoles []string `json:"x,omitempty"`
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

// Has reports whether the permission set grants perm ("resource:action"),
// directly or through a "resource:*" grant. It does not allocate: it runs
// on every request.
func (a *Access) Has(perm string) bool {
	colon := strings.IndexByte(perm, ':')
	for _, p := range a.Permissions {
		if p == perm {
			return true
		}
		// "resource:*" grants every action on resource.
		if colon > 0 && len(p) == colon+2 && p[colon+1] == '*' && p[:colon+1] == perm[:colon+1] {
			return true
		}
	}
	return false
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
}

// NewSourceResolver returns a resolver that asks src on every call.
func NewSourceResolver(src Source) *SourceResolver {
	return &SourceResolver{src: src}
}

// Resolve reads the membership and computes its permission set. The
// answer's LoadedAt is taken before the query starts, so a change committed
// after that instant may or may not be in it, and one committed before is.
func (r *SourceResolver) Resolve(ctx context.Context, q Query) (*Access, Tier, error) {
	started := time.Now()
	m, err := r.src.Membership(ctx, q.UserID, q.OrgRef)
	if err != nil {
		return nil, TierSource, fmt.Errorf("resolve user %q in org %q: %w", q.UserID, q.OrgRef, err)
	}
	a := Compute(m, q.Roles)
	a.LoadedAt = started
	return a, TierSource, nil
}

// Compute turns a membership into an Access: the permission set is the
// union over the member's roles, each taken from the policy's role table
// when defined there, else from the organization's own (dynamic) role.
// Policy roles win so an organization cannot redefine "admin" for itself.
func Compute(m Membership, table RoleTable) *Access {
	a := &Access{
		UserFound:  m.UserFound,
		Banned:     m.Banned,
		BanExpires: m.BanExpires,
		OrgID:      m.OrgID,
	}
	if m.OrgID == "" || len(m.Roles) == 0 {
		return a
	}
	a.Roles = slices.Clone(m.Roles)
	var perms []string
	for _, role := range m.Roles {
		if p, ok := table.RolePermissions(role); ok {
			perms = append(perms, p...)
			continue
		}
		if p, ok := m.CustomRoles[role]; ok {
			perms = append(perms, p...)
			continue
		}
		a.UnknownRoles = append(a.UnknownRoles, role)
	}
	slices.Sort(perms)
	a.Permissions = slices.Compact(perms)
	return a
}
