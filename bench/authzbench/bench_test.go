package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
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
	scrape := func(l1h, l1m, l2h, l2m string) metrics {
		m, err := parseMetrics(strings.NewReader(`# HELP authz_cache_lookups_total x
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
	if got := after.sum("authz_cache_lookups_total", `tier="l1"`); got != 110 {
		t.Errorf("sum of l1 lookups = %v, want 110", got)
	}
	if got := after.sum("go_memstats_heap_inuse_bytes"); got != 1<<20 {
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
