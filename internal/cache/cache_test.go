package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

func TestL1HitsAfterLoad(t *testing.T) {
	t.Parallel()
	src := &stampedSource{}
	l1 := accessL1(t, src, L1Config{TTL: time.Minute})
	ctx := context.Background()

	a, tier, err := l1.Lookup(ctx, query("u1", "org1"))
	if err != nil || tier != roles.TierSource || !a.Member() {
		t.Fatalf("first lookup = %+v, %v, %v; want member from source", a, tier, err)
	}
	l1.Wait()
	a, tier, err = l1.Lookup(ctx, query("u1", "org1"))
	if err != nil || tier != roles.TierL1 || !a.Grants.All([]string{"leave:approve"}) {
		t.Fatalf("second lookup = %+v, %v, %v; want L1 hit", a, tier, err)
	}
	if n := src.calls.Load(); n != 1 {
		t.Errorf("source calls = %d, want 1", n)
	}
	// A different policy version is a different key: never served from
	// permissions computed under the old roles.
	q2 := query("u1", "org1")
	q2.Version = "v2"
	if _, tier, _ := l1.Lookup(ctx, q2); tier == roles.TierL1 {
		t.Error("policy version v2 was served from an entry of v1")
	}
	// So is another team.
	q3 := query("u1", "org1")
	q3.TeamRef = "t1"
	if _, tier, _ := l1.Lookup(ctx, q3); tier == roles.TierL1 {
		t.Error("a team's lookup was served from the organization's entry")
	}
	if got := testutil.ToFloat64(l1.m.hits); got != 1 {
		t.Errorf("hits metric = %v, want 1", got)
	}
}

// Kinds share one store, never one another's entries: an access key and
// a session key made of the same characters stay apart.
func TestL1KindsShareTheStore(t *testing.T) {
	t.Parallel()
	s := newL1Store(t, L1Config{TTL: time.Hour})
	sessions := &sessionSource{byKey: map[string]authn.Session{
		"v1|u1|org1|": {Found: true, ID: "s1", UserID: "u1", ExpiresAt: time.Now().Add(time.Hour)},
	}}
	byID := newL1(t, s, SessionIDKind(), Lookup[string, *authn.Session](sessions))
	keys := &apiKeySource{byKey: map[string]authn.APIKey{"v1|u1|org1|": {Found: true, ID: "k1", Enabled: true}}}
	byHash := newL1(t, s, APIKeyKind(), Lookup[string, *authn.APIKey](keys))
	access := newL1(t, s, AccessKind(), Lookup[roles.Query, *roles.Access](&stampedSource{}))
	for range 2 {
		if a, _, _ := access.Lookup(context.Background(), query("u1", "org1")); !a.Member() {
			t.Fatal("access answer lost")
		}
		if v, _, _ := byID.Lookup(context.Background(), "v1|u1|org1|"); v.ID != "s1" {
			t.Fatalf("session answer %+v", v)
		}
		if v, _, _ := byHash.Lookup(context.Background(), "v1|u1|org1|"); v.ID != "k1" {
			t.Fatalf("key answer %+v", v)
		}
		s.Wait()
	}
	if sessions.calls.Load() != 1 || keys.calls.Load() != 1 {
		t.Errorf("source calls %d %d, want 1 1", sessions.calls.Load(), keys.calls.Load())
	}
	// The same kind registered twice on one store's registry is refused.
	if _, err := NewL1(s, SessionIDKind(), Lookup[string, *authn.Session](sessions)); err == nil {
		t.Error("a second session_id L1 on one store was accepted")
	}
}

func TestL1CollapsesConcurrentMisses(t *testing.T) {
	t.Parallel()
	src := &stampedSource{gate: make(chan struct{})}
	l1 := accessL1(t, src, L1Config{TTL: time.Minute})
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, _, err := l1.Lookup(context.Background(), query("u1", "org1")); err != nil {
				t.Error(err)
			}
		})
	}
	// Every caller has missed while the first load is held at the gate:
	// the others joined it instead of loading.
	waitFor(t, "50 misses and a load", func() bool {
		return testutil.ToFloat64(l1.m.misses) == 50 && src.calls.Load() > 0
	})
	if n := src.calls.Load(); n != 1 {
		t.Errorf("50 concurrent misses made %d loads, want 1", n)
	}
	close(src.gate)
	wg.Wait()
}

