package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"testing"
)

const matchPolicy = `jwt:
  issuer: https://auth.example
  audiences: [https://auth.example]
  jwks_url: https://auth.example/api/auth/jwks
organization:
  from: [path:org, header:x-organization-id]
roles:
  member: { permissions: ["leave:read", "leave:approve", "org:read"] }
routes:
  - { name: root, path: /, public: true }
  - { name: health, methods: [GET, HEAD], path: /healthz, public: true }
  - { name: me, path: /api/me, authenticated: true }
  - { name: me-put, methods: [PUT], path: /api/me, authenticated: true }
  - { name: org, path: "/api/orgs/{org}", require: [org:read] }
  - { name: org-settings, methods: [GET], path: "/api/orgs/{org}/settings", require: [org:read] }
  - { name: org-star, path: "/api/orgs/{org}/*", require: [org:read] }
  - { name: approve, methods: [POST], path: "/api/orgs/{org}/leave/{id}/approve", require: [leave:approve] }
  - { name: leave-rest, methods: [GET], path: "/api/orgs/{org}/leave/**", require_any: [leave:read, leave:approve] }
  - { name: special-leave, path: /api/orgs/special/leave, authenticated: true }
  - { name: files, path: "/files/**", public: true }
  - { name: api-rest, path: "/api/**", authenticated: true }
  - { name: first, path: /dup, authenticated: true }
  - { name: second, path: /dup, authenticated: true }
  - { name: any-method, path: /m, authenticated: true }
  - { name: get-method, methods: [get], path: /m, authenticated: true }
  - { name: x-rest, path: "/x/**", authenticated: true }
  - { name: x-exact, path: /x, authenticated: true }
  - { name: everything, methods: [DELETE], path: "/**", authenticated: true }
`

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse("match.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func TestMatch(t *testing.T) {
	t.Parallel()
	p := mustParse(t, matchPolicy)
	tests := []struct {
		name, method, path string
		want               string            // route name; "" = no match
		params             map[string]string // checked when not nil
	}{
		{"root", "GET", "/", "root", nil},
		{"literal", "GET", "/healthz", "health", nil},
		{"second listed method", "HEAD", "/healthz", "health", nil},
		{"method not listed", "POST", "/healthz", "", nil},
		{"trailing slash is another path", "GET", "/healthz/", "", nil},
		{"case-sensitive", "GET", "/HEALTHZ", "", nil},
		{"methods listed beat none", "PUT", "/api/me", "me-put", nil},
		{"no methods = any method", "PATCH", "/api/me", "me", nil},
		{"trailing slash falls to **", "GET", "/api/me/", "api-rest", nil},
		{"param", "GET", "/api/orgs/o1", "org", map[string]string{"org": "o1"}},
		{"literal beats *", "GET", "/api/orgs/o1/settings", "org-settings", map[string]string{"org": "o1"}},
		{"wrong method falls back to *", "POST", "/api/orgs/o1/settings", "org-star", map[string]string{"org": "o1"}},
		{"star", "GET", "/api/orgs/o1/members", "org-star", map[string]string{"org": "o1"}},
		{"two params", "POST", "/api/orgs/o1/leave/42/approve", "approve", map[string]string{"org": "o1", "id": "42"}},
		{"method decides between templates", "GET", "/api/orgs/o1/leave/42/approve", "leave-rest", map[string]string{"org": "o1"}},
		{"** matches zero segments", "GET", "/api/orgs/o1/leave", "leave-rest", map[string]string{"org": "o1"}},
		{"** matches a trailing slash", "GET", "/api/orgs/o1/leave/", "leave-rest", nil},
		{"** matches many segments", "GET", "/api/orgs/o1/leave/a/b/c", "leave-rest", map[string]string{"org": "o1"}},
		{"leftmost literal wins", "GET", "/api/orgs/special/leave", "special-leave", map[string]string{}},
		{"param never matches empty", "GET", "/api/orgs//leave", "api-rest", nil},
		{"star never matches empty", "GET", "/api/orgs/o1/", "api-rest", nil},
		{"outer **", "GET", "/api/orgs", "api-rest", nil},
		{"** at zero on root-level", "GET", "/files", "files", nil},
		{"** deep", "GET", "/files/a/b/c.txt", "files", nil},
		{"file order", "GET", "/dup", "first", nil},
		{"listed method beats earlier any-method", "GET", "/m", "get-method", nil},
		{"any-method for other methods", "POST", "/m", "any-method", nil},
		{"methods are case-sensitive", "get", "/m", "any-method", nil},
		{"unknown method", "PROPFIND", "/m", "any-method", nil},
		{"exact beats ** at zero", "GET", "/x", "x-exact", nil},
		{"** one segment", "GET", "/x/y", "x-rest", nil},
		{"root ** only for its method", "DELETE", "/nope/a", "everything", nil},
		{"literal beats root ** even for its method", "DELETE", "/healthz", "everything", nil},
		{"unmatched", "GET", "/nope", "", nil},
		{"empty path", "GET", "", "", nil},
		{"relative path", "GET", "api/me", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, ok := p.Match(tt.method, tt.path)
			if tt.want == "" {
				if ok {
					t.Fatalf("Match(%q, %q) = %q, want no match", tt.method, tt.path, m.Route.Name)
				}
				if m.Route != nil {
					t.Error("no match but Route is set")
				}
				return
			}
			if !ok {
				t.Fatalf("Match(%q, %q): no match, want %q", tt.method, tt.path, tt.want)
			}
			if m.Route.Name != tt.want {
				t.Fatalf("Match(%q, %q) = %q, want %q", tt.method, tt.path, m.Route.Name, tt.want)
			}
			for k, v := range tt.params {
				if got, ok := m.Param(k); !ok || got != v {
					t.Errorf("Param(%q) = %q, %v; want %q", k, got, ok, v)
				}
			}
			if _, ok := m.Param("nope"); ok {
				t.Error("Param(nope) ok")
			}
			if _, ok := m.Param(""); ok {
				t.Error("Param(\"\") ok: a * segment must not be reachable by name")
			}
		})
	}
}

