package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Limits and defaults of the policy file format.
const (
	// MaxFileBytes is the largest policy file (and app_roles file) Parse
	// accepts.
	MaxFileBytes = 1 << 20

	// DefaultLeeway is jwt.leeway when the key is absent.
	DefaultLeeway = 30 * time.Second
	// MaxLeeway bounds jwt.leeway: more clock skew than this would keep
	// expired tokens alive for too long.
	MaxLeeway = 5 * time.Minute

	// DefaultMaxTokenBytes is jwt.max_token_bytes when the key is absent.
	DefaultMaxTokenBytes = 8192
	// MinMaxTokenBytes and MaxMaxTokenBytes bound jwt.max_token_bytes. Below
	// the minimum, Better Auth's own tokens (the whole user row) would not
	// fit; above the maximum, a token would not fit in Envoy's default
	// request header limit (60 KiB) anyway.
	MinMaxTokenBytes = 512
	MaxMaxTokenBytes = 64 << 10

	// DefaultCookiePrefix is Better Auth's advanced.cookiePrefix default.
	DefaultCookiePrefix = "better-auth"
	// DefaultAPIKeyHeader is the api-key plugin's default header.
	DefaultAPIKeyHeader = "x-api-key"
	// DefaultPlatformRole is the admin plugin's defaultRole default.
	DefaultPlatformRole = "user"
)

// DefaultAlgorithms is jwt.algorithms when the key is absent: Better Auth's
// jwt plugin signs with Ed25519 by default. It is a function so that no
// caller can change the default for everyone.
func DefaultAlgorithms() []string { return []string{"EdDSA"} }

// Policy is a validated policies.yaml. Parse and Load are the only ways to
// get one; it is never modified afterwards, so one value may be shared by
// any number of goroutines and swapped whole on reload. Its exported fields
// and the slices they hold must be treated as read-only.
type Policy struct {
	// Version is the first 16 hex digits of the SHA-256 of the file bytes
	// (and of the app_roles file's, when there is one). It identifies which
	// policy made a decision (logs, metrics, cache keys).
	Version string
	// JWT says which tokens are accepted; JWT.Enabled is false when the
	// file has no jwt section (no JWT is then accepted).
	JWT JWT
	// Session says whether and how Better Auth session credentials (the
	// session cookie, the bearer plugin's session token) are accepted.
	Session Session
	// APIKeys says whether and how Better Auth API keys are accepted.
	APIKeys APIKeys
	// OrgSources lists where the organization of a request is read from, in
	// order; the first source present in the request wins. Empty when the
	// file has no organization section.
	OrgSources []Source
	// TeamSources lists where the team of a request is read from, likewise.
	TeamSources []Source
	// Admin holds the admin plugin's settings (platform roles).
	Admin Admin
	// Schema says how Better Auth's tables and columns are named.
	Schema Schema
	// AppRoles is the app_roles file as written in the policy (relative to
	// the policy file's directory), or "" when there is none.
	AppRoles string
	// Routes are the routes in file order.
	Routes []*Route
	// Default is what happens to a request no route matches. Always "deny".
	Default string
	// Warnings are findings that do not make the policy invalid but are
	// probably mistakes, such as a route that path matching can never
	// select. Same format as problems; callers should log them.
	Warnings []Problem

	roleNames     []string            // sorted
	rolePerms     map[string][]string // organization role -> literal permissions, sorted
	platformNames []string            // sorted
	platformPerms map[string][]string // admin-plugin role -> literal permissions, sorted
	byName        map[string]*Route
	root          *node // route trie
}

// JWT is the jwt section: how to verify a JWT bearer token.
type JWT struct {
	// Enabled is true when the file has a jwt section.
	Enabled bool
	// Issuer must equal the token's iss claim (Better Auth: the baseURL
	// origin).
	Issuer string
	// Audiences: the token's aud must contain at least one of them.
	Audiences []string
	// JWKSURL is where the signing keys are fetched (Better Auth:
	// <baseURL>/api/auth/jwks). http or https.
	JWKSURL string
	// Algorithms are the accepted alg header values, a subset of EdDSA,
	// ES256, ES384, ES512, RS256 and PS256.
	Algorithms []string
	// Leeway is the allowed clock skew for exp, nbf and iat, 0 to 5m.
	Leeway time.Duration
	// MaxTokenBytes is the largest accepted token, checked before parsing.
	MaxTokenBytes int
	// SessionClaim, when set, names the claim holding the Better Auth
	// session id (e.g. "sid", added with the jwt plugin's definePayload):
	// a token must carry it and that session must still exist and be
	// unexpired, so a JWT dies with its session.
	SessionClaim string
}

// SourceKind says where an organization or team reference is read from.
type SourceKind int

