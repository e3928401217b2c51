package policytest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// User is the caller of a request: the credential it sends and what Better
// Auth's tables say about it in the organization the request names.
type User struct {
	// ID is the user id (the token's sub, the session's userId, the
	// user-owned key's referenceId).
	ID string
	// Credential is what the user sends: a JWT, a session (the cookie, or
	// the bearer session token when the policy reads no cookie) or an API
	// key. Zero picks the first the policy accepts, in that order.
	Credential policy.Credential
	// Roles are the user's roles (members.role split on commas) in their
	// organization; empty means not a member.
	Roles []string
	// CustomRoles are roles the organization defines itself
	// (organizationRole), name to "resource:action" permissions.
	CustomRoles map[string][]string
	// OrgID is the organization the user is a member of. Empty means the
	// user is a member of whichever organization the request names. When
	// set, a request naming another organization finds a non-member.
	OrgID string
	// Slug is another reference to OrgID (Better Auth's organization slug).
	Slug string
	// NotMember makes the user a member of no organization.
	NotMember bool
	// Banned is user.banned, with no expiry.
	Banned bool
	// Unknown means no user row has ID (the user was deleted).
	Unknown bool
	// Claims are extra string claims of the token, e.g.
	// activeOrganizationId; registered claims are set by the runner.
	Claims map[string]string
	// PlatformRole is the admin plugin's user.role ("admin", comma-joined).
	PlatformRole string
	// EmailVerified, Anonymous and TwoFactor are the user row's
	// emailVerified, isAnonymous and twoFactorEnabled.
	EmailVerified, Anonymous, TwoFactor bool
	// ImpersonatedBy, ActiveOrg and ActiveTeam are the session's
	// impersonatedBy, activeOrganizationId and activeTeamId.
	ImpersonatedBy, ActiveOrg, ActiveTeam string
	// Teams are the teams (ids) of the user's organization the user is in;
	// any other team a request names exists but the user is not in it.
	Teams []string
	// KeyPermissions are the API key's permissions ("resource:action").
	KeyPermissions []string
	// KeyOrg makes the API key an organization's key (for KeyOrg) instead
	// of the user's.
	KeyOrg string
}

// Decide answers req under pol with the sidecar's real decision engine
// (internal/authz) and real token verifier (internal/authn); only the
// JWKS, the session and API key lookups and (unless access is given) the
// membership tables are replaced by in-memory fakes built from user. A nil
// user sends no credential. A header the request sets itself (say
// authorization) is sent as it is instead of the user's credential, to
// test bad credentials. access, when not nil, answers what the user may do
// (explain uses the real tiers). The error is about the harness (signing),
// never the decision.
func Decide(ctx context.Context, pol *policy.Policy, req authz.Request, user *User, access roles.Resolver) (authz.Decision, error) {
	h, err := newHarness(pol)
	if err != nil {
		return authz.Decision{}, err
	}
	h.access = access
	return h.decide(ctx, req, user)
}

// keyID is the kid of the harness's signing key.
const keyID = "policytest"

// harness holds an ephemeral signing key and the verifier that trusts it,
// and a session secret.
// Tokens are signed with EdDSA whatever the policy's jwt.algorithms: the
// algorithm allowlist is the verifier's concern, tested in internal/authn;
// the issuer, audience and size limit are the policy's.
type harness struct {
	pol      *policy.Policy
	priv     ed25519.PrivateKey
	verifier *authn.Verifier
	secret   authn.Secret
	access   roles.Resolver // nil: the fake world answers
}

