package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
	"github.com/authz-sidecar/authz-sidecar/test/baclient"
)

// identityPolicy exercises every credential and subject Better Auth has.
const identityPolicy = `jwt: { issuer: BA, audiences: [BA], jwks_url: BA/api/auth/jwks, leeway: 0s SESSIONCLAIM}
session: { base_url: BA, bearer: signed }
api_keys: { owners: { default: user, org: organization }, counting: refuse }
organization: { from: [path:org, header:x-organization-id, session:activeOrganizationId] }
team: { from: [path:team, session:activeTeamId] }
app_roles: roles.json
routes:
  - { name: me, path: /api/me, authenticated: true }
  - { name: read-leave, methods: [GET], path: "/api/orgs/{org}/leave", require: [leave:read] }
  - { name: approve, methods: [POST], path: "/api/orgs/{org}/leave/approve", require: [leave:approve] }
  - { name: my-leave, methods: [GET], path: /api/leave, require: [leave:read] }
  - { name: board, methods: [GET], path: "/api/orgs/{org}/teams/{team}/board", team: true }
  - { name: active-team, methods: [GET], path: /api/team, team: true }
  - { name: ban, methods: [POST], path: /api/admin/ban, require_platform: [user:ban], impersonation: deny }
  - { name: admins, methods: [GET], path: /api/admin, platform_roles: [admin] }
  - { name: verified, methods: [GET], path: /api/verified, authenticated: true, user: { email_verified: true } }
  - { name: humans, methods: [GET], path: /api/humans, authenticated: true, user: { anonymous: false } }
  - { name: twofa, methods: [GET], path: /api/2fa, authenticated: true, user: { two_factor: true } }
  - { name: no-imp, methods: [GET], path: /api/no-imp, authenticated: true, impersonation: deny }
`

// revocationLimit is how long a revocation may take to show on every
// sidecar before the test fails: the target is revocationBudget (1 s), with
// room for a loaded CI machine; the measured latencies are logged.
const revocationLimit = 3 * revocationBudget

type identityWorld struct {
	t        *testing.T
	ctx      context.Context
	ba       *testproc.BetterAuth
	client   *baclient.Client
	dbURL    string
	redisURL string
	prefix   string
	dir      string
	secret   string // the secret file
	sidecars []*testproc.Sidecar
	httpAddr string // sidecar 0's HTTP decision endpoint
	users    map[string]*baclient.Session
	acme     string
}

