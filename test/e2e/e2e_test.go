package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
	"github.com/authz-sidecar/authz-sidecar/test/baclient"
)

const password = "correct-horse-battery-staple"

// Short cache TTLs so changes made through Better Auth show within seconds.
// Check and load deadlines far above a cold check on a loaded machine (a
// JWKS fetch from Bun, a pool connect): no e2e test is about them.
var ttlArgs = []string{"--l1-ttl", "500ms", "--l1-negative-ttl", "500ms", "--l2-ttl", "1s", "--l2-negative-ttl", "1s",
	"--jwks-min-refresh", "100ms", "--check-timeout", "30s", "--load-timeout", "30s", "--log-allow-every", "1"}

// keyPolicy is how Better Auth rotates its signing keys in these tests.
// Every server on a database must share it: a server without rotation that
// mints a key (because the newest one has expired) mints one that never
// expires, and every server on the database then signs with it for good.
var keyPolicy = []string{"JWKS_ROTATION_INTERVAL=6", "JWKS_GRACE_PERIOD=600"}

// staleness is the longest a cached answer may outlive a change: L1 + L2 TTL.
const staleness = 1500 * time.Millisecond

// writePolicy copies the repository's policies.yaml with Better Auth's URL
// as issuer, audience and JWKS, and no clock leeway (for the expiry test).
func writePolicy(t *testing.T, baURL string) string {
	t.Helper()
	return testproc.WritePolicyT(t, baURL, "leeway: 30s", "leeway: 0s")
}

type world struct {
	ba     *baclient.Client
	client authv3.AuthorizationClient
	orgID  string
	users  map[string]*baclient.Session
	member map[string]string // member ids by user name
}

func (w *world) token(t *testing.T, user string) string {
	t.Helper()
	tok, err := w.ba.Token(context.Background(), w.users[user])
	if err != nil {
		t.Fatalf("token for %s: %v", user, err)
	}
	return tok
}

// decide sends a CheckRequest to the sidecar and returns the HTTP status
// Envoy would apply and the reason.
func (w *world) decide(t *testing.T, method, path, token string) (int, string) {
	t.Helper()
	h := map[string]string{"x-request-id": "e2e"}
	if token != "" {
		h["authorization"] = "Bearer " + token
	}
	resp, err := w.client.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Headers: h}},
	}})
	if err != nil {
		t.Fatalf("Check %s %s: gRPC error %v", method, path, err)
	}
	if ok := resp.GetOkResponse(); ok != nil {
		return 200, ""
	}
	d := resp.GetDeniedResponse()
	return int(d.GetStatus().GetCode()), d.GetBody()
}

