package pg

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/authz-sidecar/authz-sidecar/internal/policy"
)

// This file knows which of Better Auth's tables and columns the sidecar
// reads, finds them in the database (naming: plural, singular, renamed),
// checks their types and privileges, and says which optional parts exist.

// part is who creates a table or column: Better Auth's core schema, the
// organization plugin, or an optional feature.
type part uint8

const (
	partCore part = iota // Better Auth itself (user)
	partOrganization
	partDynamicRoles
	partTeams
	partAdmin
	partAnonymous
	partTwoFactor
	partAPIKeys
	partSessions
)

// source names what creates the part, as the fix for a missing table or
// column: "<source> creates it".
func (p part) source() string {
	switch p {
	case partCore:
		return "Better Auth's core schema"
	case partOrganization:
		return "the organization plugin (organization())"
	case partDynamicRoles:
		return "organization({ dynamicAccessControl: { enabled: true } })"
	case partTeams:
		return "organization({ teams: { enabled: true } })"
	case partAdmin:
		return "the admin plugin (admin())"
	case partAnonymous:
		return "the anonymous plugin (anonymous())"
	case partTwoFactor:
		return "the two-factor plugin (twoFactor())"
	case partAPIKeys:
		return "the api-key plugin (apiKey() from @better-auth/api-key)"
	case partSessions:
		return "Better Auth's core schema (unless sessions live only in secondaryStorage)"
	}
	return fmt.Sprintf("part(%d)", p)
}

// name is the part's feature name (see Features.On).
func (p part) name() string {
	for _, n := range featureNames {
		if n.p == p {
			return n.name
		}
	}
	return "the core schema"
}

// optional reports whether the sidecar works without the part.
func (p part) optional() bool { return p != partCore && p != partOrganization }

// kind is a family of column types the sidecar can read.
type kind uint8

const (
	kindText kind = iota // ids, names, roles: text or character varying
	kindBool             // boolean
	kindTime             // timestamp with time zone
	kindInt              // integer or bigint (the migrator's number)
	kindJSON             // JSON held as text (or json, jsonb)
)

func (k kind) accepts(typ string) bool {
	switch k {
	case kindText:
		return typ == "text" || typ == "character varying"
	case kindBool:
		return typ == "boolean"
	case kindTime:
		return typ == "timestamp with time zone"
	case kindInt:
		return typ == "integer" || typ == "bigint"
	case kindJSON:
		return typ == "text" || typ == "character varying" || typ == "json" || typ == "jsonb"
	}
	return false
}

// want names the type Better Auth's migrator creates on PostgreSQL.
func (k kind) want() string {
	switch k {
	case kindBool:
		return "boolean"
	case kindTime:
		return "timestamp with time zone"
	case kindInt:
		return "integer"
	}
	return "text"
}

// column is a field the sidecar reads. part is partCore when the column
// comes with its table.
type column struct {
	field string
	kind  kind
	part  part
}

// table is a model the sidecar reads and the fields it reads of it.
type table struct {
	model   string
	part    part
	columns []column
}

// tablesRead is every table and column a query reads (policy.Models is the
// vocabulary the schema section may rename; this is what must exist).
var tablesRead = []table{
	{"user", partCore, []column{
		{"id", kindText, partCore}, {"emailVerified", kindBool, partCore},
		{"role", kindText, partAdmin}, {"banned", kindBool, partAdmin}, {"banExpires", kindTime, partAdmin},
		{"isAnonymous", kindBool, partAnonymous}, {"twoFactorEnabled", kindBool, partTwoFactor},
	}},
	{"organization", partOrganization, []column{{"id", kindText, partCore}, {"slug", kindText, partCore}}},
	{"member", partOrganization, []column{
		{"id", kindText, partCore}, {"organizationId", kindText, partCore}, {"userId", kindText, partCore},
		{"role", kindText, partCore}, {"createdAt", kindTime, partCore},
	}},
	{"organizationRole", partDynamicRoles, []column{
		{"id", kindText, partCore}, {"organizationId", kindText, partCore}, {"role", kindText, partCore},
		{"permission", kindJSON, partCore},
	}},
	{"team", partTeams, []column{{"id", kindText, partCore}, {"organizationId", kindText, partCore}}},
	{"teamMember", partTeams, []column{{"teamId", kindText, partCore}, {"userId", kindText, partCore}}},
	{"session", partSessions, []column{
		{"id", kindText, partCore}, {"token", kindText, partCore}, {"userId", kindText, partCore},
		{"expiresAt", kindTime, partCore}, {"activeOrganizationId", kindText, partCore},
		{"activeTeamId", kindText, partTeams}, {"impersonatedBy", kindText, partAdmin},
	}},
	{"apikey", partAPIKeys, []column{
		{"id", kindText, partCore}, {"configId", kindText, partCore}, {"referenceId", kindText, partCore},
		{"key", kindText, partCore}, {"enabled", kindBool, partCore}, {"expiresAt", kindTime, partCore},
		{"remaining", kindInt, partCore}, {"rateLimitEnabled", kindBool, partCore},
		{"rateLimitTimeWindow", kindInt, partCore}, {"rateLimitMax", kindInt, partCore},
		{"permissions", kindJSON, partCore},
	}},
}

