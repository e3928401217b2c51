package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/authz-sidecar/authz-sidecar/bench/loadgen"
	"github.com/authz-sidecar/authz-sidecar/internal/jwttest"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// The fleet's policy: Better Auth's organization plugin with the roles of
// policies.yaml, JWTs of its jwt plugin, the organization from the path.
// The routes below restate its requirements; expected answers go through
// Better Auth's permission rule as written once in internal/roles, over
// this text's role table.
const policyYAML = `jwt:
  issuer: %[1]s
  audiences: [%[1]s]
  jwks_url: %[2]s
organization:
  from: [path:org]
statements:
  organization: [update, delete]
  member: [create, update, delete]
  invitation: [create, cancel]
  leave: [request, read, approve]
roles:
  member: { permissions: ["leave:request", "leave:read"] }
  admin:  { inherits: [member], permissions: ["organization:update", "invitation:*", "member:*", "leave:approve"] }
  owner:  { inherits: [admin], permissions: ["organization:delete"] }
routes:
  - { name: me, path: /api/me, authenticated: true }
  - { name: request-leave, methods: [POST], path: "/api/orgs/{org}/leave", require: [leave:request] }
  - { name: approve-leave, methods: [POST], path: "/api/orgs/{org}/leave/{id}/approve", require: [leave:approve] }
  - { name: read-leave, methods: [GET], path: "/api/orgs/{org}/leave/**", require_any: [leave:read, leave:approve] }
  - { name: delete-org, methods: [DELETE], path: "/api/orgs/{org}", require: [organization:delete] }
default: deny
`

// route is a route of the policy with a concrete request and its weight
// in the mix.
type route struct {
	method, path string // path: %s is the organization id
	authOnly     bool
	require      []string // every one
	requireAny   []string // at least one
	weight       int
}

var routes = []route{
	{method: "GET", path: "/api/orgs/%s/leave/lv_1", requireAny: []string{"leave:read", "leave:approve"}, weight: 55},
	{method: "POST", path: "/api/orgs/%s/leave", require: []string{"leave:request"}, weight: 15},
	{method: "POST", path: "/api/orgs/%s/leave/lv_1/approve", require: []string{"leave:approve"}, weight: 12},
	{method: "DELETE", path: "/api/orgs/%s", require: []string{"organization:delete"}, weight: 8},
	{method: "GET", path: "/api/me", authOnly: true, weight: 10},
}

type user struct {
	id     string
	exists bool // false: a valid token whose user was deleted
	banned bool
	orgs   []int          // indexes into world.orgs
	roles  map[int]string // org index → members.role (comma-joined)
}

// world is the seeded data set and the expected answer to any request on
// it: users and organizations of a Better Auth app, memberships with the
// usual spread of roles, and the odd banned or deleted user.
type world struct {
	users []*user
	orgs  []string
	table roles.RoleTable // policyYAML's roles
}

// newWorld lays out nUsers users over nOrgs organizations, the same ones
// for a given size: 10% in no organization, the others in one (60%), two
// (30%) or three; per membership owner 5%, admin 15%, "admin,member" 5%,
// member 75%; 2% banned, 1% deleted (valid tokens, no row).
func newWorld(nUsers, nOrgs int, table roles.RoleTable) *world {
	rng := rand.New(rand.NewPCG(20261128, uint64(nUsers)))
	w := &world{orgs: make([]string, nOrgs), table: table}
	for i := range w.orgs {
		w.orgs[i] = fmt.Sprintf("org_%05d", i)
	}
	for i := range nUsers {
		u := &user{id: fmt.Sprintf("user_%06d", i), exists: true, roles: map[int]string{}}
		switch k := rng.IntN(100); {
		case k < 2:
			u.banned = true
		case k < 3:
			u.exists = false
		}
		n := 0
		switch k := rng.IntN(100); {
		case k < 10:
		case k < 64:
			n = 1
		case k < 91:
			n = 2
		default:
			n = 3
		}
		for len(u.orgs) < n {
			o := rng.IntN(nOrgs)
			if slices.Contains(u.orgs, o) {
				continue
			}
			u.orgs = append(u.orgs, o)
			switch k := rng.IntN(100); {
			case k < 5:
				u.roles[o] = "owner"
			case k < 20:
				u.roles[o] = "admin"
			case k < 25:
				u.roles[o] = "admin,member"
			default:
				u.roles[o] = "member"
			}
		}
		w.users = append(w.users, u)
	}
	return w
}