// More loads at once than the store has loaders: each still starts at
// once (the others on goroutines of their own), none waits for a loader.
func TestL1LoadsBeyondTheLoaders(t *testing.T) {
	t.Parallel()
	src := &stampedSource{gate: make(chan struct{})}
	l1 := accessL1(t, src, L1Config{TTL: time.Minute})
	const n = 2 * loaderCount
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			a, tier, err := l1.Lookup(context.Background(), query(fmt.Sprintf("u%d", i), "org1"))
			if err != nil || tier != roles.TierSource || !a.UserFound {
				t.Errorf("u%d: %v, %v, %v; want a load from the source", i, a, tier, err)
			}
		})
	}
	// Every load is held at the gate, so all n are running together.
	waitFor(t, "every load started", func() bool { return src.calls.Load() == n })
	close(src.gate)
	wg.Wait()
	if got := src.calls.Load(); got != n {
		t.Errorf("%d loads for %d keys", got, n)
	}
}

// After the store is closed (its loaders gone), a miss still loads.
func TestL1LoadsAfterClose(t *testing.T) {
	t.Parallel()
	src := &stampedSource{}
	l1 := accessL1(t, src, L1Config{TTL: time.Minute})
	l1.s.Close()
	if _, tier, err := l1.Lookup(context.Background(), query("u1", "org1")); err != nil || tier != roles.TierSource {
		t.Fatalf("lookup after Close: %v, %v; want a load from the source", tier, err)
	}
}

