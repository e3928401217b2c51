package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// TestRequestFrames checks that an encoded template becomes a valid
// CheckRequest whose request id, in both places, is the request's own.
func TestRequestFrames(t *testing.T) {
	t.Parallel()
	q := &requests{d: newDataset(), salt: 0xabcdef01}
	const u, k = 42, 3
	tmpl, err := newTemplate(q.checkRequest(u, k, "lv_1", "tok.en.sig", idPlaceholder), q.d.Users[u].ID)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, i := range []uint64{0, 1, 1 << 40} {
		r := q.request(&tmpl, i)
		var got authv3.CheckRequest
		if err := proto.Unmarshal(r.Frame, &got); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		h := got.GetAttributes().GetRequest().GetHttp()
		id := h.GetId()
		if id != h.GetHeaders()["x-request-id"] || strings.Contains(id, "@") || len(id) != 36 || seen[id] {
			t.Errorf("request %d: id %q, x-request-id %q: want one fresh UUID-shaped id in both", i, id, h.GetHeaders()["x-request-id"])
		}
		seen[id] = true
		if want := "/api/orgs/" + q.d.Orgs[orgOf(u, k)] + "/leave/lv_1"; h.GetPath() != want || h.GetHeaders()[":path"] != want {
			t.Errorf("path %q, :path %q, want %q", h.GetPath(), h.GetHeaders()[":path"], want)
		}
		if h.GetHeaders()["authorization"] != "Bearer tok.en.sig" || r.UserID != q.d.Users[u].ID {
			t.Errorf("authorization %q, user %q", h.GetHeaders()["authorization"], r.UserID)
		}
	}
}

// TestCredentialRequests: each credential's requests carry it the way
// Better Auth's clients do, read back with the sidecar's own readers (the
// bench signs and hashes independently, after Better Auth's description),
// keep the 14 headers of the other scenarios, and name the right user; the
// stale cookie next to the other credentials never verifies.
func TestCredentialRequests(t *testing.T) {
	t.Parallel()
	q := &requests{d: newDataset(), salt: 1}
	q.sessionValues = make([]string, fewUsers)
	for u := range q.sessionValues {
		q.sessionValues[u] = signSession(testproc.BetterAuthSecret, q.d.Users[u].SessionToken)
	}
	secret, err := authn.NewSecret(testproc.BetterAuthSecret)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		cred  credential
		check func(t *testing.T, u int, h map[string]string)
	}{
		{"session cookie", credCookie, func(t *testing.T, u int, h map[string]string) {
			v, ok := authn.CookieValue(h["cookie"], sessionCookieName)
			if !ok {
				t.Fatalf("no %s in %q", sessionCookieName, h["cookie"])
			}
			if tok, err := secret.VerifySigned(v); err != nil || tok != q.d.Users[u].SessionToken {
				t.Errorf("cookie verifies as %q, %v; want the user's session token", tok, err)
			}
			if _, ok := h["authorization"]; ok || h["referer"] == "" {
				t.Errorf("authorization %q, referer %q: want a referer instead of authorization", h["authorization"], h["referer"])
			}
		}},
		{"bearer session", credBearer, func(t *testing.T, u int, h map[string]string) {
			tok, present, err := authn.SessionBearer(h["authorization"], secret, false)
			if !present || err != nil || tok != q.d.Users[u].SessionToken {
				t.Errorf("bearer %q reads as %q, %v, %v; want the user's session token", h["authorization"], tok, present, err)
			}
		}},
		{"API key", credAPIKey, func(t *testing.T, u int, h map[string]string) {
			key := h["x-api-key"]
			if key != q.d.Users[u].APIKey || !strings.HasPrefix(key, apiKeyPrefix) || len(key) != len(apiKeyPrefix)+64 {
				t.Errorf("x-api-key %q: want the user's key, its prefix and 64 letters", key)
			}
			if hashAPIKey(key) != authn.HashAPIKey(key) {
				t.Errorf("stored hash %q, the sidecar looks up %q", hashAPIKey(key), authn.HashAPIKey(key))
			}
			if _, ok := h["authorization"]; ok {
				t.Error("an API key request carries authorization too")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for u := range fewUsers {
				tmpl, err := newTemplate(q.credRequest(u, 0, tt.cred, "lv_1", "", idPlaceholder), q.d.Users[u].ID)
				if err != nil {
					t.Fatal(err)
				}
				r := q.request(&tmpl, uint64(u))
				var got authv3.CheckRequest
				if err := proto.Unmarshal(r.Frame, &got); err != nil {
					t.Fatal(err)
				}
				h := got.GetAttributes().GetRequest().GetHttp().GetHeaders()
				if len(h) != 14 || r.UserID != q.d.Users[u].ID {
					t.Errorf("user %d: %d headers, user %q; want 14 and %q", u, len(h), r.UserID, q.d.Users[u].ID)
				}
				tt.check(t, u, h)
				if tt.cred != credCookie {
					v, _ := authn.CookieValue(h["cookie"], sessionCookieName)
					if _, err := secret.VerifySigned(v); err == nil {
						t.Errorf("user %d: the stale cookie verifies", u)
					}
				}
			}
		})
	}
}

