package policy

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// The JSON Schema for editors (policies.schema.json, referenced from the
// shipped policies.yaml) must know exactly the keys the loader knows, and
// accept the policies the loader accepts.

const schemaPath = "../../policies.schema.json"

func loadSchemaJSON(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", schemaPath, err)
	}
	return doc
}

// at walks a JSON path of object keys.
func at(t *testing.T, doc map[string]any, path ...string) map[string]any {
	t.Helper()
	cur := doc
	for _, p := range path {
		next, ok := cur[p].(map[string]any)
		if !ok {
			t.Fatalf("schema has no object at %s", strings.Join(path, "."))
		}
		cur = next
	}
	return cur
}

func propertyNames(t *testing.T, obj map[string]any) []string {
	t.Helper()
	props, ok := obj["properties"].(map[string]any)
	if !ok {
		t.Fatal("no properties")
	}
	if obj["additionalProperties"] != false {
		t.Error("an object of the schema allows unknown keys; the loader refuses them")
	}
	var names []string
	for k := range props {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

func TestSchemaKnowsTheLoadersKeys(t *testing.T) {
	t.Parallel()
	doc := loadSchemaJSON(t)
	where := map[string][]string{
		"policy":     {},
		"jwt":        {"properties", "jwt"},
		"session":    {"properties", "session"},
		"api_keys":   {"properties", "api_keys"},
		"sources":    {"definitions", "sources"},
		"role":       {"definitions", "roles", "additionalProperties"},
		"admin":      {"properties", "admin"},
		"schema":     {"properties", "schema"},
		"route":      {"definitions", "route"},
		"route.user": {"definitions", "route", "properties", "user"},
	}
	for name, keys := range Keys {
		path, ok := where[name]
		if !ok {
			t.Errorf("the test does not know where the schema describes %q", name)
			continue
		}
		got := propertyNames(t, at(t, doc, path...))
		want := slices.Sorted(slices.Values(keys))
		if !slices.Equal(got, want) {
			t.Errorf("%s: schema keys %v, loader keys %v", name, got, want)
		}
	}
	for name := range where {
		if _, ok := Keys[name]; !ok {
			t.Errorf("the schema describes %q, which the loader does not know", name)
		}
	}
	var models []string
	for _, m := range at(t, doc, "definitions", "model")["enum"].([]any) {
		models = append(models, m.(string))
	}
	slices.Sort(models)
	if !slices.Equal(models, modelNames()) {
		t.Errorf("schema models %v, loader models %v", models, modelNames())
	}
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	abs, err := filepath.Abs(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jsonschema.NewCompiler().Compile(abs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// asJSON decodes YAML into the JSON data model the schema describes.
func asJSON(t *testing.T, src []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(src, &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSchemaAcceptsValidPolicies(t *testing.T) {
	t.Parallel()
	s := compileSchema(t)
	files := map[string][]byte{"full": []byte(fullPolicy)}
	for _, f := range []string{"../../policies.yaml", "../../deploy/policies.compose.yaml", "testdata/example.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		files[f] = b
	}
	for name, src := range files {
		if _, err := Parse(name, src); err != nil {
			t.Fatalf("%s: the loader refuses it: %v", name, err)
		}
		if err := s.Validate(asJSON(t, src)); err != nil {
			t.Errorf("%s: the schema refuses a valid policy: %v", name, err)
		}
	}
}

func TestSchemaRefusesWhatTheLoaderRefuses(t *testing.T) {
	t.Parallel()
	s := compileSchema(t)
	base := "api_keys: {}\nroutes:\n  - { name: me, path: /me, authenticated: true }\n"
	for _, doc := range []string{
		base + "defaults: deny\n",
		"api_keys: { header: X-Key }\n" + base[len("api_keys: {}\n"):],
		"session: { bearer: maybe }\n" + base,
		"api_keys: {}\nroutes:\n  - { name: me, path: /me, authenticated: true, public: true }\n",
		"api_keys: {}\nroutes:\n  - { name: me, path: /me }\n",
		"api_keys: {}\nroutes:\n  - { name: me, path: /me, authenticated: true, credentials: [cookie] }\n",
		"api_keys: {}\nroutes:\n  - { name: me, path: /me, require: [\"leave:*\"] }\n",
		"api_keys: {}\norganization: { from: [query:org] }\nroutes:\n  - { name: me, path: /me, authenticated: true }\n",
		"jwt: { issuer: a, audiences: [a], jwks_url: http://a/j, algorithms: [HS256] }\nroutes:\n  - { name: me, path: /me, authenticated: true }\n",
		base + "default: allow\n",
		base + "schema: { tables: { users: u } }\n",
	} {
		if err := s.Validate(asJSON(t, []byte(doc))); err == nil {
			t.Errorf("the schema accepts:\n%s", doc)
		}
		if _, err := Parse("p.yaml", []byte(doc)); err == nil {
			t.Errorf("the loader accepts:\n%s", doc)
		}
	}
}

func TestShippedPolicyReferencesTheSchema(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../policies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "# yaml-language-server: $schema=./policies.schema.json\n") {
		t.Error("policies.yaml does not point editors at policies.schema.json on its first line")
	}
}
