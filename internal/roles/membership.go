// Package roles owns the domain of "what may this user do in this
// organization": the membership facts read from Better Auth's tables, the
// permission set resolved from them under a policy's role table, and the
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

// Membership is what Better Auth's tables say about one user in one
// organization. It is a domain value, deliberately apart from table rows.
type Membership struct {
	// UserID is the user the question was asked for.
	UserID string
	// UserFound is false when no users row has UserID.
	UserFound bool
	// Banned and BanExpires mirror users.banned and users."banExpires"
	// (zero BanExpires = banned forever).
	Banned     bool
	BanExpires time.Time
	// OrgID is the organization's canonical id, empty when the reference
	// (id or slug) matched no organization.
	OrgID string
	// Roles are the member's role names: members.role split on commas,
	// trimmed, de-duplicated, in first-seen order, over every members row of
	// (OrgID, UserID) (Better Auth does not enforce one row). Empty = not a
	// member.
	Roles []string
	// CustomRoles holds, for each role in Roles that the organization defines
	// in "organizationRoles", its permissions as "resource:action" strings.
	CustomRoles map[string][]string
}

// IsBanned reports whether the user is banned at now: banned and either
// no expiry or an expiry in the future.
func (m Membership) IsBanned(now time.Time) bool {
	return m.Banned && (m.BanExpires.IsZero() || now.Before(m.BanExpires))
}

// Source reads memberships from the source of truth. orgRef is an
// organization id or slug. A missing user, organization or membership is
// not an error: it is reported in the returned Membership. Errors wrap
// ErrUnavailable when the source could not answer.
type Source interface {
	Membership(ctx context.Context, userID, orgRef string) (Membership, error)
}
