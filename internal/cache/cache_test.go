package cache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/authz-sidecar/authz-sidecar/internal/roles"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// countingResolver is the next tier in these unit tests: it answers from a
// fixed table and counts calls. (The real Postgres source is exercised in
// internal/pg and the integration tests.)
type countingResolver struct {
	calls atomic.Int64
	// gate, when set, holds every call until it is closed (or the call's
	// context ends): a load that is certainly still in flight.
	gate  chan struct{}
	err   error
	byKey map[string]*roles.Access
}

func (c *countingResolver) Resolve(ctx context.Context, q roles.Query) (*roles.Access, roles.Tier, error) {
	c.calls.Add(1)
	if c.gate != nil {
		select {
		case <-c.gate:
		case <-ctx.Done():
			return nil, roles.TierSource, ctx.Err()
		}
	}
	if c.err != nil {
		return nil, roles.TierSource, c.err
	}
	if a, ok := c.byKey[q.UserID+"/"+q.OrgRef]; ok {
		return a, roles.TierSource, nil
	}
	return &roles.Access{UserFound: true}, roles.TierSource, nil
}

var member = &roles.Access{
	UserFound: true, OrgID: "org1", Roles: []string{"admin"},
	Permissions: []string{"leave:approve", "leave:read", "member:*"},
}

func newSource() *countingResolver {
	return &countingResolver{byKey: map[string]*roles.Access{"u1/org1": member}}
}

func query(user, org string) roles.Query {
	return roles.Query{UserID: user, OrgRef: org, Version: "v1"}
}

// redisTimeout bounds each Redis call of the L2 tiers in these tests: far
// above any round trip on a loaded machine, because they are not about the
// deadline (a 25 ms default turns a slow round trip into a miss).
const redisTimeout = 30 * time.Second

// redisClockStep allows for Redis counting TTLs on its own clock: wall
// time, in milliseconds, read when a command starts.
const redisClockStep = time.Second

// fakeClock is a clock that moves only when told, for the tiers' Now.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// advance moves clk and makes l1's hits see the new time at once.
func advance(clk *fakeClock, l1 *L1, d time.Duration) {
	clk.Advance(d)
	l1.sample()
}

// joinLoad waits until the load of q in flight in l1, if any, has ended and
// its entry is visible.
func joinLoad(l1 *L1, q roles.Query) {
	l1.group.Do(cacheKey(q), func() (any, error) { return nil, nil })
	l1.Wait()
}

