package policy

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// checker walks the YAML tree of one policy file and collects every problem
// instead of stopping at the first, so one run reports all of them.
type checker struct {
	file     string
	dir      string                       // the policy file's directory (app_roles is relative to it)
	readFile func(string) ([]byte, error) // nil: no other file may be read
	version  hash.Hash                    // hashes every byte the policy depends on
	// appRolesFile, when set, is an app roles file the policy must agree
	// with (LoadOptions.AppRoles); it replaces the policy's app_roles.
	appRolesFile string
	problems     []Problem
}

// add records a problem at node n.
func (c *checker) add(n *yaml.Node, format string, args ...any) {
	line, col := 1, 1
	if n != nil && n.Line > 0 {
		line, col = n.Line, n.Column
	}
	c.problems = append(c.problems, Problem{File: c.file, Line: line, Column: col, Message: fmt.Sprintf(format, args...)})
}

// field is one key/value pair of a mapping.
type field struct {
	key, val *yaml.Node
}

func (c *checker) parse(data []byte, p *Policy) {
	if len(data) > MaxFileBytes {
		c.add(nil, "policy file is larger than %d bytes", MaxFileBytes)
		return
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			c.add(nil, "policy file is empty")
		} else {
			c.syntax(err, data)
		}
		return
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		c.syntax(err, data)
		return
	default:
		// A second document would be silently ignored by a plain decode;
		// an operator who wrote it surely meant it to count.
		c.add(&next, "a policy file holds exactly one YAML document; remove the second one")
		return
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		c.add(&doc, "policy file must hold one YAML document")
		return
	}
	c.policy(doc.Content[0], p)
}

// syntax records a YAML syntax error. The YAML library reports a line but
// no column; when it reports neither, line 1 is used.
func (c *checker) syntax(err error, data []byte) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, after, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil && n > 0 {
				line, msg = n, after
			}
		}
	}
	// The library converts the 0-based line of its scanner errors to
	// 1-based but not that of its parser errors (go.yaml.in/yaml/v3
	// v3.0.6, parser.fail); these messages are exactly the parser's.
	switch msg {
	case "did not find expected <stream-start>", "did not find expected <document start>",
		"did not find expected node content", "did not find expected '-' indicator",
		"did not find expected key", "did not find expected ',' or ']'",
		"did not find expected ',' or '}'", "found undefined tag handle",
		"found duplicate %YAML directive", "found incompatible YAML document",
		"found duplicate %TAG directive":
		line++
	}
	line = max(1, min(line, bytes.Count(data, []byte("\n"))+1))
	c.problems = append(c.problems, Problem{File: c.file, Line: line, Message: "YAML syntax error: " + msg})
}

// typeError records that n is not what was wanted.
func (c *checker) typeError(n *yaml.Node, what, want string) {
	if n.Kind == yaml.AliasNode {
		c.add(n, "%s: YAML aliases (*%s) are not supported in policy files; write the value out", what, n.Value)
		return
	}
	c.add(n, "%s must be %s, got %s", what, want, describe(n))
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return "a string"
		case "!!int", "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "nothing (null)"
		}
		return "a value tagged " + n.Tag
	}
	return "an unexpected YAML node"
}

// pairs returns the key/value pairs of mapping n, reporting keys that are
// not scalars and keys that appear twice (a YAML tree keeps both, and which
// one a reader honours would be a guess).
func (c *checker) pairs(n *yaml.Node, what string) ([]field, bool) {
	if n.Kind != yaml.MappingNode {
		c.typeError(n, what, "a mapping")
		return nil, false
	}
	var out []field
	seen := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			c.add(k, "%s: keys must be plain strings", what)
			continue
		}
		if first, dup := seen[k.Value]; dup {
			c.add(k, "%s: duplicate key %q (first at line %d)", what, k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		out = append(out, field{k, v})
	}
	return out, true
}