// pluralNames are the tables of an app that names every model in the plural
// (modelName "users", ... or an adapter's usePlural).
var pluralNames = map[string]string{
	"user": "users", "session": "sessions", "organization": "organizations", "member": "members",
	"organizationRole": "organizationRoles", "team": "teams", "teamMember": "teamMembers", "apikey": "apikeys",
}

// Features says which optional parts of Better Auth's schema the database
// has. Queries leave absent parts out and give their neutral answer.
type Features struct {
	// DynamicRoles: the organizationRole table
	// (organization({ dynamicAccessControl })). Off: no dynamic roles.
	DynamicRoles bool
	// Teams: the team and teamMember tables (organization({ teams })).
	// Off: no request names a team of its organization.
	Teams bool
	// Admin: user.role, banned, banExpires and session.impersonatedBy
	// (the admin plugin). Off: no platform roles, nobody banned or
	// impersonated.
	Admin bool
	// Anonymous: user.isAnonymous (the anonymous plugin). Off: nobody is
	// anonymous.
	Anonymous bool
	// TwoFactor: user.twoFactorEnabled (the two-factor plugin). Off:
	// nobody has two-factor authentication.
	TwoFactor bool
	// APIKeys: the apikey table (the api-key plugin). Off: no key exists.
	APIKeys bool
	// Sessions: the session table (absent when Better Auth keeps sessions
	// only in secondaryStorage). Off: no session exists in the database.
	Sessions bool
	// ReadOnly reports that the database session is read-only
	// (default_transaction_read_only). pg sets it in QueryPrepare mode; in
	// the pooler modes it must come from the role or the pooler.
	ReadOnly bool
}

func (f Features) has(p part) bool {
	switch p {
	case partDynamicRoles:
		return f.DynamicRoles
	case partTeams:
		return f.Teams
	case partAdmin:
		return f.Admin
	case partAnonymous:
		return f.Anonymous
	case partTwoFactor:
		return f.TwoFactor
	case partAPIKeys:
		return f.APIKeys
	case partSessions:
		return f.Sessions
	}
	return true
}

func (f *Features) set(p part) {
	switch p {
	case partDynamicRoles:
		f.DynamicRoles = true
	case partTeams:
		f.Teams = true
	case partAdmin:
		f.Admin = true
	case partAnonymous:
		f.Anonymous = true
	case partTwoFactor:
		f.TwoFactor = true
	case partAPIKeys:
		f.APIKeys = true
	case partSessions:
		f.Sessions = true
	}
}

// featureNames are the optional parts in the order String lists them.
var featureNames = []struct {
	p    part
	name string
}{
	{partDynamicRoles, "dynamic_roles"}, {partTeams, "teams"}, {partAdmin, "admin"},
	{partAnonymous, "anonymous"}, {partTwoFactor, "two_factor"}, {partAPIKeys, "api_keys"},
	{partSessions, "sessions"},
}

// On and Off list the optional parts present and absent, by name
// (dynamic_roles, teams, admin, anonymous, two_factor, api_keys, sessions).
func (f Features) On() []string  { return f.names(true) }
func (f Features) Off() []string { return f.names(false) }

