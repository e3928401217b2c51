// Package authz makes the decision: given a request's method, path,
// headers and (optionally) a policy route name, it selects the policy
// route, authenticates the caller with whichever Better Auth credential the
// request carries (JWT, session cookie, bearer session token, API key),
// finds the organization and team, resolves the caller's roles through the
// cache tiers, applies Better Auth's permission rule (internal/roles) and
// answers allow or deny with a reason. It is transport-free:
// internal/extauthz and internal/httpauthz translate requests and
// decisions, and never decide anything themselves.
//
// Every path through Decide ends in an explicit Decision; there is no
// default that allows.
package authz

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sync/atomic"
	"time"
	"unicode/utf8"

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

// SessionResolver looks Better Auth sessions up, through the cache tiers.
// A session that does not exist is a Session with Found false, not an
// error; errors mean the answer cannot be known (fail closed).
type SessionResolver interface {
	SessionByToken(ctx context.Context, token string) (*authn.Session, roles.Tier, error)
	SessionByID(ctx context.Context, id string) (*authn.Session, roles.Tier, error)
}

// APIKeyResolver looks API keys up by their stored hash, through the cache
// tiers, like SessionResolver.
type APIKeyResolver interface {
	APIKeyByHash(ctx context.Context, hash string) (*authn.APIKey, roles.Tier, error)
}

// Deps are the engine's lookups. Access is required; Sessions when the
// policy accepts sessions (or jwt.session_claim), APIKeys when it accepts
// API keys.
type Deps struct {
	Access   roles.Resolver
	Sessions SessionResolver
	APIKeys  APIKeyResolver
}

// Config tunes the engine.
type Config struct {
	// MaxPathBytes bounds the request path; longer ones are denied.
	MaxPathBytes int
	// Now is the clock (ban, session and key expiry); tests may replace it.
	Now func() time.Time
	// Secret is Better Auth's current secret, which signs session cookies
	// and bearer session tokens; required when the policy accepts sessions.
	Secret authn.Secret
	// NewID names each decision; default 128 random bits in hex.
	NewID func() string
	// MaxInFlight bounds the decisions being made at once (0: unlimited).
	// A decision past it is refused at once, 503 ReasonOverloaded, before
	// any work: a saturated sidecar sheds the excess predictably instead
	// of queueing it until the check deadline answers 503 at random.
	MaxInFlight int
}

// newID is 128 bits from the runtime's per-thread generator, in hex: a
// decision id must be unique, not secret, and cheap. hex.Encode, not a
// hand-rolled digit loop, so the only logic here is the library's.
func newID() string {
	var raw [16]byte
	binary.BigEndian.PutUint64(raw[:8], mrand.Uint64())
	binary.BigEndian.PutUint64(raw[8:], mrand.Uint64())
	var b [32]byte
	hex.Encode(b[:], raw[:])
	return string(b[:])
}

// MaxIdentifierBytes bounds organization, team and user identifiers:
// Better Auth's ids are 32 characters and slugs short; anything longer is
// refused before any lookup.
const MaxIdentifierBytes = 256

// State is what a policy reload swaps, whole: the policy and the verifier
// built for its jwt section. A request sees either the old pair or the new.
type State struct {
	Policy *policy.Policy
	// Verifier checks JWTs; nil when the policy has no jwt section.
	Verifier TokenVerifier
}

// Engine decides. It is safe for concurrent use; the state can be swapped
// at any time with SetState.
type Engine struct {
	state atomic.Pointer[State]
	deps  Deps
	cfg   Config
	// inFlight counts the decisions being made (admitted ones, and for an
	// instant each refused one); overloaded counts the refused ones.
	inFlight   atomic.Int64
	overloaded atomic.Uint64
}