// mapping returns the values of mapping n by key, reporting unknown keys.
func (c *checker) mapping(n *yaml.Node, what string, allowed ...string) (map[string]*yaml.Node, bool) {
	fs, ok := c.pairs(n, what)
	if !ok {
		return nil, false
	}
	m := make(map[string]*yaml.Node, len(fs))
	for _, f := range fs {
		if !slices.Contains(allowed, f.key.Value) {
			c.add(f.key, "%s: unknown key %q (known keys: %s)", what, f.key.Value, strings.Join(allowed, ", "))
			continue
		}
		m[f.key.Value] = f.val
	}
	return m, true
}

// require reports a missing required key of mapping n.
func (c *checker) require(m map[string]*yaml.Node, n *yaml.Node, what, key string) bool {
	if _, ok := m[key]; !ok {
		c.add(n, "%s: missing required key %q", what, key)
		return false
	}
	return true
}

func (c *checker) str(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		c.typeError(n, what, "a string")
		return "", false
	}
	if n.Value == "" {
		c.add(n, "%s must not be empty", what)
		return "", false
	}
	return n.Value, true
}

func (c *checker) boolean(n *yaml.Node, what string) (bool, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		c.typeError(n, what, "true or false")
		return false, false
	}
	v, err := strconv.ParseBool(n.Value)
	if err != nil {
		c.add(n, "%s must be true or false, got %q", what, n.Value)
		return false, false
	}
	return v, true
}

// list returns the items of a non-empty sequence.
func (c *checker) list(n *yaml.Node, what string) ([]*yaml.Node, bool) {
	if n.Kind != yaml.SequenceNode {
		c.typeError(n, what, "a list")
		return nil, false
	}
	if len(n.Content) == 0 {
		c.add(n, "%s must not be an empty list", what)
		return nil, false
	}
	return n.Content, true
}

// strList returns the valid, distinct strings of a non-empty list of
// strings, reporting the rest.
func (c *checker) strList(n *yaml.Node, what string) ([]string, []*yaml.Node) {
	items, ok := c.list(n, what)
	if !ok {
		return nil, nil
	}
	var vals []string
	var nodes []*yaml.Node
	for _, it := range items {
		v, ok := c.str(it, what+" entry")
		if !ok {
			continue
		}
		if slices.Contains(vals, v) {
			c.add(it, "%s: %q is listed twice", what, v)
			continue
		}
		vals = append(vals, v)
		nodes = append(nodes, it)
	}
	return vals, nodes
}

// policy checks the top-level mapping.
func (c *checker) policy(n *yaml.Node, p *Policy) {
	m, ok := c.mapping(n, "policy", Keys["policy"]...)
	if !ok {
		return
	}
	if v, ok := m["jwt"]; ok {
		c.jwt(v, &p.JWT)
	}
	if v, ok := m["session"]; ok {
		c.session(v, &p.Session)
	}
	if v, ok := m["api_keys"]; ok {
		c.apiKeys(v, &p.APIKeys)
	}
	if p.JWT.SessionClaim != "" && p.Session.Storage == StorageSecondary {
		c.add(m["jwt"], "jwt.session_claim looks sessions up by id, which Better Auth's secondaryStorage cannot do (it keys sessions by token); use storage: database")
	}
	orgSet := false
	if v, ok := m["organization"]; ok {
		p.OrgSources, orgSet = c.sources(v, "organization", SessionActiveOrganization)
	}
	teamSet := false
	if v, ok := m["team"]; ok {
		p.TeamSources, teamSet = c.sources(v, "team", SessionActiveTeam)
	}
	for _, srcs := range [][]Source{p.OrgSources, p.TeamSources} {
		for _, s := range srcs {
			if s.Kind == FromClaim && !p.JWT.Enabled {
				c.add(n, "%s: a claim source needs the jwt section (claims come from a verified JWT)", s)
			}
			if s.Kind == FromSession && !p.Session.Enabled {
				c.add(n, "%s: a session source needs the session section", s)
			}
		}
	}
	var app *AppRoles
	if c.appRolesFile != "" {
		app = c.readAppRoles(n, c.appRolesFile, p)
	} else if v, ok := m["app_roles"]; ok {
		app = c.appRoles(v, p)
	}
	adminRoles := c.admin(m["admin"], &p.Admin)
	c.schema(m["schema"], &p.Schema)
	orgAll, platformAll := c.allRoles(m, adminRoles, app, p)
	if c.require(m, n, "policy", "routes") {
		c.routes(m["routes"], p, orgAll, platformAll, orgSet, teamSet)
	}
	if v, ok := m["default"]; ok {
		// Only deny is accepted: a policy must never fail open, so a
		// request that no route describes is refused, and there is no
		// switch to turn that off.
		if s, ok := c.str(v, "default"); ok && s != "deny" {
			c.add(v, "default must be \"deny\" (unmatched requests are always refused), got %q", s)
		}
	}
	if p.Enabled() == 0 {
		for _, r := range p.Routes {
			if !r.Public {
				c.add(n, "route %q needs a credential, but the policy accepts none: add a jwt, session or api_keys section", r.Name)
				break
			}
		}
	}
}

