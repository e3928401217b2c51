package extauthz_test

import (
	"context"
	"encoding/json"
	"maps"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/cache"
	"github.com/authz-sidecar/authz-sidecar/internal/extauthz"
	"github.com/authz-sidecar/authz-sidecar/internal/jwttest"
	"github.com/authz-sidecar/authz-sidecar/internal/pg"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

const issuer = jwttest.Issuer

const policyYAML = `
jwt:
  issuer: https://auth.example.test
  audiences: [https://auth.example.test]
  jwks_url: JWKS_URL
organization:
  from: [path:org, header:x-organization-id, claim:activeOrganizationId]
statements:
  organization: [delete]
  member: [invite, remove]
  leave: [request, read, approve]
roles:
  owner:  { inherits: [admin], permissions: ["organization:delete"] }
  admin:  { inherits: [member], permissions: ["leave:approve", "member:*"] }
  member: { permissions: ["leave:request", "leave:read"] }
routes:
  - { name: health, methods: [GET], path: /healthz, public: true }
  - { name: me, path: /api/me, authenticated: true }
  - { name: approve-leave, methods: [POST], path: "/api/orgs/{org}/leave/{id}/approve", require: [leave:approve] }
  - { name: read-leave, methods: [GET], path: "/api/orgs/{org}/leave/**", require_any: [leave:read, leave:approve] }
  - { name: leave-report, methods: [GET], path: "/api/leave-report", require: [leave:read] }
  - { name: shadow, methods: [GET], path: "/api/orgs/{org}/shadow", require: [organization:delete], enforce: false }
default: deny
`

// countingSource counts the queries reaching Postgres.
type countingSource struct {
	roles.Source
	n atomic.Int64
}

func (c *countingSource) Membership(ctx context.Context, s roles.Subject) (roles.Membership, error) {
	c.n.Add(1)
	return c.Source.Membership(ctx, s)
}

// checkTimeout bounds each check, each permission load and each Redis call
// of the L2 tier in these tests: far above a cold check on a loaded
// machine, because none of them is about a deadline (the 25 ms Redis and
// 2 s load defaults turned slow round trips into misses, 503s and extra
// queries).
const checkTimeout = 30 * time.Second

type env struct {
	client authv3.AuthorizationClient // the lean codec, as the sidecar serves
	// protoClient reaches the same server through the standard codec.
	protoClient authv3.AuthorizationClient
	signer      *jwttest.Keys
	seed        *pgtest.Seeder
	source      *countingSource
	db          *pg.DB
	pol         *policy.Policy
	rdb         *redis.Client
	prefix      string
	l1          *cache.L1Store
	keys        *authn.KeySet
	dbURL       string
	redisOK     bool
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{signer: jwttest.NewKeys(t)}
	e.dbURL = pgtest.NewDatabase(t)
	e.seed = pgtest.NewSeeder(t, e.dbURL)

	pol, err := policy.Parse("test.yaml", []byte(strings.Replace(policyYAML, "JWKS_URL", e.signer.URL, 1)))
	if err != nil {
		t.Fatal(err)
	}
	e.pol = pol
	e.keys, err = authn.NewKeySet(authn.KeySetConfig{URL: pol.JWT.JWKSURL, MinRefreshInterval: time.Millisecond}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.keys.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	verifier, err := authn.NewVerifier(authn.VerifierConfig{Issuer: pol.JWT.Issuer, Audiences: pol.JWT.Audiences, Leeway: pol.JWT.Leeway}, e.keys)
	if err != nil {
		t.Fatal(err)
	}
	e.db, err = pg.Open(ctx, e.dbURL, pg.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.db.Close)
	e.source = &countingSource{Source: pg.NewMemberRepository(e.db)}

	e.rdb, e.prefix = testproc.RedisDB(t)
	var access roles.Resolver
	e.l1, access = e.resolver(t, e.rdb)

	engine, err := authz.New(authz.State{Policy: pol, Verifier: verifier}, authz.Deps{Access: access}, authz.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := extauthz.New(engine, nil, extauthz.Config{Timeout: checkTimeout})
	e.client = serveGRPC(t, srv)
	e.protoClient = serveGRPCWith(t, srv, extauthz.CodecProto)
	return e
}

// resolver builds the tier stack L1 → L2 (rdb) → Postgres.
func (e *env) resolver(t *testing.T, rdb *redis.Client) (*cache.L1Store, roles.Resolver) {
	t.Helper()
	reg := prometheus.NewRegistry()
	source := cache.LookupFunc[roles.Query, *roles.Access](roles.NewSourceResolver(e.source, nil).Resolve)
	l2, err := cache.NewL2(cache.NewL2Store(rdb, cache.L2Config{Prefix: e.prefix, Timeout: checkTimeout}, zap.NewNop(), reg), cache.AccessKind(), source)
	if err != nil {
		t.Fatal(err)
	}
	store, err := cache.NewL1Store(cache.L1Config{TTL: time.Hour, LoadTimeout: checkTimeout}, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	l1, err := cache.NewL1(store, cache.AccessKind(), l2)
	if err != nil {
		t.Fatal(err)
	}
	return store, cache.AccessResolver{Lookup: l1}
}

// serveGRPC serves srv as the sidecar does, with the lean codec.
func serveGRPC(t *testing.T, srv *extauthz.Server) authv3.AuthorizationClient {
	t.Helper()
	return serveGRPCWith(t, srv, extauthz.CodecLean)
}

func serveGRPCWith(t *testing.T, srv *extauthz.Server, codec string) authv3.AuthorizationClient {
	t.Helper()
	gs, err := extauthz.NewGRPCServer(srv, codec)
	if err != nil {
		t.Fatal(err)
	}
	return authv3.NewAuthorizationClient(testproc.ServeGRPC(t, gs))
}

func checkRequest(method, path string, headers map[string]string, route string) *authv3.CheckRequest {
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Headers: headers, Protocol: "HTTP/1.1", Host: "app.example.test",
		}},
	}}
	if route != "" {
		req.Attributes.ContextExtensions = map[string]string{"route": route}
	}
	return req
}

