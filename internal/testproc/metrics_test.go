package testproc

import (
	"os"
	"strings"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	page := `# HELP authz_cache_lookups_total x
# TYPE authz_cache_lookups_total counter
authz_cache_lookups_total{kind="access",result="hit",tier="l1"} 10
authz_cache_lookups_total{kind="access",result="miss",tier="l1"} 3
authz_cache_lookups_total{kind="session",result="hit",tier="l1"} 5
authz_cache_lookups_total_extra{tier="l1"} 100
authz_checks_in_flight 2
odd{v="a \"quoted\", comma",tier="l1"} 1.5e3
`
	m, err := ParseMetrics(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"authz_cache_lookups_total", nil, 18},
		{"authz_cache_lookups_total", []string{"tier", "l1"}, 18},
		{"authz_cache_lookups_total", []string{"tier", "l1", "result", "hit"}, 15},
		{"authz_cache_lookups_total", []string{"kind", "access", "result", "hit"}, 10},
		{"authz_cache_lookups_total", []string{"tier", "l2"}, 0},
		{"authz_checks_in_flight", nil, 2},
		{"odd", []string{"v", `a "quoted", comma`}, 1500},
		{"missing", nil, 0},
	} {
		if got := m.Sum(tt.name, tt.labels...); got != tt.want {
			t.Errorf("Sum(%s, %v) = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	if got, want := m[0].LabelString(), `{kind="access",result="hit",tier="l1"}`; got != want {
		t.Errorf("LabelString = %s, want %s", got, want)
	}
	if got := m[4].LabelString(); got != "" {
		t.Errorf("LabelString of %s = %q, want none", m[4].Name, got)
	}
	for _, bad := range []string{"name{tier=\"l1} 1", "name{tier} 1", "name{} x", "{tier=\"x\"} 1", "name"} {
		if _, err := ParseMetrics(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseMetrics(%q) succeeded", bad)
		}
	}
}

func TestWritePolicy(t *testing.T) {
	t.Parallel()
	p := WritePolicyT(t, "http://127.0.0.1:4242", "leeway: 30s", "leeway: 0s")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		"issuer: http://127.0.0.1:4242", "audiences: [http://127.0.0.1:4242]",
		"jwks_url: http://127.0.0.1:4242/api/auth/jwks", "base_url: http://127.0.0.1:4242", "leeway: 0s",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("policy lacks %q", want)
		}
	}
	if strings.Contains(s, ShippedBetterAuthURL) {
		t.Error("policy still names the shipped address")
	}
	if _, err := WritePolicy("", t.TempDir(), "http://x", "no such text", "y"); err == nil {
		t.Error("a replacement of missing text succeeded")
	}
	if _, err := WritePolicy(t.TempDir(), t.TempDir(), "http://x"); err == nil {
		t.Error("a root without policies.yaml succeeded")
	}
}
