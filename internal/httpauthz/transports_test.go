package httpauthz_test

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/extauthz"
	"github.com/authz-sidecar/authz-sidecar/internal/httpauthz"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// TestTransportsAgree is a property test: for generated requests, the
// gRPC answer (Envoy's ext_authz) and the HTTP-mode answer (nginx
// auth_request) agree on the decision, the status, the reason and the
// identity headers. Both transports translate one engine's decisions; the
// test catches a transport that decides something itself (a status of its
// own, a header it forgets to set or strip).
func TestTransportsAgree(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(filepath.Join("..", "..", "policies.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse("policies.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	secret, _ := authn.NewSecret("transport-test-secret-transport-test-secret")
	w := newFakeWorld()
	engine, err := authz.New(authz.State{Policy: pol, Verifier: w}, authz.Deps{Access: w, Sessions: w, APIKeys: w},
		authz.Config{Secret: secret, NewID: func() string { return "fixed" }})
	if err != nil {
		t.Fatal(err)
	}
	grpcSrv := extauthz.New(engine, nil, extauthz.Config{Timeout: 5 * time.Second})
	httpSrv, err := httpauthz.NewHandler(engine, nil, httpauthz.Config{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}

	g := generator{r: rand.New(rand.NewPCG(1, 2)), secret: secret}
	const n = 3000
	seen := map[int]int{}
	for i := range n {
		req := g.request()
		gs, greason, gids := viaGRPC(t, grpcSrv, req)
		hs, hreason, hids := viaHTTP(t, httpSrv, req)
		seen[gs]++
		if gs != hs || greason != hreason || !maps(gids, hids) {
			t.Fatalf("case %d %s %s %v:\n  grpc: %d %s %v\n  http: %d %s %v", i, req.method, req.path, req.headers, gs, greason, gids, hs, hreason, hids)
		}
	}
	// The generator must reach every kind of answer, or the property says
	// little.
	for _, s := range []int{200, 401, 403} {
		if seen[s] < n/50 {
			t.Errorf("only %d of %d answers were %d: %v", seen[s], n, s, seen)
		}
	}
}

type genRequest struct {
	method, path string
	headers      map[string][]string
}

type generator struct {
	r      *rand.Rand
	secret authn.Secret
}

func (g generator) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

func (g generator) request() genRequest {
	org := g.pick("acme", "globex", "o\x00x", strings.Repeat("o", 300), "")
	path := g.pick(
		"/healthz", "/api/me", "/api/leave", "/api/nowhere",
		"/api/orgs/"+org+"/leave", "/api/orgs/"+org+"/leave/1/approve", "/api/orgs/"+org+"/leave/1",
		"/api/orgs/"+org+"/teams/"+g.pick("t1", "t2")+"/board", "/api/admin/users/ban", "/api/account",
		"/api/orgs/acme/../globex/leave", "/api/me?x=1")
	if strings.ContainsRune(path, 0) {
		path = strings.ReplaceAll(path, "\x00", "%00")
	}
	h := map[string][]string{}
	add := func(k, v string) { h[k] = append(h[k], v) }
	user := g.pick("alice", "bob", "carol", "ghost")
	switch g.r.IntN(6) {
	case 0: // nothing
	case 1:
		add("authorization", "Bearer h."+user+".s")
	case 2:
		tok := "tok-" + user
		add("cookie", "better-auth.session_token="+url.QueryEscape(tok+"."+g.secret.Sign(tok)))
	case 3:
		add("authorization", "Bearer "+"tok-"+user+"."+g.secret.Sign("tok-"+user))
	case 4:
		add("x-api-key", "key-"+user)
	case 5:
		add("authorization", "Bearer h."+user+".s")
		add("cookie", "better-auth.session_token=garbage")
	}
	if g.r.IntN(3) == 0 {
		add("x-organization-id", g.pick("acme", "globex"))
	}
	if g.r.IntN(4) == 0 {
		add("origin", g.pick("http://127.0.0.1:3000", "https://evil.example"))
	}
	if g.r.IntN(4) == 0 {
		// A client forging identity headers: never believed, never passed on.
		add(g.pick(authz.IdentityHeaders[:]...), "forged")
	}
	if g.r.IntN(8) == 0 {
		add("authorization", "Bearer second")
	}
	return genRequest{method: g.pick("GET", "POST", "DELETE", "PUT"), path: path, headers: h}
}

func viaGRPC(t *testing.T, s *extauthz.Server, r genRequest) (int, string, map[string]string) {
	t.Helper()
	hm := map[string]string{}
	for k, vs := range r.headers {
		hm[k] = strings.Join(vs, ",")
	}
	resp, err := s.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: r.method, Path: r.path, Headers: hm}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	if ok := resp.GetOkResponse(); ok != nil {
		for _, h := range ok.GetHeaders() {
			ids[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		// An allow's reason travels only in gRPC's status message; HTTP
		// mode has no place for it, so allows are compared by headers.
		return 200, "", ids
	}
	d := resp.GetDeniedResponse()
	reason := ""
	for _, h := range d.GetHeaders() {
		if h.GetHeader().GetKey() == authz.HeaderReason {
			reason = h.GetHeader().GetValue()
		}
	}
	return int(d.GetStatus().GetCode()), reason, ids
}

func viaHTTP(t *testing.T, h http.Handler, r genRequest) (int, string, map[string]string) {
	t.Helper()
	req := httptest.NewRequest("GET", "/", nil)
	req.RemoteAddr = "127.0.0.1:40000"
	for k, vs := range r.headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("X-Original-Method", r.method)
	req.Header.Set("X-Original-Uri", r.path)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	ids := map[string]string{}
	for _, name := range authz.IdentityHeaders {
		if v := rec.Header().Get(name); v != "" {
			ids[name] = v
		}
	}
	return rec.Code, rec.Header().Get(authz.HeaderReason), ids
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// fakeWorld is a small Better Auth: users, memberships, sessions and keys.
type fakeWorld struct {
	roles map[string][]string // user -> roles in acme
}

func newFakeWorld() *fakeWorld {
	return &fakeWorld{roles: map[string][]string{"alice": {"owner"}, "bob": {"member"}, "carol": {"admin"}}}
}

func (w *fakeWorld) Verify(_ context.Context, raw string) (*authn.Identity, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, authn.ErrMalformed
	}
	return authn.NewIdentity(parts[1], time.Now().Add(time.Hour), nil), nil
}

func (w *fakeWorld) Resolve(_ context.Context, q roles.Query) (*roles.Access, roles.Tier, error) {
	m := roles.Membership{UserFound: q.UserID != "ghost" && q.UserID != "", PlatformRole: map[string]string{"alice": "admin"}[q.UserID]}
	if q.OrgRef == "acme" || q.OrgRef == "globex" {
		m.OrgID = q.OrgRef
		if q.OrgRef == "acme" {
			m.Roles = w.roles[q.UserID]
			if q.TeamRef == "t1" {
				m.TeamID, m.TeamMember = "t1", slices.Contains([]string{"alice", "bob"}, q.UserID)
			}
		}
	}
	return roles.Compute(m, q.Tables), roles.TierL1, nil
}

func (w *fakeWorld) SessionByToken(_ context.Context, token string) (*authn.Session, roles.Tier, error) {
	user, ok := strings.CutPrefix(token, "tok-")
	if !ok {
		return &authn.Session{}, roles.TierL1, nil
	}
	return &authn.Session{Found: true, ID: "s-" + user, UserID: user, ExpiresAt: time.Now().Add(time.Hour), ActiveOrganizationID: "acme"}, roles.TierL1, nil
}

func (w *fakeWorld) SessionByID(ctx context.Context, id string) (*authn.Session, roles.Tier, error) {
	return w.SessionByToken(ctx, "tok-"+strings.TrimPrefix(id, "s-"))
}

func (w *fakeWorld) APIKeyByHash(_ context.Context, hash string) (*authn.APIKey, roles.Tier, error) {
	for _, u := range []string{"alice", "bob", "carol", "ghost"} {
		if authn.HashAPIKey("key-"+u) == hash {
			return &authn.APIKey{Found: true, ID: "k-" + u, ConfigID: "default", ReferenceID: u, Enabled: true,
				Permissions: []string{"leave:read", "leave:request"}}, roles.TierL1, nil
		}
	}
	return &authn.APIKey{}, roles.TierL1, nil
}
