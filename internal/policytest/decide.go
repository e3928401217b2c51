package policytest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// User is the caller of a request: what their token says and what Better
// Auth's tables say about them in the organization the request names.
type User struct {
	// ID is the token's sub and the users row id.
	ID string
	// Roles are the user's roles (members.role split on commas) in their
	// organization; empty means not a member.
	Roles []string
	// CustomRoles are roles the organization defines itself
	// ("organizationRoles"), name to "resource:action" permissions. They
	// grant something only when listed in Roles.
	CustomRoles map[string][]string
	// OrgID is the organization the user is a member of. Empty means the
	// user is a member of whichever organization the request names. When
	// set, a request naming another organization finds a non-member.
	OrgID string
	// Slug is another reference to OrgID (Better Auth's organization slug).
	Slug string
	// NotMember makes the user a member of no organization.
	NotMember bool
	// Banned is users.banned, with no expiry.
	Banned bool
	// Unknown means no users row has ID (the user was deleted).
	Unknown bool
	// Claims are extra string claims of the token, e.g.
	// activeOrganizationId; registered claims are set by the runner.
	Claims map[string]string
}

// Headers is a request's headers by lower-case name, as Envoy passes them.
type Headers map[string]string

// Get returns the header named name.
func (h Headers) Get(name string) string { return h[name] }

// Decide answers req under pol with the sidecar's real decision engine
// (internal/authz) and real token verifier (internal/authn); only the
// JWKS and the membership tables are replaced by in-memory fakes built
// from user. A nil user sends no token. If req carries an authorization
// header, it is sent as it is instead of the user's token (to test bad
// tokens). The error is about the harness (signing), never the decision.
func Decide(ctx context.Context, pol *policy.Policy, req authz.Request, user *User) (authz.Decision, error) {
	h, err := newHarness(pol)
	if err != nil {
		return authz.Decision{}, err
	}
	return h.decide(ctx, req, user)
}

// keyID is the kid of the harness's signing key.
const keyID = "policytest"

// harness holds an ephemeral signing key and the verifier that trusts it.
// Tokens are signed with EdDSA whatever the policy's jwt.algorithms: the
// algorithm allowlist is the verifier's concern, tested in internal/authn;
// the issuer, audience and size limit are the policy's.
type harness struct {
	pol      *policy.Policy
	priv     ed25519.PrivateKey
	verifier *authn.Verifier
}

func newHarness(pol *policy.Policy) (*harness, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate test signing key: %w", err)
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
	v, err := authn.NewVerifier(authn.VerifierConfig{
		Issuer:        pol.JWT.Issuer,
		Audiences:     pol.JWT.Audiences,
		Algorithms:    []string{"EdDSA"},
		Leeway:        pol.JWT.Leeway,
		MaxTokenBytes: pol.JWT.MaxTokenBytes,
	}, staticKeys{key})
	if err != nil {
		return nil, fmt.Errorf("test verifier: %w", err)
	}
	return &harness{pol: pol, priv: priv, verifier: v}, nil
}

func (h *harness) decide(ctx context.Context, req authz.Request, user *User) (authz.Decision, error) {
	if user != nil {
		tok, err := h.token(user, time.Now())
		if err != nil {
			return authz.Decision{}, err
		}
		req.Headers = withToken{inner: req.Headers, bearer: "Bearer " + tok}
	}
	e := authz.New(h.pol, h.verifier, resolver{user}, authz.Config{})
	return e.Decide(ctx, &req), nil
}

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

// withToken adds the user's bearer token unless the request sets its own
// authorization header.
type withToken struct {
	inner  authz.Headers
	bearer string
}

func (w withToken) Get(name string) string {
	var v string
	if w.inner != nil {
		v = w.inner.Get(name)
	}
	if v == "" && name == "authorization" {
		return w.bearer
	}
	return v
}

// resolver stands in for the cache tiers and Postgres: it answers from
// the user's description, and computes the permission set with the same
// roles.Compute the real source resolver uses.
type resolver struct{ user *User }

func (r resolver) Resolve(_ context.Context, q roles.Query) (*roles.Access, roles.Tier, error) {
	u := r.user
	if u == nil {
		return roles.Compute(roles.Membership{UserID: q.UserID}, q.Roles), roles.TierSource, nil
	}
	m := roles.Membership{UserID: q.UserID, UserFound: !u.Unknown, Banned: u.Banned}
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
			if !u.NotMember {
				m.Roles, m.CustomRoles = u.Roles, u.CustomRoles
			}
		}
	}
	return roles.Compute(m, q.Roles), roles.TierSource, nil
}