func randSuffix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func TestE2EBetterAuth(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.NewEmptyDatabase(t)
	suffix := randSuffix()
	aliceEmail := "alice-" + suffix + "@example.test"
	ba := startBetterAuth(t, dbURL, append([]string{"ADMIN_EMAILS=" + aliceEmail, "JWT_EXPIRATION=10m"}, keyPolicy...)...)
	w := &world{ba: baclient.New(ba.URL), users: map[string]*baclient.Session{}, member: map[string]string{}}

	// Users, an organization (creator = owner), members invited and accepted
	// with admin, member and admin+member, and a custom role.
	for _, name := range []string{"alice", "bob", "carol", "dave", "erin", "frank"} {
		email := name + "-" + suffix + "@example.test"
		s, err := w.ba.SignUp(ctx, email, password, name)
		if err != nil {
			t.Fatalf("sign up %s: %v", name, err)
		}
		w.users[name] = s
	}
	alice := w.users["alice"]
	orgID, err := w.ba.CreateOrganization(ctx, alice, "Acme "+suffix, "acme-"+suffix)
	if err != nil {
		t.Fatal(err)
	}
	w.orgID = orgID
	for name, roles := range map[string][]string{"bob": {"admin"}, "carol": {"member"}, "dave": {"admin", "member"}, "erin": {"member"}} {
		id, err := w.ba.AddMember(ctx, alice, w.users[name], orgID, roles...)
		if err != nil {
			t.Fatalf("add %s as %v: %v", name, roles, err)
		}
		w.member[name] = id
	}
	if err := w.ba.CreateRole(ctx, alice, orgID, "Approver", map[string][]string{"leave": {"read", "approve"}}); err != nil {
		t.Fatal(err)
	}
	// Better Auth stores custom role names lower-cased; assign by that name.
	if err := w.ba.UpdateMemberRole(ctx, alice, orgID, w.member["erin"], "member", "approver"); err != nil {
		t.Fatal(err)
	}

	// The sidecar binary against the same database and Better Auth's JWKS.
	sc := startSidecar(t, writePolicy(t, ba.URL), dbURL, append([]string{"--better-auth-secret-file", secretFile(t)}, ttlArgs...)...)
	w.client = authv3.NewAuthorizationClient(sc.Conn)

	org := "/api/orgs/" + orgID
	approve, read, request, invite, del := "POST "+org+"/leave/l1/approve", "GET "+org+"/leave/l1", "POST "+org+"/leave", "POST "+org+"/members", "DELETE "+org
	type want map[string]int
	expect := func(t *testing.T, user string, w2 want) {
		t.Helper()
		tok := w.token(t, user)
		for route, status := range w2 {
			method, path, _ := strings.Cut(route, " ")
			if got, body := w.decide(t, method, path, tok); got != status {
				t.Errorf("%s %s: status %d, want %d (%s)", user, route, got, status, body)
			}
		}
	}
	t.Run("roles of policies.yaml", func(t *testing.T) {
		expect(t, "alice", want{approve: 200, read: 200, request: 200, invite: 200, del: 200})
		expect(t, "bob", want{approve: 200, read: 200, request: 200, invite: 200, del: 403})
		expect(t, "carol", want{approve: 403, read: 200, request: 200, invite: 403, del: 403})
		expect(t, "dave", want{approve: 200, read: 200, invite: 200, del: 403})
		expect(t, "erin", want{approve: 200, read: 200, request: 200, invite: 403, del: 403}) // member + custom approver
		expect(t, "frank", want{approve: 403, read: 403})                                     // not a member
		if got, _ := w.decide(t, "GET", "/api/orgs/acme-"+suffix+"/leave/l1", w.token(t, "carol")); got != 200 {
			t.Errorf("org by slug: %d", got)
		}
		if got, _ := w.decide(t, "GET", "/api/me", w.token(t, "frank")); got != 200 {
			t.Errorf("authenticated route for a user without organization: %d", got)
		}
		if got, _ := w.decide(t, "GET", "/healthz", ""); got != 200 {
			t.Errorf("public route: %d", got)
		}
		if got, _ := w.decide(t, "GET", org+"/leave/l1", ""); got != 401 {
			t.Errorf("no token: %d", got)
		}
	})

	t.Run("organization from the active-organization claim", func(t *testing.T) {
		// The fixture's jwt definePayload copies session.activeOrganizationId.
		if err := w.ba.SetActive(ctx, w.users["carol"], orgID); err != nil {
			t.Fatal(err)
		}
		claims := claimsOf(t, w.token(t, "carol"))
		if claims["activeOrganizationId"] != orgID {
			t.Fatalf("activeOrganizationId claim = %v, want %s", claims["activeOrganizationId"], orgID)
		}
	})

	t.Run("a token from another Better Auth with other keys is 401", func(t *testing.T) {
		otherDB := pgtest.NewEmptyDatabase(t)
		// Same issuer URL, so only the keys differ.
		other := startBetterAuth(t, otherDB, "BETTER_AUTH_URL="+ba.URL)
		oc := baclient.New(other.URL)
		s, err := oc.SignUp(ctx, "mallory-"+suffix+"@example.test", password, "mallory")
		if err != nil {
			t.Fatal(err)
		}
		tok, err := oc.Token(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if claimsOf(t, tok)["iss"] != ba.URL {
			t.Fatalf("other instance's iss = %v", claimsOf(t, tok)["iss"])
		}
		if got, body := w.decide(t, "GET", "/api/me", tok); got != 401 {
			t.Errorf("foreign-key token: %d %s", got, body)
		}
	})

	t.Run("an expired token is 401", func(t *testing.T) {
		// A second server on the same database shares the keys (and their
		// rotation) but issues one-second tokens.
		short := startBetterAuth(t, dbURL, append([]string{"BETTER_AUTH_URL=" + ba.URL, "JWT_EXPIRATION=1s"}, keyPolicy...)...)
		sc2 := baclient.New(short.URL)
		s, err := sc2.SignIn(ctx, w.users["carol"].Email, password)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := sc2.Token(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		c := claimsOf(t, tok)
		if life := c["exp"].(float64) - c["iat"].(float64); life != 1 {
			t.Fatalf("short token lifetime = %vs, want 1s", life)
		}
		if c["iss"] != ba.URL || c["aud"] != ba.URL || c["sub"] != w.users["carol"].UserID {
			t.Fatalf("short token iss %v aud %v sub %v: want the main server's issuer and carol", c["iss"], c["aud"], c["sub"])
		}
		// The token lives less than a second from when it was issued (iat
		// is truncated to the second), too short to be checked while fresh
		// on a loaded machine. Wait for exp itself: the sidecar, on the same
		// clock with no leeway, then finds it expired; "expired" comes
		// after the signature check, so the keys are the ones it trusts.
		exp := time.Unix(int64(c["exp"].(float64)), 0)
		time.Sleep(time.Until(exp) + time.Millisecond)
		if got, body := w.decide(t, "GET", "/api/me", tok); got != 401 || !strings.Contains(body, "expired") {
			t.Errorf("expired token: %d %s", got, body)
		}
	})

	t.Run("changes through Better Auth's API take effect after the cache TTL", func(t *testing.T) {
		carolTok, bobTok, daveTok := w.token(t, "carol"), w.token(t, "bob"), w.token(t, "dave")
		// Prime the caches with the old answers.
		method, path, _ := strings.Cut(approve, " ")
		if got, _ := w.decide(t, method, path, carolTok); got != 403 {
			t.Fatalf("carol before promotion: %d", got)
		}
		if err := w.ba.UpdateMemberRole(ctx, alice, orgID, w.member["carol"], "admin"); err != nil {
			t.Fatal(err)
		}
		if err := w.ba.RemoveMember(ctx, alice, orgID, w.member["bob"]); err != nil {
			t.Fatal(err)
		}
		if err := w.ba.BanUser(ctx, alice, w.users["dave"].UserID, "e2e"); err != nil {
			t.Fatal(err)
		}
		// Dave's sessions are gone, but the JWT issued before the ban is
		// still valid: only the sidecar's users.banned check stops him.
		if _, err := w.ba.Token(ctx, w.users["dave"]); err == nil {
			t.Error("Better Auth still issues tokens to a banned user")
		}
		// What this subtest checks is that the TTLs bound staleness, so it
		// waits them out (the built binary has no clock to move). A loaded
		// machine only lengthens the wait.
		time.Sleep(staleness + 500*time.Millisecond)
		rmethod, rpath, _ := strings.Cut(read, " ")
		for _, c := range []struct {
			who, method, path, tok string
			status                 int
			reason                 string
		}{
			{"carol promoted to admin", method, path, carolTok, 200, ""},
			{"bob removed", rmethod, rpath, bobTok, 403, "not a member"},
			{"dave banned", rmethod, rpath, daveTok, 403, "banned"},
			{"dave banned, authenticated route", "GET", "/api/me", daveTok, 403, "banned"},
		} {
			if got, body := w.decide(t, c.method, c.path, c.tok); got != c.status || !strings.Contains(body, c.reason) {
				t.Errorf("%s: %d %s; want %d %q", c.who, got, body, c.status, c.reason)
			}
		}
	})

	t.Run("key rotation without restarting the sidecar", func(t *testing.T) {
		old := w.token(t, "erin")
		oldKid := kidOf(t, old)
		// Better Auth mints a new key on the first signing after the current
		// key's rotation interval (6 s) has passed; the deadline only bounds
		// a failure.
		const within = time.Minute
		deadline := time.Now().Add(within)
		var fresh string
		for time.Now().Before(deadline) {
			time.Sleep(500 * time.Millisecond)
			tok := w.token(t, "erin")
			if kidOf(t, tok) != oldKid {
				fresh = tok
				break
			}
		}
		if fresh == "" {
			t.Fatalf("Better Auth did not rotate its signing key within %v", within)
		}
		if got, body := w.decide(t, "GET", "/api/me", fresh); got != 200 {
			t.Errorf("new-key token: %d %s", got, body)
		}
		if got, body := w.decide(t, "GET", "/api/me", old); got != 200 {
			t.Errorf("old-key token before its expiry: %d %s", got, body)
		}
	})
}

func segment(t *testing.T, tok string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func claimsOf(t *testing.T, tok string) map[string]any { return segment(t, tok, 1) }

func kidOf(t *testing.T, tok string) string {
	kid, _ := segment(t, tok, 0)["kid"].(string)
	return kid
}
