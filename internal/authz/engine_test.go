package authz

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// The engine is tested here against fakes of its lookups (the tiers, the
// JWKS): pure units. The real verifier, tiers and sources are tested in
// their packages, and together over gRPC in internal/extauthz and
// test/e2e.

const testPolicy = `jwt:
  issuer: https://auth.example
  audiences: [https://auth.example]
  jwks_url: https://auth.example/jwks
session:
  base_url: https://app.example
  bearer: signed_or_raw
  trusted_origins: ["https://admin.example"]
api_keys:
  owners: { default: user, org: organization }
organization:
  from: [path:org, header:x-org, claim:org, session:activeOrganizationId]
team:
  from: [path:team, header:x-team, session:activeTeamId]
statements:
  leave: [read, approve]
  project: [read, update]
  billing: [read]
roles:
  member: { permissions: [leave:read] }
  admin: { inherits: [member], permissions: [leave:approve] }
  editor: { permissions: ["project:*"] }
  billing: { permissions: [billing:read] }
admin:
  admin_user_ids: [root]
  roles:
    admin: { permissions: ["user:*", "session:*"] }
    support: { permissions: [user:list] }
    user: {}
routes:
  - { name: health, methods: [GET], path: /healthz, public: true }
  - { name: me, path: /me, authenticated: true }
  - { name: read, methods: [GET], path: "/orgs/{org}/leave", require: [leave:read] }
  - { name: approve, methods: [POST], path: "/orgs/{org}/leave/approve", require: [leave:approve] }
  - { name: edit-bill, methods: [POST], path: "/orgs/{org}/edit-bill", require: [project:update, billing:read] }
  - { name: any, methods: [GET], path: "/orgs/{org}/any", require_any: [project:update, billing:read] }
  - { name: by-header, methods: [GET], path: /leave, require: [leave:read] }
  - { name: team, path: "/orgs/{org}/teams/{team}", team: true, require: [leave:read] }
  - { name: team-active, path: /team, team: true }
  - { name: ban, methods: [POST], path: /admin/ban, require_platform: [user:ban] }
  - { name: support, path: /admin/support, platform_roles: [support] }
  - { name: verified, path: /verified, authenticated: true, user: { email_verified: true, anonymous: false, two_factor: true } }
  - { name: no-imp, path: /no-imp, authenticated: true, impersonation: deny }
  - { name: jwt-only, path: /jwt-only, authenticated: true, credentials: [jwt] }
  - { name: shadow, path: "/orgs/{org}/shadow", require: [leave:approve], enforce: false }
`

// world is an in-memory Better Auth: users, memberships, sessions, keys.
type world struct {
	users    map[string]roles.Membership // by user id: standing and platform facts
	members  map[string][]string         // "user|org" -> roles
	slugs    map[string]string           // slug -> org id
	orgs     map[string][]roles.DynamicRole
	teams    map[string]string // team id -> org id
	teamMems map[string]bool   // "user|team"
	sessions map[string]authn.Session
	keys     map[string]authn.APIKey // by key (hashed on lookup)
	fail     map[string]error        // user id -> error of any lookup about them
	tiers    map[string]roles.Tier   // user id -> the tier that answers (default L2)
	calls    atomic.Int64            // access lookups
}

func (w *world) Resolve(ctx context.Context, q roles.Query) (*roles.Access, roles.Tier, error) {
	w.calls.Add(1)
	if err := w.fail[q.UserID]; err != nil {
		return nil, roles.TierSource, err
	}
	m := w.users[q.UserID]
	if q.OrgRef != "" {
		org := q.OrgRef
		if id, ok := w.slugs[org]; ok {
			org = id
		}
		if _, ok := w.orgs[org]; ok {
			m.OrgID = org
			m.Roles = w.members[q.UserID+"|"+org]
			m.DynamicRoles = w.orgs[org]
			if q.TeamRef != "" && w.teams[q.TeamRef] == org {
				m.TeamID, m.TeamMember = q.TeamRef, w.teamMems[q.UserID+"|"+q.TeamRef]
			}
		}
	}
	tier, ok := w.tiers[q.UserID]
	if !ok {
		tier = roles.TierL2
	}
	return roles.Compute(m, q.Tables), tier, nil
}

func (w *world) SessionByToken(_ context.Context, token string) (*authn.Session, roles.Tier, error) {
	if err := w.fail["session:"+token]; err != nil {
		return nil, roles.TierSource, err
	}
	s := w.sessions[token]
	return &s, roles.TierL1, nil
}

func (w *world) SessionByID(_ context.Context, id string) (*authn.Session, roles.Tier, error) {
	if err := w.fail["sid:"+id]; err != nil {
		return nil, roles.TierSource, err
	}
	for _, s := range w.sessions {
		if s.ID == id {
			return &s, roles.TierL1, nil
		}
	}
	return &authn.Session{}, roles.TierL1, nil
}

func (w *world) APIKeyByHash(_ context.Context, hash string) (*authn.APIKey, roles.Tier, error) {
	for key, k := range w.keys {
		if authn.HashAPIKey(key) == hash {
			if err := w.fail["key:"+key]; err != nil {
				return nil, roles.TierSource, err
			}
			return &k, roles.TierL1, nil
		}
	}
	return &authn.APIKey{}, roles.TierL1, nil
}

// verifier is a fake JWT verifier: a token "h.<user>.s" is the user's, with
// the claims in claims; errs maps users to verification errors.
type verifier struct {
	claims map[string]map[string]string
	errs   map[string]error
}

func (v verifier) Verify(_ context.Context, raw string) (*authn.Identity, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, authn.ErrMalformed
	}
	if err := v.errs[parts[1]]; err != nil {
		return nil, err
	}
	return authn.NewIdentity(parts[1], time.Now().Add(time.Hour), v.claims[parts[1]]), nil
}

var (
	now     = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	secret  = mustSecret("a-test-secret-of-better-auth-at-least-32-chars")
	errDown = fmt.Errorf("pg: membership: %w: connection refused", roles.ErrUnavailable)
)

func mustSecret(s string) authn.Secret {
	sec, err := authn.NewSecret(s)
	if err != nil {
		panic(err)
	}
	return sec
}