func (c *checker) jwt(n *yaml.Node, j *JWT) {
	m, ok := c.mapping(n, "jwt", Keys["jwt"]...)
	if !ok {
		return
	}
	j.Enabled = true
	if c.require(m, n, "jwt", "issuer") {
		j.Issuer, _ = c.str(m["issuer"], "jwt.issuer")
	}
	if c.require(m, n, "jwt", "audiences") {
		j.Audiences, _ = c.strList(m["audiences"], "jwt.audiences")
	}
	if c.require(m, n, "jwt", "jwks_url") {
		v := m["jwks_url"]
		if s, ok := c.str(v, "jwt.jwks_url"); ok {
			if msg := checkJWKSURL(s); msg != "" {
				c.add(v, "jwt.jwks_url %s", msg)
			} else {
				j.JWKSURL = s
			}
		}
	}
	j.Algorithms = DefaultAlgorithms()
	if v, ok := m["algorithms"]; ok {
		algs, nodes := c.strList(v, "jwt.algorithms")
		j.Algorithms = nil
		for i, a := range algs {
			if msg := checkAlgorithm(a); msg != "" {
				c.add(nodes[i], "jwt.algorithms: %s", msg)
				continue
			}
			j.Algorithms = append(j.Algorithms, a)
		}
	}
	j.Leeway = DefaultLeeway
	if v, ok := m["leeway"]; ok {
		// A bare 0 is an integer to YAML; it is also a valid duration.
		if v.Kind != yaml.ScalarNode || (v.ShortTag() != "!!str" && v.ShortTag() != "!!int") {
			c.typeError(v, "jwt.leeway", "a duration such as 30s")
		} else if d, err := time.ParseDuration(v.Value); err != nil {
			c.add(v, "jwt.leeway must be a duration such as 30s or 1m, got %q", v.Value)
		} else if d < 0 || d > MaxLeeway {
			c.add(v, "jwt.leeway must be between 0s and %s, got %s", MaxLeeway, d)
		} else {
			j.Leeway = d
		}
	}
	j.MaxTokenBytes = DefaultMaxTokenBytes
	if v, ok := m["max_token_bytes"]; ok {
		if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" {
			c.typeError(v, "jwt.max_token_bytes", "a whole number")
		} else if n, err := strconv.Atoi(v.Value); err != nil || n < MinMaxTokenBytes || n > MaxMaxTokenBytes {
			c.add(v, "jwt.max_token_bytes must be between %d and %d, got %s", MinMaxTokenBytes, MaxMaxTokenBytes, v.Value)
		} else {
			j.MaxTokenBytes = n
		}
	}
	if v, ok := m["session_claim"]; ok {
		if s, ok := c.str(v, "jwt.session_claim"); ok {
			if !isClaimName(s) {
				c.add(v, "jwt.session_claim %q: a claim name is non-empty printable ASCII without spaces", s)
			} else {
				j.SessionClaim = s
			}
		}
	}
}

// checkJWKSURL returns "" for an absolute http(s) URL with a host, or what
// is wrong with it.
func checkJWKSURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "is not a valid URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "must be an http:// or https:// URL"
	case u.Host == "":
		return "must name a host"
	case u.User != nil:
		return "must not contain credentials"
	case u.Fragment != "":
		return "must not have a #fragment"
	}
	return ""
}

