package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestParseExample(t *testing.T) {
	t.Parallel()
	p, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(p.Version) != 16 || strings.Trim(p.Version, "0123456789abcdef") != "" {
		t.Errorf("Version = %q, want 16 hex digits", p.Version)
	}
	wantJWT := JWT{
		Issuer:        "http://127.0.0.1:3000",
		Audiences:     []string{"http://127.0.0.1:3000"},
		JWKSURL:       "http://127.0.0.1:3000/api/auth/jwks",
		Algorithms:    []string{"EdDSA"},
		Leeway:        30 * time.Second,
		MaxTokenBytes: 8192,
	}
	if p.JWT.Issuer != wantJWT.Issuer || !slices.Equal(p.JWT.Audiences, wantJWT.Audiences) ||
		p.JWT.JWKSURL != wantJWT.JWKSURL || !slices.Equal(p.JWT.Algorithms, wantJWT.Algorithms) ||
		p.JWT.Leeway != wantJWT.Leeway || p.JWT.MaxTokenBytes != wantJWT.MaxTokenBytes {
		t.Errorf("JWT = %+v, want %+v", p.JWT, wantJWT)
	}
	wantSrc := []Source{{FromPath, "org"}, {FromHeader, "x-organization-id"}, {FromClaim, "activeOrganizationId"}}
	if !slices.Equal(p.OrgSources, wantSrc) {
		t.Errorf("OrgSources = %v, want %v", p.OrgSources, wantSrc)
	}
	if got := p.OrgSources[0].String(); got != "path:org" {
		t.Errorf("OrgSources[0].String() = %q", got)
	}
	if p.Default != "deny" {
		t.Errorf("Default = %q", p.Default)
	}
	if len(p.Warnings) != 0 {
		t.Errorf("Warnings = %v, want none", p.Warnings)
	}

	wantRoles := map[string][]string{
		"owner":  {"leave:approve", "leave:read", "leave:request", "member:create", "member:delete", "member:update", "organization:delete"},
		"admin":  {"leave:approve", "leave:read", "leave:request", "member:create", "member:delete", "member:update"},
		"member": {"leave:read", "leave:request"},
	}
	if got := p.RoleNames(); !slices.Equal(got, []string{"admin", "member", "owner"}) {
		t.Errorf("RoleNames = %v", got)
	}
	for role, want := range wantRoles {
		got, ok := p.RolePermissions(role)
		if !ok || !slices.Equal(got, want) {
			t.Errorf("RolePermissions(%q) = %v, %v; want %v", role, got, ok, want)
		}
	}
	if _, ok := p.RolePermissions("billing"); ok {
		t.Error("RolePermissions(billing) ok = true for an undefined role")
	}

	var names []string
	for _, r := range p.Routes {
		names = append(names, r.Name)
	}
	if want := []string{"health", "me", "approve-leave", "read-leave", "shadowed"}; !slices.Equal(names, want) {
		t.Fatalf("routes = %v, want %v", names, want)
	}
	tests := []struct {
		name          string
		methods       []string
		path          string
		public, authn bool
		require, any  []string
		enforce       bool
		line          int
	}{
		{"health", []string{"GET"}, "/healthz", true, false, nil, nil, true, 19},
		{"me", nil, "/api/me", false, true, nil, nil, true, 20},
		{"approve-leave", []string{"POST"}, "/api/orgs/{org}/leave/{id}/approve", false, false, []string{"leave:approve"}, nil, true, 21},
		{"read-leave", []string{"GET"}, "/api/orgs/{org}/leave/**", false, false, nil, []string{"leave:read", "leave:approve"}, true, 22},
		{"shadowed", nil, "/api/x", false, false, []string{"leave:read"}, nil, false, 23},
	}
	for _, tt := range tests {
		r, ok := p.Route(tt.name)
		if !ok {
			t.Errorf("Route(%q) not found", tt.name)
			continue
		}
		if !slices.Equal(r.Methods, tt.methods) || r.Path != tt.path || r.Public != tt.public ||
			r.Authenticated != tt.authn || !slices.Equal(r.Require, tt.require) ||
			!slices.Equal(r.RequireAny, tt.any) || r.Enforce != tt.enforce || r.Line != tt.line {
			t.Errorf("route %q = %+v", tt.name, *r)
		}
	}
	if _, ok := p.Route("nope"); ok {
		t.Error("Route(nope) found")
	}
}

