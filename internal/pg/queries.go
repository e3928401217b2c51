package pg

import (
	"strings"
)

// queries are the statements built from the resolved names and features,
// once. An empty statement means its feature is off: the repository gives
// the neutral answer without asking.
type queries struct {
	membership string
	// membershipTeam is membership for a request that names a team; the
	// same statement as membership without teams.
	membershipTeam string
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
	if q.membershipTeam != q.membership {
		w = append(w, warmup{q.membershipTeam, []any{"", "", ""}})
	}
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
	q := queries{membership: membershipSQL(n, f, false), membershipTeam: membershipSQL(n, f, true)}
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
// (empty for none). withTeam builds the statement for a request that names
// a team; the other one leaves the team tables out, because every table a
// statement names costs PostgreSQL a lock and an open on each execution
// (a tenth of the query's CPU for the two team tables).
//
//   - org: the organization whose id, else slug, is $2 (id wins: ids and
//     slugs share no namespace, and an id is what callers most likely hold
//     and cannot be renamed). Index: BitmapOr of the primary key and the
//     slug's unique index. A LATERAL with LIMIT, so that the planner keeps
//     it one subquery rather than repeating it wherever org.id is used.
//   - mem: every member row of (org, user): Better Auth does not enforce
//     one row, so they are all read, oldest first. Index: the userId index
//     alone: a user has a row per organization, an organization one per
//     member. Left to itself the planner ANDs the userId and organizationId
//     indexes, reading every member of the organization (1000 in make
//     bench) for each lookup, which doubled the query's PostgreSQL CPU;
//     comparing organizationId concatenated with the empty string keeps
//     it from using that index.
//   - dyn: every organizationRole row of the organization, but only when the
//     user is a member (nothing else needs them): Better Auth parses them
//     all, and one it cannot parse makes every check in the organization
//     fail. Left out (NULL) without dynamic access control: the query must
//     not name a table that does not exist.
//   - the team, when $3 names a team of the organization, and whether the
//     user is in it (NULL and false without teams, or without withTeam).
//   - the user's standing and conditions; a column of an absent plugin is
//     its neutral value (not banned, no platform role, not anonymous, no
//     two-factor).
//   - the outer row always exists, so a missing user, organization or
//     membership comes back as NULLs rather than as no row. It names $3, so
//     that every variant takes the same three parameters.
//
// Lateral joins rather than CTEs, and no team tables unless asked: the
// same answer for about 10 % less PostgreSQL CPU per query (go test -bench
// MembershipLargeOrgs ./internal/pg reports it as pg-cpu-ns/op).
func membershipSQL(n *names, f Features, withTeam bool) string {
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
	WHERE {r.organizationId} = org.id AND mem.roles IS NOT NULL
) dyn ON true`
		tables["organizationRole"] = "organizationRole"
		cols["r.role"], cols["r.id"] = [3]string{"r", "organizationRole", "role"}, [3]string{"r", "organizationRole", "id"}
		cols["r.permission"] = [3]string{"r", "organizationRole", "permission"}
		cols["r.organizationId"] = [3]string{"r", "organizationRole", "organizationId"}
	}
	teamSelect, teamJoin := "NULL::text,\n\tfalse", ""
	if f.Teams && withTeam {
		teamSelect = `{t.id}::text,
	{t.id} IS NOT NULL AND EXISTS (SELECT 1 FROM {teamMember} tm WHERE {tm.teamId} = {t.id} AND {tm.userId} = $1)`
		teamJoin = `
LEFT JOIN {team} t ON $3 <> '' AND {t.id} = $3 AND {t.organizationId} = org.id`
		tables["team"], tables["teamMember"] = "team", "teamMember"
		cols["t.id"], cols["t.organizationId"] = [3]string{"t", "team", "id"}, [3]string{"t", "team", "organizationId"}
		cols["tm.teamId"], cols["tm.userId"] = [3]string{"tm", "teamMember", "teamId"}, [3]string{"tm", "teamMember", "userId"}
	}

	sql := `SELECT
	{u.id} IS NOT NULL,
	` + banned + `,
	` + banExpires + `,
	` + platformRole + `,
	coalesce({u.emailVerified}, false),
	` + anonymous + `,
	` + twoFactor + `,
	org.id,
	mem.roles,
	` + dynSelect + `,
	` + teamSelect + `
FROM (VALUES ($3::text)) AS one (team_ref)
LEFT JOIN {user} u ON {u.id} = $1
LEFT JOIN LATERAL (
	SELECT {o.id}::text AS id FROM {organization} o
	WHERE $2 <> '' AND ({o.id} = $2 OR {o.slug} = $2)
	ORDER BY {o.id} = $2 DESC
	LIMIT 1
) org ON true
LEFT JOIN LATERAL (
	SELECT array_agg({m.role}::text ORDER BY {m.createdAt}, {m.id}) AS roles
	FROM {member} m
	WHERE {m.userId} = $1 AND {m.organizationId}::text || '' = org.id
) mem ON true` + dynJoin + teamJoin
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
