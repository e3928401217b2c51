package pg

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// MemberRepository implements roles.Source over Better Auth's user,
// organization, member, organizationRole, team and teamMember tables.
type MemberRepository struct {
	q querier
}

var _ roles.Source = (*MemberRepository)(nil)

// NewMemberRepository returns a MemberRepository reading through db.
func NewMemberRepository(db *DB) *MemberRepository {
	return &MemberRepository{q: db.pool}
}

// membershipSQL answers everything Membership needs in one round trip; pgx
// prepares it once per connection (statement cache). $1 = user id,
// $2 = organization id or slug (” for none), $3 = team id (” for none).
//
//   - org: the organization whose id, else slug, is $2 (id wins: ids and
//     slugs share no namespace, and an id is what callers most likely hold
//     and cannot be renamed). Index: BitmapOr of the primary key and the
//     slug's unique index.
//   - mem: every member row of (org, user): Better Auth does not enforce one
//     row, so they are all read, oldest first. Index: the userId index.
//   - dyn: every organizationRole row of the organization, but only when the
//     user is a member (nothing else needs them): Better Auth parses them
//     all, and one it cannot parse makes every check in the organization
//     fail.
//   - the team, when $3 names a team of the organization, and whether the
//     user is in it.
//   - the outer row always exists, so a missing user, organization or
//     membership comes back as NULLs rather than as no row.
const membershipSQL = `WITH org AS (
	SELECT o.id FROM organizations o
	WHERE $2 <> '' AND (o.id = $2 OR o.slug = $2)
	ORDER BY o.id = $2 DESC
	LIMIT 1
), mem AS (
	SELECT m.id, m.role, m."createdAt"
	FROM members m JOIN org ON m."organizationId" = org.id
	WHERE m."userId" = $1
)
SELECT
	u.id IS NOT NULL,
	coalesce(u.banned, false),
	u."banExpires",
	coalesce(u.role, ''),
	coalesce(u."emailVerified", false),
	org.id,
	(SELECT array_agg(mem.role ORDER BY mem."createdAt", mem.id) FROM mem),
	dyn.names,
	dyn.perms,
	t.id,
	t.id IS NOT NULL AND EXISTS (SELECT 1 FROM "teamMembers" tm WHERE tm."teamId" = t.id AND tm."userId" = $1)
FROM (VALUES (1)) AS one (x)
LEFT JOIN users u ON u.id = $1
LEFT JOIN org ON true
LEFT JOIN LATERAL (
	SELECT array_agg(r.role ORDER BY r.id) AS names, array_agg(r.permission ORDER BY r.id) AS perms
	FROM "organizationRoles" r
	WHERE r."organizationId" = org.id AND EXISTS (SELECT 1 FROM mem)
) dyn ON true
LEFT JOIN teams t ON $3 <> '' AND t.id = $3 AND t."organizationId" = org.id`

// Membership returns what Better Auth's tables say about s, in one
// statement. A missing user, organization, membership or team is reported
// in the result, never as an error. Errors (connection, timeout, cancelled
// context) wrap roles.ErrUnavailable and keep the cause.
func (r *MemberRepository) Membership(ctx context.Context, s roles.Subject) (roles.Membership, error) {
	var (
		m           roles.Membership
		banExpires  pgtype.Timestamptz
		orgID       *string
		teamID      *string
		memberRoles []string
		dynNames    []string
		dynPerms    []*string
	)
	err := r.q.QueryRow(ctx, membershipSQL, s.UserID, s.OrgRef, s.TeamRef).Scan(
		&m.UserFound, &m.Banned, &banExpires, &m.PlatformRole, &m.EmailVerified,
		&orgID, &memberRoles, &dynNames, &dynPerms, &teamID, &m.TeamMember)
	if err != nil {
		return roles.Membership{}, unavailable("membership", err)
	}
	m.BanExpires = banEnd(banExpires)
	if orgID != nil {
		m.OrgID = *orgID
	}
	if teamID != nil {
		m.TeamID = *teamID
	}
	m.Roles = roles.ParseRoleList(memberRoles...)
	if len(dynNames) == len(dynPerms) {
		for i, name := range dynNames {
			perm := "null" // a NULL permission is no JSON object: Better Auth fails on it
			if dynPerms[i] != nil {
				perm = *dynPerms[i]
			}
			m.DynamicRoles = append(m.DynamicRoles, roles.DynamicRole{Name: name, Permission: perm})
		}
	}
	return m, nil
}

// banEnd maps user.banExpires to the domain's convention, where zero means
// forever. NULL and 'infinity' never end; '-infinity' ended long ago.
func banEnd(ts pgtype.Timestamptz) time.Time {
	switch {
	case !ts.Valid || ts.InfinityModifier == pgtype.Infinity:
		return time.Time{}
	case ts.InfinityModifier == pgtype.NegativeInfinity:
		return time.Unix(0, 0).UTC()
	default:
		return ts.Time
	}
}