func TestParseDefaultsAndNormalisation(t *testing.T) {
	t.Parallel()
	src := `jwt:
  issuer: iss
  audiences: [a, b]
  jwks_url: https://auth.example/jwks
  leeway: 0
routes:
  - { name: r, methods: [get, Post], path: /, authenticated: true }
`
	p, err := Parse("p.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if !slices.Equal(p.JWT.Algorithms, []string{"EdDSA"}) || p.JWT.Leeway != 0 || p.JWT.MaxTokenBytes != DefaultMaxTokenBytes {
		t.Errorf("JWT = %+v", p.JWT)
	}
	if p.Default != "deny" || len(p.OrgSources) != 0 || len(p.RoleNames()) != 0 {
		t.Errorf("Default %q, OrgSources %v, roles %v", p.Default, p.OrgSources, p.RoleNames())
	}
	if got := p.Routes[0].Methods; !slices.Equal(got, []string{"GET", "POST"}) {
		t.Errorf("Methods = %v, want upper case", got)
	}
	if !p.Routes[0].Enforce {
		t.Error("Enforce defaults to false, want true")
	}
}

func TestVersionChangesWithBytes(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a, err := Parse("a", data)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse("b", append(data, "# comment\n"...))
	if err != nil {
		t.Fatal(err)
	}
	if a.Version == b.Version {
		t.Errorf("Version %q did not change when the file did", a.Version)
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load error = %v, want os.ErrNotExist", err)
	}
}

// header is a valid start of a policy: jwt (lines 1-4), organization
// (5-6) and roles (7-10). Test documents append lines from 11 on.
var header = []string{
	"jwt:",                                           // 1
	"  issuer: https://auth.example",                 // 2
	"  audiences: [https://auth.example]",            // 3
	"  jwks_url: https://auth.example/api/auth/jwks", // 4
	"organization:",                                  // 5
	"  from: [path:org]",                             // 6
	"roles:",                                         // 7
	"  owner: { inherits: [member], permissions: [\"org:delete\", \"member:invite\"] }", // 8
	"  member: { permissions: [\"leave:read\", \"leave:request\"] }",                    // 9
	"  guest: {}", // 10
}

// withRoutes returns header plus a routes section whose first entry is on
// line 12.
func withRoutes(routes ...string) string {
	return strings.Join(slices.Concat(header, []string{"routes:"}, routes), "\n") + "\n"
}

// replaceLine returns doc with 1-based line n replaced.
func replaceLine(doc string, n int, line string) string {
	lines := strings.Split(doc, "\n")
	lines[n-1] = line
	return strings.Join(lines, "\n")
}

var okRoute = "  - { name: ok, path: /ok, authenticated: true }"

func TestHeaderIsValid(t *testing.T) {
	t.Parallel()
	if _, err := Parse("p.yaml", []byte(withRoutes(okRoute))); err != nil {
		t.Fatalf("base document invalid: %v", err)
	}
}

