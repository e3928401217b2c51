package cache

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/invalidate"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

func newInvL1(t *testing.T, src Lookup[roles.Query, *roles.Access], inv *Invalidations, cfg L1Config) *L1[roles.Query, *roles.Access] {
	t.Helper()
	cfg.Invalidations = inv
	return accessL1(t, src, cfg)
}

func TestL1Invalidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// invalidate runs after u1 in org1, u1 by slug acme, u2 in org1 and
		// u1 without organization were cached.
		invalidate func(*Invalidations)
		// reloaded lists the queries (user/org) that must miss afterwards;
		// the others must still hit.
		reloaded map[string]bool
	}{
		{"user", func(s *Invalidations) { s.Invalidate("u:u1") },
			map[string]bool{"u1/org1": true, "u1/acme": true, "u1/": true}},
		{"organization by id catches entries cached under its slug", func(s *Invalidations) { s.Invalidate("o:org1") },
			map[string]bool{"u1/org1": true, "u1/acme": true, "u2/org1": true}},
		{"organization by slug", func(s *Invalidations) { s.Invalidate("o:acme") },
			map[string]bool{"u1/acme": true}},
		{"another user", func(s *Invalidations) { s.Invalidate("u:u9") }, map[string]bool{}},
		{"another organization", func(s *Invalidations) { s.Invalidate("o:org9") }, map[string]bool{}},
		{"everything", func(s *Invalidations) { s.All() },
			map[string]bool{"u1/org1": true, "u1/acme": true, "u2/org1": true, "u1/": true}},
		{"local flush", func(s *Invalidations) { s.FlushLocal() },
			map[string]bool{"u1/org1": true, "u1/acme": true, "u2/org1": true, "u1/": true}},
	}
	keys := [][2]string{{"u1", "org1"}, {"u1", "acme"}, {"u2", "org1"}, {"u1", ""}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inv := NewInvalidations(InvalidationsConfig{})
			l1 := newInvL1(t, &stampedSource{}, inv, L1Config{})
			for _, k := range keys {
				tierOf(t, l1, query(k[0], k[1]))
			}
			// An unrelated invalidation, then hits: each entry is checked
			// against the maps and remembered as fresh at this point, so the
			// invalidation below must get past that memory too.
			inv.Invalidate("u:unrelated")
			for _, k := range keys {
				if got := tierOf(t, l1, query(k[0], k[1])); got != roles.TierL1 {
					t.Fatalf("%s/%s after an unrelated invalidation: tier %v, want l1", k[0], k[1], got)
				}
			}
			tt.invalidate(inv)
			for _, k := range keys {
				want := roles.TierL1
				if tt.reloaded[k[0]+"/"+k[1]] {
					want = roles.TierSource
				}
				if got := tierOf(t, l1, query(k[0], k[1])); got != want {
					t.Errorf("%s/%s after invalidation: tier %v, want %v", k[0], k[1], got, want)
				}
				// The reloaded entry is served again.
				if got := tierOf(t, l1, query(k[0], k[1])); got != roles.TierL1 {
					t.Errorf("%s/%s second lookup: tier %v, want l1", k[0], k[1], got)
				}
			}
			if got, want := testutil.ToFloat64(l1.m.stale), float64(len(tt.reloaded)); got != want {
				t.Errorf("stale metric = %v, want %v", got, want)
			}
		})
	}
}

// A load that started before an invalidation may have read the old data:
// its answer goes to the callers already waiting, but is never served from
// L1 afterwards.
func TestL1LoadInFlightDuringInvalidation(t *testing.T) {
	t.Parallel()
	inv := NewInvalidations(InvalidationsConfig{})
	src := &stampedSource{gate: make(chan struct{}), entered: make(chan struct{})}
	l1 := newInvL1(t, src, inv, L1Config{})
	done := make(chan roles.Tier)
	go func() {
		_, tier, _ := l1.Lookup(context.Background(), query("u1", "org1"))
		done <- tier
	}()
	<-src.entered // the load has started
	inv.Invalidate("u:u1")
	src.gate <- struct{}{}
	<-done
	l1.Wait()
	src.gate, src.entered = nil, nil
	if got := tierOf(t, l1, query("u1", "org1")); got != roles.TierSource {
		t.Fatalf("answer loaded before the invalidation was served from L1 (tier %v)", got)
	}
}

