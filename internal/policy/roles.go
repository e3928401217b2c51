package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Statements is Better Auth's access-control shape: resource to actions.
type Statements map[string][]string

// AppRoles is the application's static roles as Better Auth holds them,
// printed by the app (test/betterauth/print-roles.ts shows how):
//
//	{"organization": {"statements": {...}, "roles": {"owner": {"organization": ["update", "delete"], ...}, ...}},
//	 "admin":        {"statements": {...}, "roles": {"admin": {...}, "user": {...}}}}
//
// Both parts are optional.
type AppRoles struct {
	Organization *RoleSet `json:"organization"`
	Admin        *RoleSet `json:"admin"`
}

// RoleSet is one plugin's statements and roles.
type RoleSet struct {
	Statements Statements            `json:"statements"`
	Roles      map[string]Statements `json:"roles"`
}

// ParseAppRoles decodes an app_roles file. Unknown keys are errors, so a
// file of another shape is not silently read as empty.
func ParseAppRoles(data []byte) (*AppRoles, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var a AppRoles
	if err := dec.Decode(&a); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("data after the JSON object")
	}
	for _, rs := range []*RoleSet{a.Organization, a.Admin} {
		if rs == nil {
			continue
		}
		for name, st := range rs.Roles {
			if st == nil {
				return nil, fmt.Errorf("role %q: not an object of resources", name)
			}
			for res, acts := range st {
				if acts == nil {
					return nil, fmt.Errorf("role %q: resource %q: not a list of actions", name, res)
				}
			}
		}
	}
	return &a, nil
}

// betterAuthAdmin is the admin plugin's default access control
// (dist/plugins/admin/access/statement.mjs), used when the policy names no
// admin roles.
var betterAuthAdmin = RoleSet{
	Statements: Statements{
		"user":    {"create", "list", "set-role", "ban", "impersonate", "impersonate-admins", "delete", "set-password", "set-email", "set-phone", "get", "update"},
		"session": {"list", "revoke", "delete"},
	},
	Roles: map[string]Statements{
		"admin": {
			"user":    {"create", "list", "set-role", "ban", "impersonate", "delete", "set-password", "set-email", "set-phone", "get", "update"},
			"session": {"list", "revoke", "delete"},
		},
		"user": {"user": {}, "session": {}},
	},
}

// flatten turns statements into sorted literal "resource:action" pairs.
func flatten(s Statements) []string {
	out := []string{}
	for res, acts := range s {
		for _, a := range acts {
			out = append(out, res+":"+a)
		}
	}
	slices.Sort(out)
	return slices.Clip(slices.Compact(out))
}

// appRoles reads the app_roles file named at n, relative to the policy
// file, and adds its bytes to the policy version.
func (c *checker) appRoles(n *yaml.Node, p *Policy) *AppRoles {
	name, ok := c.str(n, "app_roles")
	if !ok {
		return nil
	}
	return c.readAppRoles(n, name, p)
}

// readAppRoles reads an app roles file; problems are reported at n.
func (c *checker) readAppRoles(n *yaml.Node, name string, p *Policy) *AppRoles {
	if c.readFile == nil {
		c.add(n, "app_roles: this policy is parsed without access to other files")
		return nil
	}
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(c.dir, name)
	}
	data, err := c.readFile(path)
	if err != nil {
		c.add(n, "app_roles: %v", err)
		return nil
	}
	if len(data) > MaxFileBytes {
		c.add(n, "app_roles: %s is larger than %d bytes", name, MaxFileBytes)
		return nil
	}
	a, err := ParseAppRoles(data)
	if err != nil {
		c.add(n, "app_roles: %s: %v", name, err)
		return nil
	}
	p.AppRoles = name
	c.version.Write([]byte{0})
	c.version.Write(data)
	return a
}

// statements checks a statements mapping (resource to list of actions).
func (c *checker) statements(n *yaml.Node, what string) Statements {
	fs, ok := c.pairs(n, what)
	if !ok {
		return nil
	}
	out := make(Statements, len(fs))
	for _, f := range fs {
		if !isName(f.key.Value) {
			c.add(f.key, "%s: resource %q must match [A-Za-z0-9_.-]+", what, f.key.Value)
			continue
		}
		if f.val.Kind == yaml.SequenceNode && len(f.val.Content) == 0 {
			out[f.key.Value] = []string{}
			continue
		}
		acts, nodes := c.strList(f.val, what+"."+f.key.Value)
		for i, a := range acts {
			if !isName(a) {
				c.add(nodes[i], "%s.%s: action %q must match [A-Za-z0-9_.-]+", what, f.key.Value, a)
			}
		}
		out[f.key.Value] = acts
	}
	return out
}