func TestParseProblems(t *testing.T) {
	t.Parallel()
	base := withRoutes(okRoute) // route on line 12
	tests := []struct {
		name string
		doc  string
		line int
		msg  string
	}{
		// YAML itself
		{"syntax error unclosed flow mapping", base + "  - { name: x\n", 13, "YAML syntax error: did not find expected ',' or '}'"},
		{"syntax error unclosed flow list", replaceLine(base, 3, "  audiences: [a"), 3, "YAML syntax error: did not find expected ',' or ']'"},
		{"syntax error missing colon", base + "default deny\nx: 1\n", 13, "YAML syntax error: could not find expected ':'"},
		{"syntax error block", base + "- x\n", 13, "YAML syntax error: did not find expected key"},
		{"empty file", "", 1, "policy file is empty"},
		{"not a mapping", "- a\n", 1, "policy must be a mapping, got a list"},
		{"two documents", base + "---\nroutes: []\n", 13, "exactly one YAML document"},
		{"alias", strings.Replace(base, "  issuer: https://auth.example", "  issuer: &i https://auth.example", 1) + "default: *i\n", 13, "aliases"},
		{"duplicate key", replaceLine(base, 12, "  - { name: ok, path: /ok, authenticated: true, authenticated: false }"), 12, "duplicate key \"authenticated\""},
		{"too large", strings.Repeat("#", MaxFileBytes+1), 1, "larger than"},
		{"the largest size is read", strings.Repeat("#", MaxFileBytes), 1, "policy file is empty"},

		// unknown keys
		{"unknown top-level key", base + "defaults: deny\n", 13, "unknown key \"defaults\""},
		{"unknown jwt key", replaceLine(base, 2, "  issuer: x\n  isuser: y"), 3, "unknown key \"isuser\""},
		{"unknown route key", replaceLine(base, 12, "  - { name: ok, path: /ok, authenticated: true, methdos: [GET] }"), 12, "unknown key \"methdos\""},
		{"unknown role key", replaceLine(base, 10, "  guest: { permission: [a:b] }"), 10, "unknown key \"permission\""},
		{"unknown organization key", replaceLine(base, 6, "  from: [path:org]\n  form: [x]"), 7, "unknown key \"form\""},

		// required keys and types
		{"no credential section", strings.Join(slices.Concat(header[4:], []string{"routes:", okRoute}), "\n"), 1, "needs a credential, but the policy accepts none"},
		{"missing routes", strings.Join(header, "\n"), 1, "missing required key \"routes\""},
		{"missing issuer", strings.Replace(base, "  issuer: https://auth.example\n", "", 1), 2, "missing required key \"issuer\""},
		{"missing audiences", strings.Replace(base, "  audiences: [https://auth.example]\n", "", 1), 2, "missing required key \"audiences\""},
		{"missing jwks_url", strings.Replace(base, "  jwks_url: https://auth.example/api/auth/jwks\n", "", 1), 2, "missing required key \"jwks_url\""},
		{"missing route name", replaceLine(base, 12, "  - { path: /ok, authenticated: true }"), 12, "missing required key \"name\""},
		{"missing route path", replaceLine(base, 12, "  - { name: ok, authenticated: true }"), 12, "missing required key \"path\""},
		{"every organization source invalid", replaceLine(withRoutes("  - { name: r, path: \"/o/{org}\", require: [leave:read] }"), 6, "  from: [bogus:x]"), 12, "the policy has no valid organization.from"},
		{"missing organization.from", replaceLine(base, 6, "  {}"), 6, "missing required key \"from\""},
		{"issuer not a string", replaceLine(base, 2, "  issuer: 123"), 2, "jwt.issuer must be a string, got a number"},
		{"issuer empty", replaceLine(base, 2, "  issuer: \"\""), 2, "jwt.issuer must not be empty"},
		{"audiences not a list", replaceLine(base, 3, "  audiences: https://auth.example"), 3, "jwt.audiences must be a list"},
		{"audiences empty", replaceLine(base, 3, "  audiences: []"), 3, "jwt.audiences must not be an empty list"},
		{"audience duplicate", replaceLine(base, 3, "  audiences: [a, a]"), 3, "\"a\" is listed twice"},
		{"jwt null", replaceLine(replaceLine(replaceLine(replaceLine(base, 2, ""), 3, ""), 4, ""), 1, "jwt:"), 1, "jwt must be a mapping, got nothing (null)"},
		{"public not a bool", replaceLine(base, 12, "  - { name: ok, path: /ok, public: yes }"), 12, "public must be true or false, got a string"},
		{"routes not a list", replaceLine(base, 12, "  ok: 1"), 12, "routes must be a list"},
		{"routes empty", strings.Replace(base, "routes:\n"+okRoute+"\n", "routes: []\n", 1), 11, "routes must not be an empty list"},
		{"roles not a mapping", replaceLine(replaceLine(replaceLine(replaceLine(base, 8, ""), 9, ""), 10, ""), 7, "roles: [owner]"), 7, "roles must be a mapping"},

		// jwt values
		{"jwks_url scheme", replaceLine(base, 4, "  jwks_url: ftp://auth.example/jwks"), 4, "must be an http:// or https:// URL"},
		{"jwks_url relative", replaceLine(base, 4, "  jwks_url: /api/auth/jwks"), 4, "must be an http:// or https:// URL"},
		{"jwks_url no host", replaceLine(base, 4, "  jwks_url: \"https:///jwks\""), 4, "must name a host"},
		{"jwks_url credentials", replaceLine(base, 4, "  jwks_url: https://u:p@auth.example/jwks"), 4, "must not contain credentials"},
		{"algorithm none", replaceLine(base, 4, "  jwks_url: https://a.example/jwks\n  algorithms: [EdDSA, none]"), 5, "\"none\" (unsigned tokens) is never accepted"},
		{"algorithm HS256", replaceLine(base, 4, "  jwks_url: https://a.example/jwks\n  algorithms: [EdDSA, HS256]"), 5, "symmetric"},
		{"algorithm wrong case", replaceLine(base, 4, "  jwks_url: https://a.example/jwks\n  algorithms: [eddsa]"), 5, "unsupported algorithm \"eddsa\""},
		{"algorithms empty", replaceLine(base, 4, "  jwks_url: https://a.example/jwks\n  algorithms: []"), 5, "jwt.algorithms must not be an empty list"},
		{"leeway without unit", replaceLine(base, 4, "  jwks_url: https://a.example/jwks\n  leeway: 10"), 5, "jwt.leeway must be a duration"},
		{"leeway garbage", replaceLine(base, 4, "  jwks_url: https://a.example/jwks\n  leeway: soon"), 5, "jwt.leeway must be a duration"},
		{"leeway too big", replaceLine(base, 4, "  jwks_url: https://a.example/jwks\n  leeway: 1h"), 5, "between 0s and 5m0s"},
		{"leeway negative", replaceLine(base, 4, "  jwks_url: https://a.example/jwks\n  leeway: -1s"), 5, "between 0s and 5m0s"},
		{"leeway list", replaceLine(base, 4, "  jwks_url: https://a.example/jwks\n  leeway: [1s]"), 5, "jwt.leeway must be a duration such as 30s, got a list"},
		{"max_token_bytes small", replaceLine(base, 4, "  jwks_url: https://a.example/jwks\n  max_token_bytes: 10"), 5, "between 512 and 65536"},
		{"max_token_bytes string", replaceLine(base, 4, "  jwks_url: https://a.example/jwks\n  max_token_bytes: 8k"), 5, "must be a whole number, got a string"},

		// organization sources
		{"org source kind", replaceLine(base, 6, "  from: [query:org]"), 6, "unknown source kind \"query\""},
		{"org source no colon", replaceLine(base, 6, "  from: [org]"), 6, "must be path:<param>"},
		{"org header upper case", replaceLine(base, 6, "  from: [path:org, header:X-Org]"), 6, "must be lower case"},
		{"org header bad", replaceLine(base, 6, "  from: [path:org, \"header:x org\"]"), 6, "not a valid header name"},
		{"org path bad", replaceLine(base, 6, "  from: [path:1org]"), 6, "path parameter name"},
		{"org claim empty", replaceLine(base, 6, "  from: [path:org, \"claim:\"]"), 6, "claim name"},
		{"org source duplicate", replaceLine(base, 6, "  from: [path:org, path:org]"), 6, "listed twice"},

		// roles
		{"duplicate role", replaceLine(base, 10, "  member: {}"), 10, "duplicate key \"member\" (first at line 9)"},
		{"unknown inherited role", replaceLine(base, 10, "  guest: { inherits: [visitor] }"), 10, "role \"guest\" inherits unknown role \"visitor\""},
		{"cycle", replaceLine(replaceLine(base, 9, "  member: { inherits: [guest], permissions: [\"leave:read\"] }"), 10, "  guest: { inherits: [owner] }"), 10, "cyclic role inheritance: owner -> member -> guest -> owner"},
		{"self cycle", replaceLine(base, 10, "  guest: { inherits: [guest] }"), 10, "cyclic role inheritance: guest -> guest"},
		{"bad role name", replaceLine(base, 10, "  \"guest,admin\": {}"), 10, "role name \"guest,admin\""},
		{"role permission without action", replaceLine(base, 10, "  guest: { permissions: [leave] }"), 10, "must be resource:action"},
		{"role permission two colons", replaceLine(base, 10, "  guest: { permissions: [\"a:b:c\"] }"), 10, "must be resource:action"},
		{"role permission bare star", replaceLine(base, 10, "  guest: { permissions: [\"*\"] }"), 10, "must be resource:action"},
		{"role permission star resource", replaceLine(base, 10, "  guest: { permissions: [\"*:read\"] }"), 10, "the resource must match"},
		{"role permission bad action", replaceLine(base, 10, "  guest: { permissions: [\"leave:re ad\"] }"), 10, "the action must match"},
		{"role not a mapping", replaceLine(base, 10, "  guest: [leave:read]"), 10, "role \"guest\" must be a mapping"},

		// routes
		{"duplicate route name", withRoutes(okRoute, okRoute), 13, "duplicate route name \"ok\" (first at line 12)"},
		{"bad route name", replaceLine(base, 12, "  - { name: \"o k\", path: /ok, authenticated: true }"), 12, "route name \"o k\" must match"},
		{"unknown method", replaceLine(base, 12, "  - { name: ok, methods: [GTE], path: /ok, authenticated: true }"), 12, "unknown method \"GTE\""},
		{"duplicate method", replaceLine(base, 12, "  - { name: ok, methods: [GET, get], path: /ok, authenticated: true }"), 12, "method \"GET\" is listed twice"},
		{"empty methods", replaceLine(base, 12, "  - { name: ok, methods: [], path: /ok, authenticated: true }"), 12, "methods must not be an empty list"},
		{"no kind", replaceLine(base, 12, "  - { name: ok, path: /ok }"), 12, "must set exactly one of public: true, authenticated: true, or requirements"},
		{"only false kinds", replaceLine(base, 12, "  - { name: ok, path: /ok, public: false }"), 12, "must set exactly one of"},
		{"two kinds", replaceLine(base, 12, "  - { name: ok, path: /ok, public: true, authenticated: true }"), 12, "sets more than one of"},
		{"authenticated and require", replaceLine(base, 12, "  - { name: ok, path: \"/o/{org}\", authenticated: true, require: [leave:read] }"), 12, "sets more than one of"},
		{"public with enforce false", replaceLine(base, 12, "  - { name: ok, path: /ok, public: true, enforce: false }"), 12, "enforce has no effect on a public route"},
		{"require empty", replaceLine(base, 12, "  - { name: ok, path: \"/o/{org}\", require: [] }"), 12, "require must not be an empty list"},
		{"require wildcard", replaceLine(base, 12, "  - { name: ok, path: \"/o/{org}\", require: [\"member:*\"] }"), 12, "wildcards are only allowed in role permissions"},
		{"require bad permission", replaceLine(base, 12, "  - { name: ok, path: \"/o/{org}\", require: [leave] }"), 12, "must be resource:action"},
		{"require ungranted", replaceLine(base, 12, "  - { name: ok, path: \"/o/{org}\", require: [leave:approve] }"), 12, "no organization role grants \"leave:approve\""},
		{"require_any ungranted", replaceLine(base, 12, "  - { name: ok, path: \"/o/{org}\", require_any: [leave:read, laeve:read] }"), 12, "no organization role grants \"laeve:read\""},
		{"require without organization", strings.Replace(replaceLine(base, 12, "  - { name: ok, path: \"/o/{org}\", require: [leave:read] }"), "organization:\n  from: [path:org]\n", "", 1), 10, "has no valid organization.from"},
		{"org path param not captured", replaceLine(base, 12, "  - { name: ok, path: \"/o/{id}\", require: [leave:read] }"), 12, "captures none of the organization path parameters (path:org)"},

		// templates
		{"template relative", replaceLine(base, 12, "  - { name: ok, path: ok, authenticated: true }"), 12, "must start with \"/\""},
		{"template empty segment", replaceLine(base, 12, "  - { name: ok, path: /a//b, authenticated: true }"), 12, "empty segment"},
		{"template trailing slash", replaceLine(base, 12, "  - { name: ok, path: /a/, authenticated: true }"), 12, "empty segment"},
		{"template ** not last", replaceLine(base, 12, "  - { name: ok, path: /a/**/b, authenticated: true }"), 12, "\"**\" may only be the last segment"},
		{"template unclosed param", replaceLine(base, 12, "  - { name: ok, path: \"/a/{org\", authenticated: true }"), 12, "must be a whole segment"},
		{"template partial wildcard", replaceLine(base, 12, "  - { name: ok, path: \"/a/b*\", authenticated: true }"), 12, "must be a whole segment"},
		{"template bad param name", replaceLine(base, 12, "  - { name: ok, path: \"/a/{1x}\", authenticated: true }"), 12, "bad parameter \"{1x}\""},
		{"template repeated param", replaceLine(base, 12, "  - { name: ok, path: \"/a/{x}/{x}\", authenticated: true }"), 12, "parameter \"x\" appears twice"},
		{"template dot segment", replaceLine(base, 12, "  - { name: ok, path: /a/../b, authenticated: true }"), 12, "bad segment \"..\": dot segment"},
		{"template encoded slash", replaceLine(base, 12, "  - { name: ok, path: /a%2Fb, authenticated: true }"), 12, "encoded slash"},
		{"template semicolon", replaceLine(base, 12, "  - { name: ok, path: \"/a;b\", authenticated: true }"), 12, "semicolon"},
		{"template too many params", replaceLine(base, 12, "  - { name: ok, path: \"/*/*/*/*/*/*/*/*/*\", authenticated: true }"), 12, "more than 8"},

		{"default allow", base + "default: allow\n", 13, "default must be \"deny\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := Parse("p.yaml", []byte(tt.doc))
			if err == nil {
				t.Fatalf("Parse succeeded, want a problem at line %d containing %q; policy %+v", tt.line, tt.msg, p)
			}
			if p != nil {
				t.Error("Parse returned a policy together with an error")
			}
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("error %T %v is not *Error", err, err)
			}
			for _, pr := range perr.Problems {
				if pr.Line == tt.line && strings.Contains(pr.Message, tt.msg) {
					if pr.File != "p.yaml" {
						t.Errorf("problem file = %q", pr.File)
					}
					return
				}
			}
			t.Errorf("no problem at line %d containing %q; got:\n%v", tt.line, tt.msg, err)
		})
	}
}

