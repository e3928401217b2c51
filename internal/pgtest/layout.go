package pgtest

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/authz-sidecar/authz-sidecar/internal/policy"
)

// Layout is how a test database names Better Auth's tables and columns.
// Plural is the dump in schema.sql; Singular and Custom
// are made from it by renaming tables and columns, which is what Better
// Auth's modelName and fields options amount to.
type Layout struct {
	name   string
	tables map[string]string            // model -> table, every model of the dump
	fields map[string]map[string]string // model -> logical field -> column, renamed fields only
	schema policy.Schema                // the schema section that describes the layout
}

// pluralTables are the models of schema.sql and their
// (plural) table names there.
var pluralTables = map[string]string{
	"user": "users", "session": "sessions", "account": "accounts", "verification": "verifications",
	"organization": "organizations", "member": "members", "invitation": "invitations",
	"team": "teams", "teamMember": "teamMembers", "organizationRole": "organizationRoles",
	"apikey": "apikeys", "jwks": "jwks", "twoFactor": "twoFactors",
}

// The layouts.
var (
	// Plural names every table like the fixture app does (modelName
	// "users", "sessions", ...).
	Plural = Layout{name: "plural", tables: pluralTables, schema: policy.Schema{Naming: "plural"}}
	// Singular is Better Auth's default install: tables named after the
	// models (user, session, organization, ...).
	Singular = Layout{name: "singular", tables: singularTables(), schema: policy.Schema{Naming: "singular"}}
	// Custom renames every table the sidecar reads and several columns
	// (one table name needs quoting to survive: mixed case), as an
	// application with modelName and fields options would.
	Custom = customLayout()
)

func singularTables() map[string]string {
	m := make(map[string]string, len(pluralTables))
	for model := range pluralTables {
		m[model] = model
	}
	return m
}

func customLayout() Layout {
	tables := singularTables()
	renamed := map[string]string{
		"user": "AppUser", "session": "app_sessions", "organization": "app_orgs", "member": "app_org_members",
		"organizationRole": "app_org_roles", "team": "app_teams", "teamMember": "app_team_members",
		"apikey": "app_api_keys",
	}
	maps.Copy(tables, renamed)
	fields := map[string]map[string]string{
		"user":         {"emailVerified": "email_verified", "banExpires": "ban_expires"},
		"organization": {"slug": "handle"},
		"member":       {"organizationId": "organization_id", "role": "roles"},
		"session":      {"token": "session_token", "activeOrganizationId": "active_org"},
		"teamMember":   {"userId": "user_id"},
		"apikey":       {"key": "key_hash", "referenceId": "owner_id"},
	}
	return Layout{
		name: "custom", tables: tables, fields: fields,
		schema: policy.Schema{Naming: "auto", Tables: renamed, Fields: fields},
	}
}

// String returns the layout's name: plural, singular or custom.
func (l Layout) String() string { return l.name }

// Table returns the (unquoted) table name of a Better Auth model.
func (l Layout) Table(model string) string {
	t, ok := l.tables[model]
	if !ok {
		panic(fmt.Sprintf("pgtest: unknown model %q", model)) // a test bug
	}
	return t
}

// Column returns the (unquoted) column name of a model's logical field.
func (l Layout) Column(model, field string) string {
	if c, ok := l.fields[model][field]; ok {
		return c
	}
	return field
}

// T returns the model's table name quoted for SQL, schema-qualified
// (public.), for statements written by tests.
func (l Layout) T(model string) string { return "public." + quote(l.Table(model)) }

// C returns the model's field's column name quoted for SQL.
func (l Layout) C(model, field string) string { return quote(l.Column(model, field)) }

// Schema returns the policy schema section that maps the layout: what an
// operator would write for such a database.
func (l Layout) Schema() policy.Schema {
	s := policy.Schema{Naming: l.schema.Naming}
	if l.schema.Tables != nil {
		s.Tables = maps.Clone(l.schema.Tables)
	}
	if l.schema.Fields != nil {
		s.Fields = make(map[string]map[string]string, len(l.schema.Fields))
		for m, f := range l.schema.Fields {
			s.Fields[m] = maps.Clone(f)
		}
	}
	return s
}

// renameSQL turns the plural dump into l: columns first (under the plural
// table names), then tables. Empty for Plural.
func (l Layout) renameSQL() string {
	var b strings.Builder
	for _, model := range slices.Sorted(maps.Keys(l.fields)) {
		for _, field := range slices.Sorted(maps.Keys(l.fields[model])) {
			fmt.Fprintf(&b, "ALTER TABLE public.%s RENAME COLUMN %s TO %s;\n",
				quote(pluralTables[model]), quote(field), quote(l.fields[model][field]))
		}
	}
	for _, model := range slices.Sorted(maps.Keys(pluralTables)) {
		if to := l.tables[model]; to != pluralTables[model] {
			fmt.Fprintf(&b, "ALTER TABLE public.%s RENAME TO %s;\n", quote(pluralTables[model]), quote(to))
		}
	}
	return b.String()
}

// Part is an optional part of Better Auth's schema, which a test database
// can be made without (see Options.Without).
type Part string

// The optional parts, named after what turns them on in Better Auth.
const (
	// DynamicRoles is organization({ dynamicAccessControl }): the
	// organizationRole table.
	DynamicRoles Part = "dynamic_roles"
	// Teams is organization({ teams }): the team and teamMember tables,
	// session.activeTeamId and invitation.teamId.
	Teams Part = "teams"
	// Admin is the admin plugin: user.role, banned, banReason, banExpires
	// and session.impersonatedBy.
	Admin Part = "admin"
	// Anonymous is the anonymous plugin: user.isAnonymous.
	Anonymous Part = "anonymous"
	// TwoFactor is the two-factor plugin: user.twoFactorEnabled.
	TwoFactor Part = "two_factor"
	// APIKeys is the api-key plugin: the apikey table.
	APIKeys Part = "api_keys"
	// Sessions is the session table (absent when Better Auth keeps
	// sessions in secondaryStorage only).
	Sessions Part = "sessions"
)

// dropSQL removes part from a database of layout l.
func (l Layout) dropSQL(part Part) string {
	dropCols := func(model string, fields ...string) string {
		cols := make([]string, len(fields))
		for i, f := range fields {
			cols[i] = "DROP COLUMN " + l.C(model, f)
		}
		return "ALTER TABLE " + l.T(model) + " " + strings.Join(cols, ", ") + ";\n"
	}
	switch part {
	case DynamicRoles:
		return "DROP TABLE " + l.T("organizationRole") + ";\n"
	case Teams:
		return "DROP TABLE " + l.T("teamMember") + ", " + l.T("team") + ";\n" +
			dropCols("session", "activeTeamId") + dropCols("invitation", "teamId")
	case Admin:
		return dropCols("user", "role", "banned", "banReason", "banExpires") + dropCols("session", "impersonatedBy")
	case Anonymous:
		return dropCols("user", "isAnonymous")
	case TwoFactor:
		return dropCols("user", "twoFactorEnabled")
	case APIKeys:
		return "DROP TABLE " + l.T("apikey") + ";\n"
	case Sessions:
		return "DROP TABLE " + l.T("session") + ";\n"
	}
	panic(fmt.Sprintf("pgtest: unknown part %q", part)) // a test bug
}