// Answers from L2 may come from another replica whose clock is ahead: they
// count as loaded Skew earlier. And a local flush must not make L1 refuse
// what it has just read from L2 (which would turn every hit into an L2
// round trip).
func TestL1AnswersFromAnotherTier(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	inv := NewInvalidations(InvalidationsConfig{Skew: 300 * time.Millisecond, Now: clk.Now})
	inv.Invalidate("u:u1")
	// Loaded "after" the invalidation by a clock 200ms ahead.
	src := &stampedSource{tier: roles.TierL2, loadedAt: clk.Now().Add(200 * time.Millisecond)}
	l1 := newInvL1(t, src, inv, L1Config{Now: clk.Now})
	tierOf(t, l1, query("u1", "org1"))
	if got := tierOf(t, l1, query("u1", "org1")); got == roles.TierL1 {
		t.Error("an answer within the skew allowance of an invalidation was served from L1")
	}

	// An old answer from L2 after a local flush: loaded once, then hits.
	inv2 := NewInvalidations(InvalidationsConfig{Now: clk.Now})
	src2 := &stampedSource{tier: roles.TierL2, loadedAt: clk.Now().Add(-time.Minute)}
	l1b := newInvL1(t, src2, inv2, L1Config{Now: clk.Now})
	inv2.FlushLocal()
	clk.Advance(time.Second) // the loads below start after the flush
	for i, want := range []roles.Tier{roles.TierL2, roles.TierL1, roles.TierL1} {
		if got := tierOf(t, l1b, query("u1", "org1")); got != want {
			t.Errorf("lookup %d after a local flush: tier %v, want %v", i, got, want)
		}
	}
}

func TestInvalidationsPrune(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	inv := NewInvalidations(InvalidationsConfig{Horizon: time.Minute, Now: clk.Now})
	clk.Advance(time.Second)
	before := inv.now()
	clk.Advance(time.Second)
	inv.Invalidate("u:old")
	clk.Advance(time.Minute + time.Second)
	inv.Invalidate("u:new") // prunes "old"
	inv.mu.RLock()
	_, kept := inv.subjects["u:old"]
	n := len(inv.subjects)
	inv.mu.RUnlock()
	if kept || n != 1 {
		t.Fatalf("after the horizon: old kept=%v, %d users; want pruned, 1", kept, n)
	}
	// Forgetting must not make an answer loaded before it fresh again.
	if inv.fresh(before, packSubjects([]invalidate.Subject{"u:old"})) {
		t.Error("an answer loaded before a pruned invalidation is fresh")
	}
	if !inv.fresh(inv.now(), packSubjects([]invalidate.Subject{"u:old"})) {
		t.Error("an answer loaded now is not fresh")
	}
}

func TestNilInvalidations(t *testing.T) {
	t.Parallel()
	var inv *Invalidations
	inv.Invalidate("u:u")
	inv.All()
	inv.FlushLocal()
	l1 := newInvL1(t, &stampedSource{}, nil, L1Config{})
	tierOf(t, l1, query("u1", "org1"))
	if got := tierOf(t, l1, query("u1", "org1")); got != roles.TierL1 {
		t.Errorf("without invalidations: tier %v, want l1", got)
	}
}