func newWorld() *world {
	live, expired := now.Add(time.Hour), now.Add(-time.Second)
	return &world{
		users: map[string]roles.Membership{
			"alice":  {UserFound: true, EmailVerified: true, TwoFactorEnabled: true},
			"bob":    {UserFound: true},
			"carol":  {UserFound: true, Banned: true},
			"dave":   {UserFound: true, Banned: true, BanExpires: now.Add(-time.Minute)},
			"erin":   {UserFound: true, PlatformRole: "admin"},
			"frank":  {UserFound: true, PlatformRole: "support"},
			"root":   {UserFound: true},
			"anon":   {UserFound: true, Anonymous: true, EmailVerified: true, TwoFactorEnabled: true},
			"no2fa":  {UserFound: true, EmailVerified: true},
			"eve":    {UserFound: true},
			"broken": {UserFound: true},
		},
		members: map[string][]string{
			"alice|o1": {"admin"}, "bob|o1": {"member"}, "carol|o1": {"member"}, "dave|o1": {"member"},
			"eve|o1": {"editor", "billing"}, "broken|o2": {"member"}, "bob|o2": {"member"},
		},
		slugs: map[string]string{"acme": "o1"},
		orgs:  map[string][]roles.DynamicRole{"o1": nil, "o2": {{Name: "x", Permission: "{"}}, "o3": nil},
		teams: map[string]string{"t1": "o1", "t2": "o1", "t9": "o3"},
		teamMems: map[string]bool{
			"alice|t1": true, "bob|t1": true,
		},
		sessions: map[string]authn.Session{
			"tok-alice":   {Found: true, ID: "s-alice", UserID: "alice", ExpiresAt: live, ActiveOrganizationID: "o1", ActiveTeamID: "t1"},
			"tok-bob":     {Found: true, ID: "s-bob", UserID: "bob", ExpiresAt: live},
			"tok-old":     {Found: true, ID: "s-old", UserID: "bob", ExpiresAt: expired},
			"tok-imp":     {Found: true, ID: "s-imp", UserID: "bob", ExpiresAt: live, ImpersonatedBy: "erin"},
			"tok-edge":    {Found: true, ID: "s-edge", UserID: "bob", ExpiresAt: now},
			"tok-ghost":   {Found: true, ID: "s-ghost", UserID: "ghost", ExpiresAt: live},
			"tok-badid":   {Found: true, ID: "s-badid", UserID: "bad\x00id", ExpiresAt: live},
			"tok-badorg":  {Found: true, ID: "s-badorg", UserID: "bob", ExpiresAt: live, ActiveOrganizationID: "o\x01"},
			"tok-unknown": {},
		},
		keys: map[string]authn.APIKey{
			"key-bob":      {Found: true, ID: "k1", ConfigID: "default", ReferenceID: "bob", Enabled: true, Permissions: []string{"leave:read"}},
			"key-alice":    {Found: true, ID: "k2", ReferenceID: "alice", Enabled: true, Permissions: []string{"leave:read"}},
			"key-off":      {Found: true, ID: "k3", ConfigID: "default", ReferenceID: "bob", Enabled: false},
			"key-expired":  {Found: true, ID: "k4", ConfigID: "default", ReferenceID: "bob", Enabled: true, ExpiresAt: now.Add(-time.Second)},
			"key-counted":  {Found: true, ID: "k5", ConfigID: "default", ReferenceID: "bob", Enabled: true, Counted: true},
			"key-config":   {Found: true, ID: "k6", ConfigID: "legacy", ReferenceID: "bob", Enabled: true},
			"key-org":      {Found: true, ID: "k7", ConfigID: "org", ReferenceID: "o1", Enabled: true, Permissions: []string{"leave:approve", "leave:read"}},
			"key-orgnone":  {Found: true, ID: "k8", ConfigID: "org", ReferenceID: "o1", Enabled: true},
			"key-badowner": {Found: true, ID: "k9", ConfigID: "default", ReferenceID: strings.Repeat("x", 300), Enabled: true},
			"key-down":     {Found: true},
			"key-future":   {Found: true, ID: "k10", ConfigID: "default", ReferenceID: "bob", Enabled: true, ExpiresAt: now.Add(time.Hour), Permissions: []string{"leave:read"}},
			longestKey:     {Found: true, ID: "k11", ConfigID: "default", ReferenceID: "bob", Enabled: true},
		},
		fail: map[string]error{
			"down":              errDown,
			"slowdb":            fmt.Errorf("resolve: %w", context.DeadlineExceeded),
			"gone":              fmt.Errorf("resolve: %w", context.Canceled),
			"session:tok-down":  errDown,
			"key:key-down":      errDown,
			"session:tok-slow2": context.DeadlineExceeded,
			"sid:s-down":        errDown,
		},
		// The tiers that answer: alice's access is in L1, eve's came from
		// Postgres, everyone else's from L2.
		tiers: map[string]roles.Tier{"alice": roles.TierL1, "eve": roles.TierSource},
	}
}

// longestKey is an API key of the longest length the engine looks up.
var longestKey = strings.Repeat("k", authn.MaxAPIKeyBytes)

var testVerifier = verifier{
	claims: map[string]map[string]string{"bob": {"org": "o1"}, "alice": {"org": "o3"}},
	errs: map[string]error{
		"expired": fmt.Errorf("%w: exp %d", authn.ErrExpired, 123),
		"nokeys":  authn.ErrNoKeys,
		"slow":    context.DeadlineExceeded,
		"gone":    context.Canceled,
	},
}

