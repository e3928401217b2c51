package envoyconf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/authz-sidecar/authz-sidecar/internal/policy"
)

func parsePolicy(t *testing.T, routes string) *policy.Policy {
	t.Helper()
	pol, err := policy.Parse("test.yaml", []byte("routes:\n"+routes))
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// shuffled lists routes against precedence order, so only sorting them
// gets Envoy's first match right.
const shuffled = `
  - { name: rest, path: "/a/**", public: true }
  - { name: any, path: "/a/{x}", public: true }
  - { name: exact, path: /a/b, public: true }
  - { name: exact-get, methods: [GET, HEAD], path: /a/b, public: true }
  - { name: var-rest, path: "/a/{x}/**", public: true }
  - { name: star, path: "/a/*/c", public: true }
  - { name: end, path: /a, public: true }
  - { name: root, path: /, public: true }
  - { name: root-rest, path: "/**", public: true }
  - { name: odd, methods: [POST], path: "/x:y/{id}/v1.2", public: true }
`

func TestRoutesOrder(t *testing.T) {
	t.Parallel()
	routes, warnings, err := Routes(parsePolicy(t, shuffled), "app")
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) > 0 {
		t.Errorf("warnings: %v", warnings)
	}
	var names []string
	for _, r := range routes {
		names = append(names, r.GetName())
	}
	// Literal before variable before **; a template that ends before a **
	// matching nothing; methods before none; then file order.
	// (star and odd cannot match the same path: their order is free.)
	want := []string{"exact-get", "exact", "odd", "star", "any", "var-rest", "end", "rest", "root", "root-rest", CatchAll}
	if !slices.Equal(names, want) {
		t.Errorf("order %v,\nwant  %v", names, want)
	}
}

func TestRouteMatch(t *testing.T) {
	t.Parallel()
	routes, _, err := Routes(parsePolicy(t, shuffled), "app")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*routev3.Route{}
	for _, r := range routes {
		byName[r.GetName()] = r
	}
	const seg = Segment
	tests := []struct {
		name, path, regex string
		methods           []string
		methodRegex       string
	}{
		{name: "exact", path: "/a/b"},
		{name: "exact-get", path: "/a/b", methodRegex: "GET|HEAD"},
		{name: "root", path: "/"},
		{name: "any", regex: "/a/" + seg},
		{name: "star", regex: "/a/" + seg + "/c"},
		{name: "rest", regex: "/a(/" + seg + ")*/?"},
		{name: "var-rest", regex: "/a/" + seg + "(/" + seg + ")*/?"},
		{name: "root-rest", regex: "(/" + seg + ")*/?"},
		{name: "odd", regex: `/x:y/` + seg + `/v1\.2`, methods: []string{"POST"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := byName[tt.name].GetMatch()
			if m.GetPath() != tt.path || m.GetSafeRegex().GetRegex() != tt.regex {
				t.Errorf("path %q regex %q, want %q %q", m.GetPath(), m.GetSafeRegex().GetRegex(), tt.path, tt.regex)
			}
			var methods []string
			methodRegex := ""
			for _, h := range m.GetHeaders() {
				if e := h.GetStringMatch().GetExact(); e != "" {
					methods = append(methods, e)
				}
				methodRegex += h.GetStringMatch().GetSafeRegex().GetRegex()
			}
			if !slices.Equal(methods, tt.methods) || methodRegex != tt.methodRegex {
				t.Errorf("methods %v %q, want %v %q", methods, methodRegex, tt.methods, tt.methodRegex)
			}
			ce, err := contextRoute(byName[tt.name])
			if err != nil || ce != tt.name {
				t.Errorf("context_extensions route %q (%v), want %q", ce, err, tt.name)
			}
		})
	}
}

func TestRoutesWarnsOfLargeRegexes(t *testing.T) {
	t.Parallel()
	_, warnings, err := Routes(parsePolicy(t, `
  - { name: deep, path: "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}", public: true }
  - { name: shallow, path: "/{a}/{b}/{c}/{d}/{e}", public: true }
`), "app")
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "deep") {
		t.Errorf("warnings %v, want one about route deep", warnings)
	}
	if _, _, err := Routes(parsePolicy(t, shuffled), ""); err == nil {
		t.Error("no cluster accepted")
	}
}

// loadRoutes reads a YAML list of routes the way Envoy reads YAML (YAML to
// JSON to proto), refusing unknown fields.
func loadRoutes(t *testing.T, data []byte) []*routev3.Route {
	t.Helper()
	var list []any
	if err := yaml.Unmarshal(data, &list); err != nil {
		t.Fatalf("yaml: %v\n%s", err, data)
	}
	js, err := json.Marshal(map[string]any{"name": "v", "domains": []string{"*"}, "routes": list})
	if err != nil {
		t.Fatal(err)
	}
	vh := &routev3.VirtualHost{}
	if err := protojson.Unmarshal(js, vh); err != nil {
		t.Fatalf("proto: %v", err)
	}
	if err := vh.ValidateAll(); err != nil {
		t.Fatalf("validation: %v", err)
	}
	return vh.GetRoutes()
}