// A hit of any kind, even one that must consult the map (something was
// invalidated after the entry was loaded, just not one of its subjects),
// neither allocates nor locks.
func TestL1HitDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	inv := NewInvalidations(InvalidationsConfig{})
	s := newL1Store(t, L1Config{TTL: time.Hour, Invalidations: inv})
	ctx := context.Background()
	hits := map[string]func() roles.Tier{}
	access := newL1(t, s, AccessKind(), Lookup[roles.Query, *roles.Access](&stampedSource{}))
	q := query("u1", "acme")
	hits["access"] = func() roles.Tier { _, tier, _ := access.Lookup(ctx, q); return tier }
	sessions := &sessionSource{byKey: map[string]authn.Session{
		"Uw0Y0ozqQPfejrG45dS328Gp5IwjHaPo": {Found: true, ID: "s1", UserID: "u1", ExpiresAt: time.Now().Add(time.Hour)},
		"s1":                               {Found: true, ID: "s1", UserID: "u1", ExpiresAt: time.Now().Add(time.Hour)},
	}}
	byToken := newL1(t, s, SessionTokenKind(), Lookup[string, *authn.Session](sessions))
	hits["session_token"] = func() roles.Tier { _, tier, _ := byToken.Lookup(ctx, "Uw0Y0ozqQPfejrG45dS328Gp5IwjHaPo"); return tier }
	byID := newL1(t, s, SessionIDKind(), Lookup[string, *authn.Session](sessions))
	hits["session_id"] = func() roles.Tier { _, tier, _ := byID.Lookup(ctx, "s1"); return tier }
	keys := &apiKeySource{byKey: map[string]authn.APIKey{"hash": {Found: true, ID: "k1", ReferenceID: "u1", Enabled: true}}}
	byHash := newL1(t, s, APIKeyKind(), Lookup[string, *authn.APIKey](keys))
	hits["apikey"] = func() roles.Tier { _, tier, _ := byHash.Lookup(ctx, "hash"); return tier }
	for _, hit := range hits {
		hit()
	}
	s.Wait()
	inv.Invalidate("u:someone else")
	inv.Invalidate("o:another org")
	for kind, hit := range hits {
		allocs := testing.AllocsPerRun(1000, func() {
			if tier := hit(); tier != roles.TierL1 {
				t.Fatalf("%s: not a hit", kind)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: a hit allocates %v times, want 0", kind, allocs)
		}
	}
}

// Near expiry, hits keep being served from L1 and exactly one background
// reload replaces the entry: a hot key never makes its callers wait for
// Postgres, nor sends a crowd there.
func TestL1RefreshAhead(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	src := &stampedSource{now: clk.Now}
	const ttl = time.Minute
	l1 := newInvL1(t, src, NewInvalidations(InvalidationsConfig{Now: clk.Now}), L1Config{TTL: ttl, RefreshAhead: 0.5, Now: clk.Now})
	tierOf(t, l1, query("u1", "org1"))
	src.gate = make(chan struct{})
	advance(clk, l1.s, ttl/2+time.Second) // inside the refresh window
	var wg sync.WaitGroup
	var notL1 atomic.Int64
	for range 50 {
		wg.Go(func() {
			if _, tier, _ := l1.Lookup(context.Background(), query("u1", "org1")); tier != roles.TierL1 {
				notL1.Add(1)
			}
		})
	}
	wg.Wait()
	if n := notL1.Load(); n != 0 {
		t.Errorf("%d of 50 hits near expiry were not served from L1", n)
	}
	close(src.gate) // let the one refresh finish
	joinLoad(l1, query("u1", "org1"))
	if n := src.calls.Load(); n != 2 {
		t.Errorf("source calls = %d, want 2 (the load and one refresh)", n)
	}
	// Counted by the refresh's own goroutine once the load has ended.
	waitFor(t, "the refresh counted", func() bool { return testutil.ToFloat64(l1.m.refreshes.WithLabelValues("ok")) == 1 })
	// The refreshed entry lives a full TTL from the refresh: past the first
	// entry's expiry it is still a hit (and not yet due for a refresh).
	advance(clk, l1.s, ttl/2-500*time.Millisecond)
	if got := tierOf(t, l1, query("u1", "org1")); got != roles.TierL1 {
		t.Errorf("after the first entry's expiry: tier %v, want l1 (refreshed)", got)
	}
	if got := testutil.ToFloat64(l1.m.misses); got != 1 {
		t.Errorf("misses = %v, want 1 (the first load only)", got)
	}
}

// BenchmarkL1Hit is an L1 hit of each kind without invalidation, with
// invalidation and nothing invalidated since the load (one atomic load),
// and with other subjects invalidated since (the map look-ups).
func BenchmarkL1Hit(b *testing.B) {
	token := "Uw0Y0ozqQPfejrG45dS328Gp5IwjHaPo"
	expires := time.Now().Add(time.Hour)
	sessions := &sessionSource{byKey: map[string]authn.Session{
		token:                              {Found: true, ID: "RxAskJaSNbP34TVdCSLFuNTOb8WGTCDJ", UserID: "wmqcNNDAFhgqwsYs2ruLs4oPdnL6vJeC", ExpiresAt: expires},
		"RxAskJaSNbP34TVdCSLFuNTOb8WGTCDJ": {Found: true, ID: "RxAskJaSNbP34TVdCSLFuNTOb8WGTCDJ", UserID: "wmqcNNDAFhgqwsYs2ruLs4oPdnL6vJeC", ExpiresAt: expires},
	}}
	keys := &apiKeySource{byKey: map[string]authn.APIKey{
		"kGO3dJ6Xq0Jd8sWTwLzvDq8u9gQ7bU3Jm2bXh0QjH4s": {Found: true, ID: "k1", ReferenceID: "wmqcNNDAFhgqwsYs2ruLs4oPdnL6vJeC", Enabled: true},
	}}
	kinds := []struct {
		name string
		hit  func(s *L1Store) func(ctx context.Context) roles.Tier
	}{
		{"access", func(s *L1Store) func(context.Context) roles.Tier {
			l := newL1(b, s, AccessKind(), Lookup[roles.Query, *roles.Access](&stampedSource{}))
			q := roles.Query{Subject: roles.Subject{UserID: "wmqcNNDAFhgqwsYs2ruLs4oPdnL6vJeC", OrgRef: "acme"}, Version: "0123456789abcdef"}
			return func(ctx context.Context) roles.Tier { _, tier, _ := l.Lookup(ctx, q); return tier }
		}},
		{"session_token", func(s *L1Store) func(context.Context) roles.Tier {
			l := newL1(b, s, SessionTokenKind(), Lookup[string, *authn.Session](sessions))
			return func(ctx context.Context) roles.Tier { _, tier, _ := l.Lookup(ctx, token); return tier }
		}},
		{"session_id", func(s *L1Store) func(context.Context) roles.Tier {
			l := newL1(b, s, SessionIDKind(), Lookup[string, *authn.Session](sessions))
			return func(ctx context.Context) roles.Tier {
				_, tier, _ := l.Lookup(ctx, "RxAskJaSNbP34TVdCSLFuNTOb8WGTCDJ")
				return tier
			}
		}},
		{"apikey", func(s *L1Store) func(context.Context) roles.Tier {
			l := newL1(b, s, APIKeyKind(), Lookup[string, *authn.APIKey](keys))
			return func(ctx context.Context) roles.Tier {
				_, tier, _ := l.Lookup(ctx, "kGO3dJ6Xq0Jd8sWTwLzvDq8u9gQ7bU3Jm2bXh0QjH4s")
				return tier
			}
		}},
	}
	for _, k := range kinds {
		for _, bc := range []struct {
			name string
			inv  bool
			busy bool
		}{{"off", false, false}, {"quiet", true, false}, {"busy", true, true}} {
			b.Run(k.name+"/"+bc.name, func(b *testing.B) {
				var inv *Invalidations
				if bc.inv {
					inv = NewInvalidations(InvalidationsConfig{})
				}
				s := newL1Store(b, L1Config{TTL: time.Hour, Invalidations: inv})
				hit := k.hit(s)
				ctx := context.Background()
				hit(ctx)
				s.Wait()
				if bc.busy {
					for i := range 1000 {
						inv.Invalidate(invalidate.UserSubject("user" + strconv.Itoa(i)))
						inv.Invalidate(invalidate.OrgSubject("other-org" + strconv.Itoa(i)))
					}
				}
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if tier := hit(ctx); tier != roles.TierL1 {
							b.Fatal("not a hit")
						}
					}
				})
			})
		}
	}
}

