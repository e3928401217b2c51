// Package policy owns policies.yaml: it loads and validates the file and
// matches requests to its routes. It is pure domain code (standard library
// and a YAML parser only); deciding, caching and transport live elsewhere.
//
// # File format
//
// Every key is listed here; any other key is an error. Strings must be YAML
// strings (quote values such as "404" or "yes"), booleans must be true or
// false, and YAML aliases (*x) are refused.
//
//	jwt:                                    # required: which bearer tokens are valid
//	  issuer: http://127.0.0.1:3000         # required; must equal the token's iss
//	  audiences: [http://127.0.0.1:3000]    # required, >= 1; the token's aud must contain one
//	  jwks_url: http://127.0.0.1:3000/api/auth/jwks   # required; absolute http(s) URL, no credentials
//	  algorithms: [EdDSA]                   # optional, default [EdDSA]; any of EdDSA ES256 ES384 RS256 PS256
//	  leeway: 30s                           # optional Go duration, default 30s, 0s..5m
//	  max_token_bytes: 8192                 # optional, default 8192, 512..65536
//	organization:                           # required when any route has require/require_any
//	  from: [path:org, header:x-organization-id, claim:activeOrganizationId]
//	roles:                                  # optional; Better Auth access-control statements
//	  owner:  { inherits: [admin], permissions: ["organization:delete"] }
//	  admin:  { inherits: [member], permissions: ["leave:approve", "member:*"] }
//	  member: { permissions: ["leave:request", "leave:read"] }
//	routes:                                 # required, >= 1
//	  - { name: health, methods: [GET], path: /healthz, public: true }
//	  - { name: me, path: /api/me, authenticated: true }
//	  - { name: approve-leave, methods: [POST], path: "/api/orgs/{org}/leave/{id}/approve", require: [leave:approve] }
//	  - { name: read-leave, methods: [GET], path: "/api/orgs/{org}/leave/**", require_any: [leave:read, leave:approve] }
//	  - { name: shadowed, path: /api/x, require: [leave:read], enforce: false }
//	default: deny                           # optional; only "deny" is accepted
//
// jwt.algorithms accepts only public-key algorithms: the keys come from a
// public JWKS, so an HMAC ("HS256") key would be public too, and "none" is
// no signature. Names are case-sensitive, as in JOSE.
//
// organization.from lists where the organization of a request is read, in
// order; the first source present in the request wins. "path:<param>" is a
// {param} captured by the matched route's template, "header:<name>" a
// request header (lower case, as Envoy passes them), "claim:<name>" a claim
// of the verified token. A route with requirements must be able to find an
// organization: if every source is a path parameter, its template must
// capture one of them.
//
// roles maps a role name ([A-Za-z0-9_.-]+, case-sensitive, as stored in
// Better Auth's members.role) to an optional list of roles it inherits and
// an optional list of permissions. A permission is "resource:action", both
// halves matching [A-Za-z0-9_.-]+; in a role, the action may be "*"
// ("member:*" grants member:anything). A bare "*" is not supported.
// Inheriting an unknown role or inheriting in a cycle is an error.
//
// routes: each route has
//   - name: required, unique, [A-Za-z0-9_.-]+. Envoy may select a route by
//     name with the context_extensions key "route"; path matching is then
//     skipped.
//   - methods: optional list; case-insensitive in the file, stored upper
//     case; one of GET HEAD POST PUT PATCH DELETE OPTIONS CONNECT TRACE.
//     Absent means any method. HEAD is not implied by GET.
//   - path: required template (see below).
//   - exactly one kind: public: true (no token needed), authenticated: true
//     (a valid token, nothing else), or require and/or require_any.
//     require lists permissions that must all be granted; require_any lists
//     permissions of which at least one must be granted; with both, both
//     conditions hold. Wildcards are not allowed here, and every listed
//     permission must be granted by at least one role of the file (else it
//     is a typo that would deny everyone).
//   - enforce: optional, default true. false puts the route in shadow mode:
//     the decision is computed and logged, but the request is allowed. Not
//     allowed on public routes, where it would do nothing.
//
// default is what happens to a request that no route matches. Only "deny"
// is accepted and it is also the default: a policy must never fail open, so
// a request that no route describes is refused.
//
// # Path templates
//
// A template starts with "/" and is split on "/" into segments; "/" alone
// is the root. No segment may be empty (no "//", no trailing "/"). A segment
// is
//   - a literal, matched exactly and case-sensitively, byte for byte (it
//     must be a segment CheckPath accepts, so no ".", "..", ";" or encoded
//     "/");
//   - {name} ([A-Za-z_][A-Za-z0-9_]*): one non-empty segment, captured;
//   - *: one non-empty segment, not captured;
//   - **: only as the last segment: zero or more remaining segments,
//     including an empty last segment (a trailing slash). So
//     "/api/orgs/{org}/leave/**" matches "/api/orgs/o1/leave",
//     "/api/orgs/o1/leave/" and "/api/orgs/o1/leave/a/b".
//
// A template has at most MaxParams {name} and * segments together.
// Paths are not decoded or normalised before matching: "/api/me/" does not
// match "/api/me", and "/API/me" does not match it either. Callers run
// CheckPath first, which refuses every path whose meaning is ambiguous.
//
// # Precedence
//
// When several routes match a request, the winner is chosen so:
//  1. Only routes whose methods include the request method (or that list
//     no methods) are candidates.
//  2. Templates are compared segment by segment from the left: a literal
//     beats {name} or *, which beat **.
//  3. A template that ends where the path ends beats one whose ** matches
//     zero segments there ("/a" beats "/a/**" for the path "/a"). This is
//     the only case where templates of different lengths tie on rule 2.
//  4. A route that lists methods beats one that lists none.
//  5. The route that comes first in the file wins.
//
// Policy.Warnings names routes that can never win by these rules.
//
// Matching walks a segment trie built at load time, visits each trie node
// at most once, and does not allocate.
package policy