func writeIdentityPolicy(t *testing.T, dir, baURL string, sessionClaim bool) string {
	t.Helper()
	doc := strings.ReplaceAll(identityPolicy, "BA", baURL)
	claim := ""
	if sessionClaim {
		claim = ", session_claim: sid"
	}
	doc = strings.Replace(doc, " SESSIONCLAIM", claim, 1)
	roles, err := os.ReadFile(filepath.Join(testproc.RepoRootT(t), "test", "betterauth", "roles.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "roles.json"), roles, 0o600); err != nil {
		t.Fatal(err)
	}
	name := "policies.yaml"
	if sessionClaim {
		name = "policies-sid.yaml"
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newIdentityWorld(t *testing.T, extraEnv ...string) *identityWorld {
	t.Helper()
	w := &identityWorld{t: t, ctx: context.Background(), dbURL: pgtest.NewEmptyDatabase(t), dir: t.TempDir(), users: map[string]*baclient.Session{}}
	w.redisURL, w.prefix = freshRedis(t)
	env := append([]string{"APIKEY_RATE_LIMIT=0", "TEST_ROUTES=1", "ADMIN_EMAILS=root@identity.test",
		"INVALIDATION_REDIS_URL=" + w.redisURL, "INVALIDATION_CHANNEL=" + w.prefix + "inv", "INVALIDATION_REDIS_PREFIX=" + w.prefix}, extraEnv...)
	w.ba = startBetterAuth(t, w.dbURL, env...)
	w.client = baclient.New(w.ba.URL)
	w.secret = secretFile(t)
	return w
}

// startSidecars starts n sidecars sharing Redis and the invalidation
// channel; the first also serves HTTP decisions.
func (w *identityWorld) startSidecars(n int, policy string, extra ...string) {
	t := w.t
	w.sidecars = nil
	for i := range n {
		args := append([]string{"--better-auth-secret-file", w.secret, "--redis-url", w.redisURL, "--redis-prefix", w.prefix,
			"--invalidation-channel", w.prefix + "inv", "--check-timeout", "10s"}, extra...)
		if i == 0 {
			port := testproc.FreePortT(t)
			w.httpAddr = fmt.Sprintf("127.0.0.1:%d", port)
			args = append(args, "--http-authz-addr", w.httpAddr)
		}
		w.sidecars = append(w.sidecars, startSidecar(t, policy, w.dbURL, args...))
	}
}

func (w *identityWorld) signUp(name string) *baclient.Session {
	t := w.t
	s, err := w.client.SignUp(w.ctx, name+"@identity.test", password, name)
	if err != nil {
		t.Fatal(err)
	}
	w.users[name] = s
	return s
}

// answer is one sidecar decision as a proxy sees it.
type answer struct {
	status  int
	reason  string
	headers map[string]string
}

// ask sends a Check to sidecar i.
func (w *identityWorld) ask(i int, method, path string, h map[string]string) answer {
	t := w.t
	t.Helper()
	ctx, cancel := context.WithTimeout(w.ctx, 20*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(w.sidecars[i].Conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Headers: h}},
	}})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	a := answer{headers: map[string]string{}}
	if ok := resp.GetOkResponse(); ok != nil {
		a.status = 200
		for _, hv := range ok.GetHeaders() {
			a.headers[hv.GetHeader().GetKey()] = hv.GetHeader().GetValue()
		}
		return a
	}
	d := resp.GetDeniedResponse()
	a.status = int(d.GetStatus().GetCode())
	for _, hv := range d.GetHeaders() {
		if hv.GetHeader().GetKey() == "x-authz-reason" {
			a.reason = hv.GetHeader().GetValue()
		}
	}
	return a
}

// askHTTP asks sidecar 0's HTTP decision endpoint, as nginx would.
func (w *identityWorld) askHTTP(method, path string, h map[string]string) answer {
	t := w.t
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+w.httpAddr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Original-Method", method)
	req.Header.Set("X-Original-Uri", path)
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	a := answer{status: resp.StatusCode, reason: resp.Header.Get("X-Authz-Reason"), headers: map[string]string{}}
	for k, vs := range resp.Header {
		a.headers[strings.ToLower(k)] = vs[0]
	}
	return a
}

func (w *identityWorld) expect(got answer, status int, reason string) {
	w.t.Helper()
	if got.status != status || (reason != "" && got.reason != reason) {
		w.t.Errorf("got %d %q, want %d %q", got.status, got.reason, status, reason)
	}
}

func cookieHeader(s *baclient.Session) map[string]string {
	return map[string]string{"cookie": s.Cookie.Name + "=" + s.Cookie.Value}
}

func bearerHeader(s *baclient.Session) map[string]string {
	return map[string]string{"authorization": "Bearer " + s.Token}
}