func newEngine(t *testing.T, w *world, doc string) *Engine {
	t.Helper()
	pol, err := policy.Parse("test.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var v TokenVerifier
	if pol.JWT.Enabled {
		v = testVerifier
	}
	e, err := New(State{Policy: pol, Verifier: v}, Deps{Access: w, Sessions: w, APIKeys: w}, Config{Now: func() time.Time { return now }, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func jwt(user string) string { return "Bearer h." + user + ".s" }

// cookie is Better Auth's session cookie for token; the test policy's base
// URL is https, so its name has the __Secure- prefix.
func cookie(token string) string {
	return "__Secure-better-auth.session_token=" + url.QueryEscape(token+"."+secret.Sign(token))
}

func signed(token string) string { return "Bearer " + token + "." + secret.Sign(token) }

type want struct {
	code     Code
	reason   Reason
	allow    bool
	shadowed bool
	user     string
	org      string
	source   string
	team     string
	cred     policy.Credential
	imp      string
	keyID    string
	roles    string
	detail   string
	// tier is the tier that answered the access lookup; TierNone when the
	// decision was made before it (or it was not needed).
	tier      roles.Tier
	noLookups bool // the access tiers must not be asked
}

func TestDecide(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		method string
		path   string
		route  string
		h      HeaderMap
		want   want
	}{
		// 1. Route.
		{name: "public route", method: "GET", path: "/healthz", want: want{code: CodeOK, reason: ReasonPublic, allow: true}},
		{name: "public route ignores a bad token", method: "GET", path: "/healthz", h: HeaderMap{"authorization": "Bearer x"}, want: want{code: CodeOK, reason: ReasonPublic, allow: true}},
		{name: "no route", method: "GET", path: "/nowhere", want: want{code: CodeForbidden, reason: ReasonNoRoute}},
		{name: "method not routed", method: "DELETE", path: "/healthz", want: want{code: CodeForbidden, reason: ReasonNoRoute}},
		{name: "ambiguous path", method: "GET", path: "/orgs/o1/../o2/leave", want: want{code: CodeForbidden, reason: ReasonAmbiguousPath}},
		{name: "ambiguous path of a named route", method: "GET", path: "/orgs/o1/%2e%2e/leave", route: "read", want: want{code: CodeForbidden, reason: ReasonAmbiguousPath}},
		{name: "unknown route name", method: "GET", path: "/x", route: "nope", want: want{code: CodeForbidden, reason: ReasonUnknownRoute}},
		{name: "named route whose path misses its parameter", method: "GET", path: "/orgs/o1/leave/", route: "read",
			h: HeaderMap{"authorization": jwt("bob"), "x-org": "o1"}, want: want{code: CodeForbidden, reason: ReasonPathMismatch, detail: "template /orgs/{org}/leave"}},
		{name: "named route without parameters takes any path", method: "GET", path: "/whatever", route: "me",
			h: HeaderMap{"authorization": jwt("bob")}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "bob", cred: policy.CredJWT}},
		{name: "query string ignored", method: "GET", path: "/orgs/o1/leave?token=x", h: HeaderMap{"authorization": jwt("bob")},
			want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonGranted, allow: true, user: "bob", org: "o1", source: "path:org", cred: policy.CredJWT, roles: "member"}},

		// 3. Credentials: JWT.
		{name: "no credential", method: "GET", path: "/me", want: want{code: CodeUnauthenticated, reason: ReasonNoCredential}},
		{name: "jwt authenticated", method: "GET", path: "/me", h: HeaderMap{"authorization": jwt("bob")}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "bob", cred: policy.CredJWT}},
		{name: "jwt expired", method: "GET", path: "/me", h: HeaderMap{"authorization": jwt("expired")}, want: want{code: CodeUnauthenticated, reason: ReasonInvalidToken, detail: "token expired"}},
		{name: "jwt malformed header", method: "GET", path: "/me", h: HeaderMap{"authorization": "Bearer a.b.c, Bearer d.e.f"}, want: want{code: CodeUnauthenticated, reason: ReasonInvalidToken}},
		{name: "jwt scheme other than bearer", method: "GET", path: "/me", h: HeaderMap{"authorization": "Basic YTpi"}, want: want{code: CodeUnauthenticated, reason: ReasonInvalidToken}},
		{name: "no signing keys", method: "GET", path: "/me", h: HeaderMap{"authorization": jwt("nokeys")}, want: want{code: CodeUnavailable, reason: ReasonKeysUnavailable}},
		{name: "key refresh deadline", method: "GET", path: "/me", h: HeaderMap{"authorization": jwt("slow")}, want: want{code: CodeUnavailable, reason: ReasonDeadline}},
		{name: "key refresh canceled", method: "GET", path: "/me", h: HeaderMap{"authorization": jwt("gone")}, want: want{code: CodeUnavailable, reason: ReasonCanceled}},

		// 3. Credentials: sessions.
		{name: "session cookie", method: "GET", path: "/me", h: HeaderMap{"cookie": "a=b; " + cookie("tok-bob")}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "bob", cred: policy.CredSession}},
		{name: "first session cookie wins", method: "GET", path: "/me", h: HeaderMap{"cookie": cookie("tok-bob") + "; " + cookie("tok-alice")}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "bob", cred: policy.CredSession}},
		{name: "session cookie tampered", method: "GET", path: "/me", h: HeaderMap{"cookie": "__Secure-better-auth.session_token=tok-bob." + secret.Sign("tok-alice")}, want: want{code: CodeUnauthenticated, reason: ReasonInvalidSession}},
		{name: "session cookie without signature", method: "GET", path: "/me", h: HeaderMap{"cookie": "__Secure-better-auth.session_token=tok-bob"}, want: want{code: CodeUnauthenticated, reason: ReasonInvalidSession}},
		{name: "session cookie signed by another secret", method: "GET", path: "/me", h: HeaderMap{"cookie": "__Secure-better-auth.session_token=tok-bob." + mustSecret("another-secret-another-secret-another").Sign("tok-bob")}, want: want{code: CodeUnauthenticated, reason: ReasonInvalidSession}},
		{name: "other cookie names are not sessions", method: "GET", path: "/me", h: HeaderMap{"cookie": "better-auth.session_token=" + url.QueryEscape("tok-bob."+secret.Sign("tok-bob"))}, want: want{code: CodeUnauthenticated, reason: ReasonNoCredential}},
		{name: "signed-out session", method: "GET", path: "/me", h: HeaderMap{"cookie": cookie("tok-unknown")}, want: want{code: CodeUnauthenticated, reason: ReasonInvalidSession}},
		{name: "expired session", method: "GET", path: "/me", h: HeaderMap{"cookie": cookie("tok-old")}, want: want{code: CodeUnauthenticated, reason: ReasonInvalidSession}},
		{name: "session expiring now is still valid", method: "GET", path: "/me", h: HeaderMap{"cookie": cookie("tok-edge")}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "bob", cred: policy.CredSession}},
		{name: "session lookup down", method: "GET", path: "/me", h: HeaderMap{"cookie": cookie("tok-down")}, want: want{code: CodeUnavailable, reason: ReasonSourceUnavailable}},
		{name: "session lookup deadline", method: "GET", path: "/me", h: HeaderMap{"cookie": cookie("tok-slow2")}, want: want{code: CodeUnavailable, reason: ReasonDeadline}},
		{name: "bearer session token signed", method: "GET", path: "/me", h: HeaderMap{"authorization": signed("tok-bob")}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "bob", cred: policy.CredSession}},
		{name: "bearer session token URL-encoded", method: "GET", path: "/me", h: HeaderMap{"authorization": "Bearer " + url.QueryEscape("tok-bob."+secret.Sign("tok-bob"))}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "bob", cred: policy.CredSession}},
		{name: "bearer session token raw", method: "GET", path: "/me", h: HeaderMap{"authorization": "Bearer tok-bob"}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "bob", cred: policy.CredSession}},
		{name: "bearer session token bad signature", method: "GET", path: "/me", h: HeaderMap{"authorization": "Bearer tok-bob." + secret.Sign("tok-alice")}, want: want{code: CodeUnauthenticated, reason: ReasonInvalidSession}},
		{name: "session of a deleted user", method: "GET", path: "/me", h: HeaderMap{"cookie": cookie("tok-ghost")}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonUnknownUser, user: "ghost", cred: policy.CredSession}},
		{name: "session user id with a NUL", method: "GET", path: "/me", h: HeaderMap{"cookie": cookie("tok-badid")}, want: want{code: CodeForbidden, reason: ReasonInvalidIdentifier, noLookups: true}},

		// 3. Credentials: API keys.
		{name: "user api key", method: "GET", path: "/orgs/o1/leave", h: HeaderMap{"x-api-key": "key-bob"}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonGranted, allow: true, user: "bob", org: "o1", source: "path:org", cred: policy.CredAPIKey, keyID: "k1", roles: "member"}},
		{name: "api key without configId is default", method: "GET", path: "/orgs/o1/leave", h: HeaderMap{"x-api-key": "key-alice"}, want: want{tier: roles.TierL1, code: CodeOK, reason: ReasonGranted, allow: true, user: "alice", org: "o1", source: "path:org", cred: policy.CredAPIKey, keyID: "k2", roles: "admin"}},
		{name: "api key narrows its user's roles", method: "POST", path: "/orgs/o1/leave/approve", h: HeaderMap{"x-api-key": "key-alice"}, want: want{tier: roles.TierL1, code: CodeForbidden, reason: ReasonMissingPermission, user: "alice", org: "o1", source: "path:org", cred: policy.CredAPIKey, keyID: "k2", roles: "admin"}},
		{name: "api key never widens its user's roles", method: "POST", path: "/orgs/o1/leave/approve", h: HeaderMap{"x-api-key": "key-org", "x-org": "o1"}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonGranted, allow: true, org: "o1", source: "path:org", cred: policy.CredAPIKey, keyID: "k7"}},
		{name: "api key disabled", method: "GET", path: "/me", h: HeaderMap{"x-api-key": "key-off"}, want: want{code: CodeUnauthenticated, reason: ReasonInvalidAPIKey}},
		{name: "api key expired", method: "GET", path: "/me", h: HeaderMap{"x-api-key": "key-expired"}, want: want{code: CodeUnauthenticated, reason: ReasonInvalidAPIKey}},
		{name: "api key expiring later", method: "GET", path: "/me", h: HeaderMap{"x-api-key": "key-future"}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "bob", cred: policy.CredAPIKey, keyID: "k10"}},
		{name: "api key counted", method: "GET", path: "/me", h: HeaderMap{"x-api-key": "key-counted"}, want: want{code: CodeUnauthenticated, reason: ReasonAPIKeyCounted}},
		{name: "api key of an unknown configuration", method: "GET", path: "/me", h: HeaderMap{"x-api-key": "key-config"}, want: want{code: CodeUnauthenticated, reason: ReasonInvalidAPIKey, detail: "unknown configuration"}},
		{name: "api key unknown", method: "GET", path: "/me", h: HeaderMap{"x-api-key": "nope"}, want: want{code: CodeUnauthenticated, reason: ReasonInvalidAPIKey}},
		{name: "api key of the longest length", method: "GET", path: "/me", h: HeaderMap{"x-api-key": longestKey}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "bob", cred: policy.CredAPIKey, keyID: "k11"}},
		{name: "api key too long", method: "GET", path: "/me", h: HeaderMap{"x-api-key": strings.Repeat("k", 600)}, want: want{code: CodeUnauthenticated, reason: ReasonInvalidAPIKey}},
		{name: "api key lookup down", method: "GET", path: "/me", h: HeaderMap{"x-api-key": "key-down"}, want: want{code: CodeUnavailable, reason: ReasonSourceUnavailable}},
		{name: "api key with a bad owner id", method: "GET", path: "/me", h: HeaderMap{"x-api-key": "key-badowner"}, want: want{code: CodeForbidden, reason: ReasonInvalidIdentifier}},
		{name: "organization key on an authenticated route", method: "GET", path: "/me", h: HeaderMap{"x-api-key": "key-org"}, want: want{code: CodeOK, reason: ReasonAuthenticated, allow: true, cred: policy.CredAPIKey, keyID: "k7", noLookups: true}},
		{name: "organization key names its organization", method: "GET", path: "/leave", h: HeaderMap{"x-api-key": "key-org"}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonGranted, allow: true, org: "o1", source: "api_key:referenceId", cred: policy.CredAPIKey, keyID: "k7"}},
		{name: "organization key in another organization", method: "GET", path: "/orgs/o3/leave", h: HeaderMap{"x-api-key": "key-org"}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonWrongOrganization, org: "o3", source: "path:org", cred: policy.CredAPIKey, keyID: "k7"}},
		{name: "organization key by slug", method: "GET", path: "/orgs/acme/leave", h: HeaderMap{"x-api-key": "key-org"}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonGranted, allow: true, org: "o1", source: "path:org", cred: policy.CredAPIKey, keyID: "k7"}},
		{name: "organization key without permissions", method: "GET", path: "/orgs/o1/leave", h: HeaderMap{"x-api-key": "key-orgnone"}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonMissingPermission, org: "o1", source: "path:org", cred: policy.CredAPIKey, keyID: "k8"}},
		{name: "organization key where a user is needed", method: "GET", path: "/verified", h: HeaderMap{"x-api-key": "key-org"}, want: want{code: CodeForbidden, reason: ReasonCredentialNotAllowed, cred: policy.CredAPIKey, keyID: "k7"}},
		{name: "organization key on a team route", method: "GET", path: "/orgs/o1/teams/t1", h: HeaderMap{"x-api-key": "key-org"}, want: want{code: CodeForbidden, reason: ReasonCredentialNotAllowed, cred: policy.CredAPIKey, keyID: "k7"}},

		// 3. Several credentials.
		{name: "jwt and cookie of one user", method: "GET", path: "/me", h: HeaderMap{"authorization": jwt("bob"), "cookie": cookie("tok-bob")}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "bob", cred: policy.CredJWT}},
		{name: "jwt and cookie of two users", method: "GET", path: "/me", h: HeaderMap{"authorization": jwt("bob"), "cookie": cookie("tok-alice")}, want: want{code: CodeUnauthenticated, reason: ReasonConflictingCredentials}},
		{name: "api key and cookie of one user", method: "GET", path: "/me", h: HeaderMap{"x-api-key": "key-bob", "cookie": cookie("tok-bob")}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "bob", cred: policy.CredAPIKey, keyID: "k1"}},
		{name: "api key and cookie of two users", method: "GET", path: "/me", h: HeaderMap{"x-api-key": "key-bob", "cookie": cookie("tok-alice")}, want: want{code: CodeUnauthenticated, reason: ReasonConflictingCredentials}},
		{name: "organization key and a user's cookie", method: "GET", path: "/me", h: HeaderMap{"x-api-key": "key-org", "cookie": cookie("tok-alice")}, want: want{code: CodeUnauthenticated, reason: ReasonConflictingCredentials}},
		{name: "an invalid jwt next to a valid cookie is ignored", method: "GET", path: "/me", h: HeaderMap{"authorization": jwt("expired"), "cookie": cookie("tok-alice")}, want: want{tier: roles.TierL1, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "alice", cred: policy.CredSession}},
		{name: "an uncheckable credential next to a valid one", method: "GET", path: "/me", h: HeaderMap{"authorization": jwt("bob"), "cookie": cookie("tok-down")}, want: want{code: CodeUnavailable, reason: ReasonSourceUnavailable}},
		{name: "two invalid credentials: the first answers", method: "GET", path: "/me", h: HeaderMap{"authorization": jwt("expired"), "x-api-key": "nope"}, want: want{code: CodeUnauthenticated, reason: ReasonInvalidToken}},
		{name: "credential kind not accepted by the route", method: "GET", path: "/jwt-only", h: HeaderMap{"cookie": cookie("tok-bob")}, want: want{code: CodeForbidden, reason: ReasonCredentialNotAllowed, user: "bob", cred: policy.CredSession, detail: "the route accepts jwt"}},

		// CSRF: cookie requests that change state.
		{name: "cookie POST without origin", method: "POST", path: "/orgs/o1/leave/approve", h: HeaderMap{"cookie": cookie("tok-alice")}, want: want{code: CodeForbidden, reason: ReasonUntrustedOrigin, user: "alice", cred: policy.CredSession}},
		{name: "cookie POST from another site", method: "POST", path: "/orgs/o1/leave/approve", h: HeaderMap{"cookie": cookie("tok-alice"), "origin": "https://evil.example"}, want: want{code: CodeForbidden, reason: ReasonUntrustedOrigin, user: "alice", cred: policy.CredSession}},
		{name: "cookie POST with a null origin", method: "POST", path: "/orgs/o1/leave/approve", h: HeaderMap{"cookie": cookie("tok-alice"), "origin": "null"}, want: want{code: CodeForbidden, reason: ReasonUntrustedOrigin, user: "alice", cred: policy.CredSession}},
		{name: "cookie POST from the base URL", method: "POST", path: "/orgs/o1/leave/approve", h: HeaderMap{"cookie": cookie("tok-alice"), "origin": "https://app.example"}, want: want{tier: roles.TierL1, code: CodeOK, reason: ReasonGranted, allow: true, user: "alice", org: "o1", source: "path:org", cred: policy.CredSession, roles: "admin"}},
		{name: "cookie POST from a trusted origin by referer", method: "POST", path: "/orgs/o1/leave/approve", h: HeaderMap{"cookie": cookie("tok-alice"), "referer": "https://admin.example/page?x=1"}, want: want{tier: roles.TierL1, code: CodeOK, reason: ReasonGranted, allow: true, user: "alice", org: "o1", source: "path:org", cred: policy.CredSession, roles: "admin"}},
		{name: "a bad origin is not saved by a good referer", method: "POST", path: "/orgs/o1/leave/approve", h: HeaderMap{"cookie": cookie("tok-alice"), "origin": "https://evil.example", "referer": "https://app.example/"}, want: want{code: CodeForbidden, reason: ReasonUntrustedOrigin, user: "alice", cred: policy.CredSession}},
		{name: "bearer session POST needs no origin", method: "POST", path: "/orgs/o1/leave/approve", h: HeaderMap{"authorization": signed("tok-alice")}, want: want{tier: roles.TierL1, code: CodeOK, reason: ReasonGranted, allow: true, user: "alice", org: "o1", source: "path:org", cred: policy.CredSession, roles: "admin"}},
		{name: "jwt POST with a cookie of the same user needs no origin", method: "POST", path: "/orgs/o1/leave/approve", h: HeaderMap{"authorization": jwt("alice"), "cookie": cookie("tok-alice")}, want: want{tier: roles.TierL1, code: CodeOK, reason: ReasonGranted, allow: true, user: "alice", org: "o1", source: "path:org", cred: policy.CredJWT, roles: "admin"}},

		// Impersonation.
		{name: "impersonated session passes and is told", method: "GET", path: "/me", h: HeaderMap{"cookie": cookie("tok-imp")}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "bob", cred: policy.CredSession, imp: "erin"}},
		{name: "impersonated session refused", method: "GET", path: "/no-imp", h: HeaderMap{"cookie": cookie("tok-imp")}, want: want{code: CodeForbidden, reason: ReasonImpersonationDenied, user: "bob", cred: policy.CredSession, imp: "erin", noLookups: true}},
		{name: "own session where impersonation is refused", method: "GET", path: "/no-imp", h: HeaderMap{"cookie": cookie("tok-bob")}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "bob", cred: policy.CredSession}},

		// 4. Organization sources, in policy order.
		{name: "organization from the header", method: "GET", path: "/leave", h: HeaderMap{"authorization": jwt("bob"), "x-org": "o1"}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonGranted, allow: true, user: "bob", org: "o1", source: "header:x-org", cred: policy.CredJWT, roles: "member"}},
		{name: "organization from a claim", method: "GET", path: "/leave", h: HeaderMap{"authorization": jwt("bob")}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonGranted, allow: true, user: "bob", org: "o1", source: "claim:org", cred: policy.CredJWT, roles: "member"}},
		{name: "the header beats the claim", method: "GET", path: "/leave", h: HeaderMap{"authorization": jwt("alice"), "x-org": "o1"}, want: want{tier: roles.TierL1, code: CodeOK, reason: ReasonGranted, allow: true, user: "alice", org: "o1", source: "header:x-org", cred: policy.CredJWT, roles: "admin"}},
		{name: "the path beats the header", method: "GET", path: "/orgs/o3/leave", h: HeaderMap{"authorization": jwt("bob"), "x-org": "o1"}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonNotMember, user: "bob", org: "o3", source: "path:org", cred: policy.CredJWT}},
		{name: "organization from the session", method: "GET", path: "/leave", h: HeaderMap{"cookie": cookie("tok-alice")}, want: want{tier: roles.TierL1, code: CodeOK, reason: ReasonGranted, allow: true, user: "alice", org: "o1", source: "session:activeOrganizationId", cred: policy.CredSession, roles: "admin"}},
		{name: "organization by slug", method: "GET", path: "/orgs/acme/leave", h: HeaderMap{"authorization": jwt("bob")}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonGranted, allow: true, user: "bob", org: "o1", source: "path:org", cred: policy.CredJWT, roles: "member"}},
		{name: "no organization", method: "GET", path: "/leave", h: HeaderMap{"cookie": cookie("tok-bob")}, want: want{code: CodeForbidden, reason: ReasonNoOrganization, user: "bob", cred: policy.CredSession, noLookups: true, detail: "sources: path:org, header:x-org, claim:org, session:activeOrganizationId"}},
		{name: "organization with a NUL", method: "GET", path: "/leave", h: HeaderMap{"authorization": jwt("bob"), "x-org": "o\x00"}, want: want{code: CodeForbidden, reason: ReasonInvalidIdentifier, user: "bob", cred: policy.CredJWT, detail: "organization from header:x-org", noLookups: true}},
		{name: "organization with invalid UTF-8", method: "GET", path: "/leave", h: HeaderMap{"authorization": jwt("bob"), "x-org": "o\xff"}, want: want{code: CodeForbidden, reason: ReasonInvalidIdentifier, user: "bob", cred: policy.CredJWT, noLookups: true}},
		{name: "organization with a C1 control", method: "GET", path: "/leave", h: HeaderMap{"authorization": jwt("bob"), "x-org": "o\u0085"}, want: want{code: CodeForbidden, reason: ReasonInvalidIdentifier, user: "bob", cred: policy.CredJWT, noLookups: true}},
		{name: "organization too long", method: "GET", path: "/leave", h: HeaderMap{"authorization": jwt("bob"), "x-org": strings.Repeat("o", MaxIdentifierBytes+1)}, want: want{code: CodeForbidden, reason: ReasonInvalidIdentifier, user: "bob", cred: policy.CredJWT, noLookups: true}},
		{name: "organization of the longest length", method: "GET", path: "/leave", h: HeaderMap{"authorization": jwt("bob"), "x-org": strings.Repeat("o", MaxIdentifierBytes)}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonNotMember, user: "bob", cred: policy.CredJWT, source: "header:x-org", detail: "no such organization"}},
		{name: "unicode organization", method: "GET", path: "/leave", h: HeaderMap{"authorization": jwt("bob"), "x-org": "ørg"}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonNotMember, user: "bob", cred: policy.CredJWT, source: "header:x-org", detail: "no such organization"}},
		{name: "session organization with a control byte", method: "GET", path: "/leave", h: HeaderMap{"cookie": cookie("tok-badorg")}, want: want{code: CodeForbidden, reason: ReasonInvalidIdentifier, user: "bob", cred: policy.CredSession, noLookups: true}},

		// 5. Lookups.
		{name: "permissions unavailable", method: "GET", path: "/orgs/o1/leave", h: HeaderMap{"authorization": jwt("down")}, want: want{tier: roles.TierSource, code: CodeUnavailable, reason: ReasonSourceUnavailable, user: "down", source: "path:org", cred: policy.CredJWT}},
		{name: "permissions deadline", method: "GET", path: "/orgs/o1/leave", h: HeaderMap{"authorization": jwt("slowdb")}, want: want{tier: roles.TierSource, code: CodeUnavailable, reason: ReasonDeadline, user: "slowdb", source: "path:org", cred: policy.CredJWT}},
		{name: "permissions canceled", method: "GET", path: "/me", h: HeaderMap{"cookie": cookie("tok-bob"), "authorization": jwt("gone")}, want: want{code: CodeUnavailable, reason: ReasonCanceled}},

		// 6. The user.
		{name: "deleted user", method: "GET", path: "/me", h: HeaderMap{"authorization": jwt("ghost")}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonUnknownUser, user: "ghost", cred: policy.CredJWT}},
		{name: "banned user", method: "GET", path: "/me", h: HeaderMap{"authorization": jwt("carol")}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonBanned, user: "carol", cred: policy.CredJWT}},
		{name: "banned member", method: "GET", path: "/orgs/o1/leave", h: HeaderMap{"authorization": jwt("carol")}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonBanned, user: "carol", source: "path:org", cred: policy.CredJWT}},
		{name: "ban expired", method: "GET", path: "/me", h: HeaderMap{"authorization": jwt("dave")}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "dave", cred: policy.CredJWT}},
		{name: "all user conditions met", method: "GET", path: "/verified", h: HeaderMap{"authorization": jwt("alice")}, want: want{tier: roles.TierL1, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "alice", cred: policy.CredJWT}},
		{name: "email not verified", method: "GET", path: "/verified", h: HeaderMap{"authorization": jwt("bob")}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonEmailNotVerified, user: "bob", cred: policy.CredJWT}},
		{name: "anonymous user", method: "GET", path: "/verified", h: HeaderMap{"authorization": jwt("anon")}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonAnonymousUser, user: "anon", cred: policy.CredJWT}},
		{name: "no two-factor", method: "GET", path: "/verified", h: HeaderMap{"authorization": jwt("no2fa")}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonTwoFactorRequired, user: "no2fa", cred: policy.CredJWT}},
		{name: "platform admin may ban", method: "POST", path: "/admin/ban", h: HeaderMap{"authorization": jwt("erin")}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "erin", cred: policy.CredJWT}},
		{name: "support may not ban", method: "POST", path: "/admin/ban", h: HeaderMap{"authorization": jwt("frank")}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonMissingPlatformRole, user: "frank", cred: policy.CredJWT, detail: "requires user:ban"}},
		{name: "default role may not ban", method: "POST", path: "/admin/ban", h: HeaderMap{"authorization": jwt("bob")}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonMissingPlatformRole, user: "bob", cred: policy.CredJWT}},
		{name: "admin user ids pass", method: "POST", path: "/admin/ban", h: HeaderMap{"authorization": jwt("root")}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "root", cred: policy.CredJWT}},
		{name: "an api key must grant platform permissions too", method: "POST", path: "/admin/ban", h: HeaderMap{"x-api-key": "key-bob", "authorization": ""}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonMissingPlatformRole, user: "bob", cred: policy.CredAPIKey, keyID: "k1"}},
		{name: "platform role held", method: "GET", path: "/admin/support", h: HeaderMap{"authorization": jwt("frank")}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "frank", cred: policy.CredJWT}},
		{name: "platform role not held", method: "GET", path: "/admin/support", h: HeaderMap{"authorization": jwt("erin")}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonMissingPlatformRole, user: "erin", cred: policy.CredJWT, detail: "requires one of the roles support"}},

		// 7. Membership and Better Auth's permission rule.
		{name: "member reads", method: "GET", path: "/orgs/o1/leave", h: HeaderMap{"authorization": jwt("bob")}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonGranted, allow: true, user: "bob", org: "o1", source: "path:org", cred: policy.CredJWT, roles: "member"}},
		{name: "member cannot approve", method: "POST", path: "/orgs/o1/leave/approve", h: HeaderMap{"authorization": jwt("bob")}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonMissingPermission, user: "bob", org: "o1", source: "path:org", cred: policy.CredJWT, roles: "member", detail: "requires leave:approve from one role"}},
		{name: "inherited permission", method: "GET", path: "/orgs/o1/leave", h: HeaderMap{"authorization": jwt("alice")}, want: want{tier: roles.TierL1, code: CodeOK, reason: ReasonGranted, allow: true, user: "alice", org: "o1", source: "path:org", cred: policy.CredJWT, roles: "admin"}},
		{name: "two roles do not add up", method: "POST", path: "/orgs/o1/edit-bill", h: HeaderMap{"authorization": jwt("eve")}, want: want{tier: roles.TierSource, code: CodeForbidden, reason: ReasonMissingPermission, user: "eve", org: "o1", source: "path:org", cred: policy.CredJWT, roles: "editor,billing"}},
		{name: "require_any from any role", method: "GET", path: "/orgs/o1/any", h: HeaderMap{"authorization": jwt("eve")}, want: want{tier: roles.TierSource, code: CodeOK, reason: ReasonGranted, allow: true, user: "eve", org: "o1", source: "path:org", cred: policy.CredJWT, roles: "editor,billing"}},
		{name: "require_any none held", method: "GET", path: "/orgs/o1/any", h: HeaderMap{"authorization": jwt("bob")}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonMissingPermission, user: "bob", org: "o1", source: "path:org", cred: policy.CredJWT, roles: "member", detail: "requires one of project:update, billing:read"}},
		{name: "require_any of the key", method: "GET", path: "/orgs/o1/any", h: HeaderMap{"x-api-key": "key-org"}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonMissingPermission, org: "o1", source: "path:org", cred: policy.CredAPIKey, keyID: "k7", detail: "the API key grants none of project:update, billing:read"}},
		{name: "not a member", method: "GET", path: "/orgs/o3/leave", h: HeaderMap{"authorization": jwt("bob")}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonNotMember, user: "bob", org: "o3", source: "path:org", cred: policy.CredJWT}},
		{name: "no such organization", method: "GET", path: "/orgs/nope/leave", h: HeaderMap{"authorization": jwt("bob")}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonNotMember, user: "bob", source: "path:org", cred: policy.CredJWT, detail: "no such organization"}},
		{name: "unreadable dynamic roles", method: "GET", path: "/orgs/o2/leave", h: HeaderMap{"authorization": jwt("broken")}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonInvalidOrgRoles, user: "broken", org: "o2", source: "path:org", cred: policy.CredJWT, roles: "member"}},
		{name: "shadow mode lets a deny through", method: "GET", path: "/orgs/o1/shadow", h: HeaderMap{"authorization": jwt("bob")}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonMissingPermission, allow: true, shadowed: true, user: "bob", org: "o1", source: "path:org", cred: policy.CredJWT, roles: "member"}},

		// Teams.
		{name: "team member", method: "GET", path: "/orgs/o1/teams/t1", h: HeaderMap{"authorization": jwt("bob")}, want: want{tier: roles.TierL2, code: CodeOK, reason: ReasonGranted, allow: true, user: "bob", org: "o1", source: "path:org", team: "t1", cred: policy.CredJWT, roles: "member"}},
		{name: "not in the team", method: "GET", path: "/orgs/o1/teams/t2", h: HeaderMap{"authorization": jwt("bob")}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonNotTeamMember, user: "bob", org: "o1", source: "path:org", cred: policy.CredJWT, roles: "member"}},
		{name: "team of another organization", method: "GET", path: "/orgs/o1/teams/t9", h: HeaderMap{"authorization": jwt("bob")}, want: want{tier: roles.TierL2, code: CodeForbidden, reason: ReasonNotTeamMember, user: "bob", org: "o1", source: "path:org", cred: policy.CredJWT, roles: "member"}},
		{name: "team from the session", method: "GET", path: "/team", h: HeaderMap{"cookie": cookie("tok-alice")}, want: want{tier: roles.TierL1, code: CodeOK, reason: ReasonGranted, allow: true, user: "alice", org: "o1", source: "session:activeOrganizationId", team: "t1", cred: policy.CredSession, roles: "admin"}},
		{name: "team from headers", method: "GET", path: "/team", h: HeaderMap{"authorization": jwt("alice"), "x-org": "o1", "x-team": "t1"}, want: want{tier: roles.TierL1, code: CodeOK, reason: ReasonGranted, allow: true, user: "alice", org: "o1", source: "header:x-org", team: "t1", cred: policy.CredJWT, roles: "admin"}},
		{name: "no team", method: "GET", path: "/team", h: HeaderMap{"authorization": jwt("alice"), "x-org": "o1"}, want: want{code: CodeForbidden, reason: ReasonNoTeam, user: "alice", source: "header:x-org", cred: policy.CredJWT, noLookups: true, detail: "sources: path:team, header:x-team, session:activeTeamId"}},
		{name: "team with a control byte", method: "GET", path: "/team", h: HeaderMap{"authorization": jwt("alice"), "x-org": "o1", "x-team": "t\n1"}, want: want{code: CodeForbidden, reason: ReasonInvalidIdentifier, user: "alice", source: "header:x-org", cred: policy.CredJWT, detail: "team from header:x-team", noLookups: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld()
			e := newEngine(t, w, testPolicy)
			d := e.Decide(context.Background(), &Request{Method: tt.method, Path: tt.path, RouteName: tt.route, Headers: tt.h})
			check(t, d, tt.want)
			if tt.want.noLookups && w.calls.Load() != 0 {
				t.Errorf("the access tiers were asked %d times", w.calls.Load())
			}
		})
	}

	// The table is Decide's specification: it must hold every reason, every
	// kind of organization source and every tier answer, so a reason added
	// without a case here fails.
	reasons := map[Reason]bool{}
	sources := map[string]bool{}
	tiers := map[roles.Tier]bool{}
	for _, tt := range tests {
		reasons[tt.want.reason] = true
		kind, _, _ := strings.Cut(tt.want.source, ":")
		sources[kind] = true
		tiers[tt.want.tier] = true
	}
	for r := range reasonMessages {
		// overloaded depends on other decisions in flight, not on the
		// request: TestDecideAdmission is its case.
		if !reasons[r] && r != ReasonOverloaded {
			t.Errorf("no case answers %s", r)
		}
	}
	for _, r := range []Reason{ReasonPublic, ReasonAuthenticated, ReasonGranted} {
		if !reasons[r] {
			t.Errorf("no case answers %s", r)
		}
	}
	for _, k := range []policy.SourceKind{policy.FromPath, policy.FromHeader, policy.FromClaim, policy.FromSession, policy.FromAPIKey} {
		if !sources[k.String()] {
			t.Errorf("no case takes the organization from a %s source", k)
		}
	}
	for _, tier := range []roles.Tier{roles.TierNone, roles.TierL1, roles.TierL2, roles.TierSource} {
		if !tiers[tier] {
			t.Errorf("no case is answered by tier %s", tier)
		}
	}
}