func TestParseReportsAllProblems(t *testing.T) {
	t.Parallel()
	src := `jwt:
  issuer: 5
  audiences: []
  jwks_url: ftp://x
  algorithms: [none]
  leeway: 1h
organization:
  from: [query:x]
roles:
  a: { inherits: [b] }
  b: { inherits: [a] }
routes:
  - { name: r1, path: "/x/{org", public: true, colour: red }
  - { name: r1, methods: [FETCH], path: /y, require: [nope:read] }
default: allow
`
	_, err := Parse("bad.yaml", []byte(src))
	var perr *Error
	if !errors.As(err, &perr) {
		t.Fatalf("error = %v, want *Error", err)
	}
	want := []struct {
		line int
		msg  string
	}{
		{2, "jwt.issuer must be a string"},
		{3, "jwt.audiences must not be an empty list"},
		{4, "jwt.jwks_url must be an http:// or https:// URL"},
		{5, "\"none\""},
		{6, "jwt.leeway must be between"},
		{8, "unknown source kind"},
		{11, "cyclic role inheritance: a -> b -> a"},
		{13, "unknown key \"colour\""},
		{13, "must be a whole segment"},
		{14, "duplicate route name \"r1\""},
		{15, "default must be \"deny\""},
	}
	for _, w := range want {
		found := false
		for _, p := range perr.Problems {
			found = found || (p.Line == w.line && strings.Contains(p.Message, w.msg))
		}
		if !found {
			t.Errorf("missing problem at line %d containing %q", w.line, w.msg)
		}
	}
	if !slices.IsSortedFunc(perr.Problems, func(a, b Problem) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Column - b.Column
	}) {
		t.Error("problems are not sorted by position")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(perr.Problems) {
		t.Errorf("Error() has %d lines for %d problems", len(lines), len(perr.Problems))
	}
	if !strings.HasPrefix(lines[0], "bad.yaml:2:11: ") {
		t.Errorf("first line = %q, want bad.yaml:2:11: prefix", lines[0])
	}
	// The second r1 is a duplicate, so its own errors are skipped; a
	// distinct name shows them.
	_, err = Parse("bad.yaml", []byte(strings.Replace(src, "name: r1, methods", "name: r2, methods", 1)))
	for _, msg := range []string{"unknown method \"FETCH\"", "no organization role grants \"nope:read\""} {
		if !strings.Contains(err.Error(), msg) {
			t.Errorf("error lacks %q:\n%v", msg, err)
		}
	}
}