// revoked runs a revocation through Better Auth and waits until every
// sidecar answers want, returning how long that took from the call's start.
func (w *identityWorld) revoked(what string, change func() error, method, path string, h map[string]string, want int) time.Duration {
	t := w.t
	t.Helper()
	start := time.Now()
	if err := change(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		last time.Duration
	)
	for i := range w.sidecars {
		wg.Go(func() {
			for {
				if w.ask(i, method, path, h).status == want {
					mu.Lock()
					last = max(last, time.Since(start))
					mu.Unlock()
					return
				}
				if time.Since(start) > revocationLimit {
					t.Errorf("%s: sidecar %d still answers the old decision after %v", what, i, revocationLimit)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	t.Logf("%s: every sidecar answers %d after %v", what, want, last.Round(time.Millisecond))
	return last
}

// TestSessions covers Better Auth sessions as credentials, against the
// real Better Auth: the cookie and the bearer session token, over gRPC and
// HTTP, tampered, foreign and raw tokens, CSRF, the active organization,
// and sign-out, revocation and bans taking effect on two sidecars.
func TestSessions(t *testing.T) {
	w := newIdentityWorld(t)
	alice, bob := w.signUp("alice"), w.signUp("bob")
	w.signUp("carol")
	var err error
	if w.acme, err = w.client.CreateOrganization(w.ctx, alice, "Acme", "acme-"+randSuffix()); err != nil {
		t.Fatal(err)
	}
	if _, err := w.client.AddMember(w.ctx, alice, bob, w.acme, "member"); err != nil {
		t.Fatal(err)
	}
	w.startSidecars(2, writeIdentityPolicy(t, w.dir, w.ba.URL, false))
	var latencies []time.Duration

	t.Run("the cookie Better Auth set, over gRPC and HTTP", func(t *testing.T) {
		for _, a := range []answer{w.ask(0, "GET", "/api/me", cookieHeader(alice)), w.askHTTP("GET", "/api/me", cookieHeader(alice))} {
			w.expect(a, 200, "")
			if a.headers["x-auth-user-id"] != alice.UserID || a.headers["x-auth-credential"] != "session" {
				t.Errorf("identity headers %v", a.headers)
			}
		}
	})
	t.Run("the bearer session token", func(t *testing.T) {
		w.expect(w.ask(0, "GET", "/api/orgs/"+w.acme+"/leave", bearerHeader(bob)), 200, "")
		w.expect(w.askHTTP("GET", "/api/orgs/"+w.acme+"/leave", bearerHeader(bob)), 200, "")
	})
	t.Run("tampered, foreign and raw session credentials are 401", func(t *testing.T) {
		token, _, _ := strings.Cut(alice.Token, ".")
		other, _ := authn.NewSecret("another-secret-that-is-not-better-auths-0000")
		for name, h := range map[string]map[string]string{
			"tampered signature":                      {"cookie": alice.Cookie.Name + "=" + url.QueryEscape(token+"."+strings.Repeat("A", 43)+"=")},
			"another token's signature":               {"cookie": alice.Cookie.Name + "=" + url.QueryEscape(token+"x."+alice.Token[len(token)+1:])},
			"signed with another secret":              {"cookie": alice.Cookie.Name + "=" + url.QueryEscape(token+"."+other.Sign(token))},
			"raw token where signatures are required": {"authorization": "Bearer " + token},
		} {
			if a := w.ask(0, "GET", "/api/me", h); a.status != 401 {
				t.Errorf("%s: %d %s, want 401", name, a.status, a.reason)
			}
		}
	})
	t.Run("a cross-origin cookie request that changes state is 403", func(t *testing.T) {
		h := cookieHeader(alice)
		h["origin"] = "https://evil.example"
		w.expect(w.ask(0, "POST", "/api/orgs/"+w.acme+"/leave/approve", h), 403, "untrusted_origin")
		w.expect(w.askHTTP("POST", "/api/orgs/"+w.acme+"/leave/approve", h), 403, "untrusted_origin")
		h["origin"] = w.ba.URL
		w.expect(w.ask(0, "POST", "/api/orgs/"+w.acme+"/leave/approve", h), 200, "")
		// A bearer token is not sent by the browser on its own: no origin needed.
		w.expect(w.ask(0, "POST", "/api/orgs/"+w.acme+"/leave/approve", bearerHeader(alice)), 200, "")
	})
	t.Run("the session's active organization follows set-active", func(t *testing.T) {
		globex, err := w.client.CreateOrganization(w.ctx, alice, "Globex", "globex-"+randSuffix())
		if err != nil {
			t.Fatal(err)
		}
		if a := w.ask(0, "GET", "/api/leave", cookieHeader(alice)); a.status != 200 || a.headers["x-auth-org-id"] != globex {
			t.Fatalf("after creating globex: %d %v", a.status, a.headers)
		}
		latencies = append(latencies, w.revoked("set-active", func() error { return w.client.SetActive(w.ctx, alice, w.acme) },
			"GET", "/api/leave", cookieHeader(alice), 200))
		for i := range w.sidecars {
			if a := w.ask(i, "GET", "/api/leave", cookieHeader(alice)); a.headers["x-auth-org-id"] != w.acme || a.headers["x-auth-org-source"] != "session:activeOrganizationId" {
				t.Errorf("sidecar %d: %v", i, a.headers)
			}
		}
	})
	t.Run("sign-out, revocations and a ban deny on both sidecars", func(t *testing.T) {
		s1, err := w.client.SignIn(w.ctx, "bob@identity.test", password)
		if err != nil {
			t.Fatal(err)
		}
		s2, err := w.client.SignIn(w.ctx, "bob@identity.test", password)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []*baclient.Session{s1, s2, bob} {
			for i := range w.sidecars {
				w.expect(w.ask(i, "GET", "/api/me", cookieHeader(s)), 200, "")
			}
		}
		latencies = append(latencies,
			w.revoked("sign-out", func() error { return w.client.SignOut(w.ctx, s1) }, "GET", "/api/me", cookieHeader(s1), 401),
			w.revoked("revoke-other-sessions", func() error { return w.client.RevokeOtherSessions(w.ctx, bob) }, "GET", "/api/me", cookieHeader(s2), 401))
		root := w.signUp("root")
		carol := w.users["carol"]
		latencies = append(latencies,
			w.revoked("ban", func() error { return w.client.BanUser(w.ctx, root, carol.UserID, "test") }, "GET", "/api/me", bearerHeader(carol), 401))
		w.expect(w.ask(0, "GET", "/api/me", bearerHeader(bob)), 200, "")
	})
	slices.Sort(latencies)
	if len(latencies) > 0 {
		t.Logf("session revocation on 2 sidecars: p50 %v, max %v over %d changes",
			latencies[len(latencies)/2].Round(time.Millisecond), latencies[len(latencies)-1].Round(time.Millisecond), len(latencies))
	}
}

// TestJWTDiesWithItsSession: with jwt.session_claim, a JWT whose session
// was signed out is refused, though the JWT itself is still valid.
func TestJWTDiesWithItsSession(t *testing.T) {
	w := newIdentityWorld(t)
	alice := w.signUp("alice")
	w.startSidecars(2, writeIdentityPolicy(t, w.dir, w.ba.URL, true))
	jwt, err := w.client.Token(w.ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]string{"authorization": "Bearer " + jwt}
	w.expect(w.ask(0, "GET", "/api/me", h), 200, "")
	w.revoked("sign-out ends the JWT", func() error { return w.client.SignOut(w.ctx, alice) }, "GET", "/api/me", h, 401)
}

// TestSessionExpiry: a session past its expiresAt is refused, as Better
// Auth refuses it.
func TestSessionExpiry(t *testing.T) {
	w := newIdentityWorld(t, "SESSION_EXPIRES_IN=2")
	alice := w.signUp("alice")
	w.startSidecars(1, writeIdentityPolicy(t, w.dir, w.ba.URL, false))
	w.expect(w.ask(0, "GET", "/api/me", cookieHeader(alice)), 200, "")
	info, err := w.client.GetSession(w.ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	// The condition is time itself: wait until the session's own expiry.
	for !time.Now().After(info.ExpiresAt) {
		time.Sleep(time.Until(info.ExpiresAt) + time.Millisecond)
	}
	w.expect(w.ask(0, "GET", "/api/me", cookieHeader(alice)), 401, "invalid_session")
	if s, err := w.client.GetSession(w.ctx, alice); err != nil || s != nil {
		t.Errorf("Better Auth on the expired session: %+v, %v; want null", s, err)
	}
}

// TestSecretRotation: with BETTER_AUTH_SECRETS, the first secret is
// current; Better Auth (and so the sidecar) verifies cookies with it only.
func TestSecretRotation(t *testing.T) {
	const current, previous = "current-secret-current-secret-current-0001", "previous-secret-previous-secret-prev-0002"
	w := newIdentityWorld(t, "BETTER_AUTH_SECRET=", "BETTER_AUTH_SECRETS=2:"+current+",1:"+previous)
	alice := w.signUp("alice")
	t.Setenv("BETTER_AUTH_SECRETS", "2:"+current+",1:"+previous)
	w.secret = "" // the sidecar reads the environment, as Better Auth does
	policy := writeIdentityPolicy(t, w.dir, w.ba.URL, false)
	w.sidecars = []*testproc.Sidecar{startSidecar(t, policy, w.dbURL)}
	w.expect(w.ask(0, "GET", "/api/me", cookieHeader(alice)), 200, "")
	token, _, _ := strings.Cut(alice.Token, ".")
	old, _ := authn.NewSecret(previous)
	oldCookie := map[string]string{"cookie": alice.Cookie.Name + "=" + url.QueryEscape(token+"."+old.Sign(token))}
	w.expect(w.ask(0, "GET", "/api/me", oldCookie), 401, "invalid_session")
	// Better Auth agrees: the cookie signed with the previous secret is no session.
	req, _ := http.NewRequest("GET", w.ba.URL+"/api/auth/get-session", nil)
	req.Header.Set("Cookie", oldCookie["cookie"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(body)) != "null" {
		t.Errorf("Better Auth accepted a cookie of the previous secret: %s", body)
	}
}

// TestSubjects covers the rest of a Better Auth identity against the real
// Better Auth: API keys (a user's and an organization's, with permissions,
// disabled, expiring, with usage limits, deleted), platform roles (the
// admin plugin), impersonation, teams and user conditions; and that
// revoking a key or a role shows on two sidecars.
func TestSubjects(t *testing.T) {
	w := newIdentityWorld(t)
	alice, bob, carol := w.signUp("alice"), w.signUp("bob"), w.signUp("carol")
	root := w.signUp("root") // ADMIN_EMAILS: user.role = admin
	var err error
	if w.acme, err = w.client.CreateOrganization(w.ctx, alice, "Acme", "acme-"+randSuffix()); err != nil {
		t.Fatal(err)
	}
	for _, u := range []*baclient.Session{bob, carol} {
		if _, err := w.client.AddMember(w.ctx, alice, u, w.acme, "member"); err != nil {
			t.Fatal(err)
		}
	}
	w.startSidecars(2, writeIdentityPolicy(t, w.dir, w.ba.URL, false))
	key := func(k string) map[string]string { return map[string]string{"x-api-key": k} }
	readLeave := "/api/orgs/" + w.acme + "/leave"

	t.Run("api keys", func(t *testing.T) {
		userKey, err := w.client.CreateAPIKeyAsServer(w.ctx, bob.UserID, baclient.NewAPIKey{Permissions: map[string][]string{"leave": {"read"}}})
		if err != nil {
			t.Fatal(err)
		}
		a := w.ask(0, "GET", readLeave, key(userKey.Key))
		w.expect(a, 200, "")
		if a.headers["x-auth-user-id"] != bob.UserID || a.headers["x-auth-credential"] != "api_key" || a.headers["x-auth-api-key-id"] != userKey.ID {
			t.Errorf("identity headers %v", a.headers)
		}
		// The key narrows its user: bob may not approve anyway, and alice's
		// key without leave:approve may not either, though alice may.
		aliceKey, err := w.client.CreateAPIKeyAsServer(w.ctx, alice.UserID, baclient.NewAPIKey{Permissions: map[string][]string{"leave": {"read"}}})
		if err != nil {
			t.Fatal(err)
		}
		w.expect(w.ask(0, "POST", "/api/orgs/"+w.acme+"/leave/approve", bearerHeader(alice)), 200, "")
		w.expect(w.ask(0, "POST", "/api/orgs/"+w.acme+"/leave/approve", key(aliceKey.Key)), 403, "missing_permission")

		orgKey, err := w.client.CreateAPIKeyAsServer(w.ctx, alice.UserID, baclient.NewAPIKey{ConfigID: baclient.OrgKeys, OrganizationID: w.acme,
			Permissions: map[string][]string{"leave": {"read", "approve"}}})
		if err != nil {
			t.Fatal(err)
		}
		a = w.ask(0, "GET", "/api/leave", key(orgKey.Key))
		if a.status != 200 || a.headers["x-auth-org-id"] != w.acme || a.headers["x-auth-user-id"] != "" {
			t.Errorf("organization key: %d %s %v", a.status, a.reason, a.headers)
		}
		globex, err := w.client.CreateOrganization(w.ctx, alice, "Globex", "globex-"+randSuffix())
		if err != nil {
			t.Fatal(err)
		}
		w.expect(w.ask(0, "GET", "/api/orgs/"+globex+"/leave", key(orgKey.Key)), 403, "wrong_organization")
		w.expect(w.ask(0, "GET", "/api/verified", key(orgKey.Key)), 403, "credential_not_allowed")

		disabled, err := w.client.CreateAPIKeyAsServer(w.ctx, bob.UserID, baclient.NewAPIKey{Permissions: map[string][]string{"leave": {"read"}}})
		if err != nil {
			t.Fatal(err)
		}
		w.expect(w.ask(0, "GET", readLeave, key(disabled.Key)), 200, "")
		w.revoked("disable a key", func() error {
			_, err := w.client.UpdateAPIKey(w.ctx, bob, baclient.APIKeyUpdate{KeyID: disabled.ID, Enabled: baclient.Ptr(false)})
			return err
		}, "GET", readLeave, key(disabled.Key), 401)

		counted, err := w.client.CreateAPIKeyAsServer(w.ctx, bob.UserID, baclient.NewAPIKey{Remaining: baclient.Ptr(5)})
		if err != nil {
			t.Fatal(err)
		}
		w.expect(w.ask(0, "GET", "/api/me", key(counted.Key)), 401, "api_key_counted")

		short, err := w.client.CreateAPIKeyAsServer(w.ctx, bob.UserID, baclient.NewAPIKey{ExpiresIn: baclient.Ptr(1)})
		if err != nil {
			t.Fatal(err)
		}
		if short.ExpiresAt == nil {
			t.Fatal("the key has no expiry")
		}
		for !time.Now().After(*short.ExpiresAt) {
			time.Sleep(time.Until(*short.ExpiresAt) + time.Millisecond)
		}
		w.expect(w.ask(0, "GET", "/api/me", key(short.Key)), 401, "invalid_api_key")

		w.expect(w.ask(1, "GET", readLeave, key(userKey.Key)), 200, "")
		w.revoked("delete a key", func() error { return w.client.DeleteAPIKey(w.ctx, bob, baclient.UserKeys, userKey.ID) },
			"GET", readLeave, key(userKey.Key), 401)
		w.expect(w.ask(0, "GET", "/api/me", key("usr_"+strings.Repeat("x", 64))), 401, "invalid_api_key")
	})

	t.Run("platform roles", func(t *testing.T) {
		w.expect(w.ask(0, "POST", "/api/admin/ban", bearerHeader(root)), 200, "")
		w.expect(w.ask(0, "GET", "/api/admin", bearerHeader(root)), 200, "")
		w.expect(w.ask(0, "POST", "/api/admin/ban", bearerHeader(carol)), 403, "missing_platform_role")
		w.revoked("set-role admin", func() error { return w.client.SetRole(w.ctx, root, carol.UserID, "admin") },
			"POST", "/api/admin/ban", bearerHeader(carol), 200)
		w.revoked("set-role user", func() error { return w.client.SetRole(w.ctx, root, carol.UserID, "user") },
			"GET", "/api/admin", bearerHeader(carol), 403)
	})

	t.Run("impersonation", func(t *testing.T) {
		imp, err := w.client.Impersonate(w.ctx, root, bob.UserID)
		if err != nil {
			t.Fatal(err)
		}
		a := w.ask(0, "GET", "/api/me", bearerHeader(imp))
		if a.status != 200 || a.headers["x-auth-user-id"] != bob.UserID || a.headers["x-auth-impersonated-by"] != root.UserID {
			t.Errorf("impersonated: %d %v", a.status, a.headers)
		}
		w.expect(w.ask(0, "GET", "/api/no-imp", bearerHeader(imp)), 403, "impersonation_denied")
		w.expect(w.ask(0, "GET", "/api/no-imp", bearerHeader(bob)), 200, "")
		w.revoked("stop impersonating", func() error { _, err := w.client.StopImpersonating(w.ctx, imp); return err },
			"GET", "/api/me", bearerHeader(imp), 401)
	})

	t.Run("teams", func(t *testing.T) {
		team, err := w.client.CreateTeam(w.ctx, alice, w.acme, "Blue")
		if err != nil {
			t.Fatal(err)
		}
		board := "/api/orgs/" + w.acme + "/teams/" + team + "/board"
		w.expect(w.ask(0, "GET", board, bearerHeader(bob)), 403, "not_team_member")
		w.revoked("add to the team", func() error { return w.client.AddTeamMember(w.ctx, alice, w.acme, team, bob.UserID) },
			"GET", board, bearerHeader(bob), 200)
		if a := w.ask(1, "GET", board, bearerHeader(bob)); a.headers["x-auth-team-id"] != team {
			t.Errorf("team header %v", a.headers)
		}
		if err := w.client.SetActive(w.ctx, bob, w.acme); err != nil {
			t.Fatal(err)
		}
		w.revoked("set-active-team", func() error { return w.client.SetActiveTeam(w.ctx, bob, team) },
			"GET", "/api/team", bearerHeader(bob), 200)
		w.revoked("remove from the team", func() error { return w.client.RemoveTeamMember(w.ctx, alice, w.acme, team, bob.UserID) },
			"GET", board, bearerHeader(bob), 403)
	})

	t.Run("user conditions", func(t *testing.T) {
		w.expect(w.ask(0, "GET", "/api/verified", bearerHeader(carol)), 403, "email_not_verified")
		w.revoked("verify the email", func() error { return w.client.VerifyEmail(w.ctx, carol) },
			"GET", "/api/verified", bearerHeader(carol), 200)
		anon, err := w.client.SignInAnonymous(w.ctx)
		if err != nil {
			t.Fatal(err)
		}
		w.expect(w.ask(0, "GET", "/api/humans", bearerHeader(anon)), 403, "anonymous_user")
		w.expect(w.ask(0, "GET", "/api/humans", bearerHeader(carol)), 200, "")
		w.expect(w.ask(0, "GET", "/api/2fa", bearerHeader(carol)), 403, "two_factor_required")
		tf, err := w.client.EnableTwoFactor(w.ctx, carol, password)
		if err != nil {
			t.Fatal(err)
		}
		after, err := w.client.SignInTOTP(w.ctx, "carol@identity.test", password, tf.Secret)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(revocationLimit)
		for w.ask(0, "GET", "/api/2fa", bearerHeader(after)).status != 200 {
			if time.Now().After(deadline) {
				t.Fatal("two-factor enabled, but the sidecar still refuses")
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}