func check(t *testing.T, d Decision, w want) {
	t.Helper()
	if d.Code != w.code || d.Reason != w.reason || d.Allow != w.allow || d.Shadowed != w.shadowed {
		t.Fatalf("decision = code %d %s allow %v shadowed %v (%q), want code %d %s allow %v shadowed %v",
			d.Code, d.Reason, d.Allow, d.Shadowed, d.Detail, w.code, w.reason, w.allow, w.shadowed)
	}
	if d.UserID != w.user || d.OrgID != w.org || d.OrgSource.String() != w.source || d.TeamID != w.team {
		t.Errorf("user %q org %q source %q team %q, want %q %q %q %q", d.UserID, d.OrgID, d.OrgSource, d.TeamID, w.user, w.org, w.source, w.team)
	}
	if d.Credential != w.cred || d.ImpersonatedBy != w.imp || d.APIKeyID != w.keyID {
		t.Errorf("credential %v impersonated by %q key %q, want %v %q %q", d.Credential, d.ImpersonatedBy, d.APIKeyID, w.cred, w.imp, w.keyID)
	}
	if got := strings.Join(d.Roles, ","); got != w.roles {
		t.Errorf("roles %q, want %q", got, w.roles)
	}
	if w.detail != "" && d.Detail != w.detail {
		t.Errorf("detail %q, want %q", d.Detail, w.detail)
	}
	if d.Tier != w.tier {
		t.Errorf("tier %v, want %v", d.Tier, w.tier)
	}
}