func (f Features) names(on bool) []string {
	var out []string
	for _, n := range featureNames {
		if f.has(n.p) == on {
			out = append(out, n.name)
		}
	}
	return out
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// Supports reports, as a *SchemaError, what p needs that the database
// lacks: an api_keys section without the apikey table, sessions read from
// the database without a session table, team checks without team tables,
// platform roles without the admin columns, a two_factor condition without
// twoFactorEnabled. A policy that only could use a part (deny
// impersonation, not_anonymous) is fine without it: the neutral answer is
// right.
func (f Features) Supports(p *policy.Policy) error {
	var problems []string
	if p.APIKeys.Enabled && !f.APIKeys {
		problems = append(problems, "the policy's api_keys section needs the apikey table, which is missing: "+
			partAPIKeys.source()+" creates it; run Better Auth's migrator (or map a renamed table in schema.tables.apikey)")
	}
	if !f.Sessions {
		if p.Session.Enabled && p.Session.Storage == policy.StorageDatabase {
			problems = append(problems, "the policy's session section reads sessions from the database (storage: database), but the session table is missing: "+
				"set session.storage: secondary when Better Auth keeps sessions in secondaryStorage, or map a renamed table in schema.tables.session")
		}
		if p.JWT.SessionClaim != "" {
			problems = append(problems, "jwt.session_claim looks sessions up by id in the session table, which is missing: enable session.storeSessionInDatabase in Better Auth, or remove session_claim")
		}
	}
	var team, platform, twoFactor []string
	for _, r := range p.Routes {
		if r.Team {
			team = append(team, r.Name)
		}
		if r.NeedsPlatform() {
			platform = append(platform, r.Name)
		}
		if r.Conditions.TwoFactor {
			twoFactor = append(twoFactor, r.Name)
		}
	}
	if !f.Teams && (len(team) > 0 || len(p.TeamSources) > 0) {
		what := "the policy's team section"
		if len(team) > 0 {
			what = "routes " + routeList(team)
		}
		problems = append(problems, what+" need team membership, but the team tables are missing: "+partTeams.source()+" creates them; run Better Auth's migrator")
	}
	if !f.Admin && len(platform) > 0 {
		problems = append(problems, "routes "+routeList(platform)+" check platform roles, but user.role is missing: "+partAdmin.source()+" adds it; run Better Auth's migrator")
	}
	if !f.TwoFactor && len(twoFactor) > 0 {
		problems = append(problems, "routes "+routeList(twoFactor)+" require two_factor, but user.twoFactorEnabled is missing: "+partTwoFactor.source()+" adds it; run Better Auth's migrator")
	}
	if len(problems) == 0 {
		return nil
	}
	return &SchemaError{Problems: problems}
}

// routeList names up to three routes.
func routeList(names []string) string {
	const most = 3
	q := make([]string, 0, most)
	for _, n := range names[:min(len(names), most)] {
		q = append(q, fmt.Sprintf("%q", n))
	}
	s := strings.Join(q, ", ")
	if len(names) > most {
		s += fmt.Sprintf(" (and %d more)", len(names)-most)
	}
	return s
}

// names are the resolved table and column names of every model read.
type names struct {
	naming string            // how the tables were found: plural, singular, custom, or one of the first two +renamed
	tables map[string]string // model -> table name as in the catalog
	fields map[string]map[string]string
	// qualified maps a model to its schema-qualified, quoted table name,
	// for queries: search_path cannot send them elsewhere later.
	qualified map[string]string
}

// table returns the quoted, schema-qualified table of model.
func (n *names) table(model string) string { return n.qualified[model] }

// col returns alias."column" for a model's field.
func (n *names) col(alias, model, field string) string {
	return alias + "." + pgx.Identifier{n.column(model, field)}.Sanitize()
}

func (n *names) column(model, field string) string {
	if c, ok := n.fields[model][field]; ok {
		return c
	}
	return field
}

// show names a table for an error message: "member", or "app_members"
// (member) when the table is renamed.
func (n *names) show(model string) string {
	t := n.tables[model]
	if t == model {
		return fmt.Sprintf("%q", t)
	}
	return fmt.Sprintf("%q (%s)", t, model)
}

// showCol names a column for an error message.
func (n *names) showCol(model, field string) string {
	t, c := n.tables[model], n.column(model, field)
	if t == model && c == field {
		return fmt.Sprintf("%q.%q", t, c)
	}
	return fmt.Sprintf("%q.%q (%s.%s)", t, c, model, field)
}

// relation is what the catalog says about one table name.
type relation struct {
	schema  string
	canRead bool // SELECT on the whole table
	columns map[string]attribute
}

type attribute struct {
	typ     string
	canRead bool
}

// catalog is what the schema check learned from the database.
type catalog struct {
	relations  map[string]*relation // by table name, as looked up in search_path
	searchPath string
	user       string
	readOnly   bool
}

// catalogSQL looks table names up the way an unqualified name in a query
// would be (search_path), and lists their columns with their base types
// and whether the current role may read them. Only tables, views and the
// like count: an index or sequence of the same name does not.
const catalogSQL = `SELECT w.name, n.nspname::text, has_table_privilege(c.oid, 'SELECT'),
	coalesce(a.attname::text, ''),
	coalesce(format_type(coalesce(nullif(t.typbasetype, 0), a.atttypid), NULL), ''),
	coalesce(has_column_privilege(c.oid, a.attnum, 'SELECT'), false)
FROM unnest($1::text[]) AS w (name)
JOIN pg_catalog.pg_class c ON c.oid = to_regclass(quote_ident(w.name))
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')`

const settingsSQL = `SELECT current_setting('search_path'), current_user::text,
	current_setting('default_transaction_read_only') = 'on'`

// querier is what the schema check needs of the pool.
type querier interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
	QueryRow(context.Context, string, ...any) pgx.Row
}

