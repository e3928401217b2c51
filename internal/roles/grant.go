package roles

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// This file is Better Auth's permission rule, written once. Everything that
// decides whether roles grant permissions (the engine, the policy test
// runner, explain, the benchmarks' oracle) calls it. It mirrors Better Auth
// 1.7.25:
//
//   - dist/plugins/organization/permission.mjs (hasPermissionFn):
//     `for (const role of roles) if (acRoles[role]?.authorize(input.permissions)?.success) return true`
//     — a request is granted when ONE role authorizes ALL of it; there is no
//     union across roles.
//   - dist/plugins/access/access.mjs (role().authorize): for each requested
//     resource, `const allowedActions = statements[requestedResource]`; with
//     the default "AND" connector every requested action must be in
//     allowedActions (`actions.every(... allowedActions.includes(...))`);
//     with "OR" one action of one resource suffices. Actions are compared
//     as literal strings: "*" is an action named "*".
//   - dist/plugins/organization/has-permission.mjs: each organizationRole
//     row's permission JSON is `JSON.parse`d and checked against
//     `z.record(z.string(), z.array(z.string()))`; an invalid row makes the
//     whole check fail (HTTP 500); each row is merged into the static role
//     of the same name (`merged[key] = [...new Set([...merged[key] ?? [], ...actions])]`),
//     else it becomes a role of its own.
//   - dist/plugins/organization/roles.mjs (parseRoleList): member roles are
//     members.role split on "," and trimmed, empty names dropped.
//   - dist/plugins/admin/has-permission.mjs: platform roles are
//     `(input.role || input.options?.defaultRole || "user").split(",")`
//     (not trimmed), adminUserIds pass every check, and again one role must
//     authorize everything.

// Grant is what one role authorizes: literal "resource:action" pairs,
// sorted and de-duplicated. It is read-only once built.
type Grant struct {
	Role  string   `json:"r"`
	Perms []string `json:"p,omitempty"`
}

// Has reports whether the grant authorizes perm exactly (no wildcards: a
// policy's wildcards are expanded when it is loaded, and Better Auth's own
// actions are literal). It does not allocate.
func (g *Grant) Has(perm string) bool {
	_, found := slices.BinarySearch(g.Perms, perm)
	return found
}

// All reports whether the grant authorizes every one of perms (Better
// Auth's "AND" connector). An empty request is not authorized, as in
// Better Auth (authorize answers "Not authorized" for {}).
func (g *Grant) All(perms []string) bool {
	if len(perms) == 0 {
		return false
	}
	for _, p := range perms {
		if !g.Has(p) {
			return false
		}
	}
	return true
}

// AnyOf reports whether the grant authorizes at least one of perms (Better
// Auth's "OR" connector).
func (g *Grant) AnyOf(perms []string) bool {
	for _, p := range perms {
		if g.Has(p) {
			return true
		}
	}
	return false
}

// Grants are the grants of the roles a subject holds, one per role.
type Grants []Grant

// All reports whether ONE of the roles authorizes every permission in
// perms: Better Auth's rule. Two roles that each authorize half of a
// request do not authorize it together.
func (gs Grants) All(perms []string) bool {
	for i := range gs {
		if gs[i].All(perms) {
			return true
		}
	}
	return false
}

// Any reports whether some role authorizes at least one permission in perms.
func (gs Grants) Any(perms []string) bool {
	for i := range gs {
		if gs[i].AnyOf(perms) {
			return true
		}
	}
	return false
}

// Roles returns the names of the roles, in order.
func (gs Grants) Roles() []string {
	out := make([]string, len(gs))
	for i := range gs {
		out[i] = gs[i].Role
	}
	return out
}

// Permission joins a resource and an action into "resource:action".
func Permission(resource, action string) string { return resource + ":" + action }

// Statements is Better Auth's access-control shape: resource to actions,
// e.g. {"project": ["read", "update"]}.
type Statements map[string][]string