// TestSessionClaim: a JWT dies with its session (jwt.session_claim).
func TestSessionClaim(t *testing.T) {
	t.Parallel()
	doc := strings.Replace(testPolicy, "  jwks_url: https://auth.example/jwks\n", "  jwks_url: https://auth.example/jwks\n  session_claim: sid\n", 1)
	tests := []struct {
		name   string
		claims map[string]string
		want   want
	}{
		{"live session", map[string]string{"sid": "s-bob"}, want{tier: roles.TierL2, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "bob", cred: policy.CredJWT}},
		{"no sid", nil, want{code: CodeUnauthenticated, reason: ReasonInvalidToken, detail: "token carries no session id"}},
		{"signed out", map[string]string{"sid": "s-gone"}, want{code: CodeUnauthenticated, reason: ReasonInvalidToken, detail: "the token's session has ended"}},
		{"expired", map[string]string{"sid": "s-old"}, want{code: CodeUnauthenticated, reason: ReasonInvalidToken}},
		{"another user's session", map[string]string{"sid": "s-alice"}, want{code: CodeUnauthenticated, reason: ReasonInvalidToken}},
		{"impersonation shows", map[string]string{"sid": "s-imp"}, want{tier: roles.TierL2, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "bob", cred: policy.CredJWT, imp: "erin"}},
		{"sid with a NUL", map[string]string{"sid": "s\x00"}, want{code: CodeUnauthenticated, reason: ReasonInvalidToken}},
		{"session lookup down", map[string]string{"sid": "s-down"}, want{code: CodeUnavailable, reason: ReasonSourceUnavailable}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld()
			pol, err := policy.Parse("t.yaml", []byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			v := verifier{claims: map[string]map[string]string{"bob": tt.claims}}
			e, err := New(State{Policy: pol, Verifier: v}, Deps{Access: w, Sessions: w, APIKeys: w}, Config{Now: func() time.Time { return now }, Secret: secret})
			if err != nil {
				t.Fatal(err)
			}
			check(t, e.Decide(context.Background(), &Request{Method: "GET", Path: "/me", Headers: HeaderMap{"authorization": jwt("bob")}}), tt.want)
		})
	}
}

