package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// route is one route of policies.yaml with a concrete request; what it
// requires is read from the policy by name (newWorld), so the soak's
// expectations cannot drift from the file.
type route struct {
	name   string
	method string
	path   string // %s is the organization reference
	rule   *policy.Route
}

var routes = []route{
	{name: "health", method: "GET", path: "/healthz"},
	{name: "me", method: "GET", path: "/api/me"},
	{name: "request-leave", method: "POST", path: "/api/orgs/%s/leave"},
	{name: "approve-leave", method: "POST", path: "/api/orgs/%s/leave/l1/approve"},
	{name: "read-leave", method: "GET", path: "/api/orgs/%s/leave/l1"},
	{name: "invite-member", method: "POST", path: "/api/orgs/%s/members"},
	{name: "delete-org", method: "DELETE", path: "/api/orgs/%s"},
}

// user is a seeded (or deliberately unseeded) user and what the seed gave
// it.
type user struct {
	id     string
	exists bool
	banned bool
	roles  map[string][]string // org id → role names
	token  string
}

type org struct{ id, slug string }

// world is the seeded data and the expected answer to any request on it.
type world struct {
	orgs  []org
	users []*user
	// routes are the routes above with their rules; pol is policies.yaml,
	// whose role table expected answers go through, by Better Auth's
	// permission rule as written once in internal/roles.
	routes []route
	pol    *policy.Policy
}

// newWorld lays out nUsers users over nOrgs organizations with known roles:
// by i/nOrgs mod 10 a user is owner, admin (×2), member (×3), "admin,member",
// not a member of any organization, member of its own and admin of the
// next one, or member with the role spelled " member " (trimmed by the
// sidecar); every 37th user is banned, and 10 ids with valid tokens have no
// users row.
func newWorld(nUsers, nOrgs int, pol *policy.Policy) (*world, error) {
	w := &world{pol: pol}
	for _, rt := range routes {
		i := slices.IndexFunc(pol.Routes, func(r *policy.Route) bool { return r.Name == rt.name })
		if i < 0 {
			return nil, fmt.Errorf("policies.yaml has no route %q: update the soak's routes", rt.name)
		}
		rt.rule = pol.Routes[i]
		w.routes = append(w.routes, rt)
	}
	for o := range nOrgs {
		w.orgs = append(w.orgs, org{id: fmt.Sprintf("org_soak_%d", o), slug: fmt.Sprintf("soak-%d", o)})
	}
	for i := range nUsers {
		u := &user{id: fmt.Sprintf("user_%03d", i), exists: true, banned: i%37 == 0, roles: map[string][]string{}}
		home, next := w.orgs[i%nOrgs].id, w.orgs[(i+1)%nOrgs].id
		switch (i / nOrgs) % 10 {
		case 0:
			u.roles[home] = []string{"owner"}
		case 1, 2:
			u.roles[home] = []string{"admin"}
		case 3, 4, 5:
			u.roles[home] = []string{"member"}
		case 6:
			u.roles[home] = []string{"admin", "member"}
		case 7:
			// no organization
		case 8:
			u.roles[home] = []string{"member"}
			u.roles[next] = []string{"admin"}
		case 9:
			u.roles[home] = []string{" member "}
		}
		w.users = append(w.users, u)
	}
	for i := range 10 {
		w.users = append(w.users, &user{id: fmt.Sprintf("ghost_%02d", i), roles: map[string][]string{}})
	}
	return w, nil
}

// seed writes the world into the database, as Better Auth would have.
func (w *world) seed(ctx context.Context, dbURL string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	b := &pgx.Batch{}
	for _, o := range w.orgs {
		b.Queue(`INSERT INTO organizations (id, name, slug, "createdAt") VALUES ($1, $2, $2, now())`, o.id, o.slug)
	}
	n := 0
	for _, u := range w.users {
		if !u.exists {
			continue
		}
		b.Queue(`INSERT INTO users (id, name, email, "emailVerified", role, banned)
			VALUES ($1, $1, $1 || '@example.test', false, 'user', $2)`, u.id, u.banned)
		for orgID, roles := range u.roles {
			n++
			b.Queue(`INSERT INTO members (id, "organizationId", "userId", role, "createdAt")
				VALUES ($1, $2, $3, $4, clock_timestamp())`, fmt.Sprintf("mem_%d", n), orgID, u.id, strings.Join(roles, ","))
		}
	}
	return conn.SendBatch(ctx, b).Close()
}

// request is one generated check and its known answer.
type request struct {
	method, path, token string
	want                int // 200, 401 or 403
}

// next draws a request: mostly a random user on a random route of a random
// organization (by id or slug), plus some without or with a broken token,
// and some naming an organization that does not exist.
func (w *world) next(r *rand.Rand) request {
	switch k := r.IntN(100); {
	case k < 3:
		rt := w.routes[1+r.IntN(len(w.routes)-1)]
		return request{method: rt.method, path: w.path(rt, w.orgs[0].id), want: 401}
	case k < 5:
		u := w.users[r.IntN(len(w.users))]
		return request{method: "GET", path: "/api/me", token: u.token[:len(u.token)-4] + "AAAA", want: 401}
	}
	u := w.users[r.IntN(len(w.users))]
	rt := w.routes[r.IntN(len(w.routes))]
	o := w.orgs[r.IntN(len(w.orgs))]
	ref, orgID := o.id, o.id
	switch k := r.IntN(10); {
	case k < 3:
		ref = o.slug
	case k == 9:
		ref, orgID = "org_nope", ""
	}
	return request{method: rt.method, path: w.path(rt, ref), token: u.token, want: w.expect(u, rt, orgID)}
}

func (w *world) path(rt route, ref string) string {
	if strings.Contains(rt.path, "%s") {
		return fmt.Sprintf(rt.path, ref)
	}
	return rt.path
}

// expect is the status policies.yaml gives u on rt in organization orgID
// ("" = no such organization), from the seed alone.
func (w *world) expect(u *user, rt route, orgID string) int {
	switch {
	case rt.rule.Public:
		return 200
	case !u.exists || u.banned:
		return 403
	case rt.rule.Authenticated:
		return 200
	case orgID == "":
		return 403
	}
	held := roles.ParseRoleList(u.roles[orgID]...)
	if len(held) == 0 {
		return 403
	}
	grants, _ := roles.StaticGrants(held, w.pol)
	if len(rt.rule.Require) > 0 && !grants.All(rt.rule.Require) {
		return 403
	}
	if len(rt.rule.RequireAny) > 0 && !grants.Any(rt.rule.RequireAny) {
		return 403
	}
	return 200
}