// TestWriteRoutesRoundTrip: what WriteRoutes writes loads back as the
// routes it was given, for the shipped policy and a tricky one.
func TestWriteRoutesRoundTrip(t *testing.T) {
	t.Parallel()
	shipped, err := policy.Load("../../policies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, pol := range map[string]*policy.Policy{"shipped": shipped, "shuffled": parsePolicy(t, shuffled)} {
		for _, indent := range []int{0, 24} {
			t.Run(fmt.Sprintf("%s/indent %d", name, indent), func(t *testing.T) {
				t.Parallel()
				routes, _, err := Routes(pol, "app-cluster")
				if err != nil {
					t.Fatal(err)
				}
				var buf bytes.Buffer
				if err := WriteRoutes(&buf, routes, indent); err != nil {
					t.Fatal(err)
				}
				for _, l := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
					if !strings.HasPrefix(l, strings.Repeat(" ", indent)) || strings.HasPrefix(l, strings.Repeat(" ", indent+1)+"-") {
						t.Fatalf("line not indented by %d: %q", indent, l)
					}
				}
				got := loadRoutes(t, buf.Bytes())
				if diff := cmp.Diff(routes, got, protocmp.Transform()); diff != "" {
					t.Errorf("round trip (-written +read):\n%s", diff)
				}
			})
		}
	}
}

func TestWriteRoutesRefusesWhatItCannotWrite(t *testing.T) {
	t.Parallel()
	routes, _, err := Routes(parsePolicy(t, shuffled), "app")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(r *routev3.Route)
	}{
		{"route timeout", func(r *routev3.Route) { r.GetRoute().PrefixRewrite = "/x" }},
		{"header other than :method", func(r *routev3.Route) { r.Match.Headers[0].Name = "x-other" }},
		{"case-insensitive", func(r *routev3.Route) { r.Match.Headers[0].GetStringMatch().IgnoreCase = true }},
		{"other per-filter config", func(r *routev3.Route) {
			r.TypedPerFilterConfig["envoy.filters.http.cors"] = r.TypedPerFilterConfig[ExtAuthzFilter]
		}},
		{"decorator", func(r *routev3.Route) { r.Decorator = &routev3.Decorator{Operation: "x"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			again, _, _ := Routes(parsePolicy(t, shuffled), "app")
			tt.change(again[0]) // exact-get: a path and a :method matcher
			if err := WriteRoutes(&bytes.Buffer{}, again, 0); err == nil {
				t.Error("written without error")
			}
		})
	}
	if err := WriteRoutes(&bytes.Buffer{}, routes, 0); err != nil {
		t.Errorf("unchanged routes: %v", err)
	}
}

func TestYAMLString(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"health": "health", "/api/me": "/api/me", "a.b-c_d~e": "a.b-c_d~e",
		"true": `"true"`, "No": `"No"`, "null": `"null"`, "1x": `"1x"`, ".5": `".5"`, "/x:y": `"/x:y"`, "a b": `"a b"`, "": `""`,
	} {
		if got := yamlString(in); got != want {
			t.Errorf("yamlString(%q) = %s, want %s", in, got, want)
		}
		var back string
		if err := yaml.Unmarshal([]byte("v: "+yamlString(in)), &struct{ V *string }{&back}); err != nil || back != in {
			t.Errorf("%q reads back as %q (%v)", in, back, err)
		}
	}
}

func TestRequestHeaders(t *testing.T) {
	t.Parallel()
	shipped, err := policy.Load("../../policies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := RequestHeaders(shipped), []string{"authorization", "cookie", "origin", "referer", "x-api-key", "x-organization-id", "x-team-id"}; !slices.Equal(got, want) {
		t.Errorf("shipped policy: %v, want %v", got, want)
	}
	custom := parsePolicy(t, "  - { name: h, path: /h, public: true }\norganization:\n  from: [header:x-tenant]\n")
	if got, want := RequestHeaders(custom), []string{"authorization", "x-tenant"}; !slices.Equal(got, want) {
		t.Errorf("custom policy: %v, want %v", got, want)
	}
}

// TestRE2ProgramSize holds the estimate to sizes measured with libre2
// (20220601, RE2::ProgramSize): never below, and not far above.
func TestRE2ProgramSize(t *testing.T) {
	t.Parallel()
	const s = Segment
	for re, measured := range map[string]int{
		"/api/orgs/" + s + "/leave/" + s + "/approve": 49,
		"/api/orgs/" + s + "/leave":                   30,
		"/a/" + s:                                     17,
		"/" + s:                                       15,
		"/" + s + "/" + s + "/" + s + "/" + s + "/" + s: 59,
		"/api/orgs/" + s + "/leave(/" + s + ")*/?":      45,
		"(/" + s + ")*/?": 19,
		"/api/orgs/" + s + "/teams/" + s + "/board": 47,
		`/x:y/` + s + `/v1\.2`:                      24,
	} {
		if got := RE2ProgramSize(re); got < measured || got > measured+10 {
			t.Errorf("RE2ProgramSize(%q) = %d, measured %d", re, got, measured)
		}
	}
}
