package policy

import (
	"fmt"
	"strings"
	"testing"
)

// benchPolicy generates a policy with 4*groups routes of the shapes a real
// API has: collections, items, actions and org-scoped subtrees.
func benchPolicy(groups int) string {
	var b strings.Builder
	b.WriteString(`jwt:
  issuer: https://auth.example
  audiences: [https://auth.example]
  jwks_url: https://auth.example/api/auth/jwks
organization:
  from: [path:org]
roles:
  member: { permissions: ["thing:*"] }
routes:
`)
	for i := 0; i < groups; i++ {
		fmt.Fprintf(&b, "  - { name: list-%d, methods: [GET], path: /api/g%d, authenticated: true }\n", i, i)
		fmt.Fprintf(&b, "  - { name: item-%d, methods: [GET, PUT], path: \"/api/g%d/{id}\", authenticated: true }\n", i, i)
		fmt.Fprintf(&b, "  - { name: action-%d, methods: [POST], path: \"/api/orgs/{org}/g%d/{id}/action\", require: [thing:act] }\n", i, i)
		fmt.Fprintf(&b, "  - { name: tree-%d, methods: [GET], path: \"/api/orgs/{org}/g%d/**\", require_any: [thing:read, thing:list] }\n", i, i)
	}
	return b.String()
}

func BenchmarkMatch(b *testing.B) {
	p := mustParse(b, benchPolicy(50))
	if len(p.Routes) != 200 {
		b.Fatalf("%d routes, want 200", len(p.Routes))
	}
	cases := []struct{ name, method, path, want string }{
		{"literal", "GET", "/api/g37", "list-37"},
		{"param", "PUT", "/api/g12/123", "item-12"},
		{"org-action", "POST", "/api/orgs/o1/g49/55/action", "action-49"},
		{"org-tree", "GET", "/api/orgs/o1/g3/a/b/c", "tree-3"},
		{"miss", "GET", "/api/nope/x", ""},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m, ok := p.Match(c.method, c.path)
				if ok != (c.want != "") || ok && m.Route.Name != c.want {
					b.Fatalf("Match(%s %s) = %v, %v", c.method, c.path, m.Route, ok)
				}
			}
		})
	}
}

func BenchmarkCheckPath(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckPath("/api/orgs/o1/g49/55/action", 4096); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	data := []byte(benchPolicy(50))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("bench.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}
