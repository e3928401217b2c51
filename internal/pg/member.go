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
	db *DB
}

var _ roles.Source = (*MemberRepository)(nil)

// NewMemberRepository returns a MemberRepository reading through db.
func NewMemberRepository(db *DB) *MemberRepository {
	return &MemberRepository{db: db}
}

// Membership returns what Better Auth's tables say about s, in one
// statement (see membershipSQL). A missing user, organization, membership
// or team is reported in the result, never as an error; so are the facts
// of optional parts the database lacks (see Features). Errors (connection,
// timeout, cancelled context, schema; on a hot standby, ErrReplicaLag) are
// *Error, wrapping roles.ErrUnavailable and the cause.
func (r *MemberRepository) Membership(ctx context.Context, s roles.Subject) (roles.Membership, error) {
	st, err := r.db.ready(ctx, "membership")
	if err != nil {
		return roles.Membership{}, err
	}
	var (
		m           roles.Membership
		banExpires  pgtype.Timestamptz
		orgID       *string
		teamID      *string
		memberRoles []string
		dynNames    []string
		dynPerms    []*string
	)
	if err := r.db.fenced(ctx, "membership"); err != nil {
		return roles.Membership{}, err
	}
	sql := st.q.membership
	if s.TeamRef != "" {
		sql = st.q.membershipTeam
	}
	err = r.db.pool.QueryRow(ctx, sql, s.UserID, s.OrgRef, s.TeamRef).Scan(
		&m.UserFound, &m.Banned, &banExpires, &m.PlatformRole, &m.EmailVerified, &m.Anonymous, &m.TwoFactorEnabled,
		&orgID, &memberRoles, &dynNames, &dynPerms, &teamID, &m.TeamMember)
	if err != nil {
		return roles.Membership{}, r.db.fail(ctx, "membership", err)
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
