package pg

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// MemberRepository implements roles.Source over Better Auth's users,
// organizations, members and "organizationRoles" tables.
type MemberRepository struct {
	q querier
}

var _ roles.Source = (*MemberRepository)(nil)

// NewMemberRepository returns a MemberRepository reading through db.
func NewMemberRepository(db *DB) *MemberRepository {
	return &MemberRepository{q: db.pool}
}

// roleCutset is what is trimmed around each comma-separated role name, in
// Go and (passed as $3) in SQL alike, so both sides agree on the names.
const roleCutset = " \t\n\r\f\v"

// membershipSQL answers everything Membership needs in one round trip; pgx
// prepares it once per connection (statement cache). $1 = user id,
// $2 = organization id or slug, $3 = roleCutset.
//
//   - org: the organization whose id, else slug, is $2 (id wins; see
//     organizationSQL). Index: BitmapOr of organizations_pkey and
//     organizations_slug_key (a table of a few pages is scanned instead,
//     which the planner rightly finds cheaper).
//   - mem: every members row of (org, user): Better Auth does not enforce one
//     row, so they are all read, oldest first. Index: members_userId_idx
//     (a user has few memberships), organization checked as a filter.
//   - custom: the "organizationRoles" rows of that organization whose role
//     is one the member holds, compared case-sensitively after trimming
//     (Better Auth stores custom role names lowercased and writes
//     members.role with the same names, so no case folding is done). The
//     schema has no index on "organizationRoles", so this part scans that
//     table; it is small (custom roles of all organizations).
//   - the outer row always exists, so a missing user, organization or
//     membership comes back as NULLs rather than as no row.
const membershipSQL = `WITH org AS (
	SELECT o.id FROM organizations o
	WHERE o.id = $2 OR o.slug = $2
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
	org.id,
	(SELECT array_agg(mem.role ORDER BY mem."createdAt", mem.id) FROM mem),
	custom.names,
	custom.perms
FROM (VALUES (1)) AS one (x)
LEFT JOIN users u ON u.id = $1
LEFT JOIN org ON true
LEFT JOIN LATERAL (
	SELECT array_agg(r.role ORDER BY r.id) AS names, array_agg(r.permission ORDER BY r.id) AS perms
	FROM "organizationRoles" r
	WHERE r."organizationId" = org.id
	AND r.role IN (SELECT btrim(part, $3) FROM mem, unnest(string_to_array(mem.role, ',')) AS part)
) custom ON true`

// Membership returns what Better Auth's tables say about userID in the
// organization whose id or slug is orgRef, in one statement. A missing
// user, organization or membership is reported in the result, never as an
// error. Errors (connection, timeout, cancelled context) wrap
// roles.ErrUnavailable and keep the cause.
//
// A custom role whose permission JSON does not parse is returned with no
// permissions: it grants nothing, and the caller sees the role exists.
func (r *MemberRepository) Membership(ctx context.Context, userID, orgRef string) (roles.Membership, error) {
	var (
		m           = roles.Membership{UserID: userID}
		banExpires  pgtype.Timestamptz
		orgID       *string
		memberRoles []string
		customNames []string
		customPerms []string
	)
	err := r.q.QueryRow(ctx, membershipSQL, userID, orgRef, roleCutset).Scan(
		&m.UserFound, &m.Banned, &banExpires, &orgID, &memberRoles, &customNames, &customPerms)
	if err != nil {
		return roles.Membership{}, unavailable("membership", err)
	}
	m.BanExpires = banEnd(banExpires)
	if orgID != nil {
		m.OrgID = *orgID
	}
	m.Roles = parseRoles(memberRoles)
	m.CustomRoles = customRoles(m.Roles, customNames, customPerms)
	return m, nil
}

// parseRoles splits each members.role value on commas, trims every name,
// drops empty ones and de-duplicates, keeping first-seen order across rows.
// It returns nil when no name is left (not a member).
func parseRoles(values []string) []string {
	var out []string
	for _, v := range values {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.Trim(name, roleCutset)
			if name != "" && !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	return out
}

// customRoles maps each held role that has an "organizationRoles" row to
// its sorted "resource:action" permissions. names and perms are parallel.
// Several rows for one role (the table has no unique constraint) are merged.
// A row whose JSON does not parse contributes nothing, but the role is still
// present, with an empty non-nil slice, so a caller cannot mistake it for a
// built-in role of the same name. Returns nil when there are none.
func customRoles(held, names, perms []string) map[string][]string {
	if len(names) == 0 || len(names) != len(perms) {
		return nil
	}
	out := make(map[string][]string, len(names))
	for i, name := range names {
		// SQL already matched held roles; re-check with the exact Go parse
		// (which drops empty names) so the two can never disagree silently.
		if !slices.Contains(held, name) {
			continue
		}
		out[name] = append(out[name], parsePermissions(perms[i])...)
		if out[name] == nil {
			out[name] = []string{}
		}
	}
	for name, p := range out {
		slices.Sort(p)
		out[name] = slices.Compact(p)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// parsePermissions turns Better Auth's permission JSON,
// {"project":["read","update"]}, into "project:read", "project:update".
// Anything that is not an object of string arrays yields nil (grants
// nothing); empty resource or action names are skipped.
func parsePermissions(doc string) []string {
	var statements map[string][]string
	if err := json.Unmarshal([]byte(doc), &statements); err != nil {
		return nil
	}
	var out []string
	for resource, actions := range statements {
		if resource == "" {
			continue
		}
		for _, action := range actions {
			if action != "" {
				out = append(out, resource+":"+action)
			}
		}
	}
	return out
}