// TestBearerSignatureRequired: with bearer: signed, a raw token is no
// credential at all (the bearer plugin's requireSignature).
func TestBearerSignatureRequired(t *testing.T) {
	t.Parallel()
	doc := strings.Replace(testPolicy, "bearer: signed_or_raw", "bearer: signed", 1)
	w := newWorld()
	e := newEngine(t, w, doc)
	for _, tt := range []struct {
		name string
		h    HeaderMap
		want want
	}{
		{"raw token refused", HeaderMap{"authorization": "Bearer tok-bob"}, want{code: CodeUnauthenticated, reason: ReasonInvalidToken}},
		{"signed token accepted", HeaderMap{"authorization": signed("tok-bob")}, want{tier: roles.TierL2, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "bob", cred: policy.CredSession}},
		{"tab after the scheme is no session bearer", HeaderMap{"authorization": "Bearer\ttok-bob." + secret.Sign("tok-bob")}, want{code: CodeUnauthenticated, reason: ReasonInvalidToken}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			check(t, e.Decide(context.Background(), &Request{Method: "GET", Path: "/me", Headers: tt.h}), tt.want)
		})
	}
}

// TestSessionsOnly: a cookie-only policy (no jwt plugin) reads no
// Authorization header at all.
func TestSessionsOnly(t *testing.T) {
	t.Parallel()
	doc := `session:
  base_url: http://127.0.0.1:3000
organization:
  from: [session:activeOrganizationId]
roles:
  admin: { permissions: [leave:approve] }
routes:
  - { name: me, path: /me, authenticated: true }
  - { name: approve, methods: [POST], path: /approve, require: [leave:approve] }
`
	w := newWorld()
	e := newEngine(t, w, doc)
	// An http base URL: Better Auth's cookie has no __Secure- prefix.
	cookie := func(token string) string {
		return "better-auth.session_token=" + url.QueryEscape(token+"."+secret.Sign(token))
	}
	for _, tt := range []struct {
		name   string
		method string
		path   string
		h      HeaderMap
		want   want
	}{
		{"cookie", "GET", "/me", HeaderMap{"cookie": cookie("tok-alice")}, want{tier: roles.TierL1, code: CodeOK, reason: ReasonAuthenticated, allow: true, user: "alice", cred: policy.CredSession}},
		{"authorization is ignored", "GET", "/me", HeaderMap{"authorization": jwt("bob")}, want{code: CodeUnauthenticated, reason: ReasonNoCredential}},
		{"bearer session token is off", "GET", "/me", HeaderMap{"authorization": signed("tok-bob")}, want{code: CodeUnauthenticated, reason: ReasonNoCredential}},
		{"active organization", "POST", "/approve", HeaderMap{"cookie": cookie("tok-alice"), "origin": "http://127.0.0.1:3000"}, want{tier: roles.TierL1, code: CodeOK, reason: ReasonGranted, allow: true, user: "alice", org: "o1", source: "session:activeOrganizationId", cred: policy.CredSession, roles: "admin"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			check(t, e.Decide(context.Background(), &Request{Method: tt.method, Path: tt.path, Headers: tt.h}), tt.want)
		})
	}
}