func TestL1ErrorsAreNotCached(t *testing.T) {
	t.Parallel()
	src := &stampedSource{err: roles.ErrUnavailable}
	l1 := accessL1(t, src, L1Config{TTL: time.Minute})
	for range 2 {
		if _, _, err := l1.Lookup(context.Background(), query("u1", "org1")); !errors.Is(err, roles.ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
		l1.Wait()
	}
	if n := src.calls.Load(); n != 2 {
		t.Errorf("source calls = %d, want 2 (errors must not be cached)", n)
	}
}

func TestL1CallerDeadlineDoesNotCancelLoad(t *testing.T) {
	t.Parallel()
	src := &stampedSource{gate: make(chan struct{})} // the load cannot end before the caller's deadline
	l1 := accessL1(t, src, L1Config{TTL: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, _, err := l1.Lookup(ctx, query("u1", "org1")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	// The detached load finishes and fills the cache for the next caller.
	close(src.gate)
	joinLoad(l1, query("u1", "org1"))
	if _, tier, err := l1.Lookup(context.Background(), query("u1", "org1")); err != nil || tier != roles.TierL1 {
		t.Fatalf("after the detached load: %v, %v; want an L1 hit", tier, err)
	}
	if n := src.calls.Load(); n != 1 {
		t.Errorf("source calls = %d, want 1", n)
	}
}

// Each kind's answers live the TTL when they say something exists and the
// negative TTL otherwise, on the L1 clock.
func TestL1TTLs(t *testing.T) {
	t.Parallel()
	const ttl, negative = time.Minute, 10 * time.Second
	far := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		lookup func(s *L1Store, clk *fakeClock) func() roles.Tier
		want   time.Duration
	}{
		{"member", func(s *L1Store, _ *fakeClock) func() roles.Tier {
			l := newL1(t, s, AccessKind(), Lookup[roles.Query, *roles.Access](&stampedSource{}))
			return func() roles.Tier { return tierOf(t, l, query("u1", "org1")) }
		}, ttl},
		{"user without organization", func(s *L1Store, _ *fakeClock) func() roles.Tier {
			l := newL1(t, s, AccessKind(), Lookup[roles.Query, *roles.Access](&stampedSource{}))
			return func() roles.Tier { return tierOf(t, l, query("u1", "")) }
		}, ttl},
		{"not a member", func(s *L1Store, _ *fakeClock) func() roles.Tier {
			l := newL1(t, s, AccessKind(), Lookup[roles.Query, *roles.Access](&stampedSource{}))
			return func() roles.Tier { return tierOf(t, l, query("u1", "org9")) }
		}, negative},
		{"session", func(s *L1Store, _ *fakeClock) func() roles.Tier {
			src := &sessionSource{byKey: map[string]authn.Session{"tok": {Found: true, ID: "s1", UserID: "u1", ExpiresAt: far}}}
			l := newL1(t, s, SessionTokenKind(), Lookup[string, *authn.Session](src))
			return func() roles.Tier { return tierOf(t, l, "tok") }
		}, ttl},
		{"no such session", func(s *L1Store, _ *fakeClock) func() roles.Tier {
			l := newL1(t, s, SessionTokenKind(), Lookup[string, *authn.Session](&sessionSource{}))
			return func() roles.Tier { return tierOf(t, l, "tok") }
		}, negative},
		{"API key", func(s *L1Store, _ *fakeClock) func() roles.Tier {
			src := &apiKeySource{byKey: map[string]authn.APIKey{"h": {Found: true, ID: "k1", Enabled: true}}}
			l := newL1(t, s, APIKeyKind(), Lookup[string, *authn.APIKey](src))
			return func() roles.Tier { return tierOf(t, l, "h") }
		}, ttl},
		{"no such API key", func(s *L1Store, _ *fakeClock) func() roles.Tier {
			l := newL1(t, s, APIKeyKind(), Lookup[string, *authn.APIKey](&apiKeySource{}))
			return func() roles.Tier { return tierOf(t, l, "h") }
		}, negative},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := newFakeClock()
			s := newL1Store(t, L1Config{TTL: ttl, NegativeTTL: negative, RefreshAhead: -1, Now: clk.Now})
			lookup := tt.lookup(s, clk)
			if got := lookup(); got != roles.TierSource {
				t.Fatalf("first lookup: %v", got)
			}
			advance(clk, s, tt.want-time.Nanosecond)
			if got := lookup(); got != roles.TierL1 {
				t.Fatalf("just before %v: tier %v, want l1", tt.want, got)
			}
			advance(clk, s, time.Nanosecond)
			if got := lookup(); got == roles.TierL1 {
				t.Fatalf("served past %v", tt.want)
			}
		})
	}
}

// A session (or key) is never served past its own expiry, whatever the
// TTL (nor within a tick of the L1 clock of it); one already expired is
// not kept at all.
func TestL1NeverServesPastExpiry(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	s := newL1Store(t, L1Config{TTL: time.Hour, RefreshAhead: -1, Now: clk.Now})
	src := &sessionSource{now: clk.Now, byKey: map[string]authn.Session{
		"soon": {Found: true, ID: "s1", UserID: "u1", ExpiresAt: clk.Now().Add(10 * time.Second)},
		"gone": {Found: true, ID: "s2", UserID: "u1", ExpiresAt: clk.Now().Add(-time.Second)},
	}}
	l1 := newL1(t, s, SessionTokenKind(), Lookup[string, *authn.Session](src))
	keys := &apiKeySource{now: clk.Now, byKey: map[string]authn.APIKey{"h": {Found: true, ID: "k1", Enabled: true, ExpiresAt: clk.Now().Add(10 * time.Second)}}}
	k1 := newL1(t, s, APIKeyKind(), Lookup[string, *authn.APIKey](keys))
	tierOf(t, l1, "soon")
	tierOf(t, k1, "h")
	// Hits read a clock that may lag by a tick: entries end a tick early.
	advance(clk, s, 10*time.Second-coarseTick-time.Nanosecond)
	if got := tierOf(t, l1, "soon"); got != roles.TierL1 {
		t.Fatalf("before expiry: %v", got)
	}
	if got := tierOf(t, k1, "h"); got != roles.TierL1 {
		t.Fatalf("key before expiry: %v", got)
	}
	advance(clk, s, time.Nanosecond)
	if got := tierOf(t, l1, "soon"); got == roles.TierL1 {
		t.Error("a session was served from L1 at its expiry")
	}
	if got := tierOf(t, k1, "h"); got == roles.TierL1 {
		t.Error("an API key was served from L1 at its expiry")
	}
	tierOf(t, l1, "gone")
	if got := tierOf(t, l1, "gone"); got == roles.TierL1 {
		t.Error("an expired session was cached")
	}
}

// The session token is never a key: the L1 key is its digest, as
// authn.TokenDigest computes it.
func TestSessionTokenKey(t *testing.T) {
	t.Parallel()
	for _, token := range []string{"Uw0Y0ozqQPfejrG45dS328Gp5IwjHaPo", "", "a much longer raw bearer token than Better Auth's thirty-two characters, with spaces"} {
		got := string(SessionTokenKind().AppendKey([]byte("x|"), token))
		if want := "x|" + authn.TokenDigest(token); got != want {
			t.Errorf("key of %q = %q, want %q", token, got, want)
		}
	}
}

func TestL2StoresAndServes(t *testing.T) {
	t.Parallel()
	rdb, prefix := redisClient(t)
	src := &stampedSource{}
	l2 := newL2(t, newL2Store(rdb, L2Config{Prefix: prefix, TTL: 5 * time.Minute}), AccessKind(), Lookup[roles.Query, *roles.Access](src))
	ctx := context.Background()
	before := time.Now()
	if _, tier, err := l2.Lookup(ctx, query("u1", "org1")); err != nil || tier != roles.TierSource {
		t.Fatalf("first = %v, %v", tier, err)
	}
	a, tier, err := l2.Lookup(ctx, query("u1", "org1"))
	if err != nil || tier != roles.TierL2 {
		t.Fatalf("second = %v, %v; want L2", tier, err)
	}
	if !a.Grants.All([]string{"leave:approve", "member:invite"}) || a.Grants.All([]string{"organization:delete"}) || a.OrgID != "org1" || a.LoadedAt.IsZero() {
		t.Errorf("L2 round trip lost data: %+v", a)
	}
	// Redis counts the TTL down in real time from the load, in whole
	// milliseconds (the TTL sent is rounded down, and so is its clock).
	ttl, err := rdb.PTTL(ctx, prefix+"access:v1|u1|org1|").Result()
	if err != nil || ttl > 5*time.Minute || ttl < 5*time.Minute-time.Since(before)-2*time.Millisecond {
		t.Errorf("TTL = %v, %v; want 5m less the time since the load", ttl, err)
	}
	// A fresh L2 in front of a fresh source (a restarted sidecar) is served
	// by Redis without asking the source.
	src2 := &stampedSource{}
	l2b := newL2(t, newL2Store(rdb, L2Config{Prefix: prefix}), AccessKind(), Lookup[roles.Query, *roles.Access](src2))
	if _, tier, _ := l2b.Lookup(ctx, query("u1", "org1")); tier != roles.TierL2 || src2.calls.Load() != 0 {
		t.Errorf("after restart: tier %v, source calls %d; want L2 and 0", tier, src2.calls.Load())
	}
}

// Sessions go to Redis under their token's digest, never the token, and
// live no longer than they are valid.
func TestL2Sessions(t *testing.T) {
	t.Parallel()
	rdb, prefix := redisClient(t)
	ctx := context.Background()
	const token = "Uw0Y0ozqQPfejrG45dS328Gp5IwjHaPo"
	expires := time.Now().Add(90 * time.Second).Truncate(time.Millisecond)
	src := &sessionSource{byKey: map[string]authn.Session{token: {
		Found: true, ID: "s1", UserID: "u1", ExpiresAt: expires, ActiveOrganizationID: "org1", ActiveTeamID: "t1", ImpersonatedBy: "admin1",
	}}}
	l2 := newL2(t, newL2Store(rdb, L2Config{Prefix: prefix, TTL: time.Hour}), SessionTokenKind(), Lookup[string, *authn.Session](src))
	l2.Lookup(ctx, token)
	got, tier, err := l2.Lookup(ctx, token)
	if err != nil || tier != roles.TierL2 {
		t.Fatalf("second = %v, %v; want L2", tier, err)
	}
	want := src.byKey[token]
	if got.ID != want.ID || got.UserID != want.UserID || !got.ExpiresAt.Equal(want.ExpiresAt) || got.ActiveOrganizationID != "org1" ||
		got.ActiveTeamID != "t1" || got.ImpersonatedBy != "admin1" || !got.Found {
		t.Errorf("L2 round trip = %+v, want %+v", got, want)
	}
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil || len(keys) != 1 || keys[0] != prefix+"session_token:"+authn.TokenDigest(token) {
		t.Errorf("Redis keys = %v, %v; want the digest's only", keys, err)
	}
	v, _ := rdb.Get(ctx, keys[0]).Result()
	if containsString(v, token) {
		t.Error("the token is in the stored value")
	}
	ttl, err := rdb.PTTL(ctx, keys[0]).Result()
	if err != nil || ttl > 90*time.Second {
		t.Errorf("TTL of a session expiring in 90s = %v, %v; want at most 90s", ttl, err)
	}
}

func containsString(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestL2GarbageIsAMiss(t *testing.T) {
	t.Parallel()
	rdb, prefix := redisClient(t)
	l2 := newL2(t, newL2Store(rdb, L2Config{Prefix: prefix}), AccessKind(), Lookup[roles.Query, *roles.Access](&stampedSource{}))
	ctx := context.Background()
	// Someone writes a grant-looking but undecodable value, or an old
	// format: never a grant.
	for _, v := range []string{`{"u":true,"o":"org9","r":["owner"],"g":[`, `{"u":true,"o":"org9","r":["owner"]}`, ""} {
		rdb.Set(ctx, prefix+"access:v1|u9|org9|", v, time.Minute)
		a, tier, err := l2.Lookup(ctx, query("u9", "org9"))
		if err != nil || tier != roles.TierSource || a.Member() {
			t.Fatalf("entry %q: %+v %v %v; want a source lookup and no membership", v, a, tier, err)
		}
	}
}

func TestL2RedisDownFallsThrough(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1: every call fails fast.
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
	defer rdb.Close()
	s := NewL2Store(rdb, L2Config{BreakerFailures: 2, BreakerCooldown: time.Hour}, zap.NewNop(), prometheus.NewRegistry())
	l2 := newL2(t, s, AccessKind(), Lookup[roles.Query, *roles.Access](&stampedSource{}))
	for i := range 5 {
		a, tier, err := l2.Lookup(context.Background(), query("u1", "org1"))
		if err != nil || tier != roles.TierSource || !a.Member() {
			t.Fatalf("call %d: %+v %v %v; want an answer from the source", i, a, tier, err)
		}
	}
	// Call 1: get fails, set fails (breaker opens at 2). Calls 2..5 skip Redis.
	if got := testutil.ToFloat64(l2.m.errors); got != 2 {
		t.Errorf("redis errors = %v, want 2 (the breaker should stop further calls)", got)
	}
}

func TestBreaker(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	b := breaker{threshold: 2, cooldown: time.Second}
	steps := []struct {
		name string
		do   func() bool
		want bool
	}{
		{"closed allows", func() bool { return b.allow(now) }, true},
		{"first failure keeps closed", func() bool { return b.failure(now) }, false},
		{"second failure opens", func() bool { return b.failure(now) }, true},
		{"open refuses", func() bool { return b.allow(now.Add(500 * time.Millisecond)) }, false},
		{"half-open lets one probe", func() bool { return b.allow(now.Add(1100 * time.Millisecond)) }, true},
		{"others wait during the probe", func() bool { return b.allow(now.Add(1200 * time.Millisecond)) }, false},
		{"probe success closes", func() bool { return b.success() }, true},
		{"closed again", func() bool { return b.allow(now.Add(1300 * time.Millisecond)) }, true},
	}
	for _, s := range steps {
		if got := s.do(); got != s.want {
			t.Fatalf("%s: got %v, want %v", s.name, got, s.want)
		}
	}
}