func TestL1HitsAfterLoad(t *testing.T) {
	t.Parallel()
	src := newSource()
	reg := prometheus.NewRegistry()
	l1, err := NewL1(src, L1Config{TTL: time.Minute}, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Close()
	ctx := context.Background()

	a, tier, err := l1.Resolve(ctx, query("u1", "org1"))
	if err != nil || tier != roles.TierSource || !a.Member() {
		t.Fatalf("first resolve = %+v, %v, %v; want member from source", a, tier, err)
	}
	l1.Wait()
	a, tier, err = l1.Resolve(ctx, query("u1", "org1"))
	if err != nil || tier != roles.TierL1 || !a.Has("leave:approve") {
		t.Fatalf("second resolve = %+v, %v, %v; want L1 hit", a, tier, err)
	}
	if n := src.calls.Load(); n != 1 {
		t.Errorf("source calls = %d, want 1", n)
	}
	// A different policy version is a different key: never served from
	// permissions computed under the old roles.
	if _, tier, _ := l1.Resolve(ctx, roles.Query{UserID: "u1", OrgRef: "org1", Version: "v2"}); tier == roles.TierL1 {
		t.Error("policy version v2 was served from an entry of v1")
	}
	if got := testutil.ToFloat64(l1.m.hits); got != 1 {
		t.Errorf("hits metric = %v, want 1", got)
	}
}

func TestL1CollapsesConcurrentMisses(t *testing.T) {
	t.Parallel()
	src := newSource()
	src.gate = make(chan struct{})
	l1, err := NewL1(src, L1Config{TTL: time.Minute}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Close()
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, _, err := l1.Resolve(context.Background(), query("u1", "org1")); err != nil {
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

func TestL1ErrorsAreNotCached(t *testing.T) {
	t.Parallel()
	src := newSource()
	src.err = roles.ErrUnavailable
	l1, err := NewL1(src, L1Config{TTL: time.Minute}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Close()
	for range 2 {
		if _, _, err := l1.Resolve(context.Background(), query("u1", "org1")); !errors.Is(err, roles.ErrUnavailable) {
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
	src := newSource()
	src.gate = make(chan struct{}) // the load cannot end before the caller's deadline
	l1, err := NewL1(src, L1Config{TTL: time.Minute}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, _, err := l1.Resolve(ctx, query("u1", "org1")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	// The detached load finishes and fills the cache for the next caller.
	close(src.gate)
	joinLoad(l1, query("u1", "org1"))
	if _, tier, err := l1.Resolve(context.Background(), query("u1", "org1")); err != nil || tier != roles.TierL1 {
		t.Fatalf("after the detached load: %v, %v; want an L1 hit", tier, err)
	}
	if n := src.calls.Load(); n != 1 {
		t.Errorf("source calls = %d, want 1", n)
	}
}

func TestL1NegativeTTL(t *testing.T) {
	t.Parallel()
	src := newSource()
	clk := newFakeClock()
	// No refresh-ahead: the hit just before expiry would reload the entry.
	l1, err := NewL1(src, L1Config{TTL: time.Hour, NegativeTTL: time.Minute, RefreshAhead: -1, Now: clk.Now}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Close()
	ctx := context.Background()
	if a, _, _ := l1.Resolve(ctx, query("stranger", "org1")); a.Member() {
		t.Fatal("stranger resolved as member")
	}
	l1.Wait()
	if _, tier, _ := l1.Resolve(ctx, query("stranger", "org1")); tier != roles.TierL1 {
		t.Fatalf("negative answer not cached: tier %v", tier)
	}
	advance(clk, l1, time.Minute-time.Nanosecond)
	if _, tier, _ := l1.Resolve(ctx, query("stranger", "org1")); tier != roles.TierL1 {
		t.Fatalf("negative answer not served until its TTL: tier %v", tier)
	}
	advance(clk, l1, time.Nanosecond)
	if _, tier, _ := l1.Resolve(ctx, query("stranger", "org1")); tier == roles.TierL1 {
		t.Fatal("negative answer served past its TTL")
	}
}

// A member's entry lives TTL on the L1 clock, not the negative TTL.
func TestL1TTL(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	l1, err := NewL1(newSource(), L1Config{TTL: time.Minute, NegativeTTL: time.Second, RefreshAhead: -1, Now: clk.Now}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Close()
	ctx := context.Background()
	l1.Resolve(ctx, query("u1", "org1"))
	l1.Wait()
	for _, step := range []struct {
		by   time.Duration
		want roles.Tier
	}{{time.Second, roles.TierL1}, {58 * time.Second, roles.TierL1}, {time.Second, roles.TierSource}} {
		advance(clk, l1, step.by)
		if _, tier, _ := l1.Resolve(ctx, query("u1", "org1")); tier != step.want {
			t.Fatalf("after %v more: tier %v, want %v", step.by, tier, step.want)
		}
		l1.Wait()
	}
}

func TestEntryCostCountsContent(t *testing.T) {
	t.Parallel()
	small := entryCost("k", &roles.Access{UserFound: true})
	big := entryCost("k", member)
	if big <= small {
		t.Fatalf("entryCost(member)=%d <= entryCost(empty)=%d", big, small)
	}
	want := small + int64(len("org1")) + 4*16 + int64(len("admin")+len("leave:approve")+len("leave:read")+len("member:*"))
	if big != want {
		t.Errorf("entryCost = %d, want %d", big, want)
	}
}

// redisClient is the shared test Redis with a key prefix of t's own.
func redisClient(t *testing.T) (*redis.Client, string) { return testproc.RedisDB(t) }

func TestL2StoresAndServes(t *testing.T) {
	t.Parallel()
	rdb, prefix := redisClient(t)
	src := newSource()
	l2, err := NewL2(src, rdb, L2Config{Prefix: prefix, TTL: 5 * time.Minute, Timeout: redisTimeout}, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	written := time.Now()
	if _, tier, err := l2.Resolve(ctx, query("u1", "org1")); err != nil || tier != roles.TierSource {
		t.Fatalf("first = %v, %v", tier, err)
	}
	a, tier, err := l2.Resolve(ctx, query("u1", "org1"))
	if err != nil || tier != roles.TierL2 {
		t.Fatalf("second = %v, %v; want L2", tier, err)
	}
	if !a.Has("leave:approve") || !a.Has("member:invite") || a.Has("organization:delete") || a.OrgID != "org1" {
		t.Errorf("L2 round trip lost data: %+v", a)
	}
	// Redis counts the TTL down in real time from the write, on a
	// millisecond clock.
	ttl, err := rdb.PTTL(ctx, prefix+"perm:v1|u1|org1").Result()
	if err != nil || ttl > 5*time.Minute || ttl < 5*time.Minute-time.Since(written)-redisClockStep {
		t.Errorf("TTL = %v, %v; want 5m less the time since the write", ttl, err)
	}
	// A fresh L2 in front of a fresh source (a restarted sidecar) is served
	// by Redis without asking the source.
	src2 := newSource()
	l2b, _ := NewL2(src2, rdb, L2Config{Prefix: prefix, Timeout: redisTimeout}, zap.NewNop(), prometheus.NewRegistry())
	if _, tier, _ := l2b.Resolve(ctx, query("u1", "org1")); tier != roles.TierL2 || src2.calls.Load() != 0 {
		t.Errorf("after restart: tier %v, source calls %d; want L2 and 0", tier, src2.calls.Load())
	}
}

func TestL2GarbageIsAMiss(t *testing.T) {
	t.Parallel()
	rdb, prefix := redisClient(t)
	src := newSource()
	l2, _ := NewL2(src, rdb, L2Config{Prefix: prefix, Timeout: redisTimeout}, zap.NewNop(), prometheus.NewRegistry())
	ctx := context.Background()
	// Someone writes a grant-looking but undecodable value: never a grant.
	rdb.Set(ctx, prefix+"perm:v1|u9|org1", `{"u":true,"o":"org1","r":["owner"],"p":[`, time.Minute)
	a, tier, err := l2.Resolve(ctx, query("u9", "org1"))
	if err != nil || tier != roles.TierSource || a.Member() {
		t.Fatalf("garbage entry: %+v %v %v; want a source lookup and no membership", a, tier, err)
	}
}

func TestL2RedisDownFallsThrough(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1: every call fails fast.
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
	defer rdb.Close()
	src := newSource()
	reg := prometheus.NewRegistry()
	l2, _ := NewL2(src, rdb, L2Config{BreakerFailures: 2, BreakerCooldown: time.Hour}, zap.NewNop(), reg)
	for i := range 5 {
		a, tier, err := l2.Resolve(context.Background(), query("u1", "org1"))
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