func TestMatchZeroValue(t *testing.T) {
	t.Parallel()
	var m Match
	if _, ok := m.Param("org"); ok {
		t.Error("zero Match has a param")
	}
	var p Policy
	if _, ok := p.Match("GET", "/"); ok {
		t.Error("zero Policy matched")
	}
}

func TestRouteMatch(t *testing.T) {
	t.Parallel()
	p := mustParse(t, matchPolicy)
	tests := []struct {
		route, path string
		ok          bool
		params      map[string]string
	}{
		{"approve", "/api/orgs/o1/leave/7/approve", true, map[string]string{"org": "o1", "id": "7"}},
		{"approve", "/api/orgs/o1/leave/7", false, nil},
		{"approve", "/api/orgs/o1/leave/7/approve/", false, nil},
		{"approve", "/api/orgs//leave/7/approve", false, nil},
		{"leave-rest", "/api/orgs/o1/leave", true, map[string]string{"org": "o1"}},
		{"leave-rest", "/api/orgs/o1/leave/x/y", true, map[string]string{"org": "o1"}},
		{"leave-rest", "/api/orgs/o1", false, nil},
		{"root", "/", true, nil},
		{"root", "/a", false, nil},
		{"me", "/api/me", true, nil},
		{"me", "/api/me/", false, nil},
		{"me", "api/me", false, nil},
		{"org-star", "/api/orgs/o1/x", true, map[string]string{"org": "o1"}},
	}
	for _, tt := range tests {
		r, _ := p.Route(tt.route)
		m, ok := r.Match(tt.path)
		if ok != tt.ok {
			t.Errorf("route %s .Match(%q) ok = %v, want %v", tt.route, tt.path, ok, tt.ok)
			continue
		}
		if ok && m.Route != r {
			t.Errorf("route %s .Match(%q) returned route %v", tt.route, tt.path, m.Route)
		}
		for k, v := range tt.params {
			if got, _ := m.Param(k); got != v {
				t.Errorf("route %s .Match(%q) Param(%q) = %q, want %q", tt.route, tt.path, k, got, v)
			}
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	p := mustParse(t, matchPolicy)
	r, _ := p.Route("approve")
	allocs := testing.AllocsPerRun(1000, func() {
		m, ok := p.Match("POST", "/api/orgs/o1/leave/42/approve")
		if !ok {
			t.Fatal("no match")
		}
		if v, _ := m.Param("id"); v != "42" {
			t.Fatal("bad param")
		}
		if _, ok := r.Match("/api/orgs/o1/leave/42/approve"); !ok {
			t.Fatal("no route match")
		}
		if err := CheckPath("/api/orgs/o1/leave/42/approve", 4096); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("allocations per match = %v, want 0", allocs)
	}
}

// referenceMatch is a slow, obviously-correct statement of the precedence
// rules in the package documentation: collect every matching route, then
// sort them.
func referenceMatch(p *Policy, method, path string) *Route {
	var cands []*Route
	for _, r := range p.Routes {
		if len(r.Methods) > 0 && !slices.Contains(r.Methods, method) {
			continue
		}
		if _, ok := r.Match(path); ok {
			cands = append(cands, r)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	rank := func(r *Route, i int) int {
		if i >= len(r.segs) {
			return 4 // template ended with the path: beats ** at zero segments
		}
		switch r.segs[i].kind {
		case segLiteral:
			return 3
		case segParam, segStar:
			return 2
		}
		return 1
	}
	index := func(r *Route) int { return slices.Index(p.Routes, r) }
	slices.SortStableFunc(cands, func(a, b *Route) int {
		for i := 0; i < max(len(a.segs), len(b.segs)); i++ {
			if c := cmp.Compare(rank(b, i), rank(a, i)); c != 0 {
				return c
			}
		}
		lists := func(r *Route) int { return min(len(r.Methods), 1) }
		if c := cmp.Compare(lists(b), lists(a)); c != 0 {
			return c
		}
		return cmp.Compare(index(a), index(b))
	})
	return cands[0]
}

func TestMatchAgreesWithReference(t *testing.T) {
	t.Parallel()
	p := mustParse(t, matchPolicy)
	segs := []string{"api", "orgs", "o1", "leave", "42", "approve", "me", "settings", "special", "files", "x", "m", "dup", "healthz", ""}
	methods := []string{"GET", "POST", "PUT", "DELETE", "HEAD", "PROPFIND"}
	// Every path of up to 4 segments drawn from segs, with every method.
	var walk func(path string, depth int)
	n := 0
	walk = func(path string, depth int) {
		for _, method := range methods {
			checkAgainstReference(t, p, method, path)
			n++
		}
		if depth == 4 {
			return
		}
		for _, s := range segs {
			if path == "/" {
				walk("/"+s, depth+1)
			} else {
				walk(path+"/"+s, depth+1)
			}
		}
	}
	walk("/", 0)
	if n < 100000 {
		t.Fatalf("only %d cases", n)
	}
}

func checkAgainstReference(t testing.TB, p *Policy, method, path string) {
	t.Helper()
	m, ok := p.Match(method, path)
	want := referenceMatch(p, method, path)
	if want == nil {
		if ok {
			t.Fatalf("Match(%q, %q) = %q, reference: no match", method, path, m.Route.Name)
		}
		return
	}
	if !ok || m.Route != want {
		got := "<none>"
		if ok {
			got = m.Route.Name
		}
		t.Fatalf("Match(%q, %q) = %s, reference %s", method, path, got, want.Name)
	}
	rm, _ := want.Match(path)
	if rm.vals != m.vals {
		t.Fatalf("Match(%q, %q) params %q, route's own match %q", method, path, m.vals, rm.vals)
	}
	for _, v := range m.vals[:len(m.Route.params)] {
		if v == "" || strings.Contains(v, "/") || !strings.Contains(path, v) {
			t.Fatalf("Match(%q, %q) captured %q", method, path, v)
		}
	}
}

// TestCompileTemplateParams: a template may have MaxParams wildcards, not
// one more.
func TestCompileTemplateParams(t *testing.T) {
	t.Parallel()
	tmpl := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "/{p%d}", i)
		}
		return b.String()
	}
	tests := []struct {
		name     string
		tmpl     string
		params   int
		problems int
	}{
		{"MaxParams wildcards", tmpl(MaxParams), MaxParams, 0},
		{"one too many", tmpl(MaxParams + 1), MaxParams + 1, 1},
		{"stars count too", tmpl(MaxParams) + "/*", MaxParams + 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, params, problems := compileTemplate(tt.tmpl)
			if len(params) != tt.params || len(problems) != tt.problems {
				t.Errorf("compileTemplate(%q): %d params, problems %q; want %d params, %d problems", tt.tmpl, len(params), problems, tt.params, tt.problems)
			}
		})
	}
}

// TestIsParamName checks [A-Za-z_][A-Za-z0-9_]* byte by byte.
func TestIsParamName(t *testing.T) {
	t.Parallel()
	const (
		first = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"
		rest  = first + "0123456789"
	)
	if isParamName("") {
		t.Error(`isParamName("") = true`)
	}
	for i := range 256 {
		c := string(rune(i))
		if i >= 0x80 {
			c = string([]byte{byte(i)})
		}
		if got, want := isParamName(c), strings.Contains(first, c); got != want {
			t.Errorf("isParamName(%q) = %v, want %v", c, got, want)
		}
		if got, want := isParamName("x"+c), strings.Contains(rest, c); got != want {
			t.Errorf("isParamName(%q) = %v, want %v", "x"+c, got, want)
		}
	}
}
