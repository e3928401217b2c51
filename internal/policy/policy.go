package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"
)

// Limits and defaults of the policy file format.
const (
	// MaxFileBytes is the largest policy file Parse accepts.
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
	// Version is the first 16 hex digits of the SHA-256 of the file bytes.
	// It identifies which policy made a decision (logs, metrics, headers).
	Version string
	// JWT says which tokens are accepted.
	JWT JWT
	// OrgSources lists where the organization of a request is read from, in
	// order; the first source present in the request wins. Empty when the
	// file has no organization section.
	OrgSources []OrgSource
	// Routes are the routes in file order.
	Routes []*Route
	// Default is what happens to a request no route matches. Always "deny".
	Default string
	// Warnings are findings that do not make the policy invalid but are
	// probably mistakes, such as a route that path matching can never
	// select. Same format as problems; callers should log them.
	Warnings []Problem

	roleNames []string            // sorted
	rolePerms map[string][]string // role -> own and inherited permissions, sorted
	byName    map[string]*Route
	root      *node // route trie
}

// JWT is the jwt section: how to verify the bearer token.
type JWT struct {
	// Issuer must equal the token's iss claim (Better Auth: the baseURL
	// origin).
	Issuer string
	// Audiences: the token's aud must contain at least one of them.
	Audiences []string
	// JWKSURL is where the signing keys are fetched (Better Auth:
	// <baseURL>/api/auth/jwks). http or https.
	JWKSURL string
	// Algorithms are the accepted alg header values, a subset of EdDSA,
	// ES256, ES384, RS256 and PS256.
	Algorithms []string
	// Leeway is the allowed clock skew for exp, nbf and iat, 0 to 5m.
	Leeway time.Duration
	// MaxTokenBytes is the largest accepted token, checked before parsing.
	MaxTokenBytes int
}

// OrgSourceKind says where an organization reference is read from.
type OrgSourceKind int

// The kinds of organization source. The zero value is no kind.
const (
	// OrgFromPath reads a parameter captured by the matched route's path
	// template ({name}).
	OrgFromPath OrgSourceKind = iota + 1
	// OrgFromHeader reads a request header (name in lower case).
	OrgFromHeader
	// OrgFromClaim reads a claim of the verified JWT.
	OrgFromClaim
)

// String returns "path", "header" or "claim" — the prefix used in the file.
func (k OrgSourceKind) String() string {
	switch k {
	case OrgFromPath:
		return "path"
	case OrgFromHeader:
		return "header"
	case OrgFromClaim:
		return "claim"
	}
	return fmt.Sprintf("OrgSourceKind(%d)", int(k))
}

// OrgSource is one entry of organization.from.
type OrgSource struct {
	Kind OrgSourceKind
	// Name is the path parameter, lower-case header or claim name.
	Name string
}

// String returns the source as written in the file, e.g. "path:org", and
// "" for the zero OrgSource (no organization was needed or found).
func (s OrgSource) String() string {
	if s.Kind == 0 {
		return ""
	}
	return s.Kind.String() + ":" + s.Name
}

// Route is one entry of routes. Exactly one of Public, Authenticated or
// (Require and/or RequireAny) is set.
type Route struct {
	// Name is unique in the policy; Envoy can select a route by name with
	// the context_extensions key "route".
	Name string
	// Methods are upper case; empty means any method.
	Methods []string
	// Path is the path template as written.
	Path string
	// Public routes are allowed without a token; a token, if sent, is
	// ignored.
	Public bool
	// Authenticated routes need a valid token and nothing else.
	Authenticated bool
	// Require lists permissions ("resource:action") the caller's roles in
	// the request's organization must all grant.
	Require []string
	// RequireAny lists permissions of which the caller's roles must grant at
	// least one (in addition to all of Require, if both are set).
	RequireAny []string
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

// NeedsOrganization reports whether the route requires permissions, which
// are always checked against the caller's roles in one organization.
func (r *Route) NeedsOrganization() bool {
	return len(r.Require) > 0 || len(r.RequireAny) > 0
}

// Allows reports whether the permissions in granted (as RolePermissions
// returns them, "resource:*" wildcards included) satisfy the route: every
// permission of Require, and at least one of RequireAny when it is not
// empty. It checks permissions only: for a route with no requirements it
// returns true, and authentication is the caller's business.
func (r *Route) Allows(granted []string) bool {
	for _, need := range r.Require {
		if !Grants(granted, need) {
			return false
		}
	}
	if len(r.RequireAny) == 0 {
		return true
	}
	for _, need := range r.RequireAny {
		if Grants(granted, need) {
			return true
		}
	}
	return false
}

// Grants reports whether granted contains perm ("resource:action") or the
// wildcard "resource:*" for its resource. It does not allocate.
func Grants(granted []string, perm string) bool {
	res, _, ok := strings.Cut(perm, ":")
	if !ok {
		return false
	}
	for _, g := range granted {
		if g == perm {
			return true
		}
		if len(g) == len(res)+2 && strings.HasSuffix(g, ":*") && strings.HasPrefix(g, res) {
			return true
		}
	}
	return false
}

// Load reads and parses the policy file at path. Besides the errors of
// Parse, it returns a wrapped os error when the file cannot be read.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and validates a policy file. filename is used in problem
// positions only. On any problem it returns a nil Policy and an *Error
// holding every problem found.
func Parse(filename string, data []byte) (*Policy, error) {
	sum := sha256.Sum256(data)
	p := &Policy{Version: hex.EncodeToString(sum[:])[:16], Default: "deny"}
	c := &checker{file: filename}
	c.parse(data, p)
	if len(c.problems) > 0 {
		return nil, &Error{Problems: sortProblems(c.problems)}
	}
	p.Warnings = sortProblems(p.Warnings)
	return p, nil
}

// RolePermissions returns the role's own and inherited permissions,
// de-duplicated and sorted, as computed at load. ok is false for a role the
// policy does not define. The slice is shared: do not modify it.
func (p *Policy) RolePermissions(role string) (perms []string, ok bool) {
	perms, ok = p.rolePerms[role]
	return perms, ok
}

// RoleNames returns the names of the roles the policy defines, sorted.
func (p *Policy) RoleNames() []string {
	return append([]string(nil), p.roleNames...)
}

// Route returns the route with the given name.
func (p *Policy) Route(name string) (*Route, bool) {
	r, ok := p.byName[name]
	return r, ok
}