func TestNewChecksDependencies(t *testing.T) {
	t.Parallel()
	pol, err := policy.Parse("t.yaml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld()
	full := Deps{Access: w, Sessions: w, APIKeys: w}
	tests := []struct {
		name string
		st   State
		deps Deps
		cfg  Config
		msg  string
	}{
		{"no access", State{Policy: pol, Verifier: testVerifier}, Deps{Sessions: w, APIKeys: w}, Config{Secret: secret}, "no access resolver"},
		{"no policy", State{}, full, Config{Secret: secret}, "no policy"},
		{"no verifier", State{Policy: pol}, full, Config{Secret: secret}, "no verifier"},
		{"no secret", State{Policy: pol, Verifier: testVerifier}, full, Config{}, "no secret is set"},
		{"no sessions", State{Policy: pol, Verifier: testVerifier}, Deps{Access: w, APIKeys: w}, Config{Secret: secret}, "no session source"},
		{"no api keys", State{Policy: pol, Verifier: testVerifier}, Deps{Access: w, Sessions: w}, Config{Secret: secret}, "no API key source"},
	}
	for _, tt := range tests {
		if _, err := New(tt.st, tt.deps, tt.cfg); err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.msg)
		}
	}
	e, err := New(State{Policy: pol, Verifier: testVerifier}, full, Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	if e.Policy() != pol || e.State().Verifier == nil || !strings.Contains(e.String(), pol.Version) {
		t.Error("state not in force")
	}
	// A rejected state leaves the old one in force.
	if err := e.SetState(State{Policy: pol}); err == nil || e.State().Verifier == nil {
		t.Errorf("SetState without a verifier: err %v", err)
	}
}

// TestSetStateIsAtomic: policy and verifier are swapped together; a
// request sees either the old pair or the new one.
func TestSetStateIsAtomic(t *testing.T) {
	t.Parallel()
	w := newWorld()
	e := newEngine(t, w, testPolicy)
	strict := verifier{errs: map[string]error{"bob": authn.ErrIssuer}}
	doc2 := strings.Replace(testPolicy, "  - { name: me, path: /me, authenticated: true }", "  - { name: me2, path: /me, authenticated: true }", 1)
	pol2, err := policy.Parse("t2.yaml", []byte(doc2))
	if err != nil {
		t.Fatal(err)
	}
	old := e.State()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			if i%2 == 0 {
				_ = e.SetState(State{Policy: pol2, Verifier: strict})
			} else {
				_ = e.SetState(*old)
			}
		}
	}()
	for {
		d := e.Decide(context.Background(), &Request{Method: "GET", Path: "/me", Headers: HeaderMap{"authorization": jwt("bob")}})
		// Old pair: route "me", allowed. New pair: route "me2", 401. Never
		// a mix (route "me2" allowed, or "me" refused).
		switch {
		case d.Route == "me" && d.Allow, d.Route == "me2" && d.Reason == ReasonInvalidToken:
		default:
			t.Fatalf("mixed state: route %s reason %s", d.Route, d.Reason)
		}
		select {
		case <-done:
			return
		default:
		}
	}
}