// checkAlgorithm returns "" for an accepted JWS algorithm, or why it is not
// accepted. Only asymmetric algorithms make sense: the keys come from a
// public JWKS, so an HMAC key would be public too, and "none" is no
// signature at all.
func checkAlgorithm(a string) string {
	switch a {
	case "EdDSA", "ES256", "ES384", "ES512", "RS256", "PS256":
		return ""
	case "none":
		return "\"none\" (unsigned tokens) is never accepted"
	}
	if strings.HasPrefix(strings.ToUpper(a), "HS") {
		return fmt.Sprintf("%q is a symmetric algorithm; only public-key algorithms are accepted (EdDSA, ES256, ES384, ES512, RS256, PS256)", a)
	}
	return fmt.Sprintf("unsupported algorithm %q (accepted: EdDSA, ES256, ES384, ES512, RS256, PS256; names are case-sensitive)", a)
}

// isToken reports whether s is an RFC 9110 token (the syntax of a header
// name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func isClaimName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// isName reports whether s matches [A-Za-z0-9_.-]+, the syntax of role
// names, route names and the two halves of a permission.
func isName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// checkPermission returns "" when s is a valid permission, or what is wrong.
// wildcard allows "resource:*", which only role grants may use.
func checkPermission(s string, wildcard bool) string {
	res, act, ok := strings.Cut(s, ":")
	if !ok || strings.Contains(act, ":") {
		return fmt.Sprintf("permission %q must be resource:action", s)
	}
	if !isName(res) {
		return fmt.Sprintf("permission %q: the resource must match [A-Za-z0-9_.-]+", s)
	}
	if act == "*" {
		if !wildcard {
			return fmt.Sprintf("permission %q: wildcards are only allowed in role permissions, not in requirements", s)
		}
		return ""
	}
	if !isName(act) {
		return fmt.Sprintf("permission %q: the action must match [A-Za-z0-9_.-]+ (or be * in a role)", s)
	}
	return ""
}

// routes checks the routes section and builds the route index. orgAll and
// platformAll are every permission some organization or platform role
// grants.
func (c *checker) routes(n *yaml.Node, p *Policy, orgAll, platformAll []string, orgSet, teamSet bool) {
	items, ok := c.list(n, "routes")
	if !ok {
		return
	}
	p.byName = make(map[string]*Route, len(items))
	p.root = &node{}
	names := make(map[string]int, len(items)) // route name -> line
	enabled := p.Enabled()
	for _, it := range items {
		r, ok := c.route(it, orgAll, platformAll, p)
		if r != nil && r.Name != "" {
			if first, dup := names[r.Name]; dup {
				c.add(it, "duplicate route name %q (first at line %d)", r.Name, first)
				continue
			}
			names[r.Name] = r.Line
		}
		if !ok {
			continue
		}
		if r.NeedsOrganization() {
			c.checkReachable(it, r, "organization", p.OrgSources, orgSet)
		}
		if r.Team {
			c.checkReachable(it, r, "team", p.TeamSources, teamSet)
		}
		if r.Credentials != 0 && r.Credentials&^enabled != 0 {
			c.add(it, "route %q accepts credentials %s that the policy does not enable", r.Name, (r.Credentials &^ enabled).String())
		}
		p.byName[r.Name] = r
		p.Routes = append(p.Routes, r)
		p.root.insert(r)
	}
	p.Warnings = append(p.Warnings, shadowed(c.file, p.root)...)
}

// checkReachable reports a route whose organization (or team) can never be
// found: there is no such section, or every source is a path parameter
// that the route's template does not capture.
func (c *checker) checkReachable(n *yaml.Node, r *Route, what string, srcs []Source, set bool) {
	if !set {
		c.add(n, "route %q checks its %s, but the policy has no valid %s.from", r.Name, what, what)
		return
	}
	for _, s := range srcs {
		if s.Kind != FromPath || slices.Contains(r.params, s.Name) {
			return
		}
	}
	c.add(n, "route %q checks its %s but its path captures none of the %s path parameters (%s), and %s.from has no other source", r.Name, what, what, sourceList(srcs), what)
}

