package policy

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(matchPolicy))
	f.Add([]byte(withRoutes(okRoute)))
	f.Add([]byte(""))
	f.Add([]byte("jwt: [a,\n"))
	f.Add([]byte("a: &x 1\nb: *x\n"))
	f.Add([]byte("roles:\n  a: { inherits: [b] }\n  b: { inherits: [a] }\n"))
	f.Add([]byte("routes:\n  - { name: r, path: \"/{a}/{a}/**/x\", public: true }\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if err != nil {
			if p != nil {
				t.Fatal("policy and error together")
			}
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("error %T is not *Error", err)
			}
			if len(perr.Problems) == 0 {
				t.Fatal("*Error without problems")
			}
			for _, pr := range perr.Problems {
				if pr.Line <= 0 || pr.Column < 0 || pr.File != "fuzz.yaml" || pr.Message == "" {
					t.Fatalf("bad problem %+v", pr)
				}
			}
			return
		}
		if len(p.Version) != 16 || p.Default != "deny" || len(p.Routes) == 0 {
			t.Fatalf("bad policy %+v", p)
		}
		for _, r := range p.Routes {
			if got, ok := p.Route(r.Name); !ok || got != r {
				t.Fatalf("Route(%q) lookup failed", r.Name)
			}
			// Every route must match a path built from its own template.
			path := strings.NewReplacer("{", "", "}", "", "**", "rest", "*", "star").Replace(r.Path)
			if _, ok := r.Match(path); !ok {
				t.Fatalf("route %q does not match %q", r.Name, path)
			}
			method := "GET"
			if len(r.Methods) > 0 {
				method = r.Methods[0]
			}
			if _, ok := p.Match(method, path); !ok {
				t.Fatalf("policy does not match %s %q (route %q)", method, path, r.Name)
			}
		}
	})
}

func FuzzMatch(f *testing.F) {
	p := mustParse(f, matchPolicy)
	for _, s := range []struct{ method, path string }{
		{"GET", "/"},
		{"POST", "/api/orgs/o1/leave/42/approve"},
		{"GET", "/api/orgs/o1/leave/"},
		{"GET", "/api/orgs//leave"},
		{"DELETE", "/x/y/z"},
		{"get", "/m"},
		{"GET", ""},
		{"GET", "//"},
		{"GET", "/api/orgs/special/leave"},
	} {
		f.Add(s.method, s.path)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		_ = CheckPath(path, 4096)
		_ = SplitQuery(path)
		checkAgainstReference(t, p, method, path)
	})
}
