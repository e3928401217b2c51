package cache

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// redisTimeout bounds each Redis call of the L2 tiers in these tests: far
// above any round trip on a loaded machine, because they are not about the
// deadline (a 25 ms default turns a slow round trip into a miss).
const redisTimeout = 30 * time.Second

// patience bounds every wait for an event or condition in these tests: a
// failure bound, far above the time anything takes on a loaded machine,
// never what a test asserts.
const patience = 30 * time.Second

// fakeClock is a clock that moves only when told, for the tiers' Now.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// advance moves clk and makes s's hits see the new time at once.
func advance(clk *fakeClock, s *L1Store, d time.Duration) {
	clk.Advance(d)
	s.sample()
}

// redisClient is the shared test Redis with a key prefix of t's own.
func redisClient(t testing.TB) (*redis.Client, string) { return testproc.RedisDB(t) }

// waitFor polls cond, for conditions no event announces.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func receive(t testing.TB, ch <-chan string) string {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(patience):
		t.Fatalf("nothing received within %v", patience)
		return ""
	}
}

// stampedSource answers access queries like a source: a fresh Access per
// call, stamped with the time its "query" started, after an optional gate.
// u1 (and anyone in organization org1, by id or by slug acme) is an admin
// of org1; other organizations do not exist.
type stampedSource struct {
	calls atomic.Int64
	tier  roles.Tier
	// now is the clock of the stamps; time.Now when nil.
	now func() time.Time
	// loadedAt, when set, replaces the stamp (an answer loaded elsewhere).
	loadedAt time.Time
	// err, when set, is every answer.
	err error
	// gate, when set, is received from before answering (or the call's
	// context ends); entered, when set, is sent to first.
	gate, entered chan struct{}
}

func (s *stampedSource) Lookup(ctx context.Context, q roles.Query) (*roles.Access, roles.Tier, error) {
	s.calls.Add(1)
	started := time.Now()
	if s.now != nil {
		started = s.now()
	}
	if s.entered != nil {
		s.entered <- struct{}{}
	}
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return nil, roles.TierSource, ctx.Err()
		}
	}
	if s.err != nil {
		return nil, roles.TierSource, s.err
	}
	a := &roles.Access{UserFound: true, OrgID: "org1", Roles: []string{"admin"}, LoadedAt: started,
		Grants: roles.Grants{{Role: "admin", Perms: []string{"leave:approve", "leave:read", "member:invite"}}}}
	if q.OrgRef != "org1" && q.OrgRef != "acme" {
		a.OrgID, a.Roles, a.Grants = "", nil, nil
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

func query(user, org string) roles.Query {
	return roles.Query{Subject: roles.Subject{UserID: user, OrgRef: org}, Version: "v1"}
}

// newL1Store is a store for t, closed at its end.
func newL1Store(t testing.TB, cfg L1Config) *L1Store {
	t.Helper()
	s, err := NewL1Store(cfg, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// newL1 is kind's L1 in s in front of next.
func newL1[Q, V any](t testing.TB, s *L1Store, kind *Kind[Q, V], next Lookup[Q, V]) *L1[Q, V] {
	t.Helper()
	l1, err := NewL1(s, kind, next)
	if err != nil {
		t.Fatal(err)
	}
	return l1
}

// accessL1 is an access L1 with its own store in front of next.
func accessL1(t testing.TB, next Lookup[roles.Query, *roles.Access], cfg L1Config) *L1[roles.Query, *roles.Access] {
	t.Helper()
	if cfg.TTL == 0 {
		cfg.TTL = time.Hour
	}
	return newL1(t, newL1Store(t, cfg), AccessKind(), next)
}

// newL2Store is a store on rdb for t.
func newL2Store(rdb redis.UniversalClient, cfg L2Config) *L2Store {
	if cfg.Timeout == 0 {
		cfg.Timeout = redisTimeout
	}
	return NewL2Store(rdb, cfg, zap.NewNop(), prometheus.NewRegistry())
}

func newL2[Q, V any](t testing.TB, s *L2Store, kind *Kind[Q, V], next Lookup[Q, V]) *L2[Q, V] {
	t.Helper()
	l2, err := NewL2(s, kind, next)
	if err != nil {
		t.Fatal(err)
	}
	return l2
}

// joinLoad waits until the load of key in flight in l1, if any, has ended
// and its entry is visible.
func joinLoad[Q, V any](l1 *L1[Q, V], q Q) {
	key := string(l1.kind.AppendKey([]byte(l1.tag), q))
	l1.flight.mu.Lock()
	c := l1.flight.calls[key]
	l1.flight.mu.Unlock()
	if c != nil {
		<-c.done
	}
	l1.Wait()
}

// tierOf looks q up in tier and, for an L1, waits for the store, returning
// who answered.
func tierOf[Q, V any](t testing.TB, tier Lookup[Q, V], q Q) roles.Tier {
	t.Helper()
	_, got, err := tier.Lookup(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if w, ok := tier.(interface{ Wait() }); ok {
		w.Wait()
	}
	return got
}

// sessionSource answers session lookups (by token or id) from a table,
// stamped on its clock, counting calls.
type sessionSource struct {
	calls atomic.Int64
	now   func() time.Time
	// byKey maps a token or an id to its session.
	byKey map[string]authn.Session
}

func (s *sessionSource) Lookup(_ context.Context, key string) (*authn.Session, roles.Tier, error) {
	s.calls.Add(1)
	now := time.Now
	if s.now != nil {
		now = s.now
	}
	v := s.byKey[key]
	v.LoadedAt = now()
	return &v, roles.TierSource, nil
}

// apiKeySource answers API key lookups like sessionSource.
type apiKeySource struct {
	calls atomic.Int64
	now   func() time.Time
	byKey map[string]authn.APIKey
}

func (s *apiKeySource) Lookup(_ context.Context, hash string) (*authn.APIKey, roles.Tier, error) {
	s.calls.Add(1)
	now := time.Now
	if s.now != nil {
		now = s.now
	}
	v := s.byKey[hash]
	v.LoadedAt = now()
	return &v, roles.TierSource, nil
}
