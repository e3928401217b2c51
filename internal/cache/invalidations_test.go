package cache

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// stampedSource answers like a source: a fresh Access per call, stamped
// with the time its "query" started, after an optional gate.
type stampedSource struct {
	calls atomic.Int64
	tier  roles.Tier
	// now is the clock of the stamps; time.Now when nil.
	now func() time.Time
	// loadedAt, when set, replaces the stamp (an answer loaded elsewhere).
	loadedAt time.Time
	// gate, when set, is received from before answering; entered, when
	// set, is sent to first.
	gate, entered chan struct{}
}

func (s *stampedSource) Resolve(ctx context.Context, q roles.Query) (*roles.Access, roles.Tier, error) {
	s.calls.Add(1)
	started := time.Now()
	if s.now != nil {
		started = s.now()
	}
	if s.entered != nil {
		s.entered <- struct{}{}
	}
	if s.gate != nil {
		<-s.gate
	}
	a := &roles.Access{UserFound: true, OrgID: "org1", Roles: []string{"admin"}, Permissions: []string{"leave:read"}, LoadedAt: started}
	if q.OrgRef != "org1" && q.OrgRef != "acme" {
		a.OrgID, a.Roles, a.Permissions = "", nil, nil
	}
	if !s.loadedAt.IsZero() {
		a.LoadedAt = s.loadedAt
	}
	tier := s.tier
	if tier == roles.TierNone {
		tier = roles.TierSource
	}
	return a, tier, nil
}

func newInvL1(t *testing.T, src roles.Resolver, inv *Invalidations, cfg L1Config) *L1 {
	t.Helper()
	cfg.Invalidations = inv
	if cfg.TTL == 0 {
		cfg.TTL = time.Hour
	}
	l1, err := NewL1(src, cfg, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l1.Close)
	return l1
}