// TestOrgsDistinct: a user's memberships are in distinct organizations,
// or the L1 fill would count fewer memberships than it claims.
func TestOrgsDistinct(t *testing.T) {
	t.Parallel()
	for u := range numUsers {
		seen := map[int]bool{}
		for k := range orgsPerUser {
			o := orgOf(u, k)
			if seen[o] {
				t.Fatalf("user %d: organization %d twice", u, o)
			}
			seen[o] = true
		}
	}
}

func TestMetricsAndTiers(t *testing.T) {
	t.Parallel()
	scrape := func(l1h, l1m, l2h, l2m string) testproc.Metrics {
		m, err := testproc.ParseMetrics(strings.NewReader(`# HELP authz_cache_lookups_total x
# TYPE authz_cache_lookups_total counter
authz_cache_lookups_total{result="hit",tier="l1"} ` + l1h + `
authz_cache_lookups_total{result="miss",tier="l1"} ` + l1m + `
authz_cache_lookups_total{result="hit",tier="l2"} ` + l2h + `
authz_cache_lookups_total{result="miss",tier="l2"} ` + l2m + `
authz_cache_lookups_total{result="hit",tier="token"} 1e6
authz_cache_lookups_total_other 5
go_memstats_heap_inuse_bytes 1.048576e+06
`))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	before, after := scrape("10", "0", "0", "0"), scrape("20", "90", "60", "30")
	if got := after.Sum("authz_cache_lookups_total", "tier", "l1"); got != 110 {
		t.Errorf("sum of l1 lookups = %v, want 110", got)
	}
	if got := after.Sum("go_memstats_heap_inuse_bytes"); got != 1<<20 {
		t.Errorf("heap = %v, want %v", got, 1<<20)
	}
	l1, l2, pg := tierDelta(before, after).shares()
	if l1 != 0.1 || l2 != 0.6 || pg != 0.3 {
		t.Errorf("shares = %v/%v/%v, want 0.1/0.6/0.3", l1, l2, pg)
	}
	// Without an L2 tier every L1 miss is a Postgres load.
	if _, _, pg := (tiers{L1Hit: 1, L1Miss: 3}).shares(); pg != 0.75 {
		t.Errorf("pg share without L2 = %v, want 0.75", pg)
	}
}

func TestWritePolicy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := filepath.Join(dir, "p.yaml")
	k := &issuerKey{issuer: "http://127.0.0.1:4242"}
	if err := writePolicy("../../policies.yaml", out, k); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		"issuer: http://127.0.0.1:4242", "audiences: [http://127.0.0.1:4242]", "jwks_url: http://127.0.0.1:4242/api/auth/jwks",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("bench policy lacks %q", want)
		}
	}
	if strings.Contains(s, "127.0.0.1:3000") {
		t.Error("bench policy still points at the original issuer")
	}
	if err := writePolicy(out+".missing", out, k); err == nil {
		t.Error("writePolicy of a missing file succeeded")
	}
}

