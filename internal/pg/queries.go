package pg

import (
	"strings"
)

// queries are the statements built from the resolved names and features,
// once. An empty statement means its feature is off: the repository gives
// the neutral answer without asking.
type queries struct {
	membership     string
	sessionByToken string
	sessionByID    string
	apiKeyByHash   string
}

// warmup is one execution that prepares a statement without matching a
// row.
type warmup struct {
	sql  string
	args []any
}

// warmups lists one execution of each statement.
func (q queries) warmups() []warmup {
	w := []warmup{{q.membership, []any{"", "", ""}}}
	for _, sql := range []string{q.sessionByToken, q.sessionByID, q.apiKeyByHash} {
		if sql != "" {
			w = append(w, warmup{sql, []any{""}})
		}
	}
	return w
}

// expand replaces {model} table placeholders and {alias.field} column
// placeholders with the resolved, quoted names, so that the queries below
// read like SQL. Placeholders are braced, so none is a prefix of another.
func expand(n *names, sql string, tables map[string]string, cols map[string][3]string) string {
	pairs := make([]string, 0, 2*(len(tables)+len(cols)))
	for ph, model := range tables {
		pairs = append(pairs, "{"+ph+"}", n.table(model))
	}
	for ph, c := range cols {
		pairs = append(pairs, "{"+ph+"}", n.col(c[0], c[1], c[2]))
	}
	return strings.NewReplacer(pairs...).Replace(sql)
}

func buildQueries(n *names, f Features) queries {
	q := queries{membership: membershipSQL(n, f)}
	if f.Sessions {
		q.sessionByToken, q.sessionByID = sessionSQL(n, f)
	}
	if f.APIKeys {
		q.apiKeyByHash = apiKeySQL(n)
	}
	return q
}

// membershipSQL answers everything Membership needs in one round trip. $1 =
// user id, $2 = organization id or slug (empty for none), $3 = team id
// (empty for none).
//
//   - org: the organization whose id, else slug, is $2 (id wins: ids and
//     slugs share no namespace, and an id is what callers most likely hold
//     and cannot be renamed). Index: BitmapOr of the primary key and the
//     slug's unique index.
//   - own, mem: every member row of (org, user): Better Auth does not
//     enforce one row, so they are all read, oldest first. Index: the userId
//     index alone. A user has a row per organization, an organization one
//     per member: own reads the user's few rows and mem keeps the
//     organization's. Left to itself the planner ANDs the userId and
//     organizationId indexes, reading every member of the organization
//     (1000 in make bench) for each lookup: the query cost twice the
//     PostgreSQL CPU. MATERIALIZED (PostgreSQL 12+) keeps it from doing so.
//   - dyn: every organizationRole row of the organization, but only when the
//     user is a member (nothing else needs them): Better Auth parses them
//     all, and one it cannot parse makes every check in the organization
//     fail. Left out (NULL) without dynamic access control: the query must
//     not name a table that does not exist.
//   - the team, when $3 names a team of the organization, and whether the
//     user is in it (NULL and false without teams).
//   - the user's standing and conditions; a column of an absent plugin is
//     its neutral value (not banned, no platform role, not anonymous, no
//     two-factor).
//   - the outer row always exists, so a missing user, organization or
//     membership comes back as NULLs rather than as no row. It names $3, so
//     that the statement takes three parameters with or without teams.
func membershipSQL(n *names, f Features) string {
	cols := map[string][3]string{
		"o.id": {"o", "organization", "id"}, "o.slug": {"o", "organization", "slug"},
		"m.id": {"m", "member", "id"}, "m.role": {"m", "member", "role"}, "m.createdAt": {"m", "member", "createdAt"},
		"m.organizationId": {"m", "member", "organizationId"}, "m.userId": {"m", "member", "userId"},
		"u.id": {"u", "user", "id"}, "u.emailVerified": {"u", "user", "emailVerified"},
	}
	tables := map[string]string{"organization": "organization", "member": "member", "user": "user"}

	banned, banExpires, platformRole := "false", "NULL::timestamptz", "''"
	if f.Admin {
		banned, banExpires, platformRole = "coalesce({u.banned}, false)", "{u.banExpires}", "coalesce({u.role}::text, '')"
		cols["u.banned"], cols["u.banExpires"], cols["u.role"] = [3]string{"u", "user", "banned"}, [3]string{"u", "user", "banExpires"}, [3]string{"u", "user", "role"}
	}
	anonymous, twoFactor := "false", "false"
	if f.Anonymous {
		// NULL is false: Better Auth's default is applied in application
		// code, not by the database.
		anonymous = "coalesce({u.isAnonymous}, false)"
		cols["u.isAnonymous"] = [3]string{"u", "user", "isAnonymous"}
	}
	if f.TwoFactor {
		twoFactor = "coalesce({u.twoFactorEnabled}, false)"
		cols["u.twoFactorEnabled"] = [3]string{"u", "user", "twoFactorEnabled"}
	}
	dynSelect, dynJoin := "NULL::text[],\n\tNULL::text[]", ""
	if f.DynamicRoles {
		dynSelect = "dyn.names,\n\tdyn.perms"
		dynJoin = `
LEFT JOIN LATERAL (
	SELECT array_agg({r.role}::text ORDER BY {r.id}) AS names, array_agg({r.permission}::text ORDER BY {r.id}) AS perms
	FROM {organizationRole} r
	WHERE {r.organizationId} = org.id AND EXISTS (SELECT 1 FROM mem)
) dyn ON true`
		tables["organizationRole"] = "organizationRole"
		cols["r.role"], cols["r.id"] = [3]string{"r", "organizationRole", "role"}, [3]string{"r", "organizationRole", "id"}
		cols["r.permission"] = [3]string{"r", "organizationRole", "permission"}
		cols["r.organizationId"] = [3]string{"r", "organizationRole", "organizationId"}
	}
	teamSelect, teamJoin := "NULL::text,\n\tfalse", ""
	if f.Teams {
		teamSelect = `{t.id}::text,
	{t.id} IS NOT NULL AND EXISTS (SELECT 1 FROM {teamMember} tm WHERE {tm.teamId} = {t.id} AND {tm.userId} = $1)`
		teamJoin = `
LEFT JOIN {team} t ON $3 <> '' AND {t.id} = $3 AND {t.organizationId} = org.id`
		tables["team"], tables["teamMember"] = "team", "teamMember"
		cols["t.id"], cols["t.organizationId"] = [3]string{"t", "team", "id"}, [3]string{"t", "team", "organizationId"}
		cols["tm.teamId"], cols["tm.userId"] = [3]string{"tm", "teamMember", "teamId"}, [3]string{"tm", "teamMember", "userId"}
	}

	sql := `WITH org AS (
	SELECT {o.id}::text AS id FROM {organization} o
	WHERE $2 <> '' AND ({o.id} = $2 OR {o.slug} = $2)
	ORDER BY {o.id} = $2 DESC
	LIMIT 1
), own AS MATERIALIZED (
	SELECT {m.id} AS id, {m.role}::text AS role, {m.createdAt} AS created, {m.organizationId}::text AS org_id
	FROM {member} m
	WHERE {m.userId} = $1
), mem AS (
	SELECT own.id, own.role, own.created FROM own WHERE own.org_id = (SELECT id FROM org)
)
SELECT
	{u.id} IS NOT NULL,
	` + banned + `,
	` + banExpires + `,
	` + platformRole + `,
	coalesce({u.emailVerified}, false),
	` + anonymous + `,
	` + twoFactor + `,
	org.id,
	(SELECT array_agg(mem.role ORDER BY mem.created, mem.id) FROM mem),
	` + dynSelect + `,
	` + teamSelect + `
FROM (VALUES ($3::text)) AS one (team_ref)
LEFT JOIN {user} u ON {u.id} = $1
LEFT JOIN org ON true` + dynJoin + teamJoin
	return expand(n, sql, tables, cols)
}