// Sessions and keys are refused once one of their subjects is invalidated:
// a session by its id or its user, whether it was found by token or by id;
// a key by its id or its owner.
func TestL1InvalidationOfSessionsAndKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		subject  invalidate.Subject
		reloaded []string // of token, id, key
	}{
		{"s:s1", []string{"token", "id"}},
		{"u:u1", []string{"token", "id", "key"}},
		{"k:k1", []string{"key"}},
		{"o:u1", []string{"key"}}, // the key's owner may be an organization
		{"s:s2", nil},
		{"u:u2", nil},
		{"k:k2", nil},
	}
	for _, tt := range tests {
		t.Run(string(tt.subject), func(t *testing.T) {
			t.Parallel()
			inv := NewInvalidations(InvalidationsConfig{})
			s := newL1Store(t, L1Config{TTL: time.Hour, Invalidations: inv})
			session := authn.Session{Found: true, ID: "s1", UserID: "u1", ExpiresAt: time.Now().Add(time.Hour)}
			sessions := &sessionSource{byKey: map[string]authn.Session{"tok": session, "s1": session}}
			keys := &apiKeySource{byKey: map[string]authn.APIKey{"hash": {Found: true, ID: "k1", ReferenceID: "u1", Enabled: true}}}
			lookups := map[string]func() roles.Tier{}
			byToken := newL1(t, s, SessionTokenKind(), Lookup[string, *authn.Session](sessions))
			lookups["token"] = func() roles.Tier { return tierOf(t, byToken, "tok") }
			byID := newL1(t, s, SessionIDKind(), Lookup[string, *authn.Session](sessions))
			lookups["id"] = func() roles.Tier { return tierOf(t, byID, "s1") }
			byHash := newL1(t, s, APIKeyKind(), Lookup[string, *authn.APIKey](keys))
			lookups["key"] = func() roles.Tier { return tierOf(t, byHash, "hash") }
			for _, lookup := range lookups {
				lookup()
			}
			inv.Invalidate(tt.subject)
			for name, lookup := range lookups {
				want := roles.TierL1
				if slices.Contains(tt.reloaded, name) {
					want = roles.TierSource
				}
				if got := lookup(); got != want {
					t.Errorf("%s after invalidating %s: tier %v, want %v", name, tt.subject, got, want)
				}
			}
		})
	}
}

func TestPackedSubjects(t *testing.T) {
	t.Parallel()
	long := invalidate.Subject("u:" + strings.Repeat("x", 300))
	for _, list := range [][]invalidate.Subject{nil, {"u:u1"}, {"u:u1", "o:acme", "o:org1"}, {long, "", "s:\x00\xff"}} {
		var got []invalidate.Subject
		for rest := packSubjects(list); ; {
			s, more, ok := rest.next()
			if !ok {
				break
			}
			got, rest = append(got, s), more
		}
		if !slices.Equal(got, list) {
			t.Errorf("packed %q, unpacked %q", list, got)
		}
	}
	// Not written by packSubjects: no subject, no panic.
	for _, bad := range []packedSubjects{"\x05ab", "\xff", "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"} {
		if _, _, ok := bad.next(); ok {
			t.Errorf("%q unpacked", bad)
		}
	}
}
