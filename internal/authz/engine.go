// Package authz makes the decision: given a request's method, path,
// headers and (optionally) a policy route name, it validates the bearer
// token, selects the policy route, finds the organization, resolves the
// caller's permission set through the cache tiers and answers allow or deny
// with a reason. It is transport-free: internal/extauthz translates Envoy's
// CheckRequest into a Request and a Decision into a CheckResponse.
//
// Every path through Decide ends in an explicit Decision; there is no
// default that allows.
package authz

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// Headers reads request headers by lower-case name. Envoy hands them over
// lower-cased, with repeated headers joined by ",".
type Headers interface {
	Get(name string) string
}

// Request is what the engine needs to know about one HTTP request.
type Request struct {
	Method string
	// Path is the request target as the proxy will route it (":path"), query
	// string included; the engine strips the query and refuses ambiguity.
	Path    string
	Headers Headers
	// RouteName, when set (Envoy's per-route context_extensions "route"),
	// selects the policy route by name and skips path matching.
	RouteName string
}

// TokenVerifier validates a raw JWT. *authn.Verifier satisfies it.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (*authn.Identity, error)
}

// Config tunes the engine.
type Config struct {
	// MaxPathBytes bounds the request path; longer ones are denied.
	MaxPathBytes int
	// Now is the clock (ban expiry); tests may replace it.
	Now func() time.Time
}

// Engine decides. It is safe for concurrent use; the policy can be swapped
// at any time with SetPolicy.
type Engine struct {
	pol      atomic.Pointer[policy.Policy]
	verifier atomic.Pointer[verifierBox]
	resolver roles.Resolver
	cfg      Config
}

// verifierBox lets a verifier built for a new policy's jwt settings be
// swapped together with it.
type verifierBox struct{ v TokenVerifier }