// sessionSQL returns the session lookups by token and by id. The user join
// makes a session whose user row is gone not found, as Better Auth's
// findSession does. Index: the token's unique index, or the primary key.
// activeTeamId and impersonatedBy are empty without teams or the admin
// plugin.
func sessionSQL(n *names, f Features) (byToken, byID string) {
	cols := map[string][3]string{
		"s.id": {"s", "session", "id"}, "s.userId": {"s", "session", "userId"}, "s.expiresAt": {"s", "session", "expiresAt"},
		"s.activeOrganizationId": {"s", "session", "activeOrganizationId"}, "s.token": {"s", "session", "token"},
		"u.id": {"u", "user", "id"},
	}
	tables := map[string]string{"session": "session", "user": "user"}
	activeTeam, impersonatedBy := "''", "''"
	if f.Teams {
		activeTeam = "coalesce({s.activeTeamId}::text, '')"
		cols["s.activeTeamId"] = [3]string{"s", "session", "activeTeamId"}
	}
	if f.Admin {
		impersonatedBy = "coalesce({s.impersonatedBy}::text, '')"
		cols["s.impersonatedBy"] = [3]string{"s", "session", "impersonatedBy"}
	}
	base := `SELECT {s.id}::text, {s.userId}::text, {s.expiresAt},
	coalesce({s.activeOrganizationId}::text, ''), ` + activeTeam + `, ` + impersonatedBy + `
FROM {session} s JOIN {user} u ON {u.id} = {s.userId}`
	return expand(n, base+` WHERE {s.token} = $1`, tables, cols), expand(n, base+` WHERE {s.id} = $1`, tables, cols)
}

// apiKeySQL finds a key by its stored hash. The column is indexed but not
// unique; Better Auth's findOne takes one row, and so does this.
//
// A key is counted (Better Auth writes usage on every verification that
// needs it) when it has a remaining count, or a rate limit that is on (the
// row's rateLimitEnabled, NULL meaning the default, on) with both a window
// and a maximum (without them Better Auth skips the limit).
func apiKeySQL(n *names) string {
	cols := map[string][3]string{}
	for _, f := range []string{"id", "configId", "referenceId", "enabled", "expiresAt", "remaining",
		"rateLimitEnabled", "rateLimitTimeWindow", "rateLimitMax", "permissions", "key"} {
		cols["k."+f] = [3]string{"k", "apikey", f}
	}
	return expand(n, `SELECT {k.id}::text, coalesce({k.configId}::text, 'default'), {k.referenceId}::text,
	{k.enabled} IS DISTINCT FROM false,
	{k.expiresAt},
	{k.remaining} IS NOT NULL OR ({k.rateLimitEnabled} IS DISTINCT FROM false AND {k.rateLimitTimeWindow} IS NOT NULL AND {k.rateLimitMax} IS NOT NULL),
	{k.permissions}::text
FROM {apikey} k WHERE {k.key} = $1 LIMIT 1`, map[string]string{"apikey": "apikey"}, cols)
}