func TestProblemString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{File: "p.yaml", Line: 3, Column: 7, Message: "bad"}, "p.yaml:3:7: bad"},
		{Problem{File: "p.yaml", Line: 3, Message: "syntax"}, "p.yaml:3: syntax"},
		{Problem{Line: 1, Column: 1, Message: "m"}, "1:1: m"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

func TestWarnings(t *testing.T) {
	t.Parallel()
	doc := withRoutes(
		"  - { name: a, methods: [GET, POST], path: \"/x/{org}\", authenticated: true }", // 12
		"  - { name: b, methods: [GET], path: \"/x/{id}\", authenticated: true }",        // 13: shadowed by a
		"  - { name: c, path: \"/x/*\", authenticated: true }",                           // 14: reachable (other methods)
		"  - { name: d, path: \"/x/{y}\", authenticated: true }",                         // 15: shadowed by c
		"  - { name: e, methods: [PUT], path: \"/x/{y}\", authenticated: true }",         // 16: reachable
		"  - { name: f, path: \"/x/**\", authenticated: true }",                          // 17: reachable
	)
	p, err := Parse("p.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, w := range p.Warnings {
		got = append(got, w.Line)
		if !strings.Contains(w.Message, "never selected by path matching") {
			t.Errorf("warning message = %q", w.Message)
		}
	}
	if !slices.Equal(got, []int{13, 15}) {
		t.Errorf("warning lines = %v, want [13 15]; %v", got, p.Warnings)
	}
}

func TestRoleExpansion(t *testing.T) {
	t.Parallel()
	p, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		role string
		want []string
	}{
		// Inheritance and wildcards are expanded at load into Better
		// Auth's literal actions: member:* is every action statements
		// declare for member, and nothing else.
		{"member", []string{"leave:read", "leave:request"}},
		{"admin", []string{"leave:approve", "leave:read", "leave:request", "member:create", "member:delete", "member:update"}},
		{"owner", []string{"leave:approve", "leave:read", "leave:request", "member:create", "member:delete", "member:update", "organization:delete"}},
	}
	for _, tt := range tests {
		got, ok := p.RolePermissions(tt.role)
		if !ok || !slices.Equal(got, tt.want) {
			t.Errorf("RolePermissions(%q) = %v, %v; want %v", tt.role, got, ok, tt.want)
		}
	}
	if _, ok := p.RolePermissions("ghost"); ok {
		t.Error("an undefined role has permissions")
	}
	// No admin section: Better Auth's admin plugin defaults.
	if perms, ok := p.PlatformRolePermissions("admin"); !ok || !slices.Contains(perms, "user:ban") || slices.Contains(perms, "user:impersonate-admins") {
		t.Errorf("platform admin = %v, %v; want Better Auth's default admin role", perms, ok)
	}
	if perms, ok := p.PlatformRolePermissions("user"); !ok || len(perms) != 0 {
		t.Errorf("platform user = %v, %v; want no permissions", perms, ok)
	}
	if p.PlatformDefaultRole() != "user" {
		t.Errorf("default platform role = %q", p.PlatformDefaultRole())
	}
}