func TestDecisionIdentity(t *testing.T) {
	t.Parallel()
	d := Decision{ID: "id1", Allow: true, UserID: "u", OrgID: "o", OrgSource: policy.Source{Kind: policy.FromPath, Name: "org"},
		Roles: []string{"a", "b"}, TeamID: "t", Credential: policy.CredSession, ImpersonatedBy: "x", APIKeyID: "k", Shadowed: true, Reason: ReasonMissingPermission}
	got := map[string]string{}
	var order []string
	for k, v := range d.Identity {
		got[k] = v
		order = append(order, k)
	}
	want := map[string]string{
		HeaderUserID: "u", HeaderOrgID: "o", HeaderRoles: "a,b", HeaderOrgSource: "path:org", HeaderTeamID: "t",
		HeaderCredential: "session", HeaderImpersonatedBy: "x", HeaderAPIKeyID: "k", HeaderShadowDeny: "missing_permission",
		HeaderDecisionID: "id1",
	}
	if len(got) != len(want) {
		t.Fatalf("identity = %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for i, h := range IdentityHeaders {
		if order[i] != h || !IsIdentityHeader(h) {
			t.Errorf("order[%d] = %s, want %s", i, order[i], h)
		}
	}
	for _, h := range []string{"x-auth", "x-authorization", "authorization", "x-auth-user-ids", "X-Auth-User-Id"} {
		if IsIdentityHeader(h) {
			t.Errorf("IsIdentityHeader(%q) = true", h)
		}
	}
	// An organization without its id says nothing of its source; a deny
	// has no identity at all; stopping early is honoured.
	d2 := Decision{Allow: true, UserID: "u", OrgSource: policy.Source{Kind: policy.FromPath, Name: "org"}}
	n := 0
	for k := range d2.Identity {
		if k != HeaderUserID {
			t.Errorf("unexpected %s", k)
		}
		n++
	}
	if n != 1 {
		t.Errorf("%d headers", n)
	}
	d3 := Decision{UserID: "u"}
	for k := range d3.Identity {
		t.Errorf("a deny sets %s", k)
	}
	for range d.Identity {
		break
	}
}

func TestStatusesAndBodies(t *testing.T) {
	t.Parallel()
	for c, want := range map[Code]struct {
		status int
		name   string
	}{CodeOK: {200, "unavailable"}, CodeUnauthenticated: {401, "unauthenticated"}, CodeForbidden: {403, "forbidden"}, CodeUnavailable: {503, "unavailable"}, Code(99): {503, "unavailable"}} {
		if c.HTTPStatus() != want.status || c.ErrorName() != want.name {
			t.Errorf("code %d: %d %s, want %d %s", c, c.HTTPStatus(), c.ErrorName(), want.status, want.name)
		}
	}
	w := newWorld()
	e := newEngine(t, w, testPolicy)
	hostile := "<script>alert(1)</script>"
	for _, h := range []HeaderMap{
		{"authorization": jwt("bob"), "x-org": hostile},
		{"authorization": "Bearer " + hostile},
		{"cookie": "better-auth.session_token=" + hostile},
		{"x-api-key": hostile},
	} {
		d := e.Decide(context.Background(), &Request{Method: "GET", Path: "/leave", Headers: h})
		body := d.DenyBody()
		if d.Allow || strings.Contains(body, "script") || strings.Contains(d.Detail, "script") {
			t.Errorf("%v: allow %v, body %s", h, d.Allow, body)
		}
		if !strings.Contains(body, `"reason":"`+string(d.Reason)+`"`) || !strings.Contains(body, `"route":"by-header"`) {
			t.Errorf("body %s lacks reason or route", body)
		}
	}
	for r, msg := range reasonMessages {
		if msg == "" || r.Message() != msg {
			t.Errorf("reason %s has no message", r)
		}
	}
}

func TestValidIdentifier(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"":                            false,
		"o1":                          true,
		"ørg-ö":                       true,
		"a b":                         true,
		"a\x00":                       false,
		"a\x1f":                       false,
		"a\x7f":                       false,
		"a\u0085":                     false,
		"a\u0080":                     false, // the first C1 control
		"a\u009f":                     false, // the last C1 control
		"\x80":                        false, // a lone continuation byte
		"a\u00a0":                     true,
		"\xff":                        false,
		strings.Repeat("x", 256):      true,
		strings.Repeat("x", 257):      false,
		strings.Repeat("é", 128):      true,
		strings.Repeat("é", 128) + "": true,
	} {
		if got := validIdentifier(s); got != want {
			t.Errorf("validIdentifier(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestUnavailableIsExplicit(t *testing.T) {
	t.Parallel()
	for err, want := range map[error]Reason{
		errors.New("x"):                               ReasonSourceUnavailable,
		context.DeadlineExceeded:                      ReasonDeadline,
		context.Canceled:                              ReasonCanceled,
		fmt.Errorf("%w", errDown):                     ReasonSourceUnavailable,
		fmt.Errorf("a: %w", context.DeadlineExceeded): ReasonDeadline,
	} {
		d := Decision{}.unavailable(err)
		if d.Code != CodeUnavailable || d.Reason != want || d.Allow {
			t.Errorf("%v: %v %v", err, d.Code, d.Reason)
		}
	}
}

func TestDecisionIDs(t *testing.T) {
	t.Parallel()
	w := newWorld()
	e := newEngine(t, w, testPolicy)
	seen := map[string]bool{}
	for _, path := range []string{"/healthz", "/nowhere", "/me", "/orgs/o1/../x"} {
		d := e.Decide(context.Background(), &Request{Method: "GET", Path: path})
		if d.PolicyVersion != e.Policy().Version {
			t.Errorf("%s: policy version %q", path, d.PolicyVersion)
		}
		if len(d.ID) != 32 || strings.Trim(d.ID, "0123456789abcdef") != "" || seen[d.ID] {
			t.Errorf("%s: decision id %q", path, d.ID)
		}
		seen[d.ID] = true
	}
}

// TestPrincipal: two credentials go together only when they name the same
// caller, and an organization never passes for a user of the same id.
func TestPrincipal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		c    caller
		want string
	}{
		{"jwt", caller{kind: policy.CredJWT, userID: "bob"}, "user:bob"},
		{"session", caller{kind: policy.CredSession, userID: "bob"}, "user:bob"},
		{"user's api key", caller{kind: policy.CredAPIKey, userID: "bob", key: &authn.APIKey{ReferenceID: "bob"}, owner: policy.OwnerUser}, "user:bob"},
		{"organization's api key", caller{kind: policy.CredAPIKey, key: &authn.APIKey{ReferenceID: "o1"}, owner: policy.OwnerOrganization}, "organization:o1"},
		{"organization named like a user", caller{kind: policy.CredAPIKey, key: &authn.APIKey{ReferenceID: "bob"}, owner: policy.OwnerOrganization}, "organization:bob"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.c.principal(); got != tt.want {
				t.Errorf("principal() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestMaxPathBytes: the path bound defaults to 4096 bytes and a configured
// one is kept; a longer path is refused before any route is matched.
func TestMaxPathBytes(t *testing.T) {
	t.Parallel()
	pol, err := policy.Parse("t.yaml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld()
	path := func(n int) string { return "/" + strings.Repeat("p", n-1) }
	tests := []struct {
		name string
		max  int
		path string
		want Reason
	}{
		{"default: 4096 bytes pass", 0, path(4096), ReasonNoRoute},
		{"default: 4097 bytes are refused", 0, path(4097), ReasonAmbiguousPath},
		{"negative means the default", -1, path(4097), ReasonAmbiguousPath},
		{"configured bound kept", 8192, path(8000), ReasonNoRoute},
		{"configured bound enforced", 16, path(17), ReasonAmbiguousPath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, err := New(State{Policy: pol, Verifier: testVerifier}, Deps{Access: w, Sessions: w, APIKeys: w}, Config{MaxPathBytes: tt.max, Secret: secret})
			if err != nil {
				t.Fatal(err)
			}
			d := e.Decide(context.Background(), &Request{Method: "GET", Path: tt.path})
			if d.Reason != tt.want || d.Allow {
				t.Errorf("reason %s allow %v, want %s and a deny", d.Reason, d.Allow, tt.want)
			}
		})
	}
}

// gatedAccess holds every access lookup until release is closed, telling
// entered about each, so "the limit is full" is a state the test makes,
// not a race against a sleep.
type gatedAccess struct {
	*world
	entered chan struct{}
	release chan struct{}
}

func (g gatedAccess) Resolve(ctx context.Context, q roles.Query) (*roles.Access, roles.Tier, error) {
	g.entered <- struct{}{}
	<-g.release
	return g.world.Resolve(ctx, q)
}

// TestDecideAdmission: with MaxInFlight decisions held in the access tier,
// the next one is refused at once (503 overloaded) without a lookup, even
// for a public route, and counted; once the tier answers, the held ones are
// granted and new ones admitted again.
func TestDecideAdmission(t *testing.T) {
	t.Parallel()
	const limit = 2
	w := newWorld()
	g := gatedAccess{world: w, entered: make(chan struct{}, limit), release: make(chan struct{})}
	pol, err := policy.Parse("test.yaml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(State{Policy: pol, Verifier: testVerifier}, Deps{Access: g, Sessions: w, APIKeys: w},
		Config{Now: func() time.Time { return now }, Secret: secret, MaxInFlight: limit})
	if err != nil {
		t.Fatal(err)
	}
	read := &Request{Method: "GET", Path: "/orgs/o1/leave", Headers: HeaderMap{"authorization": jwt("bob")}}
	held := make(chan Decision, limit)
	for range limit {
		go func() { held <- e.Decide(context.Background(), read) }()
	}
	for range limit {
		<-g.entered
	}
	if n := e.InFlight(); n != limit {
		t.Errorf("InFlight = %d with %d held, want %d", n, limit, limit)
	}
	before := w.calls.Load()
	for _, r := range []*Request{read, {Method: "GET", Path: "/healthz"}} {
		d := e.Decide(context.Background(), r)
		check(t, d, want{code: CodeUnavailable, reason: ReasonOverloaded})
	}
	if n := e.Overloaded(); n != 2 {
		t.Errorf("Overloaded = %d, want 2", n)
	}
	close(g.release)
	for range limit {
		check(t, <-held, want{tier: roles.TierL2, code: CodeOK, reason: ReasonGranted, allow: true, user: "bob", org: "o1", source: "path:org", cred: policy.CredJWT, roles: "member"})
	}
	if n := w.calls.Load() - before; n != limit {
		t.Errorf("%d lookups, want %d: a refused decision reached the tier", n, limit)
	}
	check(t, e.Decide(context.Background(), &Request{Method: "GET", Path: "/healthz"}), want{code: CodeOK, reason: ReasonPublic, allow: true})
	if n := e.InFlight(); n != 0 {
		t.Errorf("InFlight = %d after every decision returned, want 0", n)
	}
	if _, err := New(State{Policy: pol}, Deps{Access: w}, Config{MaxInFlight: -1}); err == nil {
		t.Error("a negative MaxInFlight was accepted")
	}
}