// tierOf resolves q and waits for the store, returning who answered.
func tierOf(t *testing.T, l1 *L1, user, org string) roles.Tier {
	t.Helper()
	_, tier, err := l1.Resolve(context.Background(), query(user, org))
	if err != nil {
		t.Fatal(err)
	}
	l1.Wait()
	return tier
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
		{"user", func(s *Invalidations) { s.User("u1") },
			map[string]bool{"u1/org1": true, "u1/acme": true, "u1/": true}},
		{"organization by id catches entries cached under its slug", func(s *Invalidations) { s.Org("org1") },
			map[string]bool{"u1/org1": true, "u1/acme": true, "u2/org1": true}},
		{"organization by slug", func(s *Invalidations) { s.Org("acme") },
			map[string]bool{"u1/acme": true}},
		{"another user", func(s *Invalidations) { s.User("u9") }, map[string]bool{}},
		{"another organization", func(s *Invalidations) { s.Org("org9") }, map[string]bool{}},
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
				tierOf(t, l1, k[0], k[1])
			}
			// An unrelated invalidation, then hits: each entry is checked
			// against the maps and remembered as fresh at this point, so the
			// invalidation below must get past that memory too.
			inv.User("unrelated")
			for _, k := range keys {
				if got := tierOf(t, l1, k[0], k[1]); got != roles.TierL1 {
					t.Fatalf("%s/%s after an unrelated invalidation: tier %v, want l1", k[0], k[1], got)
				}
			}
			tt.invalidate(inv)
			for _, k := range keys {
				want := roles.TierL1
				if tt.reloaded[k[0]+"/"+k[1]] {
					want = roles.TierSource
				}
				if got := tierOf(t, l1, k[0], k[1]); got != want {
					t.Errorf("%s/%s after invalidation: tier %v, want %v", k[0], k[1], got, want)
				}
				// The reloaded entry is served again.
				if got := tierOf(t, l1, k[0], k[1]); got != roles.TierL1 {
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
		_, tier, _ := l1.Resolve(context.Background(), query("u1", "org1"))
		done <- tier
	}()
	<-src.entered // the load has started
	inv.User("u1")
	src.gate <- struct{}{}
	<-done
	l1.Wait()
	src.gate, src.entered = nil, nil
	if got := tierOf(t, l1, "u1", "org1"); got != roles.TierSource {
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
	inv.User("u1")
	// Loaded "after" the invalidation by a clock 200ms ahead.
	src := &stampedSource{tier: roles.TierL2, loadedAt: clk.Now().Add(200 * time.Millisecond)}
	l1 := newInvL1(t, src, inv, L1Config{Now: clk.Now})
	tierOf(t, l1, "u1", "org1")
	if got := tierOf(t, l1, "u1", "org1"); got == roles.TierL1 {
		t.Error("an answer within the skew allowance of an invalidation was served from L1")
	}

	// An old answer from L2 after a local flush: loaded once, then hits.
	inv2 := NewInvalidations(InvalidationsConfig{Now: clk.Now})
	src2 := &stampedSource{tier: roles.TierL2, loadedAt: clk.Now().Add(-time.Minute)}
	l1b := newInvL1(t, src2, inv2, L1Config{Now: clk.Now})
	inv2.FlushLocal()
	clk.Advance(time.Second) // the loads below start after the flush
	for i, want := range []roles.Tier{roles.TierL2, roles.TierL1, roles.TierL1} {
		if got := tierOf(t, l1b, "u1", "org1"); got != want {
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
	inv.User("old")
	clk.Advance(time.Minute + time.Second)
	inv.User("new") // prunes "old"
	inv.mu.RLock()
	_, kept := inv.users["old"]
	n := len(inv.users)
	inv.mu.RUnlock()
	if kept || n != 1 {
		t.Fatalf("after the horizon: old kept=%v, %d users; want pruned, 1", kept, n)
	}
	// Forgetting must not make an answer loaded before it fresh again.
	if inv.fresh(before, "old", "", "") {
		t.Error("an answer loaded before a pruned invalidation is fresh")
	}
	if !inv.fresh(inv.now(), "old", "", "") {
		t.Error("an answer loaded now is not fresh")
	}
}

func TestNilInvalidations(t *testing.T) {
	t.Parallel()
	var inv *Invalidations
	inv.User("u")
	inv.Org("o")
	inv.All()
	inv.FlushLocal()
	l1 := newInvL1(t, &stampedSource{}, nil, L1Config{})
	tierOf(t, l1, "u1", "org1")
	if got := tierOf(t, l1, "u1", "org1"); got != roles.TierL1 {
		t.Errorf("without invalidations: tier %v, want l1", got)
	}
}

// A hit, even one that must consult the maps (something was invalidated
// after the entry was loaded, just not its user or organization), does not
// allocate.
func TestL1HitDoesNotAllocate(t *testing.T) {
	inv := NewInvalidations(InvalidationsConfig{})
	l1 := newInvL1(t, &stampedSource{}, inv, L1Config{})
	q := query("u1", "acme")
	tierOf(t, l1, "u1", "acme")
	inv.User("someone else")
	inv.Org("another org")
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		if _, tier, _ := l1.Resolve(ctx, q); tier != roles.TierL1 {
			t.Fatal("not a hit")
		}
	})
	// The key concatenation is the one allocation the hit path had before.
	if allocs > 1 {
		t.Errorf("hit allocates %v times, want at most 1 (the key)", allocs)
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
	tierOf(t, l1, "u1", "org1")
	src.gate = make(chan struct{})
	advance(clk, l1, ttl/2+time.Second) // inside the refresh window
	var wg sync.WaitGroup
	var notL1 atomic.Int64
	for range 50 {
		wg.Go(func() {
			if _, tier, _ := l1.Resolve(context.Background(), query("u1", "org1")); tier != roles.TierL1 {
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
	waitFor(t, "the refresh counted", func() bool { return testutil.ToFloat64(l1.refreshes.WithLabelValues("ok")) == 1 })
	// The refreshed entry lives a full TTL from the refresh: past the first
	// entry's expiry it is still a hit (and not yet due for a refresh).
	advance(clk, l1, ttl/2-500*time.Millisecond)
	if got := tierOf(t, l1, "u1", "org1"); got != roles.TierL1 {
		t.Errorf("after the first entry's expiry: tier %v, want l1 (refreshed)", got)
	}
	if got := testutil.ToFloat64(l1.m.misses); got != 1 {
		t.Errorf("misses = %v, want 1 (the first load only)", got)
	}
}

// BenchmarkL1Hit is an L1 hit without invalidation, with invalidation and
// nothing invalidated since the load (one atomic load), and with other
// users and organizations invalidated since (the map look-ups).
func BenchmarkL1Hit(b *testing.B) {
	for _, bc := range []struct {
		name string
		inv  bool
		busy bool
	}{{"off", false, false}, {"quiet", true, false}, {"busy", true, true}} {
		b.Run(bc.name, func(b *testing.B) {
			var inv *Invalidations
			if bc.inv {
				inv = NewInvalidations(InvalidationsConfig{})
			}
			l1, err := NewL1(&stampedSource{}, L1Config{TTL: time.Hour, Invalidations: inv}, prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			defer l1.Close()
			ctx := context.Background()
			q := query("u1", "acme")
			l1.Resolve(ctx, q)
			l1.Wait()
			if bc.busy {
				for i := range 1000 {
					inv.User("user" + strconv.Itoa(i))
					inv.Org("other-org" + strconv.Itoa(i))
				}
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, tier, _ := l1.Resolve(ctx, q); tier != roles.TierL1 {
						b.Fatal("not a hit")
					}
				}
			})
		})
	}
}
