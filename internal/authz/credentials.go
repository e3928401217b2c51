package authz

import (
	"context"
	"errors"
	"strings"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// caller is who a valid credential names.
type caller struct {
	kind policy.Credential
	// userID is the user; empty for an organization's API key.
	userID string
	// id is the verified JWT (claims), for JWT callers.
	id *authn.Identity
	// session is the Better Auth session behind a session credential, or
	// behind a JWT when jwt.session_claim is set.
	session *authn.Session
	// cookie is set when the session cookie authenticated the caller: the
	// CSRF rule applies.
	cookie bool
	// key is the API key, owner what its referenceId names, and keyGrant
	// what it may do.
	key      *authn.APIKey
	owner    policy.APIKeyOwner
	keyGrant roles.Grant
}

// principal is what two credentials must agree on to be used together.
func (c *caller) principal() string {
	if c.key != nil && c.owner == policy.OwnerOrganization {
		return "organization:" + c.key.ReferenceID
	}
	return "user:" + c.userID
}

// maxCredentials is how many credentials one request can carry: the
// Authorization header, an API key and the session cookie.
const maxCredentials = 3

// authenticate checks every credential the request carries that the policy
// accepts. The rule, documented in the README:
//
//   - precedence: Authorization (a JWT or a bearer session token), then the
//     API key header, then the session cookie; the first valid one is the
//     caller;
//   - a credential that fails next to a valid one is ignored (as Better
//     Auth ignores an invalid bearer token next to a valid cookie), but two
//     valid credentials naming different callers are refused (401
//     conflicting_credentials), and a credential that cannot be checked
//     right now makes the answer 503 (it might have named someone else);
//   - no valid credential: the first failure, in precedence order, is the
//     answer; no credential at all is 401 no_credential.
func (e *Engine) authenticate(ctx context.Context, st *State, r *Request) (caller, failure) {
	pol := st.Policy
	var (
		valid [maxCredentials]caller
		nv    int
		first failure
	)
	consider := func(c caller, f failure, present bool) {
		switch {
		case !present:
		case f.reason == "":
			valid[nv] = c
			nv++
		case f.code == CodeUnavailable:
			// Unknowable beats everything but another unknowable.
			if first.code != CodeUnavailable {
				first = f
			}
		case first.reason == "":
			first = f
		}
	}
	if authz := header(r.Headers, "authorization"); authz != "" {
		c, f, present := e.fromAuthorization(ctx, st, authz)
		consider(c, f, present)
	}
	if pol.APIKeys.Enabled {
		if key := header(r.Headers, pol.APIKeys.Header); key != "" {
			c, f := e.fromAPIKey(ctx, pol, key)
			consider(c, f, true)
		}
	}
	if pol.Session.Enabled && pol.Session.Cookie {
		if value, ok := authn.CookieValue(header(r.Headers, "cookie"), pol.Session.CookieName); ok {
			c, f := e.fromSessionToken(ctx, value)
			c.cookie = true
			consider(c, f, true)
		}
	}
	if first.code == CodeUnavailable {
		return caller{}, first
	}
	if nv == 0 {
		if first.reason != "" {
			return caller{}, first
		}
		return caller{}, failure{CodeUnauthenticated, ReasonNoCredential, ""}
	}
	for i := 1; i < nv; i++ {
		if valid[i].principal() != valid[0].principal() {
			return caller{}, failure{CodeUnauthenticated, ReasonConflictingCredentials, ""}
		}
	}
	c := valid[0]
	if c.userID != "" && !validIdentifier(c.userID) {
		return caller{}, failure{CodeForbidden, ReasonInvalidIdentifier, "user id"}
	}
	return c, failure{}
}

// fromAuthorization reads the Authorization header: a JWT when the policy
// accepts JWTs and the value has a JWT's shape, else a bearer session token
// when the policy accepts those. present is false when the header is
// nothing the policy reads.
func (e *Engine) fromAuthorization(ctx context.Context, st *State, authz string) (caller, failure, bool) {
	pol := st.Policy
	// A JWT has two dots; a Better Auth session token one (signed) or none
	// (raw), whether URL-encoded or not.
	jwtShaped := strings.Count(authz, ".") >= 2
	if pol.Session.Enabled && pol.Session.Bearer != policy.BearerOff && !(pol.JWT.Enabled && jwtShaped) {
		token, present, err := authn.SessionBearer(authz, e.cfg.Secret, pol.Session.Bearer == policy.BearerSignedOrRaw)
		if present {
			if err != nil {
				return caller{}, failure{CodeUnauthenticated, ReasonInvalidSession, ""}, true
			}
			c, f := e.lookupSession(ctx, token)
			return c, f, true
		}
	}
	if !pol.JWT.Enabled {
		return caller{}, failure{}, false
	}
	raw, err := authn.BearerToken(authz)
	if err != nil {
		return caller{}, tokenFailure(err), true
	}
	id, err := st.Verifier.Verify(ctx, raw)
	if err != nil {
		return caller{}, tokenFailure(err), true
	}
	c := caller{kind: policy.CredJWT, userID: id.Subject, id: id}
	if claim := pol.JWT.SessionClaim; claim != "" {
		// The JWT lives only as long as its session: sign-out, revocation
		// and bans end both.
		sid, ok := id.Claim(claim)
		if !ok || sid == "" || !validIdentifier(sid) {
			return caller{}, failure{CodeUnauthenticated, ReasonInvalidToken, "token carries no session id"}, true
		}
		s, _, err := e.deps.Sessions.SessionByID(ctx, sid)
		if err != nil {
			return caller{}, unavailableFailure(err), true
		}
		if err := s.Check(e.cfg.Now()); err != nil || s.UserID != id.Subject {
			return caller{}, failure{CodeUnauthenticated, ReasonInvalidToken, "the token's session has ended"}, true
		}
		c.session = s
	}
	return c, failure{}, true
}

// fromSessionToken verifies a signed session cookie value and looks the
// session up.
func (e *Engine) fromSessionToken(ctx context.Context, signed string) (caller, failure) {
	token, err := e.cfg.Secret.VerifySigned(signed)
	if err != nil {
		return caller{}, failure{CodeUnauthenticated, ReasonInvalidSession, ""}
	}
	return e.lookupSession(ctx, token)
}

// lookupSession finds a verified token's session and checks it is live.
func (e *Engine) lookupSession(ctx context.Context, token string) (caller, failure) {
	s, _, err := e.deps.Sessions.SessionByToken(ctx, token)
	if err != nil {
		return caller{}, unavailableFailure(err)
	}
	if err := s.Check(e.cfg.Now()); err != nil {
		return caller{}, failure{CodeUnauthenticated, ReasonInvalidSession, ""}
	}
	return caller{kind: policy.CredSession, userID: s.UserID, session: s}, failure{}
}

// fromAPIKey hashes the key as the api-key plugin stores it, looks it up and
// checks it in Better Auth's order.
func (e *Engine) fromAPIKey(ctx context.Context, pol *policy.Policy, key string) (caller, failure) {
	if len(key) > authn.MaxAPIKeyBytes {
		return caller{}, failure{CodeUnauthenticated, ReasonInvalidAPIKey, ""}
	}
	k, _, err := e.deps.APIKeys.APIKeyByHash(ctx, authn.HashAPIKey(key))
	if err != nil {
		return caller{}, unavailableFailure(err)
	}
	if err := k.Check(e.cfg.Now(), pol.APIKeys.CountingInApp); err != nil {
		if errors.Is(err, authn.ErrAPIKeyCounted) {
			return caller{}, failure{CodeUnauthenticated, ReasonAPIKeyCounted, ""}
		}
		return caller{}, failure{CodeUnauthenticated, ReasonInvalidAPIKey, ""}
	}
	config := k.ConfigID
	if config == "" {
		config = "default" // Better Auth treats a null configId as "default"
	}
	owner := pol.APIKeys.Owners[config]
	if owner == 0 {
		return caller{}, failure{CodeUnauthenticated, ReasonInvalidAPIKey, "unknown configuration"}
	}
	if !validIdentifier(k.ReferenceID) {
		return caller{}, failure{CodeForbidden, ReasonInvalidIdentifier, "API key owner"}
	}
	c := caller{kind: policy.CredAPIKey, key: k, owner: owner, keyGrant: roles.Grant{Role: "api-key", Perms: k.Permissions}}
	if owner == policy.OwnerUser {
		c.userID = k.ReferenceID
	}
	return c, failure{}
}

// tokenFailure classifies a JWT error: the one place token errors become
// statuses. Waiting for a key refresh that ran out of time, or having no
// keys at all, is "unknown", not "invalid".
func tokenFailure(err error) failure {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return unavailableFailure(err)
	case errors.Is(err, authn.ErrNoKeys):
		return failure{CodeUnavailable, ReasonKeysUnavailable, ""}
	}
	return failure{CodeUnauthenticated, ReasonInvalidToken, authn.Describe(err)}
}