func newHarness(pol *policy.Policy) (*harness, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate test signing key: %w", err)
	}
	h := &harness{pol: pol, priv: priv}
	raw := make([]byte, 32)
	rand.Read(raw)
	if h.secret, err = authn.NewSecret(base64.RawURLEncoding.EncodeToString(raw)); err != nil {
		return nil, err
	}
	if !pol.JWT.Enabled {
		return h, nil
	}
	key, err := jwk.FromRaw(pub)
	if err != nil {
		return nil, fmt.Errorf("test signing key: %w", err)
	}
	if err := key.Set(jwk.KeyIDKey, keyID); err != nil {
		return nil, fmt.Errorf("test signing key: %w", err)
	}
	if err := key.Set(jwk.AlgorithmKey, jwa.EdDSA); err != nil {
		return nil, fmt.Errorf("test signing key: %w", err)
	}
	h.verifier, err = authn.NewVerifier(authn.VerifierConfig{
		Issuer:        pol.JWT.Issuer,
		Audiences:     pol.JWT.Audiences,
		Algorithms:    []string{"EdDSA"},
		Leeway:        pol.JWT.Leeway,
		MaxTokenBytes: pol.JWT.MaxTokenBytes,
	}, staticKeys{key})
	if err != nil {
		return nil, fmt.Errorf("test verifier: %w", err)
	}
	return h, nil
}

func (h *harness) decide(ctx context.Context, req authz.Request, user *User) (authz.Decision, error) {
	headers := authz.HeaderMap{}
	if hm, ok := req.Headers.(authz.HeaderMap); ok {
		for k, v := range hm {
			headers[k] = v
		}
	}
	world := fakeWorld{user: user, pol: h.pol}
	if user != nil {
		if err := h.credential(headers, user); err != nil {
			return authz.Decision{}, err
		}
	}
	req.Headers = headers
	st := authz.State{Policy: h.pol}
	if h.verifier != nil {
		st.Verifier = h.verifier
	}
	deps := authz.Deps{Access: world, Sessions: world, APIKeys: world}
	if h.access != nil {
		deps.Access = h.access
	}
	e, err := authz.New(st, deps, authz.Config{Secret: h.secret})
	if err != nil {
		return authz.Decision{}, err
	}
	return e.Decide(ctx, &req), nil
}

// credential adds the user's credential to headers, unless the request
// sets that header itself (to test bad credentials).
func (h *harness) credential(headers authz.HeaderMap, u *User) error {
	setIfAbsent := func(k, v string) {
		if _, ok := headers[k]; !ok {
			headers[k] = v
		}
	}
	kind := u.Credential
	if kind == 0 {
		for _, k := range []policy.Credential{policy.CredJWT, policy.CredSession, policy.CredAPIKey} {
			if h.pol.Enabled()&k != 0 {
				kind = k
				break
			}
		}
	}
	switch kind {
	case policy.CredJWT:
		tok, err := h.token(u, time.Now())
		if err != nil {
			return err
		}
		setIfAbsent("authorization", "Bearer "+tok)
	case policy.CredSession:
		token := sessionToken(u.ID)
		signed := token + "." + h.secret.Sign(token)
		if h.pol.Session.Cookie {
			setIfAbsent("cookie", h.pol.Session.CookieName+"="+url.QueryEscape(signed))
		} else {
			setIfAbsent("authorization", "Bearer "+signed)
		}
	case policy.CredAPIKey:
		setIfAbsent(h.pol.APIKeys.Header, apiKey(u.ID))
	}
	return nil
}

func sessionToken(userID string) string { return "session-of-" + userID }
func apiKey(userID string) string       { return "key-of-" + userID }

// token signs a Better Auth-shaped JWT for u.
func (h *harness) token(u *User, now time.Time) (string, error) {
	claims := make(map[string]any, len(u.Claims)+5)
	for k, v := range u.Claims {
		claims[k] = v
	}
	claims["sub"] = u.ID
	claims["iss"] = h.pol.JWT.Issuer
	claims["aud"] = h.pol.JWT.Audiences[0]
	claims["iat"] = now.Unix()
	claims["exp"] = now.Add(15 * time.Minute).Unix()
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("test token: %w", err)
	}
	b64 := base64.RawURLEncoding
	input := b64.EncodeToString([]byte(`{"alg":"EdDSA","kid":"`+keyID+`","typ":"JWT"}`)) + "." + b64.EncodeToString(payload)
	return input + "." + b64.EncodeToString(ed25519.Sign(h.priv, []byte(input))), nil
}

// staticKeys is a JWKS of one key that never needs fetching.
type staticKeys struct{ key jwk.Key }