func sourceList(srcs []Source) string {
	s := make([]string, len(srcs))
	for i, src := range srcs {
		s[i] = src.String()
	}
	return strings.Join(s, ", ")
}

// route checks one route.
func (c *checker) route(n *yaml.Node, orgAll, platformAll []string, p *Policy) (*Route, bool) {
	m, ok := c.mapping(n, "route", Keys["route"]...)
	if !ok {
		return nil, false
	}
	r := &Route{Enforce: true, Line: n.Line, column: n.Column}
	valid := true
	kindUnknown := false // a kind key had a bad value, so the kind is unknown
	what := "route"
	if c.require(m, n, what, "name") {
		v := m["name"]
		if s, ok := c.str(v, "route name"); !ok {
			valid = false
		} else if !isName(s) {
			c.add(v, "route name %q must match [A-Za-z0-9_.-]+", s)
			valid = false
		} else {
			r.Name = s
			what = "route " + strconv.Quote(s)
		}
	} else {
		valid = false
	}
	if v, ok := m["methods"]; ok {
		vals, nodes := c.strList(v, what+" methods")
		if len(vals) == 0 {
			valid = false
		}
		for i, s := range vals {
			up := strings.ToUpper(s)
			bit := methodBit(up)
			switch {
			case bit == 0:
				c.add(nodes[i], "%s: unknown method %q (known: %s)", what, s, knownMethods)
				valid = false
			case r.methods&bit != 0:
				c.add(nodes[i], "%s: method %q is listed twice", what, up)
				valid = false
			default:
				r.methods |= bit
				r.Methods = append(r.Methods, up)
			}
		}
	}
	if c.require(m, n, what, "path") {
		v := m["path"]
		if s, ok := c.str(v, what+" path"); !ok {
			valid = false
		} else {
			segs, params, problems := compileTemplate(s)
			for _, msg := range problems {
				c.add(v, "%s: %s", what, msg)
			}
			valid = valid && len(problems) == 0
			r.Path, r.segs, r.params = s, segs, params
		}
	} else {
		valid = false
	}
	flag := func(key string, kind bool) (set bool, node *yaml.Node) {
		v, ok := m[key]
		if !ok {
			return false, nil
		}
		b, ok := c.boolean(v, what+" "+key)
		if !ok {
			valid = false
			kindUnknown = kindUnknown || kind
		}
		return b, v
	}
	r.Public, _ = flag("public", true)
	r.Authenticated, _ = flag("authenticated", true)
	r.Team, _ = flag("team", true)
	enforce, enforceNode := flag("enforce", false)
	if enforceNode != nil {
		r.Enforce = enforce
	}
	// perms checks a list of permissions; granted is every permission some
	// role of the kind grants: one no role grants makes the route deny
	// everyone, almost certainly a typo in the route or in the roles.
	perms := func(key string, granted []string, roleKind string) []string {
		v, ok := m[key]
		if !ok {
			return nil
		}
		vals, nodes := c.strList(v, what+" "+key)
		if len(vals) == 0 {
			valid = false
		}
		var out []string
		for i, s := range vals {
			if msg := checkPermission(s, false); msg != "" {
				c.add(nodes[i], "%s: %s", what, msg)
				valid = false
				continue
			}
			if !slices.Contains(granted, s) {
				c.add(nodes[i], "%s: no %s role grants %q", what, roleKind, s)
				valid = false
			}
			out = append(out, s)
		}
		return out
	}
	r.Require = perms("require", orgAll, "organization")
	r.RequireAny = perms("require_any", orgAll, "organization")
	r.RequirePlatform = perms("require_platform", platformAll, "platform")
	if v, ok := m["platform_roles"]; ok {
		vals, nodes := c.strList(v, what+" platform_roles")
		if len(vals) == 0 {
			valid = false
		}
		for i, role := range vals {
			if _, ok := p.platformPerms[role]; !ok {
				c.add(nodes[i], "%s: platform_roles: %q is not a platform role (known: %s)", what, role, strings.Join(p.platformNames, ", "))
				valid = false
				continue
			}
			r.PlatformRoles = append(r.PlatformRoles, role)
		}
	}
	if v, ok := m["user"]; ok {
		if um, ok := c.mapping(v, what+" user", Keys["route.user"]...); ok {
			for key, val := range um {
				b, ok := c.boolean(val, what+" user."+key)
				if !ok {
					valid = false
					continue
				}
				switch key {
				case "email_verified":
					r.Conditions.EmailVerified = b
				case "anonymous":
					if b {
						c.add(val, "%s: user.anonymous: true would require anonymous users; write false to refuse them, or omit it", what)
						valid = false
					}
					r.Conditions.NotAnonymous = !b
				case "two_factor":
					r.Conditions.TwoFactor = b
				}
			}
		} else {
			valid = false
		}
	}
	if v, ok := m["impersonation"]; ok {
		if s, ok := c.str(v, what+" impersonation"); ok {
			switch s {
			case "allow":
			case "deny":
				r.DenyImpersonation = true
			default:
				c.add(v, "%s: impersonation must be allow or deny, got %q", what, s)
				valid = false
			}
		} else {
			valid = false
		}
	}
	if v, ok := m["credentials"]; ok {
		vals, nodes := c.strList(v, what+" credentials")
		if len(vals) == 0 {
			valid = false
		}
		for i, s := range vals {
			found := false
			for _, k := range credentialNames {
				if k.name == s {
					r.Credentials |= k.c
					found = true
				}
			}
			if !found {
				c.add(nodes[i], "%s: credentials: unknown kind %q (jwt, session, api_key)", what, s)
				valid = false
			}
		}
	}

	requirements := r.NeedsOrganization() || r.NeedsPlatform()
	kinds := 0
	for _, set := range []bool{r.Public, r.Authenticated, requirements} {
		if set {
			kinds++
		}
	}
	anyReqKey := false
	for _, k := range []string{"require", "require_any", "require_platform", "platform_roles"} {
		if _, ok := m[k]; ok {
			anyReqKey = true
		}
	}
	switch {
	case kinds == 0 && !anyReqKey && !kindUnknown:
		c.add(n, "%s must set exactly one of public: true, authenticated: true, or requirements (require, require_any, require_platform, platform_roles, team)", what)
		valid = false
	case kinds > 1:
		c.add(n, "%s sets more than one of public: true, authenticated: true and requirements; use exactly one", what)
		valid = false
	}
	if r.Public {
		for _, k := range []string{"user", "impersonation", "credentials", "enforce"} {
			if v, ok := m[k]; ok && (k != "enforce" || !r.Enforce) {
				// Shadow mode or conditions on a route that allows everyone
				// would have no effect; the author probably meant another
				// route.
				c.add(v, "%s: %s has no effect on a public route", what, k)
				valid = false
			}
		}
	}
	return r, valid
}

// shadowed reports routes that path matching can never select because an
// earlier route with the same template shape takes every request they could
// match. They stay selectable by name.
func shadowed(file string, n *node) []Problem {
	var out []Problem
	for _, list := range [][]*Route{n.exact, n.rest} {
		for j, r := range list {
			for _, e := range list[:j] {
				covered := (e.methods == 0 && r.methods == 0) ||
					(e.methods != 0 && r.methods != 0 && r.methods&^e.methods == 0)
				if covered {
					out = append(out, Problem{File: file, Line: r.Line, Column: r.column,
						Message: fmt.Sprintf("route %q is never selected by path matching: route %q (line %d) has the same path shape and takes all its methods; it can still be selected by name", r.Name, e.Name, e.Line)})
					break
				}
			}
		}
	}
	if n.wild != nil {
		out = append(out, shadowed(file, n.wild)...)
	}
	for _, k := range sortedKeys(n.literals) {
		out = append(out, shadowed(file, n.literals[k])...)
	}
	return out
}

func sortedKeys(m map[string]*node) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// sortProblems orders problems by position, keeping discovery order for
// problems at the same position.
func sortProblems(ps []Problem) []Problem {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	return ps
}