// The kinds of source. The zero value is no kind.
const (
	// FromPath reads a parameter captured by the matched route's path
	// template ({name}).
	FromPath SourceKind = iota + 1
	// FromHeader reads a request header (name in lower case).
	FromHeader
	// FromClaim reads a string claim of the verified JWT.
	FromClaim
	// FromSession reads a field of the caller's Better Auth session
	// (activeOrganizationId, activeTeamId).
	FromSession
	// FromAPIKey is the organization of an organization's API key
	// (its referenceId). It is not written in policies: an organization's
	// key names its organization when the request names none.
	FromAPIKey
)

// String returns "path", "header", "claim" or "session": the prefix used
// in the file.
func (k SourceKind) String() string {
	switch k {
	case FromPath:
		return "path"
	case FromHeader:
		return "header"
	case FromClaim:
		return "claim"
	case FromSession:
		return "session"
	case FromAPIKey:
		return "api_key"
	}
	return fmt.Sprintf("SourceKind(%d)", int(k))
}

// The session fields a session: source may name.
const (
	SessionActiveOrganization = "activeOrganizationId"
	SessionActiveTeam         = "activeTeamId"
)

// Source is one entry of organization.from or team.from.
type Source struct {
	Kind SourceKind
	// Name is the path parameter, lower-case header, claim or session
	// field name.
	Name string
}

// String returns the source as written in the file, e.g. "path:org", and
// "" for the zero Source (no organization was needed or found).
func (s Source) String() string {
	if s.Kind == 0 {
		return ""
	}
	return s.Kind.String() + ":" + s.Name
}

// Credential is a set of credential kinds.
type Credential uint8

// The credential kinds.
const (
	// CredJWT is a JWT of Better Auth's jwt plugin in Authorization: Bearer.
	CredJWT Credential = 1 << iota
	// CredSession is a Better Auth session: the session cookie, or the
	// bearer plugin's session token in Authorization: Bearer.
	CredSession
	// CredAPIKey is an API key of Better Auth's api-key plugin.
	CredAPIKey
)

var credentialNames = []struct {
	c    Credential
	name string
}{{CredJWT, "jwt"}, {CredSession, "session"}, {CredAPIKey, "api_key"}}

// String returns the kinds as written in the file ("jwt", "session",
// "api_key"), comma-joined.
func (c Credential) String() string {
	switch c {
	case 0:
		return ""
	case CredJWT:
		return "jwt"
	case CredSession:
		return "session"
	case CredAPIKey:
		return "api_key"
	}
	var parts []string
	for _, k := range credentialNames {
		if c&k.c != 0 {
			parts = append(parts, k.name)
		}
	}
	return strings.Join(parts, ",")
}

// Enabled returns the credential kinds the policy accepts.
func (p *Policy) Enabled() Credential {
	var c Credential
	if p.JWT.Enabled {
		c |= CredJWT
	}
	if p.Session.Enabled {
		c |= CredSession
	}
	if p.APIKeys.Enabled {
		c |= CredAPIKey
	}
	return c
}

// Route is one entry of routes. Exactly one of Public, Authenticated or the
// requirements (Require, RequireAny, RequirePlatform, PlatformRoles, Team)
// is set.
type Route struct {
	// Name is unique in the policy; Envoy can select a route by name with
	// the context_extensions key "route".
	Name string
	// Methods are upper case; empty means any method.
	Methods []string
	// Path is the path template as written.
	Path string
	// Public routes are allowed without a credential; a credential, if
	// sent, is ignored.
	Public bool
	// Authenticated routes need a valid credential and nothing else
	// (besides Conditions, DenyImpersonation and Credentials).
	Authenticated bool
	// Require lists organization permissions ("resource:action") that ONE
	// of the caller's roles in the request's organization must all grant
	// (Better Auth's hasPermission).
	Require []string
	// RequireAny lists organization permissions of which one of the
	// caller's roles must grant at least one (in addition to Require, if
	// both are set).
	RequireAny []string
	// RequirePlatform lists admin-plugin permissions ("user:ban") that ONE
	// of the caller's platform roles (user.role) must all grant, as the
	// admin plugin's hasPermission does; admin.admin_user_ids pass.
	RequirePlatform []string
	// PlatformRoles: the caller must hold one of these platform roles.
	PlatformRoles []string
	// Team: the caller must be a member of the request's team, which must
	// belong to the request's organization.
	Team bool
	// Conditions are requirements on the caller's user row.
	Conditions Conditions
	// DenyImpersonation refuses sessions made by the admin plugin's
	// impersonation.
	DenyImpersonation bool
	// Credentials restricts the accepted credential kinds; 0 accepts every
	// kind the policy enables.
	Credentials Credential
	// Enforce is false for a route in shadow mode: the decision is computed
	// and logged, but the request is allowed. Always true for public routes.
	Enforce bool
	// Line is the line of the route in the policy file, for logs.
	Line int

	column  int
	segs    []segment
	params  []string // name of each {name} / "*" segment in order; "" for "*"
	methods uint16   // bit set of Methods; 0 = any
}

// Conditions are requirements on the caller's user row.
type Conditions struct {
	// EmailVerified requires user.emailVerified.
	EmailVerified bool
	// NotAnonymous refuses the anonymous plugin's users (user.isAnonymous).
	NotAnonymous bool
	// TwoFactor requires the two-factor plugin's user.twoFactorEnabled.
	TwoFactor bool
}