// TestParseConfigLoads: the closed-loop and fixed-rate loads come from the
// environment, and bad values are refused rather than ignored.
func TestParseConfigLoads(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		env      map[string]string
		conc     []int
		rates    []int
		rateDur  time.Duration
		inflight int
		wantErr  bool
	}{
		{name: "defaults", conc: []int{16, 64}, rates: []int{2000}, rateDur: 4 * time.Second, inflight: 256},
		{
			name: "lists", env: map[string]string{
				"BENCH_CONCURRENCY": "8", "BENCH_RATE": "2000, 5000", "BENCH_RATE_DURATION": "2s", "BENCH_RATE_INFLIGHT": "64",
			},
			conc: []int{8}, rates: []int{2000, 5000}, rateDur: 2 * time.Second, inflight: 64,
		},
		{name: "rate 0 skips fixed-rate runs", env: map[string]string{"BENCH_RATE": "0"},
			conc: []int{16, 64}, rates: nil, rateDur: 4 * time.Second, inflight: 256},
		{name: "negative rate", env: map[string]string{"BENCH_RATE": "-5"}, wantErr: true},
		{name: "0 inside a list", env: map[string]string{"BENCH_RATE": "2000,0"}, wantErr: true},
		{name: "not a number", env: map[string]string{"BENCH_RATE": "2k"}, wantErr: true},
		{name: "bad rate duration", env: map[string]string{"BENCH_RATE_DURATION": "0s"}, wantErr: true},
		{name: "no slots", env: map[string]string{"BENCH_RATE_INFLIGHT": "0"}, wantErr: true},
		{name: "bad concurrency", env: map[string]string{"BENCH_CONCURRENCY": "16,x"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig(nil, func(k string) string { return tt.env[k] }, io.Discard)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseConfig succeeded, want an error (rates %v)", c.Rates)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.Concurrency, tt.conc) || !slices.Equal(c.Rates, tt.rates) ||
				c.RateDuration != tt.rateDur || c.MaxInFlight != tt.inflight {
				t.Errorf("concurrency %v, rates %v, rate duration %v, in flight %d; want %v, %v, %v, %d",
					c.Concurrency, c.Rates, c.RateDuration, c.MaxInFlight, tt.conc, tt.rates, tt.rateDur, tt.inflight)
			}
		})
	}
}

// TestLoads: fixed-rate rows come after the closed-loop ones, only for the
// scenarios that have them, and a row is found by its own load only, so a
// sidecar row is never compared with the noop row of another load.
func TestLoads(t *testing.T) {
	t.Parallel()
	b := &bench{cfg: config{Concurrency: []int{16, 64}, Rates: []int{2000}}}
	byID := map[string]scenario{}
	for _, sc := range scenarios {
		byID[sc.ID] = sc
	}
	label := func(ls []load) []string {
		var out []string
		for _, l := range ls {
			out = append(out, l.String())
		}
		return out
	}
	for id, want := range map[string][]string{
		"a": {"16", "64", "@2000/s"}, "b": {"16", "64", "@2000/s"}, "c": {"16", "64", "@2000/s"}, "d": {"16", "64"},
		"e": {"16", "64", "@2000/s"}, "f": {"16", "64", "@2000/s"}, "g": {"16", "64", "@2000/s"},
	} {
		if got := label(b.loads(byID[id])); !slices.Equal(got, want) {
			t.Errorf("scenario %s loads %v, want %v", id, got, want)
		}
	}
	r := &report{Runs: []runRow{
		{Scenario: "b", Server: "noop", Concurrency: 16},
		{Scenario: "b", Server: "noop", FixedRate: &fixedRateRow{Rate: 2000}},
	}}
	if x := r.find("b", "noop", load{Rate: 2000}); x == nil || x.FixedRate == nil {
		t.Errorf("find @2000/s = %+v, want the fixed-rate row", x)
	}
	if x := r.find("b", "noop", load{Conc: 16}); x == nil || x.FixedRate != nil {
		t.Errorf("find 16 = %+v, want the closed-loop row", x)
	}
	for _, l := range []load{{Rate: 5000}, {Conc: 64}, {Conc: 2000}} {
		if x := r.find("b", "noop", l); x != nil {
			t.Errorf("find %s = %+v, want none", l, x)
		}
	}
}

// TestParseConfigSelection: BENCH_SCENARIOS picks from every scenario (all
// by default).
func TestParseConfigSelection(t *testing.T) {
	t.Parallel()
	var ids string
	for _, sc := range scenarios {
		ids += sc.ID
	}
	if ids != allScenarios {
		t.Fatalf("scenario ids %q, allScenarios %q", ids, allScenarios)
	}
	tests := []struct {
		name      string
		env       map[string]string
		scenarios string
		wantErr   bool
	}{
		{name: "defaults", scenarios: "abcdefgh"},
		{name: "new scenarios", env: map[string]string{"BENCH_SCENARIOS": "e,f,g"}, scenarios: "efg"},
		{name: "unknown scenario", env: map[string]string{"BENCH_SCENARIOS": "ai"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig(nil, func(k string) string { return tt.env[k] }, io.Discard)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseConfig succeeded (scenarios %q), want an error", c.Scenarios)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Scenarios != tt.scenarios {
				t.Errorf("scenarios %q, want %q", c.Scenarios, tt.scenarios)
			}
		})
	}
}