// New returns an engine deciding under pol with tokens checked by verifier
// and permissions resolved by resolver.
func New(pol *policy.Policy, verifier TokenVerifier, resolver roles.Resolver, cfg Config) *Engine {
	if cfg.MaxPathBytes <= 0 {
		cfg.MaxPathBytes = 4096
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	e := &Engine{resolver: resolver, cfg: cfg}
	e.pol.Store(pol)
	e.verifier.Store(&verifierBox{verifier})
	return e
}

// Policy returns the policy in force.
func (e *Engine) Policy() *policy.Policy { return e.pol.Load() }

// SetPolicy swaps in a new policy (and the verifier for its jwt settings)
// atomically: a request sees either the old pair or the new one.
func (e *Engine) SetPolicy(pol *policy.Policy, verifier TokenVerifier) {
	// Store the verifier first: a request that loads the new policy then
	// the old verifier would only be stricter for one call if the issuer
	// changed, never looser, since both must pass.
	e.verifier.Store(&verifierBox{verifier})
	e.pol.Store(pol)
}

// Decide answers one request. It never returns "allow" on an error path.
func (e *Engine) Decide(ctx context.Context, r *Request) Decision {
	pol := e.pol.Load()
	d := Decision{}

	// 1. Route: by name when the proxy names it, else by path.
	var match policy.Match
	if r.RouteName != "" {
		rt, ok := pol.Route(r.RouteName)
		if !ok {
			return d.deny(ReasonUnknownRoute, "no policy route named "+quote(r.RouteName))
		}
		match.Route = rt
		// The route is Envoy's choice and the path only supplies parameters
		// (path:NAME organization sources). An ambiguous path is refused
		// even so: the application behind may read it differently than
		// Envoy's route did (an organization taken from a header here while
		// the application takes it from a ";"-decorated path).
		path := policy.SplitQuery(r.Path)
		if err := policy.CheckPath(path, e.cfg.MaxPathBytes); err != nil {
			return d.deny(ReasonAmbiguousPath, err.Error())
		}
		if m, ok := rt.Match(path); ok {
			match = m
		}
	} else {
		path := policy.SplitQuery(r.Path)
		if err := policy.CheckPath(path, e.cfg.MaxPathBytes); err != nil {
			return d.deny(ReasonAmbiguousPath, err.Error())
		}
		m, ok := pol.Match(r.Method, path)
		if !ok {
			return d.deny(ReasonNoRoute, "no route matches "+r.Method+" "+path)
		}
		match = m
	}
	rt := match.Route
	d.Route = rt.Name
	d.enforce = rt.Enforce

	if rt.Public {
		return d.allow(ReasonPublic)
	}

	// 2. Token.
	raw, err := authn.BearerToken(header(r.Headers, "authorization"))
	if err != nil {
		return d.tokenError(err)
	}
	id, err := e.verifier.Load().v.Verify(ctx, raw)
	if err != nil {
		return d.tokenError(err)
	}
	d.UserID = id.Subject

	// 3. Organization: only routes that need permissions need one.
	needsOrg := len(rt.Require) > 0 || len(rt.RequireAny) > 0
	var orgRef string
	if needsOrg {
		var src policy.OrgSource
		orgRef, src = pickOrg(pol.OrgSources, &match, r.Headers, id)
		if orgRef == "" {
			return d.deny(ReasonNoOrganization, "the request names no organization")
		}
		d.OrgSource = src
	}

	// 4. Permissions (and the user's standing: a ban applies to every
	// non-public route).
	acc, tier, err := e.resolver.Resolve(ctx, roles.Query{
		UserID: id.Subject, OrgRef: orgRef, Version: pol.Version, Roles: pol,
	})
	d.Tier = tier
	if err != nil {
		return d.unavailable(err, "permission lookup")
	}
	if !acc.UserFound {
		return d.deny(ReasonUnknownUser, "user no longer exists")
	}
	if acc.IsBanned(e.cfg.Now()) {
		return d.deny(ReasonBanned, "user is banned")
	}
	if !needsOrg {
		return d.allow(ReasonAuthenticated)
	}
	d.OrgID = acc.OrgID
	if acc.OrgID == "" {
		return d.deny(ReasonNotMember, "no such organization "+quote(orgRef))
	}
	if !acc.Member() {
		return d.deny(ReasonNotMember, "not a member of organization "+quote(acc.OrgID))
	}
	d.Roles = acc.Roles
	d.Permissions = acc.Permissions
	for _, p := range rt.Require {
		if !acc.Has(p) {
			return d.deny(ReasonMissingPermission, "missing permission "+p)
		}
	}
	if len(rt.RequireAny) > 0 && !hasAny(acc, rt.RequireAny) {
		return d.deny(ReasonMissingPermission, "missing any of permissions "+joinComma(rt.RequireAny))
	}
	return d.allow(ReasonGranted)
}

func hasAny(acc *roles.Access, perms []string) bool {
	for _, p := range perms {
		if acc.Has(p) {
			return true
		}
	}
	return false
}

// pickOrg walks the policy's organization sources in order; the first one
// present wins, so header, path and claim cannot be played against each
// other: the policy, not the client, decides which is trusted first.
func pickOrg(sources []policy.OrgSource, m *policy.Match, h Headers, id *authn.Identity) (string, policy.OrgSource) {
	for _, s := range sources {
		var v string
		switch s.Kind {
		case policy.OrgFromPath:
			v, _ = m.Param(s.Name)
		case policy.OrgFromHeader:
			v = header(h, s.Name)
		case policy.OrgFromClaim:
			v, _ = id.Claim(s.Name)
		}
		if v != "" {
			return v, s
		}
	}
	return "", policy.OrgSource{}
}

func header(h Headers, name string) string {
	if h == nil {
		return ""
	}
	return h.Get(name)
}

func (d Decision) tokenError(err error) Decision {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		// Waiting for a key refresh ran out of time: unknown, not invalid.
		return d.unavailable(err, "signing key lookup")
	}
	if errors.Is(err, authn.ErrNoKeys) {
		// Without keys no token can be judged: the answer is unknown, not no.
		d.Code = CodeUnavailable
		return d.finish(ReasonKeysUnavailable, "signing keys are not available yet")
	}
	d.Code = CodeUnauthenticated
	if errors.Is(err, authn.ErrNoToken) {
		return d.finish(ReasonNoToken, "no bearer token")
	}
	return d.finish(ReasonInvalidToken, "invalid token: "+err.Error())
}

// unavailable answers 503 for what could not be looked up, telling a
// deadline apart from a caller's cancel.
func (d Decision) unavailable(err error, what string) Decision {
	d.Code = CodeUnavailable
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return d.finish(ReasonDeadline, what+" timed out")
	case errors.Is(err, context.Canceled):
		return d.finish(ReasonCanceled, "request canceled")
	default:
		return d.finish(ReasonSourceUnavailable, "permissions unavailable")
	}
}