func (s staticKeys) Lookup(_ context.Context, kid string) (jwk.Key, error) {
	if kid != keyID {
		return nil, authn.ErrUnknownKey
	}
	return s.key, nil
}

// fakeWorld stands in for the cache tiers and Better Auth's tables: it
// answers from the user's description, and computes the grants with the
// same roles.Compute the real source resolver uses.
type fakeWorld struct {
	user *User
	pol  *policy.Policy
}

func (w fakeWorld) Resolve(_ context.Context, q roles.Query) (*roles.Access, roles.Tier, error) {
	u := w.user
	if u == nil || q.UserID != "" && q.UserID != u.ID {
		return roles.Compute(roles.Membership{}, q.Tables), roles.TierSource, nil
	}
	m := roles.Membership{
		UserFound: !u.Unknown && q.UserID != "", Banned: u.Banned, PlatformRole: u.PlatformRole,
		EmailVerified: u.EmailVerified, Anonymous: u.Anonymous, TwoFactorEnabled: u.TwoFactor,
	}
	if q.OrgRef != "" {
		// Any organization the request names exists; the user is a member
		// of their own only.
		m.OrgID = q.OrgRef
		home := u.OrgID
		if home == "" {
			home = q.OrgRef
		}
		if q.OrgRef == home || u.Slug != "" && q.OrgRef == u.Slug {
			m.OrgID = home
			if !u.NotMember && q.UserID != "" {
				m.Roles = u.Roles
				for _, name := range slices.Sorted(maps.Keys(u.CustomRoles)) {
					m.DynamicRoles = append(m.DynamicRoles, roles.DynamicRole{Name: name, Permission: statementsJSON(u.CustomRoles[name])})
				}
			}
		}
		if q.TeamRef != "" {
			m.TeamID, m.TeamMember = q.TeamRef, slices.Contains(u.Teams, q.TeamRef)
		}
	}
	return roles.Compute(m, q.Tables), roles.TierSource, nil
}

func (w fakeWorld) session(match bool) *authn.Session {
	if !match {
		return &authn.Session{}
	}
	u := w.user
	return &authn.Session{
		Found: true, ID: "sid-of-" + u.ID, UserID: u.ID, ExpiresAt: time.Now().Add(time.Hour),
		ActiveOrganizationID: u.ActiveOrg, ActiveTeamID: u.ActiveTeam, ImpersonatedBy: u.ImpersonatedBy,
	}
}

func (w fakeWorld) SessionByToken(_ context.Context, token string) (*authn.Session, roles.Tier, error) {
	return w.session(w.user != nil && token == sessionToken(w.user.ID)), roles.TierSource, nil
}

func (w fakeWorld) SessionByID(_ context.Context, id string) (*authn.Session, roles.Tier, error) {
	return w.session(w.user != nil && id == "sid-of-"+w.user.ID), roles.TierSource, nil
}

func (w fakeWorld) APIKeyByHash(_ context.Context, hash string) (*authn.APIKey, roles.Tier, error) {
	u := w.user
	if u == nil || hash != authn.HashAPIKey(apiKey(u.ID)) {
		return &authn.APIKey{}, roles.TierSource, nil
	}
	k := &authn.APIKey{Found: true, ID: "key-id-of-" + u.ID, ConfigID: "default", ReferenceID: u.ID, Enabled: true,
		Permissions: slices.Sorted(slices.Values(u.KeyPermissions))}
	if u.KeyOrg != "" {
		k.ReferenceID = u.KeyOrg
		k.ConfigID = ""
		for _, config := range slices.Sorted(maps.Keys(w.pol.APIKeys.Owners)) {
			if w.pol.APIKeys.Owners[config] == policy.OwnerOrganization {
				k.ConfigID = config
				break
			}
		}
	}
	return k, roles.TierSource, nil
}

// statementsJSON turns "resource:action" pairs into Better Auth's
// permission JSON.
func statementsJSON(perms []string) string {
	st := map[string][]string{}
	for _, p := range perms {
		res, act, _ := strings.Cut(p, ":")
		st[res] = append(st[res], act)
	}
	b, _ := json.Marshal(st)
	return string(b)
}