// New returns an engine deciding under st with deps. It fails when the
// policy needs a dependency that is missing.
func New(st State, deps Deps, cfg Config) (*Engine, error) {
	if cfg.MaxPathBytes <= 0 {
		cfg.MaxPathBytes = 4096
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewID == nil {
		cfg.NewID = newID
	}
	if cfg.MaxInFlight < 0 {
		return nil, errors.New("authz: negative MaxInFlight")
	}
	if deps.Access == nil {
		return nil, errors.New("authz: no access resolver")
	}
	e := &Engine{deps: deps, cfg: cfg}
	if err := e.SetState(st); err != nil {
		return nil, err
	}
	return e, nil
}

// State returns the state in force.
func (e *Engine) State() *State { return e.state.Load() }

// Policy returns the policy in force.
func (e *Engine) Policy() *policy.Policy { return e.state.Load().Policy }

// SetState swaps in a new policy and verifier atomically, after checking
// that the engine has what the policy needs.
func (e *Engine) SetState(st State) error {
	pol := st.Policy
	switch {
	case pol == nil:
		return errors.New("authz: no policy")
	case pol.JWT.Enabled && st.Verifier == nil:
		return errors.New("authz: the policy accepts JWTs but there is no verifier")
	case pol.Session.Enabled && e.cfg.Secret.IsZero():
		return errors.New("authz: the policy accepts Better Auth sessions but no secret is set ($BETTER_AUTH_SECRET, $BETTER_AUTH_SECRETS or --better-auth-secret-file)")
	case (pol.Session.Enabled || pol.JWT.SessionClaim != "") && e.deps.Sessions == nil:
		return errors.New("authz: the policy reads sessions but there is no session source")
	case pol.APIKeys.Enabled && e.deps.APIKeys == nil:
		return errors.New("authz: the policy accepts API keys but there is no API key source")
	}
	e.state.Store(&st)
	return nil
}

// Decide answers one request. It never returns "allow" on an error path.
// The steps are numbered as in the README's "How a decision is made".
func (e *Engine) Decide(ctx context.Context, r *Request) Decision {
	st := e.state.Load()
	pol := st.Policy
	d := Decision{ID: e.cfg.NewID(), PolicyVersion: pol.Version}

	// 0. Admission: past MaxInFlight decisions at once, refuse at once.
	// The refusal comes before the route is known, so a shadow route
	// cannot turn it into an allow: shedding never lets a request through.
	n := e.inFlight.Add(1)
	defer e.inFlight.Add(-1)
	if limit := int64(e.cfg.MaxInFlight); limit > 0 && n > limit {
		e.overloaded.Add(1)
		return d.failure(failure{CodeUnavailable, ReasonOverloaded, ""})
	}

	// 1. Route: by name when the proxy names it, else by path.
	match, refusal, ok := e.route(pol, r, d)
	if !ok {
		return refusal
	}
	rt := match.Route
	d.Route = rt.Name
	d.enforce = rt.Enforce

	// 2. Public routes need nothing more.
	if rt.Public {
		return d.allow(ReasonPublic)
	}

	// 3. Credential.
	c, fail := e.authenticate(ctx, st, r)
	if fail.reason != "" {
		return d.failure(fail)
	}
	d.Credential, d.UserID = c.kind, c.userID
	if c.session != nil {
		d.ImpersonatedBy = c.session.ImpersonatedBy
	}
	if c.key != nil {
		d.APIKeyID = c.key.ID
	}
	if rt.Credentials != 0 && rt.Credentials&c.kind == 0 {
		return d.deny(ReasonCredentialNotAllowed, "the route accepts "+rt.Credentials.String())
	}
	orgKey := c.key != nil && c.owner == policy.OwnerOrganization
	if orgKey && (rt.NeedsUser() || rt.Team) {
		// An organization's key has no user: nothing can be judged about one.
		return d.deny(ReasonCredentialNotAllowed, "an organization's API key has no user")
	}
	// A cookie is sent by the browser whoever asks it to: a cookie request
	// that changes state must come from a trusted origin (Better Auth's
	// own CSRF rule). Bearer tokens and API keys are not sent ambiently.
	if c.cookie && !safeMethod(r.Method) &&
		!authn.OriginTrusted(header(r.Headers, "origin"), header(r.Headers, "referer"), pol.Session.BaseURL, pol.Session.TrustedOrigins) {
		return d.deny(ReasonUntrustedOrigin, "")
	}
	if rt.DenyImpersonation && d.ImpersonatedBy != "" {
		return d.deny(ReasonImpersonationDenied, "")
	}

	// 4. Organization and team, when the route checks them.
	q := roles.Query{Subject: roles.Subject{UserID: c.userID}, Version: pol.Version, Tables: pol}
	if rt.NeedsOrganization() {
		ref, src := pickSource(pol.OrgSources, &match, r.Headers, &c, policy.SessionActiveOrganization)
		if orgKey && ref == "" {
			ref, src = c.key.ReferenceID, apiKeySource
		}
		if ref == "" {
			return d.deny(ReasonNoOrganization, "sources: "+sourceNames(pol.OrgSources))
		}
		if !validIdentifier(ref) {
			return d.deny(ReasonInvalidIdentifier, "organization from "+src.String())
		}
		q.OrgRef, d.OrgSource = ref, src
		if rt.Team {
			team, tsrc := pickSource(pol.TeamSources, &match, r.Headers, &c, policy.SessionActiveTeam)
			if team == "" {
				return d.deny(ReasonNoTeam, "sources: "+sourceNames(pol.TeamSources))
			}
			if !validIdentifier(team) {
				return d.deny(ReasonInvalidIdentifier, "team from "+tsrc.String())
			}
			q.TeamRef = team
		}
	} else if orgKey {
		// An authenticated route: a valid organization key is enough.
		return d.allow(ReasonAuthenticated)
	}

	// 5. What the caller may do, through the cache tiers.
	acc, tier, err := e.deps.Access.Resolve(ctx, q)
	d.Tier = tier
	if err != nil {
		return d.unavailable(err)
	}

	// 6. The caller's standing and conditions (users only).
	if !orgKey {
		if reason, detail := e.checkUser(pol, rt, acc, &c); reason != "" {
			return d.deny(reason, detail)
		}
	}
	if !rt.NeedsOrganization() {
		return d.allow(ReasonAuthenticated)
	}

	// 7. Organization membership and permissions, Better Auth's rule.
	d.OrgID = acc.OrgID
	switch {
	case acc.OrgID == "":
		return d.deny(ReasonNotMember, "no such organization")
	case orgKey && acc.OrgID != c.key.ReferenceID:
		return d.deny(ReasonWrongOrganization, "")
	case !orgKey && !acc.Member():
		return d.deny(ReasonNotMember, "")
	}
	d.Roles, d.Grants = acc.Roles, acc.Grants
	if reason, detail := checkPermissions(rt, acc, &c, orgKey); reason != "" {
		return d.deny(reason, detail)
	}
	if rt.Team {
		if acc.TeamID == "" || !acc.TeamMember {
			return d.deny(ReasonNotTeamMember, "")
		}
		d.TeamID = acc.TeamID
	}
	return d.allow(ReasonGranted)
}

// route selects the policy route.
func (e *Engine) route(pol *policy.Policy, r *Request, d Decision) (policy.Match, Decision, bool) {
	path := policy.SplitQuery(r.Path)
	// Even a route named by the proxy gets its path checked: the
	// application behind may read an ambiguous path differently than the
	// proxy's route did.
	if err := policy.CheckPath(path, e.cfg.MaxPathBytes); err != nil {
		return policy.Match{}, d.deny(ReasonAmbiguousPath, ""), false
	}
	if r.RouteName == "" {
		m, ok := pol.Match(r.Method, path)
		if !ok {
			return policy.Match{}, d.deny(ReasonNoRoute, ""), false
		}
		return m, d, true
	}
	rt, ok := pol.Route(r.RouteName)
	if !ok {
		return policy.Match{}, d.deny(ReasonUnknownRoute, ""), false
	}
	m, ok := rt.Match(path)
	if !ok {
		if len(rt.Params()) > 0 {
			// The template's parameters (an organization, a team) cannot be
			// read from this path; taking them from the next source instead
			// would let a client choose, say with a trailing slash.
			d.Route, d.enforce = rt.Name, true
			return policy.Match{}, d.deny(ReasonPathMismatch, "template "+rt.Path), false
		}
		m = policy.Match{Route: rt}
	}
	return m, d, true
}

// checkUser applies the user-level requirements to a user caller.
func (e *Engine) checkUser(pol *policy.Policy, rt *policy.Route, acc *roles.Access, c *caller) (Reason, string) {
	switch {
	case !acc.UserFound:
		return ReasonUnknownUser, ""
	case acc.IsBanned(e.cfg.Now()):
		// Better Auth enforces a ban only when a session is created; the
		// sidecar refuses a banned user's existing JWTs, sessions and keys
		// too (a deliberate, documented difference).
		return ReasonBanned, ""
	case rt.Conditions.EmailVerified && !acc.EmailVerified:
		return ReasonEmailNotVerified, ""
	case rt.Conditions.NotAnonymous && acc.Anonymous:
		return ReasonAnonymousUser, ""
	case rt.Conditions.TwoFactor && !acc.TwoFactorEnabled:
		return ReasonTwoFactorRequired, ""
	}
	if len(rt.RequirePlatform) > 0 {
		// The admin plugin's hasPermission: adminUserIds pass, else ONE
		// platform role must grant everything; a key must grant it too.
		ok := pol.IsAdminUser(c.userID) || acc.Platform.All(rt.RequirePlatform)
		if ok && c.key != nil {
			ok = c.keyGrant.All(rt.RequirePlatform)
		}
		if !ok {
			return ReasonMissingPlatformRole, "requires " + joinComma(rt.RequirePlatform)
		}
	}
	if len(rt.PlatformRoles) > 0 && !holdsAny(acc.PlatformRoles, rt.PlatformRoles) {
		return ReasonMissingPlatformRole, "requires one of the roles " + joinComma(rt.PlatformRoles)
	}
	return "", ""
}

// checkPermissions applies the route's organization permissions: one of
// the member's roles must grant all of require, and one at least one of
// require_any (roles.Grants); an API key must grant them as well, and an
// organization's key is judged by its own permissions alone.
func checkPermissions(rt *policy.Route, acc *roles.Access, c *caller, orgKey bool) (Reason, string) {
	if len(rt.Require) == 0 && len(rt.RequireAny) == 0 {
		return "", ""
	}
	if !orgKey && acc.InvalidRoles != "" {
		return ReasonInvalidOrgRoles, ""
	}
	if len(rt.Require) > 0 {
		if !orgKey && !acc.Grants.All(rt.Require) {
			return ReasonMissingPermission, "requires " + joinComma(rt.Require) + " from one role"
		}
		if c.key != nil && !c.keyGrant.All(rt.Require) {
			return ReasonMissingPermission, "the API key does not grant " + joinComma(rt.Require)
		}
	}
	if len(rt.RequireAny) > 0 {
		if !orgKey && !acc.Grants.Any(rt.RequireAny) {
			return ReasonMissingPermission, "requires one of " + joinComma(rt.RequireAny)
		}
		if c.key != nil && !c.keyGrant.AnyOf(rt.RequireAny) {
			return ReasonMissingPermission, "the API key grants none of " + joinComma(rt.RequireAny)
		}
	}
	return "", ""
}

// apiKeySource is the organization source of an organization's API key.
var apiKeySource = policy.Source{Kind: policy.FromAPIKey, Name: "referenceId"}

// pickSource walks the policy's sources in order; the first one present
// wins, so path, header, claim and session cannot be played against each
// other: the policy, not the client, decides which is trusted first.
// sessionField is the session field a session: source reads.
func pickSource(sources []policy.Source, m *policy.Match, h Headers, c *caller, sessionField string) (string, policy.Source) {
	for _, s := range sources {
		var v string
		switch s.Kind {
		case policy.FromPath:
			v, _ = m.Param(s.Name)
		case policy.FromHeader:
			v = header(h, s.Name)
		case policy.FromClaim:
			if c.id != nil {
				v, _ = c.id.Claim(s.Name)
			}
		case policy.FromSession:
			if c.session != nil {
				if sessionField == policy.SessionActiveOrganization {
					v = c.session.ActiveOrganizationID
				} else {
					v = c.session.ActiveTeamID
				}
			}
		}
		if v != "" {
			return v, s
		}
	}
	return "", policy.Source{}
}

// validIdentifier reports whether an organization, team or user identifier
// may be looked up: 1 to MaxIdentifierBytes bytes of valid UTF-8 without
// control characters. Anything else is refused before any query (a NUL
// would fail in PostgreSQL, and each such request would cost a query).
func validIdentifier(s string) bool {
	if s == "" || len(s) > MaxIdentifierBytes {
		return false
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || (r >= 0x80 && r <= 0x9f) {
			return false
		}
		i += size
	}
	return true
}

func safeMethod(m string) bool { return m == "GET" || m == "HEAD" || m == "OPTIONS" }

func holdsAny(held, wanted []string) bool {
	for _, w := range wanted {
		if slices.Contains(held, w) {
			return true
		}
	}
	return false
}

func sourceNames(srcs []policy.Source) string {
	out := ""
	for i, s := range srcs {
		if i > 0 {
			out += ", "
		}
		out += s.String()
	}
	return out
}

func header(h Headers, name string) string {
	if h == nil {
		return ""
	}
	return h.Get(name)
}

func joinComma(ss []string) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += ", "
		}
		out += s
	}
	return out
}

// failure is why a credential was not accepted.
type failure struct {
	code   Code
	reason Reason
	detail string
}

func (d Decision) failure(f failure) Decision {
	d.Code = f.code
	return d.finish(f.reason, f.detail)
}

// unavailable answers 503 for what could not be looked up, telling a
// deadline apart from a caller's cancel. It is the one mapping of lookup
// errors (keys, sessions, API keys, permissions) to decisions.
func (d Decision) unavailable(err error) Decision {
	return d.failure(unavailableFailure(err))
}

func unavailableFailure(err error) failure {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return failure{CodeUnavailable, ReasonDeadline, ""}
	case errors.Is(err, context.Canceled):
		return failure{CodeUnavailable, ReasonCanceled, ""}
	default:
		return failure{CodeUnavailable, ReasonSourceUnavailable, ""}
	}
}

// InFlight is the number of decisions being made now.
func (e *Engine) InFlight() int64 { return e.inFlight.Load() }

// Overloaded is the number of decisions refused with ReasonOverloaded.
func (e *Engine) Overloaded() uint64 { return e.overloaded.Load() }

// String describes the engine's dependencies for logs.
func (e *Engine) String() string {
	return fmt.Sprintf("authz engine (policy %s)", e.Policy().Version)
}