// roleDef is a role as written in the file.
type roleDef struct {
	name     string
	key      *yaml.Node
	inherits []*yaml.Node // the valid inherits entries
	perms    []string     // own permissions, valid ones only, wildcards expanded
}

// roleTable checks a roles mapping (name to inherits and permissions) and
// returns each role's own and inherited permissions, literal and sorted,
// "resource:*" expanded to every action statements gives the resource.
func (c *checker) roleTable(n *yaml.Node, what string, st Statements) (perms map[string][]string, keys map[string]*yaml.Node) {
	fs, ok := c.pairs(n, what)
	if !ok {
		return nil, nil
	}
	defs := make(map[string]*roleDef, len(fs))
	var order []*roleDef
	for _, f := range fs {
		name := f.key.Value
		if !isName(name) {
			c.add(f.key, "%s: role name %q must match [A-Za-z0-9_.-]+", what, name)
			continue
		}
		d := &roleDef{name: name, key: f.key}
		rw := "role " + strconv.Quote(name)
		m, ok := c.mapping(f.val, rw, Keys["role"]...)
		if !ok {
			continue
		}
		if v, ok := m["inherits"]; ok {
			_, d.inherits = c.strList(v, rw+" inherits")
		}
		if v, ok := m["permissions"]; ok {
			list, nodes := c.strList(v, rw+" permissions")
			for i, perm := range list {
				if msg := checkPermission(perm, true); msg != "" {
					c.add(nodes[i], "%s: %s", rw, msg)
					continue
				}
				res, act, _ := strings.Cut(perm, ":")
				if act != "*" {
					d.perms = append(d.perms, perm)
					continue
				}
				// "resource:*" is policy-side sugar, expanded here: Better
				// Auth's own actions are literal, so the role must end up
				// holding exactly the actions the statements declare.
				acts, ok := st[res]
				switch {
				case st == nil:
					c.add(nodes[i], "%s: %q needs the statements it expands to: add statements: (or app_roles:)", rw, perm)
				case !ok:
					c.add(nodes[i], "%s: %q: the statements declare no resource %q", rw, perm, res)
				default:
					for _, a := range acts {
						d.perms = append(d.perms, res+":"+a)
					}
				}
			}
		}
		defs[name] = d
		order = append(order, d)
	}
	for _, d := range order {
		for _, in := range d.inherits {
			if defs[in.Value] == nil {
				c.add(in, "role %q inherits unknown role %q", d.name, in.Value)
			}
		}
	}
	c.cycles(order, defs)
	perms = make(map[string][]string, len(order))
	keys = make(map[string]*yaml.Node, len(order))
	for _, d := range order {
		perms[d.name] = expand(d, defs)
		keys[d.name] = d.key
	}
	return perms, keys
}

// cycles reports each cycle of role inheritance once, at the inherits entry
// that closes it, naming the whole cycle ("a -> b -> a").
func (c *checker) cycles(order []*roleDef, defs map[string]*roleDef) {
	const (
		unvisited = iota
		onStack
		done
	)
	state := make(map[string]int, len(order))
	var stack []string
	var visit func(d *roleDef)
	visit = func(d *roleDef) {
		state[d.name] = onStack
		stack = append(stack, d.name)
		for _, in := range d.inherits {
			next := defs[in.Value]
			if next == nil {
				continue
			}
			switch state[next.name] {
			case onStack:
				i := slices.Index(stack, next.name)
				cycle := append(slices.Clone(stack[i:]), next.name)
				c.add(in, "cyclic role inheritance: %s", strings.Join(cycle, " -> "))
			case unvisited:
				visit(next)
			}
		}
		stack = stack[:len(stack)-1]
		state[d.name] = done
	}
	for _, d := range order {
		if state[d.name] == unvisited {
			visit(d)
		}
	}
}

// expand returns d's own and inherited permissions, sorted and
// de-duplicated. It follows every reachable role once, so it terminates
// even on a cyclic (and therefore rejected) policy.
func expand(d *roleDef, defs map[string]*roleDef) []string {
	seen := map[string]bool{d.name: true}
	queue := []*roleDef{d}
	perms := []string{}
	for len(queue) > 0 {
		r := queue[0]
		queue = queue[1:]
		perms = append(perms, r.perms...)
		for _, in := range r.inherits {
			if next := defs[in.Value]; next != nil && !seen[next.name] {
				seen[next.name] = true
				queue = append(queue, next)
			}
		}
	}
	slices.Sort(perms)
	return slices.Clip(slices.Compact(perms))
}