func TestRoleNamesIsACopy(t *testing.T) {
	t.Parallel()
	p, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p.RoleNames()[0] = "root"
	if p.RoleNames()[0] != "admin" {
		t.Error("RoleNames exposes internal state")
	}
}

func TestSourceString(t *testing.T) {
	for src, want := range map[Source]string{
		{}:                              "",
		{Kind: FromPath, Name: "org"}:   "path:org",
		{Kind: FromClaim, Name: "aoid"}: "claim:aoid",
	} {
		if got := src.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", src, got, want)
		}
	}
}

// TestProblemPosition: a problem is placed at its node, and at 1:1 when the
// node has no position (Problem promises Line >= 1).
func TestProblemPosition(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		n         *yaml.Node
		line, col int
	}{
		{"no node", nil, 1, 1},
		{"a node without a position", &yaml.Node{}, 1, 1},
		{"a node on line 1", &yaml.Node{Line: 1, Column: 2}, 1, 2},
		{"a node", &yaml.Node{Line: 3, Column: 5}, 3, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &checker{file: "p.yaml"}
			c.add(tt.n, "x %d", 1)
			want := Problem{File: "p.yaml", Line: tt.line, Column: tt.col, Message: "x 1"}
			if len(c.problems) != 1 || c.problems[0] != want {
				t.Errorf("problems = %+v, want %+v", c.problems, want)
			}
		})
	}
}