// Any reports whether any condition is set.
func (c Conditions) Any() bool { return c.EmailVerified || c.NotAnonymous || c.TwoFactor }

// NeedsOrganization reports whether the route checks something in one
// organization: organization permissions or team membership.
func (r *Route) NeedsOrganization() bool {
	return len(r.Require) > 0 || len(r.RequireAny) > 0 || r.Team
}

// NeedsPlatform reports whether the route checks platform roles.
func (r *Route) NeedsPlatform() bool {
	return len(r.RequirePlatform) > 0 || len(r.PlatformRoles) > 0
}

// NeedsUser reports whether the route needs facts about the caller's user
// row beyond its existence and standing.
func (r *Route) NeedsUser() bool {
	return r.NeedsPlatform() || r.Conditions.Any()
}

// Params returns the names of the template's {name} parameters in order
// ("" for each "*"). The slice is shared: do not modify it.
func (r *Route) Params() []string { return r.params }

// Load reads and parses the policy file at path, and the app_roles file it
// names, if any. Besides the errors of Parse, it returns a wrapped os error
// when the policy file cannot be read.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	return ParseWith(path, data, os.ReadFile)
}

// LoadOptions change how Load reads a policy.
type LoadOptions struct {
	// AppRoles, when set, is an app roles file (the shape print-roles.ts
	// prints) that the policy must agree with, as if the policy's
	// app_roles named it: validate --app-roles uses it to report drift.
	// Like path, and unlike app_roles in the file, a relative AppRoles is
	// relative to the working directory.
	AppRoles string
}

// LoadWith is Load with options.
func LoadWith(path string, opts LoadOptions) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	if opts.AppRoles != "" && !filepath.IsAbs(opts.AppRoles) {
		// The checker resolves relative names against the policy's
		// directory; a command-line path means the working directory.
		if opts.AppRoles, err = filepath.Abs(opts.AppRoles); err != nil {
			return nil, fmt.Errorf("app roles file: %w", err)
		}
	}
	sum := sha256.New()
	sum.Write(data)
	p := &Policy{Default: "deny"}
	c := &checker{file: path, readFile: os.ReadFile, dir: filepath.Dir(path), version: sum, appRolesFile: opts.AppRoles}
	return c.finish(data, p)
}

// Parse parses and validates a policy file that names no other file
// (app_roles is refused). filename is used in problem positions only. On
// any problem it returns a nil Policy and an *Error holding every problem
// found.
func Parse(filename string, data []byte) (*Policy, error) {
	return ParseWith(filename, data, nil)
}

// ParseWith is Parse with a reader for the app_roles file, which is named
// relative to filename's directory; nil refuses app_roles.
func ParseWith(filename string, data []byte, readFile func(string) ([]byte, error)) (*Policy, error) {
	sum := sha256.New()
	sum.Write(data)
	p := &Policy{Default: "deny"}
	c := &checker{file: filename, readFile: readFile, dir: filepath.Dir(filename), version: sum}
	return c.finish(data, p)
}

// finish parses data into p and seals it with its version.
func (c *checker) finish(data []byte, p *Policy) (*Policy, error) {
	c.parse(data, p)
	if len(c.problems) > 0 {
		return nil, &Error{Problems: sortProblems(c.problems)}
	}
	p.Version = hex.EncodeToString(c.version.Sum(nil))[:16]
	p.Warnings = sortProblems(p.Warnings)
	return p, nil
}

// RolePermissions returns an organization role's permissions (inheritance
// and wildcards expanded: literal "resource:action" pairs), sorted. ok is
// false for a role the policy does not define. The slice is shared: do not
// modify it.
func (p *Policy) RolePermissions(role string) (perms []string, ok bool) {
	perms, ok = p.rolePerms[role]
	return perms, ok
}

// RoleNames returns the names of the organization roles, sorted.
func (p *Policy) RoleNames() []string { return slices.Clone(p.roleNames) }

// PlatformRolePermissions returns an admin-plugin role's permissions.
func (p *Policy) PlatformRolePermissions(role string) (perms []string, ok bool) {
	perms, ok = p.platformPerms[role]
	return perms, ok
}

// PlatformRoleNames returns the names of the admin-plugin roles, sorted.
func (p *Policy) PlatformRoleNames() []string { return slices.Clone(p.platformNames) }

// PlatformDefaultRole is the admin plugin's defaultRole.
func (p *Policy) PlatformDefaultRole() string { return p.Admin.DefaultRole }

// IsAdminUser reports whether id is one of admin.admin_user_ids, which pass
// every platform permission check (the admin plugin's adminUserIds).
func (p *Policy) IsAdminUser(id string) bool { return slices.Contains(p.Admin.UserIDs, id) }

// Route returns the route with the given name.
func (p *Policy) Route(name string) (*Route, bool) {
	r, ok := p.byName[name]
	return r, ok
}
