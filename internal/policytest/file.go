package policytest

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/authz-sidecar/authz-sidecar/internal/policy"
)

// testFile is a decoded test file. The yaml tags are the file format; the
// keys each mapping may hold are listed again in parseFile, which refuses
// any other key.
type testFile struct {
	Policy string     `yaml:"policy"`
	Cases  []testCase `yaml:"cases"`
}

type testCase struct {
	Name    string      `yaml:"name"`
	Request requestSpec `yaml:"request"`
	User    *userSpec   `yaml:"user"`
	Expect  expectSpec  `yaml:"expect"`

	line int
}

type requestSpec struct {
	Method  string            `yaml:"method"`
	Path    string            `yaml:"path"`
	Route   string            `yaml:"route"`
	Headers map[string]string `yaml:"headers"`
}

type userSpec struct {
	ID             string              `yaml:"id"`
	Credential     string              `yaml:"credential"`
	Roles          []string            `yaml:"roles"`
	Custom         map[string][]string `yaml:"custom"`
	Org            string              `yaml:"org"`
	Slug           string              `yaml:"slug"`
	Member         *bool               `yaml:"member"`
	Banned         bool                `yaml:"banned"`
	Exists         *bool               `yaml:"exists"`
	Claims         map[string]string   `yaml:"claims"`
	PlatformRole   string              `yaml:"platform_role"`
	EmailVerified  bool                `yaml:"email_verified"`
	Anonymous      bool                `yaml:"anonymous"`
	TwoFactor      bool                `yaml:"two_factor"`
	ImpersonatedBy string              `yaml:"impersonated_by"`
	ActiveOrg      string              `yaml:"active_org"`
	ActiveTeam     string              `yaml:"active_team"`
	Teams          []string            `yaml:"teams"`
	KeyPermissions []string            `yaml:"key_permissions"`
	KeyOrg         string              `yaml:"key_org"`
}

type expectSpec struct {
	Decision string `yaml:"decision"`
	Status   int    `yaml:"status"`
	Reason   string `yaml:"reason"`
	Route    string `yaml:"route"`
	Org      string `yaml:"org"`
}

// The keys each mapping of the format may hold.
var (
	fileKeys    = []string{"policy", "cases"}
	caseKeys    = []string{"name", "request", "user", "expect"}
	requestKeys = []string{"method", "path", "route", "headers"}
	userKeys    = []string{"id", "credential", "roles", "custom", "org", "slug", "member", "banned", "exists", "claims",
		"platform_role", "email_verified", "anonymous", "two_factor", "impersonated_by", "active_org", "active_team",
		"teams", "key_permissions", "key_org"}
	expectKeys = []string{"decision", "status", "reason", "route", "org"}
)

// registeredClaims are set by the runner itself; a case may not override
// them through user.claims.
var registeredClaims = []string{"sub", "iss", "aud", "exp", "iat", "nbf", "jti"}

// checker collects every problem of a test file, located like the policy
// loader's (file:line:col), so one run reports all of them.
type checker struct {
	file     string
	problems []policy.Problem
}

func (c *checker) add(n *yaml.Node, format string, args ...any) {
	line, col := 1, 0
	if n != nil && n.Line > 0 {
		line, col = n.Line, n.Column
	}
	c.problems = append(c.problems, policy.Problem{File: c.file, Line: line, Column: col, Message: fmt.Sprintf(format, args...)})
}

// keys returns the values of mapping n by key and reports unknown and
// duplicate keys. A missing or null n is an absent mapping (nil, no problem).
func (c *checker) keys(n *yaml.Node, what string, allowed []string) map[string]*yaml.Node {
	if n == nil || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		c.add(n, "%s must be a mapping", what)
		return nil
	}
	m := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		switch {
		case !slices.Contains(allowed, k.Value):
			c.add(k, "%s: unknown key %q (known keys: %s)", what, k.Value, strings.Join(allowed, ", "))
		case m[k.Value] != nil:
			c.add(k, "%s: duplicate key %q", what, k.Value)
		default:
			m[k.Value] = n.Content[i+1]
		}
	}
	return m
}