// TestSyntaxPosition: a YAML error's line is read from its message, made
// 1-based where the parser's is 0-based, and kept within the file; a line
// the library cannot mean (0) is left in the message.
func TestSyntaxPosition(t *testing.T) {
	t.Parallel()
	data := []byte("a: 1\nb: 2\nc: 3\n") // 4 lines, the last empty
	tests := []struct {
		name string
		err  string
		line int
		msg  string
	}{
		{"scanner error, 1-based", "yaml: line 2: mapping values are not allowed in this context", 2, "mapping values are not allowed in this context"},
		{"parser error, 0-based", "yaml: line 2: did not find expected key", 3, "did not find expected key"},
		{"past the end of the file", "yaml: line 99: could not find expected ':'", 4, "could not find expected ':'"},
		{"line 0 is no position", "yaml: line 0: boom", 1, "line 0: boom"},
		{"no line", "yaml: control characters are not allowed", 1, "control characters are not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &checker{file: "p.yaml"}
			c.syntax(errors.New(tt.err), data)
			want := Problem{File: "p.yaml", Line: tt.line, Message: "YAML syntax error: " + tt.msg}
			if len(c.problems) != 1 || c.problems[0] != want {
				t.Errorf("problems = %+v, want %+v", c.problems, want)
			}
		})
	}
}