// drift reports every difference between the policy's roles (as expanded)
// and the app's, at the policy's role keys (or at at, for roles the policy
// lacks). A policy role the app does not have is the dangerous one: an
// organization admin could create a dynamic role of that name, and the
// sidecar would grant it the policy's permissions while Better Auth grants
// only the dynamic role's.
func (c *checker) drift(at *yaml.Node, what string, policy map[string][]string, keys map[string]*yaml.Node, app map[string]Statements) {
	for _, name := range sortedNames(policy) {
		appSt, ok := app[name]
		if !ok {
			c.add(keys[name], "%s: role %q is not one of the app's roles (app_roles); Better Auth would treat it as unknown, or as a dynamic role an organization admin could create with the same name", what, name)
			continue
		}
		want := flatten(appSt)
		if extra := minus(policy[name], want); len(extra) > 0 {
			c.add(keys[name], "%s: role %q grants %s that the app's role does not", what, name, strings.Join(extra, ", "))
		}
		if missing := minus(want, policy[name]); len(missing) > 0 {
			c.add(keys[name], "%s: role %q lacks %s that the app's role grants", what, name, strings.Join(missing, ", "))
		}
	}
	for _, name := range sortedNames(app) {
		if _, ok := policy[name]; !ok {
			c.add(at, "%s: the app's role %q is missing from the policy", what, name)
		}
	}
}

func minus(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// allRoles resolves the organization and platform role tables from the
// statements, roles, admin.roles and app_roles keys into p, and returns the
// union of each table's permissions (to check routes' requirements).
func (c *checker) allRoles(top map[string]*yaml.Node, adminRoles *yaml.Node, app *AppRoles, p *Policy) (orgAll, platformAll []string) {
	// Organization roles.
	var st Statements
	if v, ok := top["statements"]; ok {
		st = c.statements(v, "statements")
		if app != nil && app.Organization != nil {
			have, want := flatten(st), flatten(app.Organization.Statements)
			if extra := minus(have, want); len(extra) > 0 {
				c.add(v, "statements: %s not in the app's statements", strings.Join(extra, ", "))
			}
			if missing := minus(want, have); len(missing) > 0 {
				c.add(v, "statements: the app's statements also have %s", strings.Join(missing, ", "))
			}
		}
	} else if app != nil && app.Organization != nil {
		st = app.Organization.Statements
	}
	p.rolePerms = map[string][]string{}
	if v, ok := top["roles"]; ok {
		perms, keys := c.roleTable(v, "roles", st)
		p.rolePerms = perms
		if app != nil && app.Organization != nil {
			c.drift(v, "roles", perms, keys, app.Organization.Roles)
		}
	} else if app != nil && app.Organization != nil {
		for name, s := range app.Organization.Roles {
			p.rolePerms[name] = flatten(s)
		}
	}
	if p.rolePerms == nil {
		p.rolePerms = map[string][]string{}
	}
	p.roleNames = sortedNames(p.rolePerms)

	// Platform (admin plugin) roles.
	ast := betterAuthAdmin.Statements
	if app != nil && app.Admin != nil && app.Admin.Statements != nil {
		ast = app.Admin.Statements
	}
	switch {
	case adminRoles != nil:
		perms, keys := c.roleTable(adminRoles, "admin.roles", ast)
		p.platformPerms = perms
		if app != nil && app.Admin != nil {
			c.drift(adminRoles, "admin.roles", perms, keys, app.Admin.Roles)
		}
	case app != nil && app.Admin != nil:
		p.platformPerms = map[string][]string{}
		for name, s := range app.Admin.Roles {
			p.platformPerms[name] = flatten(s)
		}
	default:
		p.platformPerms = map[string][]string{}
		for name, s := range betterAuthAdmin.Roles {
			p.platformPerms[name] = flatten(s)
		}
	}
	if p.platformPerms == nil {
		p.platformPerms = map[string][]string{}
	}
	p.platformNames = sortedNames(p.platformPerms)

	for _, perms := range p.rolePerms {
		orgAll = append(orgAll, perms...)
	}
	for _, perms := range p.platformPerms {
		platformAll = append(platformAll, perms...)
	}
	return orgAll, platformAll
}