// Perms flattens the statements into sorted, de-duplicated
// "resource:action" pairs. Actions are literal.
func (s Statements) Perms() []string {
	var out []string
	for res, acts := range s {
		for _, a := range acts {
			out = append(out, Permission(res, a))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ErrInvalidRole reports an organizationRole row whose permission value is
// not what Better Auth accepts; Better Auth answers every permission check
// of that organization with HTTP 500 while such a row exists.
var ErrInvalidRole = errors.New("invalid role permissions")

// ParseStatements parses a dynamic role's permission value the way Better
// Auth 1.7.25 does (JSON.parse, then z.record(z.string(),
// z.array(z.string()))): a JSON object whose every value is an array of
// strings. Anything else — invalid JSON, null, an array, a value that is not
// an array of strings — wraps ErrInvalidRole.
func ParseStatements(doc string) (Statements, error) {
	dec := json.NewDecoder(strings.NewReader(doc))
	var raw map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRole, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the JSON value", ErrInvalidRole)
	}
	if raw == nil {
		// "null" decodes into a nil map without error; z.record refuses it.
		return nil, fmt.Errorf("%w: not a JSON object", ErrInvalidRole)
	}
	out := make(Statements, len(raw))
	for res, v := range raw {
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			return nil, fmt.Errorf("%w: resource %q: not an array of strings", ErrInvalidRole, res)
		}
		var acts []string
		if err := json.Unmarshal(v, &acts); err != nil {
			return nil, fmt.Errorf("%w: resource %q: not an array of strings", ErrInvalidRole, res)
		}
		if acts == nil {
			acts = []string{}
		}
		out[res] = acts
	}
	return out, nil
}

// ParseRoleList splits members.role as Better Auth's parseRoleList does:
// on ",", each name trimmed, empty names dropped. Duplicates are dropped
// too (they change nothing in Better Auth's loop), keeping first-seen order.
func ParseRoleList(values ...string) []string {
	var out []string
	for _, v := range values {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.TrimSpace(name)
			if name != "" && !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	return out
}

// ParsePlatformRoles splits users.role as Better Auth's admin plugin does:
// `(role || defaultRole || "user").split(",")`, without trimming (a role
// " admin" is not "admin" there either). Empty names are dropped: they
// name no role.
func ParsePlatformRoles(role, defaultRole string) []string {
	if role == "" {
		role = defaultRole
	}
	if role == "" {
		role = "user"
	}
	var out []string
	for name := range strings.SplitSeq(role, ",") {
		if name != "" && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// RoleTable is the application's static roles: the permissions a role
// authorizes, as literal sorted "resource:action" pairs (a policy's
// inheritance and wildcards already expanded). *policy.Policy satisfies it
// for organization roles.
type RoleTable interface {
	RolePermissions(role string) ([]string, bool)
}

// DynamicRole is one organizationRole row: a role an organization defined
// for itself, with its permission value as stored (JSON text).
type DynamicRole struct {
	Name       string
	Permission string
}

// OrgGrants computes the grants of the held roles in one organization as
// Better Auth's has-permission does: each held role is the static role of
// that name (if any) merged with every dynamic row of that name (if any);
// a held role that is neither grants nothing and is returned in unknown.
// Every dynamic row of the organization is parsed, held or not, because
// Better Auth parses them all and fails on the first invalid one: err then
// wraps ErrInvalidRole.
func OrgGrants(held []string, static RoleTable, dynamic []DynamicRole) (grants Grants, unknown []string, err error) {
	merged := make(map[string][]string)
	for _, d := range dynamic {
		st, perr := ParseStatements(d.Permission)
		if perr != nil {
			return nil, nil, fmt.Errorf("organization role %q: %w", d.Name, perr)
		}
		if slices.Contains(held, d.Name) {
			merged[d.Name] = append(merged[d.Name], st.Perms()...)
		}
	}
	for _, role := range held {
		perms, isStatic := static.RolePermissions(role)
		extra, isDynamic := merged[role]
		switch {
		case isStatic && isDynamic:
			all := append(slices.Clone(perms), extra...)
			slices.Sort(all)
			grants = append(grants, Grant{Role: role, Perms: slices.Clip(slices.Compact(all))})
		case isStatic:
			grants = append(grants, Grant{Role: role, Perms: perms})
		case isDynamic:
			slices.Sort(extra)
			grants = append(grants, Grant{Role: role, Perms: slices.Clip(slices.Compact(extra))})
		default:
			unknown = append(unknown, role)
		}
	}
	return grants, unknown, nil
}

// StaticGrants returns the grants of roles taken from table alone (platform
// roles, or organization roles without dynamic access control); roles the
// table does not define are returned in unknown.
func StaticGrants(roles []string, table RoleTable) (grants Grants, unknown []string) {
	for _, role := range roles {
		if perms, ok := table.RolePermissions(role); ok {
			grants = append(grants, Grant{Role: role, Perms: perms})
		} else {
			unknown = append(unknown, role)
		}
	}
	return grants, unknown
}