// readCatalog asks the database about the given table names.
func readCatalog(ctx context.Context, q querier, tableNames []string) (*catalog, error) {
	cat := &catalog{relations: map[string]*relation{}}
	if err := q.QueryRow(ctx, settingsSQL).Scan(&cat.searchPath, &cat.user, &cat.readOnly); err != nil {
		return nil, err
	}
	rows, err := q.Query(ctx, catalogSQL, tableNames)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var name, schema, col, typ string
		var canRead, colRead bool
		if err := rows.Scan(&name, &schema, &canRead, &col, &typ, &colRead); err != nil {
			return nil, err
		}
		r := cat.relations[name]
		if r == nil {
			r = &relation{schema: schema, canRead: canRead, columns: map[string]attribute{}}
			cat.relations[name] = r
		}
		if col != "" {
			r.columns[col] = attribute{typ: typ, canRead: colRead}
		}
	}
	return cat, rows.Err()
}

// candidates are the table names to look up for a schema section: the
// configured table of each model, else its plural or singular name (both
// under naming auto).
func candidates(s policy.Schema) []string {
	var out []string
	for _, t := range tablesRead {
		if name, ok := s.Tables[t.model]; ok {
			out = append(out, name)
			continue
		}
		if s.Naming != "singular" {
			out = append(out, pluralNames[t.model])
		}
		if s.Naming != "plural" {
			out = append(out, t.model)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// resolveNames picks each model's table. Under naming auto it looks at the
// required models the schema section does not name (user, organization,
// member): exactly one of the plural and singular sets must be complete.
func resolveNames(s policy.Schema, cat *catalog) (*names, error) {
	n := &names{naming: s.Naming, tables: map[string]string{}, fields: s.Fields, qualified: map[string]string{}}
	if n.naming == "" {
		n.naming = "auto"
	}
	if n.naming == "auto" {
		var detect []string
		for _, t := range tablesRead {
			if _, named := s.Tables[t.model]; !named && !t.part.optional() {
				detect = append(detect, t.model)
			}
		}
		switch {
		case len(detect) == 0:
			n.naming = "custom" // every required table is named: nothing to detect
		default:
			plural, singular := true, true
			var found, pluralSet, singularSet []string
			for _, m := range detect {
				pluralSet, singularSet = append(pluralSet, pluralNames[m]), append(singularSet, m)
				for _, name := range []string{pluralNames[m], m} {
					if cat.relations[name] != nil {
						found = append(found, name)
					}
				}
				plural = plural && cat.relations[pluralNames[m]] != nil
				singular = singular && cat.relations[m] != nil
			}
			plurals, singulars := strings.Join(pluralSet, ", "), strings.Join(singularSet, ", ")
			switch {
			case plural && singular:
				return nil, &SchemaError{Problems: []string{fmt.Sprintf(
					"schema.naming is auto, but both Better Auth's plural tables (%s) and its singular tables (%s) exist in search_path %s; set schema.naming to plural or singular",
					plurals, singulars, cat.searchPath)}}
			case !plural && !singular:
				return nil, &SchemaError{Problems: []string{fmt.Sprintf(
					"schema.naming is auto, but neither Better Auth's plural tables (%s) nor its singular tables (%s) all exist in search_path %s for user %q (found: %s); run Better Auth's migrator, or set schema.naming, or name renamed tables in schema.tables",
					plurals, singulars, cat.searchPath, cat.user, orNone(found))}}
			case plural:
				n.naming = "plural"
			default:
				n.naming = "singular"
			}
		}
	}
	for _, t := range tablesRead {
		switch name, named := s.Tables[t.model]; {
		case named:
			n.tables[t.model] = name
		case n.naming == "plural":
			n.tables[t.model] = pluralNames[t.model]
		default:
			n.tables[t.model] = t.model
		}
	}
	if len(s.Tables) > 0 && n.naming != "custom" {
		n.naming += "+renamed"
	}
	return n, nil
}

// evaluate checks the found tables against tablesRead and says which
// optional parts exist. At start (start nil) a part is on when any of its
// tables exists, or, for parts that only add columns, any of its user
// columns; then all of it must exist. On a later check, the parts on at
// start must still exist in full (the queries read them) and parts added
// since are ignored. It also fills n.qualified.
func evaluate(n *names, cat *catalog, start *Features) (Features, []string) {
	rel := func(model string) *relation { return cat.relations[n.tables[model]] }
	var f Features
	evidence := map[part]string{} // why a part counts as on
	if start != nil {
		f = *start
		for _, fn := range featureNames {
			evidence[fn.p] = fmt.Sprintf("%s existed when the sidecar started; restart it after removing a plugin", fn.name)
		}
	} else {
		for _, t := range tablesRead {
			if t.part.optional() && rel(t.model) != nil && evidence[t.part] == "" {
				evidence[t.part] = fmt.Sprintf("table %s exists, so %s is on", n.show(t.model), t.part.name())
			}
			if user := rel("user"); t.model == "user" && user != nil {
				for _, c := range t.columns {
					if _, ok := user.columns[n.column("user", c.field)]; ok && c.part != partCore && evidence[c.part] == "" {
						evidence[c.part] = fmt.Sprintf("column %s exists, so %s is on", n.showCol("user", c.field), c.part.name())
					}
				}
			}
		}
		for p := range evidence {
			f.set(p)
		}
	}
	f.ReadOnly = cat.readOnly
	because := func(p part) string {
		if e := evidence[p]; e != "" {
			return " (" + e + ")"
		}
		return ""
	}

	var problems []string
	for _, t := range tablesRead {
		if !f.has(t.part) {
			continue
		}
		r := rel(t.model)
		if r == nil {
			problems = append(problems, fmt.Sprintf("table %s is missing: %s creates it; run Better Auth's migrator%s",
				n.show(t.model), t.part.source(), because(t.part)))
			continue
		}
		n.qualified[t.model] = pgx.Identifier{r.schema, n.tables[t.model]}.Sanitize()
		var unreadable []string
		for _, c := range t.columns {
			if !f.has(c.part) {
				continue
			}
			a, ok := r.columns[n.column(t.model, c.field)]
			switch {
			case !ok:
				who := c.part
				if who == partCore {
					who = t.part
				}
				problems = append(problems, fmt.Sprintf("column %s is missing: %s adds it; run Better Auth's migrator%s",
					n.showCol(t.model, c.field), who.source(), because(c.part)))
			case !c.kind.accepts(a.typ):
				problems = append(problems, fmt.Sprintf("column %s is %s, want %s (what Better Auth's migrator creates)",
					n.showCol(t.model, c.field), a.typ, c.kind.want()))
			case !r.canRead && !a.canRead:
				unreadable = append(unreadable, n.column(t.model, c.field))
			}
		}
		if len(unreadable) > 0 {
			problems = append(problems, fmt.Sprintf("role %q may not read %s (columns %s): GRANT SELECT ON %s TO %s",
				cat.user, n.show(t.model), strings.Join(unreadable, ", "), pgx.Identifier{r.schema, n.tables[t.model]}.Sanitize(),
				pgx.Identifier{cat.user}.Sanitize()))
		}
	}
	return f, problems
}

// renameHint ends every schema error: most mismatches on a working Better
// Auth database are renames the schema section does not state.
const renameHint = "if the app renames tables or fields (modelName, fields), state them in the policy's schema section"

// check resolves (or, with known names, re-resolves) the schema and
// evaluates it. It returns an I/O error as is, and schema problems as a
// *SchemaError.
func check(ctx context.Context, q querier, s policy.Schema, known *names, start *Features) (*names, Features, error) {
	lookup := candidates(s)
	if known != nil {
		lookup = slices.Sorted(maps.Values(known.tables))
	}
	cat, err := readCatalog(ctx, q, lookup)
	if err != nil {
		return nil, Features{}, err
	}
	n := known
	if n == nil {
		if n, err = resolveNames(s, cat); err != nil {
			return nil, Features{}, err
		}
	} else {
		n = &names{naming: known.naming, tables: known.tables, fields: known.fields, qualified: map[string]string{}}
	}
	f, problems := evaluate(n, cat, start)
	if len(problems) > 0 {
		return nil, f, &SchemaError{Problems: append(problems, renameHint)}
	}
	return n, f, nil
}
