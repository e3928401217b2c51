package policy

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
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
	problems []Problem
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
	m, ok := c.mapping(n, "policy", "jwt", "organization", "roles", "routes", "default")
	if !ok {
		return
	}
	if c.require(m, n, "policy", "jwt") {
		c.jwt(m["jwt"], &p.JWT)
	}
	orgSet := false
	if v, ok := m["organization"]; ok {
		p.OrgSources, orgSet = c.organization(v)
	}
	roles := c.roles(m["roles"], p)
	if c.require(m, n, "policy", "routes") {
		c.routes(m["routes"], p, roles, orgSet)
	}
	if v, ok := m["default"]; ok {
		// Only deny is accepted: a policy must never fail open, so a
		// request that no route describes is refused, and there is no
		// switch to turn that off.
		if s, ok := c.str(v, "default"); ok && s != "deny" {
			c.add(v, "default must be \"deny\" (unmatched requests are always refused), got %q", s)
		}
	}
}

func (c *checker) jwt(n *yaml.Node, j *JWT) {
	m, ok := c.mapping(n, "jwt", "issuer", "audiences", "jwks_url", "algorithms", "leeway", "max_token_bytes")
	if !ok {
		return
	}
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
	case "EdDSA", "ES256", "ES384", "RS256", "PS256":
		return ""
	case "none":
		return "\"none\" (unsigned tokens) is never accepted"
	}
	if strings.HasPrefix(strings.ToUpper(a), "HS") {
		return fmt.Sprintf("%q is a symmetric algorithm; only public-key algorithms are accepted (EdDSA, ES256, ES384, RS256, PS256)", a)
	}
	return fmt.Sprintf("unsupported algorithm %q (accepted: EdDSA, ES256, ES384, RS256, PS256; names are case-sensitive)", a)
}

// organization checks the organization section. ok reports whether it
// yielded at least one source.
func (c *checker) organization(n *yaml.Node) ([]OrgSource, bool) {
	m, ok := c.mapping(n, "organization", "from")
	if !ok || !c.require(m, n, "organization", "from") {
		return nil, false
	}
	vals, nodes := c.strList(m["from"], "organization.from")
	var out []OrgSource
	for i, v := range vals {
		src, msg := parseOrgSource(v)
		if msg != "" {
			c.add(nodes[i], "organization.from: %s", msg)
			continue
		}
		out = append(out, src)
	}
	return out, len(out) > 0
}

func parseOrgSource(s string) (OrgSource, string) {
	kind, name, ok := strings.Cut(s, ":")
	if !ok {
		return OrgSource{}, fmt.Sprintf("%q must be path:<param>, header:<name> or claim:<name>", s)
	}
	switch kind {
	case "path":
		if !isParamName(name) {
			return OrgSource{}, fmt.Sprintf("%q: a path parameter name is a letter or \"_\" followed by letters, digits or \"_\"", s)
		}
		return OrgSource{Kind: OrgFromPath, Name: name}, ""
	case "header":
		if name != strings.ToLower(name) {
			return OrgSource{}, fmt.Sprintf("%q: header names must be lower case (Envoy passes them lower-cased)", s)
		}
		if !isToken(name) {
			return OrgSource{}, fmt.Sprintf("%q: not a valid header name", s)
		}
		return OrgSource{Kind: OrgFromHeader, Name: name}, ""
	case "claim":
		if !isClaimName(name) {
			return OrgSource{}, fmt.Sprintf("%q: a claim name is non-empty printable ASCII without spaces", s)
		}
		return OrgSource{Kind: OrgFromClaim, Name: name}, ""
	}
	return OrgSource{}, fmt.Sprintf("%q: unknown source kind %q (use path:, header: or claim:)", s, kind)
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

// roleDef is a role as written in the file.
type roleDef struct {
	name     string
	key      *yaml.Node
	inherits []*yaml.Node // the valid inherits entries
	perms    []string     // own permissions, valid ones only
}

// roles checks the roles section (absent is fine: a policy may use only
// public and authenticated routes), resolves inheritance and fills in
// p.roleNames and p.rolePerms. It returns the union of every role's own
// grants, for checking that each required permission can be granted.
func (c *checker) roles(n *yaml.Node, p *Policy) []string {
	p.rolePerms = make(map[string][]string)
	if n == nil {
		return nil
	}
	fs, ok := c.pairs(n, "roles")
	if !ok {
		return nil
	}
	defs := make(map[string]*roleDef, len(fs))
	var order []*roleDef
	for _, f := range fs {
		name := f.key.Value
		if !isName(name) {
			c.add(f.key, "role name %q must match [A-Za-z0-9_.-]+", name)
			continue
		}
		d := &roleDef{name: name, key: f.key}
		what := "role " + strconv.Quote(name)
		m, ok := c.mapping(f.val, what, "inherits", "permissions")
		if !ok {
			continue
		}
		if v, ok := m["inherits"]; ok {
			_, d.inherits = c.strList(v, what+" inherits")
		}
		if v, ok := m["permissions"]; ok {
			perms, nodes := c.strList(v, what+" permissions")
			for i, perm := range perms {
				if msg := checkPermission(perm, true); msg != "" {
					c.add(nodes[i], "%s: %s", what, msg)
					continue
				}
				d.perms = append(d.perms, perm)
			}
		}
		defs[name] = d
		order = append(order, d)
	}
	for _, d := range order {
		for _, in := range d.inherits {
			if defs[in.Value] == nil {
				c.add(in, "role %q inherits unknown role %q", d.name, in.Value)
			}
		}
	}
	c.cycles(order, defs)

	var all []string
	for _, d := range order {
		p.roleNames = append(p.roleNames, d.name)
		p.rolePerms[d.name] = expand(d, defs)
		all = append(all, d.perms...)
	}
	slices.Sort(p.roleNames)
	return all
}

// cycles reports each cycle of role inheritance once, at the inherits entry
// that closes it, naming the whole cycle ("a -> b -> a").
func (c *checker) cycles(order []*roleDef, defs map[string]*roleDef) {
	const (
		unvisited = iota
		onStack
		done
	)
	state := make(map[string]int, len(order))
	var stack []string
	var visit func(d *roleDef)
	visit = func(d *roleDef) {
		state[d.name] = onStack
		stack = append(stack, d.name)
		for _, in := range d.inherits {
			next := defs[in.Value]
			if next == nil {
				continue
			}
			switch state[next.name] {
			case onStack:
				i := slices.Index(stack, next.name)
				cycle := append(slices.Clone(stack[i:]), next.name)
				c.add(in, "cyclic role inheritance: %s", strings.Join(cycle, " -> "))
			case unvisited:
				visit(next)
			}
		}
		stack = stack[:len(stack)-1]
		state[d.name] = done
	}
	for _, d := range order {
		if state[d.name] == unvisited {
			visit(d)
		}
	}
}

// expand returns d's own and inherited permissions, sorted and
// de-duplicated. It follows every reachable role once, so it terminates
// even on a cyclic (and therefore rejected) policy.
func expand(d *roleDef, defs map[string]*roleDef) []string {
	seen := map[string]bool{d.name: true}
	queue := []*roleDef{d}
	var perms []string
	for len(queue) > 0 {
		r := queue[0]
		queue = queue[1:]
		perms = append(perms, r.perms...)
		for _, in := range r.inherits {
			if next := defs[in.Value]; next != nil && !seen[next.name] {
				seen[next.name] = true
				queue = append(queue, next)
			}
		}
	}
	slices.Sort(perms)
	perms = slices.Compact(perms)
	if perms == nil {
		perms = []string{}
	}
	return slices.Clip(perms)
}

// routes checks the routes section and builds the route index.
func (c *checker) routes(n *yaml.Node, p *Policy, grants []string, orgSet bool) {
	items, ok := c.list(n, "routes")
	if !ok {
		return
	}
	p.byName = make(map[string]*Route, len(items))
	p.root = &node{}
	names := make(map[string]int, len(items)) // route name -> line
	for _, it := range items {
		r, ok := c.route(it, grants)
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
			c.checkOrgReachable(it, r, p.OrgSources, orgSet)
		}
		p.byName[r.Name] = r
		p.Routes = append(p.Routes, r)
		p.root.insert(r)
	}
	p.Warnings = append(p.Warnings, shadowed(c.file, p.root)...)
}

