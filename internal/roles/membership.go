// Package roles owns the domain of "what may this user do": the facts read
// from Better Auth's tables about a user (standing, platform roles,
// conditions), their membership of an organization and a team, and Better
// Auth's rule that turns roles into granted permissions (grant.go), plus the
// small interfaces through which the cache tiers and the data layer plug in.
//
// It imports no database, cache or transport package; internal/pg implements
// Source, internal/cache decorates Resolver.
package roles

import (
	"context"
	"errors"
	"time"
)

// ErrUnavailable reports that the source of truth could not be asked (for
// example Postgres is down or timed out). Callers must fail closed on it.
var ErrUnavailable = errors.New("membership source unavailable")

// Subject names what one lookup is about: a user, and optionally an
// organization (id or slug) and a team of it (id).
type Subject struct {
	UserID string
	// OrgRef is an organization id or slug; empty when the route needs no
	// organization.
	OrgRef string
	// TeamRef is a team id; empty when the route needs no team. Only asked
	// together with OrgRef.
	TeamRef string
}

// Membership is what Better Auth's tables say about one Subject. It is a
// domain value, deliberately apart from table rows. Facts whose column or
// table does not exist in the database (an optional plugin is off) are
// zero.
type Membership struct {
	// UserFound is false when no user row has the id.
	UserFound bool
	// Banned and BanExpires mirror the admin plugin's user.banned and
	// user.banExpires (zero BanExpires = banned forever).
	Banned     bool
	BanExpires time.Time
	// PlatformRole is the admin plugin's user.role as stored (comma-joined
	// global roles; empty when NULL).
	PlatformRole string
	// EmailVerified is user.emailVerified; Anonymous the anonymous plugin's
	// user.isAnonymous; TwoFactorEnabled the two-factor plugin's
	// user.twoFactorEnabled.
	EmailVerified    bool
	Anonymous        bool
	TwoFactorEnabled bool

	// OrgID is the organization's canonical id, empty when the reference
	// (id or slug) matched no organization.
	OrgID string
	// Roles are the member's role names: member.role parsed with
	// ParseRoleList over every member row of (OrgID, user) (Better Auth
	// does not enforce one row), in first-seen order. Empty = not a member.
	Roles []string
	// DynamicRoles are every organizationRole row of the organization (not
	// only the held roles': Better Auth parses them all).
	DynamicRoles []DynamicRole

	// TeamID is the team's id when TeamRef named a team of OrgID; empty
	// otherwise.
	TeamID string
	// TeamMember reports a teamMember row of (TeamID, user).
	TeamMember bool
}

// Source reads memberships from the source of truth. A missing user,
// organization, membership or team is not an error: it is reported in the
// returned Membership. Errors wrap ErrUnavailable when the source could not
// answer.
type Source interface {
	Membership(ctx context.Context, s Subject) (Membership, error)
}