// seed writes the world into d as Better Auth would have.
func (w *world) seed(ctx context.Context, d *pgtest.Database) error {
	created := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	var users, members [][]any
	for _, u := range w.users {
		if !u.exists {
			continue
		}
		users = append(users, []any{u.id, u.id, u.id + "@example.test", true, created, created, "user", u.banned})
		for _, o := range u.orgs {
			members = append(members, []any{fmt.Sprintf("mem_%d", len(members)), w.orgs[o], u.id, u.roles[o], created})
		}
	}
	orgs := make([][]any, len(w.orgs))
	for i, id := range w.orgs {
		orgs[i] = []any{id, id, strings.ReplaceAll(id, "_", "-"), created}
	}
	if err := d.Copy(ctx, "user", []string{"id", "name", "email", "emailVerified", "createdAt", "updatedAt", "role", "banned"}, users); err != nil {
		return err
	}
	if err := d.Copy(ctx, "organization", []string{"id", "name", "slug", "createdAt"}, orgs); err != nil {
		return err
	}
	return d.Copy(ctx, "member", []string{"id", "organizationId", "userId", "role", "createdAt"}, members)
}

// expect is the HTTP status the policy gives u (nil: no token) on rt in
// organization o, from the seed alone.
func (w *world) expect(u *user, rt route, o int) int {
	switch {
	case u == nil:
		return 401
	case !u.exists || u.banned:
		return 403
	case rt.authOnly:
		return 200
	}
	role, ok := u.roles[o]
	if !ok {
		return 403
	}
	grants, _ := roles.StaticGrants(roles.ParseRoleList(role), w.table)
	if len(rt.require) > 0 && !grants.All(rt.require) {
		return 403
	}
	if len(rt.requireAny) > 0 && !grants.Any(rt.requireAny) {
		return 403
	}
	return 200
}

// requests draws n checks, each with its expected answer: users by a
// Zipf law (a few very active, a long tail), mostly in one of their own
// organizations, 15% in some other one, 3% without a token; routes by
// their weights. Every user's token is signed once. It also returns how
// many distinct permission-set keys (user, organization) they ask for.
func (w *world) requests(keys *jwttest.Keys, n int) ([]loadgen.Request, int, error) {
	type key struct {
		u *user
		o int // -1: none (/api/me)
	}
	distinct := map[key]bool{}
	rng := rand.New(rand.NewPCG(7, 11))
	zipf := rand.NewZipf(rng, 1.1, 8, uint64(len(w.users)-1))
	rank := rng.Perm(len(w.users)) // rank → user: popularity unrelated to ids
	tokens := make(map[*user]string)
	total := 0
	for _, rt := range routes {
		total += rt.weight
	}
	out := make([]loadgen.Request, 0, n)
	for range n {
		k := rng.IntN(total)
		var rt route
		for _, rt = range routes {
			if k < rt.weight {
				break
			}
			k -= rt.weight
		}
		var u *user
		if rng.IntN(100) >= 3 {
			u = w.users[rank[zipf.Uint64()]]
		}
		o := rng.IntN(len(w.orgs))
		if u != nil && len(u.orgs) > 0 && rng.IntN(100) < 85 {
			o = u.orgs[rng.IntN(len(u.orgs))]
		}
		path := rt.path
		if strings.Contains(path, "%s") {
			path = fmt.Sprintf(path, w.orgs[o])
			distinct[key{u, o}] = u != nil
		} else {
			distinct[key{u, -1}] = u != nil
		}
		headers := map[string]string{}
		if u != nil {
			tok, ok := tokens[u]
			if !ok {
				tok = keys.User(u.id)
				tokens[u] = tok
			}
			headers["authorization"] = "Bearer " + tok
		}
		frame, err := loadgen.HTTPFrame(rt.method, path, headers)
		if err != nil {
			return nil, 0, err
		}
		req := loadgen.Request{Frame: frame}
		if want := w.expect(u, rt, o); want != 200 {
			req.WantDeny = want
		} else {
			req.UserID = u.id
		}
		out = append(out, req)
	}
	n = 0
	for _, withUser := range distinct {
		if withUser {
			n++
		}
	}
	return out, n, nil
}