// outcome is what Envoy would do with a CheckResponse.
type outcome struct {
	status   int
	set      map[string]string // headers set on the upstream request (allow) or the reply (deny)
	removed  []string
	body     string
	response map[string]string
}

func decode(t *testing.T, r *authv3.CheckResponse) outcome {
	t.Helper()
	o := outcome{set: map[string]string{}, response: map[string]string{}}
	hv := func(hs []*corev3.HeaderValueOption, into map[string]string) {
		for _, h := range hs {
			if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				t.Errorf("header %s has append action %v; identity headers must overwrite", h.GetHeader().GetKey(), h.GetAppendAction())
			}
			into[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
	}
	switch hr := r.GetHttpResponse().(type) {
	case *authv3.CheckResponse_OkResponse:
		if r.GetStatus().GetCode() != 0 {
			t.Errorf("ok response with rpc status %d", r.GetStatus().GetCode())
		}
		o.status = 200
		hv(hr.OkResponse.GetHeaders(), o.set)
		hv(hr.OkResponse.GetResponseHeadersToAdd(), o.response)
		o.removed = hr.OkResponse.GetHeadersToRemove()
	case *authv3.CheckResponse_DeniedResponse:
		if r.GetStatus().GetCode() == 0 {
			t.Error("denied response with rpc status OK: Envoy would let it through")
		}
		o.status = int(hr.DeniedResponse.GetStatus().GetCode())
		hv(hr.DeniedResponse.GetHeaders(), o.set)
		o.body = hr.DeniedResponse.GetBody()
	default:
		t.Fatalf("CheckResponse without an http response: %v", r)
	}
	return o
}

func (e *env) check(t *testing.T, req *authv3.CheckRequest) outcome {
	t.Helper()
	return checkWith(t, e.client, req)
}

func checkWith(t *testing.T, client authv3.AuthorizationClient, req *authv3.CheckRequest) outcome {
	t.Helper()
	resp, err := client.Check(context.Background(), req)
	if err != nil {
		t.Fatalf("Check returned a gRPC error (must always answer): %v", err)
	}
	return decode(t, resp)
}

// checkBothCodecs is check, also sent through the standard codec: both
// must give the same outcome, decision ids aside.
func (e *env) checkBothCodecs(t *testing.T, req *authv3.CheckRequest) outcome {
	t.Helper()
	lean, std := e.check(t, req), checkWith(t, e.protoClient, req)
	a, b := lean.withoutDecisionID(), std.withoutDecisionID()
	if !reflect.DeepEqual(a, b) {
		t.Errorf("the codecs decide differently:\nlean  %+v\nproto %+v", a, b)
	}
	return lean
}

// withoutDecisionID is o with the decision id (random per decision)
// blanked wherever it appears.
func (o outcome) withoutDecisionID() outcome {
	c := o
	c.set, c.response = maps.Clone(o.set), maps.Clone(o.response)
	for _, m := range []map[string]string{c.set, c.response} {
		if _, ok := m[authz.HeaderDecisionID]; ok {
			m[authz.HeaderDecisionID] = "(id)"
		}
	}
	return c
}

func bearer(tok string) map[string]string { return map[string]string{"authorization": "Bearer " + tok} }

func TestDecisions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.seed
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin", "mallory", "frank"} {
		s.User(t, u, u)
	}
	s.Org(t, "org_acme", "acme")
	s.Org(t, "org_other", "other")
	s.Member(t, "org_acme", "alice", "owner")
	s.Member(t, "org_acme", "bob", "member")
	s.Member(t, "org_acme", "carol", "member,approver")
	s.CustomRole(t, "org_acme", "approver", `{"leave":["approve"]}`)
	s.CustomRole(t, "org_other", "auditor", `{"leave":["read"]}`)
	s.Member(t, "org_acme", "dave", "admin, member")
	s.Member(t, "org_acme", "mallory", "owner")
	s.Ban(t, "mallory", nil)
	s.Member(t, "org_other", "erin", "member")
	s.Member(t, "org_acme", "frank", "auditor") // a role only another organization defines

	const approve = "/api/orgs/org_acme/leave/l1/approve"
	expired := e.signer.Token("k1", nil, map[string]any{"sub": "alice", "exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-2 * time.Hour).Unix()})
	future := e.signer.Token("k1", nil, map[string]any{"sub": "alice", "nbf": time.Now().Add(time.Hour).Unix()})
	wrongIss := e.signer.Token("k1", nil, map[string]any{"sub": "alice", "iss": "https://evil.test"})
	wrongAud := e.signer.Token("k1", nil, map[string]any{"sub": "alice", "aud": "https://other.test"})
	otherKey := e.signer.Token("k-unknown", nil, map[string]any{"sub": "alice"})
	sameKidWrongKey := func() string {
		tok := e.signer.User("alice")
		other := e.signer.Token("nope", nil, map[string]any{"sub": "alice"})
		return tok[:strings.LastIndexByte(tok, '.')] + other[strings.LastIndexByte(other, '.'):]
	}()
	none := jwttest.B64(map[string]any{"alg": "none", "kid": "k1"}) + "." + jwttest.B64(map[string]any{"sub": "alice", "iss": issuer, "aud": issuer, "exp": time.Now().Add(time.Hour).Unix()}) + "."
	tampered := func() string {
		parts := strings.Split(e.signer.User("bob"), ".")
		parts[1] = jwttest.B64(map[string]any{"sub": "alice", "iss": issuer, "aud": issuer, "exp": time.Now().Add(time.Hour).Unix()})
		return strings.Join(parts, ".")
	}()

	tests := []struct {
		name    string
		method  string
		path    string
		headers map[string]string
		route   string
		status  int
		reason  string // substring of the deny body or x-authz-reason
		user    string
		org     string
		roles   string
		// orgSource is the policy source that named the organization.
		orgSource string
	}{
		{name: "public route needs no token", method: "GET", path: "/healthz", status: 200},
		{name: "public route with query", method: "GET", path: "/healthz?x=1", status: 200},
		{name: "no token", method: "GET", path: "/api/me", status: 401, reason: "no_credential"},
		{name: "bearer without token", method: "GET", path: "/api/me", headers: map[string]string{"authorization": "Bearer "}, status: 401},
		{name: "basic auth", method: "GET", path: "/api/me", headers: map[string]string{"authorization": "Basic YTpi"}, status: 401},
		{name: "malformed token", method: "GET", path: "/api/me", headers: bearer("abc.def.ghi"), status: 401, reason: "invalid_token"},
		{name: "expired token", method: "GET", path: "/api/me", headers: bearer(expired), status: 401, reason: "invalid_token"},
		{name: "not yet valid token", method: "GET", path: "/api/me", headers: bearer(future), status: 401},
		{name: "wrong issuer", method: "GET", path: "/api/me", headers: bearer(wrongIss), status: 401},
		{name: "wrong audience", method: "GET", path: "/api/me", headers: bearer(wrongAud), status: 401},
		{name: "unknown key", method: "GET", path: "/api/me", headers: bearer(otherKey), status: 401},
		{name: "known kid, other key's signature", method: "GET", path: "/api/me", headers: bearer(sameKidWrongKey), status: 401},
		{name: "alg none", method: "GET", path: "/api/me", headers: bearer(none), status: 401},
		{name: "tampered payload", method: "GET", path: "/api/me", headers: bearer(tampered), status: 401},
		{name: "two authorization headers joined by Envoy", method: "GET", path: "/api/me",
			headers: map[string]string{"authorization": "Bearer " + e.signer.User("bob") + ",Bearer " + e.signer.User("alice")}, status: 401},
		{name: "authenticated route", method: "GET", path: "/api/me", headers: bearer(e.signer.User("bob")), status: 200, user: "bob"},
		{name: "scheme is case-insensitive", method: "GET", path: "/api/me", headers: map[string]string{"authorization": "bEaReR " + e.signer.User("bob")}, status: 200, user: "bob"},
		{name: "unknown user with a valid token", method: "GET", path: "/api/me", headers: bearer(e.signer.User("ghost")), status: 403, reason: "unknown_user"},
		{name: "banned user on an authenticated route", method: "GET", path: "/api/me", headers: bearer(e.signer.User("mallory")), status: 403, reason: "banned"},
		{name: "owner approves (inherited)", method: "POST", path: approve, headers: bearer(e.signer.User("alice")), status: 200, user: "alice", org: "org_acme", roles: "owner"},
		{name: "member allowed to read", method: "GET", path: "/api/orgs/org_acme/leave/l1", headers: bearer(e.signer.User("bob")), status: 200, user: "bob", org: "org_acme", roles: "member"},
		{name: "member missing permission", method: "POST", path: approve, headers: bearer(e.signer.User("bob")), status: 403, reason: "missing_permission"},
		{name: "multi-role union with a custom role", method: "POST", path: approve, headers: bearer(e.signer.User("carol")), status: 200, roles: "member,approver"},
		{name: "comma-joined roles with spaces", method: "POST", path: approve, headers: bearer(e.signer.User("dave")), status: 200, roles: "admin,member"},
		{name: "another org's custom role grants nothing", method: "GET", path: "/api/orgs/org_acme/leave/l1", headers: bearer(e.signer.User("frank")), status: 403, reason: "missing_permission"},
		{name: "non-member", method: "GET", path: "/api/orgs/org_acme/leave/l1", headers: bearer(e.signer.User("erin")), status: 403, reason: "not_member"},
		{name: "banned member", method: "POST", path: approve, headers: bearer(e.signer.User("mallory")), status: 403, reason: "banned"},
		{name: "unknown organization", method: "GET", path: "/api/orgs/org_nope/leave/l1", headers: bearer(e.signer.User("alice")), status: 403, reason: "not_member"},
		{name: "org by slug in path", method: "POST", path: "/api/orgs/acme/leave/l1/approve", headers: bearer(e.signer.User("alice")), status: 200, org: "org_acme", orgSource: "path:org"},
		{name: "org from header", method: "GET", path: "/api/leave-report",
			headers: map[string]string{"authorization": "Bearer " + e.signer.User("bob"), "x-organization-id": "org_acme"}, status: 200, org: "org_acme", orgSource: "header:x-organization-id"},
		{name: "org from claim", method: "GET", path: "/api/leave-report",
			headers: bearer(e.signer.User("bob", "activeOrganizationId", "org_acme")), status: 200, org: "org_acme", orgSource: "claim:activeOrganizationId"},
		{name: "path beats a header naming another org", method: "GET", path: "/api/orgs/org_other/leave/x",
			headers: map[string]string{"authorization": "Bearer " + e.signer.User("bob"), "x-organization-id": "org_acme"}, status: 403, reason: "not_member"},
		{name: "claim naming an org the user left is checked against members", method: "GET", path: "/api/leave-report",
			headers: bearer(e.signer.User("erin", "activeOrganizationId", "org_acme")), status: 403, reason: "not_member"},
		{name: "no organization anywhere", method: "GET", path: "/api/leave-report", headers: bearer(e.signer.User("bob")), status: 403, reason: "no_organization"},
		{name: "unmatched route", method: "GET", path: "/api/unknown", headers: bearer(e.signer.User("alice")), status: 403, reason: "no_route"},
		{name: "unmatched method", method: "DELETE", path: approve, headers: bearer(e.signer.User("alice")), status: 403, reason: "no_route"},
		{name: "ambiguous path", method: "POST", path: "/api/orgs/org_acme/leave/l1/../l2/approve", headers: bearer(e.signer.User("alice")), status: 403, reason: "ambiguous_path"},
		{name: "encoded slash", method: "GET", path: "/api/orgs/org_acme%2Fx/leave/l1", headers: bearer(e.signer.User("alice")), status: 403, reason: "ambiguous_path"},
		{name: "route by name from context_extensions", method: "POST", path: approve, route: "approve-leave",
			headers: bearer(e.signer.User("alice")), status: 200},
		{name: "route by name whose path lacks its {org}: never completed from a header", method: "POST", path: "/anything/envoy/routed", route: "approve-leave",
			headers: map[string]string{"authorization": "Bearer " + e.signer.User("alice"), "x-organization-id": "org_acme"}, status: 403, reason: "path_mismatch"},
		{name: "route by name still takes the org from the path", method: "POST", path: approve, route: "approve-leave",
			headers: bearer(e.signer.User("bob")), status: 403, reason: "missing_permission"},
		{name: "unknown route name", method: "GET", path: "/healthz", route: "nope", status: 403, reason: "unknown_route"},
		{name: "route by name with an ambiguous path", method: "POST", path: "/api/orgs/org_acme;x/leave/l1/approve", route: "approve-leave",
			headers: map[string]string{"authorization": "Bearer " + e.signer.User("alice"), "x-organization-id": "org_acme"}, status: 403, reason: "ambiguous_path"},
		{name: "shadow mode lets a deny through", method: "GET", path: "/api/orgs/org_acme/shadow", headers: bearer(e.signer.User("bob")), status: 200},
		{name: "shadow mode does not lift 401 reporting", method: "GET", path: "/api/orgs/org_acme/shadow", status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := e.checkBothCodecs(t, checkRequest(tt.method, tt.path, tt.headers, tt.route))
			if o.status != tt.status {
				t.Fatalf("status = %d, want %d (body %s, headers %v)", o.status, tt.status, o.body, o.set)
			}
			if tt.reason != "" && !strings.Contains(o.body, tt.reason) && o.set["x-authz-reason"] != tt.reason {
				t.Errorf("reason: body %s, x-authz-reason %q; want %q", o.body, o.set["x-authz-reason"], tt.reason)
			}
			for _, tok := range []string{tt.headers["authorization"]} {
				if len(tok) > 10 && strings.Contains(o.body, strings.TrimPrefix(tok, "Bearer ")) {
					t.Error("deny body echoes the token")
				}
			}
			if o.status == 401 && o.set["www-authenticate"] != `Bearer error="invalid_token"` {
				t.Errorf("401 without the Bearer challenge: %v", o.set)
			}
			if o.status != 200 {
				if o.set["content-type"] != "application/json" || !json.Valid([]byte(o.body)) {
					t.Errorf("deny body is not JSON: %q", o.body)
				}
				return
			}
			// Identity headers: each one set by us (replacing a client's
			// copy) or removed, never both (Envoy removes after setting).
			for _, h := range upstreamHeaders {
				if _, set := o.set[h]; set == contains(o.removed, h) {
					t.Errorf("%s: set %v, removed %v; want exactly one", h, set, contains(o.removed, h))
				}
			}
			if len(o.set["x-authz-decision-id"]) != 32 {
				t.Errorf("x-authz-decision-id = %q, want 32 hex digits", o.set["x-authz-decision-id"])
			}
			if tt.user != "" && o.set["x-auth-user-id"] != tt.user {
				t.Errorf("x-auth-user-id = %q, want %q", o.set["x-auth-user-id"], tt.user)
			}
			if tt.org != "" && o.set["x-auth-org-id"] != tt.org {
				t.Errorf("x-auth-org-id = %q, want %q", o.set["x-auth-org-id"], tt.org)
			}
			if tt.orgSource != "" && o.set["x-auth-org-source"] != tt.orgSource {
				t.Errorf("x-auth-org-source = %q, want %q", o.set["x-auth-org-source"], tt.orgSource)
			}
			if tt.roles != "" && o.set["x-auth-roles"] != tt.roles {
				t.Errorf("x-auth-roles = %q, want %q", o.set["x-auth-roles"], tt.roles)
			}
		})
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestSpoofedIdentityHeadersAreReplaced(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seed.User(t, "bob", "bob")
	e.seed.Org(t, "org_acme", "acme")
	e.seed.Member(t, "org_acme", "bob", "member")
	check := func(t *testing.T, path string, client map[string]string) map[string]string {
		t.Helper()
		resp, err := e.client.Check(context.Background(), checkRequest("GET", path, client, ""))
		if err != nil {
			t.Fatal(err)
		}
		return envoyUpstream(t, client, resp)
	}
	t.Run("member route", func(t *testing.T) {
		client := forgedAll()
		client["authorization"] = "Bearer " + e.signer.User("bob")
		delete(client, "x-organization-id")
		up := check(t, "/api/orgs/org_acme/leave/1", client)
		want := map[string]string{"x-auth-user-id": "bob", "x-auth-org-id": "org_acme", "x-auth-roles": "member",
			"x-auth-org-source": "path:org", "x-auth-credential": "jwt"}
		for _, h := range upstreamHeaders {
			switch {
			case h == "x-authz-decision-id":
				if len(up[h]) != 32 {
					t.Errorf("upstream %s = %q, want the decision id", h, up[h])
				}
			case up[h] != want[h]:
				t.Errorf("upstream %s = %q, want %q", h, up[h], want[h])
			}
		}
	})
	t.Run("public route", func(t *testing.T) {
		// Nothing is set but the decision id, and every client copy is removed.
		up := check(t, "/healthz", forgedAll())
		for _, h := range upstreamHeaders {
			if v, ok := up[h]; ok && (h != "x-authz-decision-id" || v == "forged") {
				t.Errorf("upstream %s = %q", h, v)
			}
		}
	})
}

func TestUnknownKidAcceptedAfterRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seed.User(t, "bob", "bob")
	before := e.signer.Hits.Load()
	e.signer.AddKey("k2")
	tok := e.signer.Token("k2", nil, map[string]any{"sub": "bob"})
	if o := e.check(t, checkRequest("GET", "/api/me", bearer(tok), "")); o.status != 200 {
		t.Fatalf("new-key token: status %d %s", o.status, o.body)
	}
	if n := e.signer.Hits.Load() - before; n != 1 {
		t.Errorf("JWKS fetched %d times for the new kid, want 1", n)
	}
	// Old-key tokens keep working.
	if o := e.check(t, checkRequest("GET", "/api/me", bearer(e.signer.User("bob")), "")); o.status != 200 {
		t.Fatalf("old-key token: status %d %s", o.status, o.body)
	}
}

func TestTiers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seed.User(t, "bob", "bob")
	e.seed.Org(t, "org_acme", "acme")
	e.seed.Member(t, "org_acme", "bob", "admin")
	req := checkRequest("POST", "/api/orgs/org_acme/leave/1/approve", bearer(e.signer.User("bob")), "")
	ctx := context.Background()

	t.Run("postgres load then L1 hit", func(t *testing.T) {
		if o := e.check(t, req); o.status != 200 {
			t.Fatalf("status %d", o.status)
		}
		e.l1.Wait()
		if o := e.check(t, req); o.status != 200 {
			t.Fatalf("status %d", o.status)
		}
		if n := e.source.n.Load(); n != 1 {
			t.Errorf("postgres queries = %d, want 1", n)
		}
	})
	t.Run("L2 hit after a restart of the resolver", func(t *testing.T) {
		_, fresh := e.resolver(t, e.rdb)
		a, tier, err := fresh.Resolve(ctx, roles.Query{Subject: roles.Subject{UserID: "bob", OrgRef: "org_acme"}, Version: e.pol.Version, Tables: e.pol})
		if err != nil || tier != roles.TierL2 || !a.Grants.All([]string{"leave:approve"}) {
			t.Fatalf("got %+v, %v, %v; want L2 hit", a, tier, err)
		}
		if n := e.source.n.Load(); n != 1 {
			t.Errorf("postgres queries = %d, want still 1", n)
		}
	})
	t.Run("50 concurrent misses make one query", func(t *testing.T) {
		e.seed.User(t, "carol", "carol")
		e.seed.Member(t, "org_acme", "carol", "member")
		before := e.source.n.Load()
		tok := e.signer.User("carol")
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				resp, err := e.client.Check(ctx, checkRequest("GET", "/api/orgs/org_acme/leave/1", bearer(tok), ""))
				if err != nil || resp.GetOkResponse() == nil {
					t.Errorf("concurrent check: %v %v", resp, err)
				}
			})
		}
		wg.Wait()
		if n := e.source.n.Load() - before; n != 1 {
			t.Errorf("50 concurrent misses made %d queries, want 1", n)
		}
	})
	t.Run("redis unreachable still answers from postgres", func(t *testing.T) {
		dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
		defer dead.Close()
		_, fresh := e.resolver(t, dead)
		before := e.source.n.Load()
		a, tier, err := fresh.Resolve(ctx, roles.Query{Subject: roles.Subject{UserID: "bob", OrgRef: "org_acme"}, Version: e.pol.Version, Tables: e.pol})
		if err != nil || tier != roles.TierSource || !a.Grants.All([]string{"leave:approve"}) {
			t.Fatalf("got %+v, %v, %v; want a Postgres answer", a, tier, err)
		}
		if e.source.n.Load() != before+1 {
			t.Error("postgres was not asked")
		}
	})
	t.Run("postgres unreachable and nothing cached answers 503", func(t *testing.T) {
		db, err := pg.Open(ctx, "postgres://postgres@127.0.0.1:1/x?sslmode=disable", pg.Config{ConnectTimeout: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		store, _ := cache.NewL1Store(cache.L1Config{LoadTimeout: checkTimeout}, prometheus.NewRegistry())
		defer store.Close()
		source := cache.LookupFunc[roles.Query, *roles.Access](roles.NewSourceResolver(pg.NewMemberRepository(db), nil).Resolve)
		l1, _ := cache.NewL1(store, cache.AccessKind(), source)
		verifier, _ := authn.NewVerifier(authn.VerifierConfig{Issuer: issuer, Audiences: []string{issuer}}, e.keys)
		client := serveGRPC(t, extauthz.New(mustEngine(t, authz.State{Policy: e.pol, Verifier: verifier}, authz.Deps{Access: cache.AccessResolver{Lookup: l1}}), nil, extauthz.Config{Timeout: checkTimeout}))
		resp, err := client.Check(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if o := decode(t, resp); o.status != 503 || !strings.Contains(o.body, "unavailable") {
			t.Errorf("status %d body %s; want 503", o.status, o.body)
		}
	})
}

func mustEngine(t testing.TB, st authz.State, deps authz.Deps) *authz.Engine {
	t.Helper()
	e, err := authz.New(st, deps, authz.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}