// parseFile decodes and validates a test file. Problems come back as a
// *policy.Error, formatted like the policy loader's.
func parseFile(name string, data []byte) (*testFile, error) {
	c := &checker{file: name}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		c.add(nil, "test file is empty")
		return nil, &policy.Error{Problems: c.problems}
	}
	root := doc.Content[0]
	top := c.keys(root, "test file", fileKeys)
	var caseNodes []*yaml.Node
	if n := top["cases"]; n != nil && n.Kind == yaml.SequenceNode {
		caseNodes = n.Content
	}
	for _, n := range caseNodes {
		m := c.keys(n, "case", caseKeys)
		c.keys(m["request"], "request", requestKeys)
		c.keys(m["user"], "user", userKeys)
		c.keys(m["expect"], "expect", expectKeys)
	}
	if len(c.problems) > 0 {
		return nil, &policy.Error{Problems: c.problems}
	}

	var f testFile
	if err := root.Decode(&f); err != nil {
		// Type errors carry "line N: ..." each.
		var terr *yaml.TypeError
		if !errors.As(err, &terr) {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for _, msg := range terr.Errors {
			line := 1
			if rest, ok := strings.CutPrefix(msg, "line "); ok {
				if num, after, ok := strings.Cut(rest, ": "); ok {
					if n, err := strconv.Atoi(num); err == nil {
						line, msg = n, after
					}
				}
			}
			c.problems = append(c.problems, policy.Problem{File: name, Line: line, Message: msg})
		}
		return nil, &policy.Error{Problems: c.problems}
	}
	if f.Policy == "" {
		c.add(root, "test file: missing required key \"policy\" (the policy file, relative to this file)")
	}
	if len(f.Cases) == 0 {
		c.add(root, "test file: no cases")
	}
	seen := make(map[string]int)
	for i := range f.Cases {
		tc := &f.Cases[i]
		tc.line = caseNodes[i].Line
		c.checkCase(caseNodes[i], tc, seen)
	}
	if len(c.problems) > 0 {
		return nil, &policy.Error{Problems: c.problems}
	}
	return &f, nil
}

// checkCase validates one case and normalises its header names to lower
// case, as Envoy passes them.
func (c *checker) checkCase(n *yaml.Node, tc *testCase, seen map[string]int) {
	what := fmt.Sprintf("case %q", tc.Name)
	if tc.Name == "" {
		c.add(n, "case: missing required key \"name\"")
	} else if first, dup := seen[tc.Name]; dup {
		c.add(n, "%s: duplicate case name (first at line %d)", what, first)
	} else {
		seen[tc.Name] = n.Line
	}

	r := &tc.Request
	switch {
	case r.Path == "":
		// Envoy always sends the path, and the engine checks it even for a
		// route chosen by name: without one a case could only be refused.
		c.add(n, "%s: request needs a path (a route chosen by name still has its path checked and read for {params})", what)
	case r.Route == "" && r.Method == "":
		c.add(n, "%s: request needs a method when it has no route name", what)
	}
	if len(r.Headers) > 0 {
		h := make(map[string]string, len(r.Headers))
		for k, v := range r.Headers {
			h[strings.ToLower(k)] = v
		}
		r.Headers = h
	}

	if u := tc.User; u != nil {
		if u.ID == "" {
			c.add(n, "%s: user needs an id", what)
		}
		if u.Member != nil && !*u.Member && len(u.Roles) > 0 {
			c.add(n, "%s: user has roles but member: false; drop one", what)
		}
		if u.Slug != "" && u.Org == "" {
			c.add(n, "%s: user.slug needs user.org (the organization id it stands for)", what)
		}
		switch u.Credential {
		case "", "jwt", "session", "api_key":
		default:
			c.add(n, "%s: user.credential must be jwt, session or api_key, got %q", what, u.Credential)
		}
		if (u.ImpersonatedBy != "" || u.ActiveOrg != "" || u.ActiveTeam != "") && u.Credential != "session" {
			c.add(n, "%s: impersonated_by, active_org and active_team are session fields: set credential: session", what)
		}
		if (len(u.KeyPermissions) > 0 || u.KeyOrg != "") && u.Credential != "api_key" {
			c.add(n, "%s: key_permissions and key_org describe an API key: set credential: api_key", what)
		}
		for _, name := range registeredClaims {
			if _, ok := u.Claims[name]; ok {
				c.add(n, "%s: user.claims may not set %q; the runner sets it", what, name)
			}
		}
	}

	e := tc.Expect
	if e.Decision != "allow" && e.Decision != "deny" {
		c.add(n, "%s: expect.decision must be allow or deny, got %q", what, e.Decision)
	}
	switch e.Status {
	case 0, 200, 401, 403, 503:
	default:
		c.add(n, "%s: expect.status must be 200, 401, 403 or 503, got %d", what, e.Status)
	}
}