// TestJWTLimits: jwt.leeway and jwt.max_token_bytes take their bounds and
// refuse one step past them.
func TestJWTLimits(t *testing.T) {
	t.Parallel()
	base := withRoutes(okRoute)
	with := func(line string) string {
		return replaceLine(base, 2, "  issuer: https://auth.example\n"+line)
	}
	tests := []struct {
		name     string
		line     string
		leeway   time.Duration
		maxBytes int
		ok       bool
	}{
		{"no leeway", "  leeway: 0s", 0, DefaultMaxTokenBytes, true},
		{"a bare 0 leeway", "  leeway: 0", 0, DefaultMaxTokenBytes, true},
		{"the largest leeway", "  leeway: 5m", MaxLeeway, DefaultMaxTokenBytes, true},
		{"past the largest leeway", "  leeway: 5m1s", 0, 0, false},
		{"negative leeway", "  leeway: -1s", 0, 0, false},
		{"the smallest token bound", fmt.Sprintf("  max_token_bytes: %d", MinMaxTokenBytes), DefaultLeeway, MinMaxTokenBytes, true},
		{"below the smallest token bound", fmt.Sprintf("  max_token_bytes: %d", MinMaxTokenBytes-1), 0, 0, false},
		{"the largest token bound", fmt.Sprintf("  max_token_bytes: %d", MaxMaxTokenBytes), DefaultLeeway, MaxMaxTokenBytes, true},
		{"past the largest token bound", fmt.Sprintf("  max_token_bytes: %d", MaxMaxTokenBytes+1), 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := Parse("p.yaml", []byte(with(tt.line)))
			if !tt.ok {
				if err == nil || !strings.Contains(err.Error(), "must be between") {
					t.Fatalf("Parse = %v, want a bounds error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.JWT.Leeway != tt.leeway || p.JWT.MaxTokenBytes != tt.maxBytes {
				t.Errorf("leeway %v max_token_bytes %d, want %v %d", p.JWT.Leeway, p.JWT.MaxTokenBytes, tt.leeway, tt.maxBytes)
			}
		})
	}
}

// TestNameSyntax checks the header-name (RFC 9110 token), claim-name and
// role/route-name syntaxes byte by byte.
func TestNameSyntax(t *testing.T) {
	t.Parallel()
	const tchar = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	const nameChar = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_.-"
	for _, f := range []func(string) bool{isToken, isClaimName, isName} {
		if f("") {
			t.Error("the empty name is accepted")
		}
	}
	for i := range 256 {
		s := string([]byte{byte(i)})
		if got, want := isToken(s), strings.Contains(tchar, s); got != want {
			t.Errorf("isToken(%q) = %v, want %v", s, got, want)
		}
		if got, want := isName(s), strings.Contains(nameChar, s); got != want {
			t.Errorf("isName(%q) = %v, want %v", s, got, want)
		}
		// A claim name is printable ASCII without spaces.
		if got, want := isClaimName("a"+s), i > ' ' && i < 0x7f; got != want {
			t.Errorf("isClaimName(%q) = %v, want %v", "a"+s, got, want)
		}
	}
}