// checkOrgReachable reports a permission route whose organization can never
// be found: there is no organization section, or every source is a path
// parameter that the route's template does not capture.
func (c *checker) checkOrgReachable(n *yaml.Node, r *Route, srcs []OrgSource, orgSet bool) {
	if !orgSet {
		c.add(n, "route %q requires permissions, which are checked in an organization, but the policy has no valid organization.from", r.Name)
		return
	}
	for _, s := range srcs {
		if s.Kind != OrgFromPath || slices.Contains(r.params, s.Name) {
			return
		}
	}
	c.add(n, "route %q requires permissions but its path captures none of the organization path parameters (%s), and organization.from has no header or claim source", r.Name, orgSourceList(srcs))
}

func orgSourceList(srcs []OrgSource) string {
	s := make([]string, len(srcs))
	for i, src := range srcs {
		s[i] = src.String()
	}
	return strings.Join(s, ", ")
}

// route checks one route. grants is the union of all role grants.
func (c *checker) route(n *yaml.Node, grants []string) (*Route, bool) {
	m, ok := c.mapping(n, "route", "name", "methods", "path", "public", "authenticated", "require", "require_any", "enforce")
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
	flag := func(key string) (set bool, node *yaml.Node) {
		v, ok := m[key]
		if !ok {
			return false, nil
		}
		b, ok := c.boolean(v, what+" "+key)
		if !ok {
			valid = false
			kindUnknown = kindUnknown || key != "enforce"
		}
		return b, v
	}
	r.Public, _ = flag("public")
	r.Authenticated, _ = flag("authenticated")
	enforce, enforceNode := flag("enforce")
	if enforceNode != nil {
		r.Enforce = enforce
	}
	perms := func(key string) []string {
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
			// A permission no role grants makes the route deny everyone:
			// almost certainly a typo in the route or in the roles.
			if !Grants(grants, s) {
				c.add(nodes[i], "%s: no role grants %q", what, s)
				valid = false
			}
			out = append(out, s)
		}
		return out
	}
	r.Require = perms("require")
	r.RequireAny = perms("require_any")

	kinds := 0
	for _, set := range []bool{r.Public, r.Authenticated, r.NeedsOrganization()} {
		if set {
			kinds++
		}
	}
	_, hasRequire := m["require"]
	_, hasRequireAny := m["require_any"]
	switch {
	case kinds == 0 && !hasRequire && !hasRequireAny && !kindUnknown:
		c.add(n, "%s must set exactly one of public: true, authenticated: true, or require/require_any", what)
		valid = false
	case kinds > 1:
		c.add(n, "%s sets more than one of public: true, authenticated: true and require/require_any; use exactly one", what)
		valid = false
	}
	if r.Public && enforceNode != nil && !r.Enforce {
		// Shadow mode on a route that allows everyone would have no effect;
		// the author probably meant another route.
		c.add(enforceNode, "%s: enforce: false has no effect on a public route", what)
		valid = false
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
