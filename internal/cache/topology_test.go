package cache

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/invalidate"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

func TestNewRedis(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     RedisConfig
		want    string // client type, or an error's text
		timeout bool   // ContextTimeoutEnabled
	}{
		{name: "single", cfg: RedisConfig{URL: "redis://127.0.0.1:6379/0", Timeout: time.Second}, want: "*redis.Client", timeout: true},
		{name: "single by default, no deadlines for a subscription", cfg: RedisConfig{URL: "redis://127.0.0.1:6379/0"}, want: "*redis.Client"},
		{name: "single with seed addresses", cfg: RedisConfig{URL: "redis://127.0.0.1:6379?addr=127.0.0.1:6380"}, want: "set the mode to cluster or sentinel"},
		{name: "cluster", cfg: RedisConfig{URL: "redis://127.0.0.1:7000?addr=127.0.0.1:7001&addr=127.0.0.1:7002", Mode: RedisCluster, Timeout: time.Second},
			want: "*redis.ClusterClient", timeout: true},
		{name: "sentinel", cfg: RedisConfig{URL: "redis://127.0.0.1:26379?addr=127.0.0.1:26380", Mode: RedisSentinel, MasterName: "mymaster", Timeout: time.Second},
			want: "*redis.Client", timeout: true},
		{name: "sentinel, master name in the URL", cfg: RedisConfig{URL: "redis://127.0.0.1:26379?master_name=mymaster", Mode: RedisSentinel}, want: "*redis.Client"},
		{name: "sentinel without a master name", cfg: RedisConfig{URL: "redis://127.0.0.1:26379", Mode: RedisSentinel}, want: "no master name"},
		{name: "unknown mode", cfg: RedisConfig{URL: "redis://127.0.0.1:6379", Mode: "ring"}, want: `redis mode "ring"`},
		{name: "no URL", cfg: RedisConfig{}, want: "no redis URL"},
		{name: "bad URL keeps the password out", cfg: RedisConfig{URL: "redis://u:s3cret@127.0.0.1:6379/0?bogus=1"}, want: "unexpected option"},
		{name: "unparsable URL keeps the password out", cfg: RedisConfig{URL: "redis://u:s3cret@[::1/0"}, want: "redis url: parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := NewRedis(tt.cfg)
			if strings.HasPrefix(tt.want, "*") {
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if got := fmt.Sprintf("%T", c); got != tt.want {
					t.Errorf("client %s, want %s", got, tt.want)
				}
				var enabled bool
				switch c := c.(type) {
				case *redis.Client:
					enabled = c.Options().ContextTimeoutEnabled
				case *redis.ClusterClient:
					enabled = c.Options().ContextTimeoutEnabled
					if n := len(c.Options().Addrs); n != 3 {
						t.Errorf("%d seed nodes, want 3", n)
					}
				}
				if enabled != tt.timeout {
					t.Errorf("ContextTimeoutEnabled = %v, want %v", enabled, tt.timeout)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one saying %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

// slotNodes maps each hash slot of a cluster to its master's address.
func slotNodes(t *testing.T, cc *redis.ClusterClient) func(key string) string {
	t.Helper()
	ctx := context.Background()
	slots, err := cc.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	return func(key string) string {
		slot, err := cc.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range slots {
			if int64(s.Start) <= slot && slot <= int64(s.End) {
				return s.Nodes[0].Addr
			}
		}
		t.Fatalf("no node serves slot %d", slot)
		return ""
	}
}

// Every Redis feature on a 3-master Redis Cluster: L2 entries read with
// their markers in one pipeline although they live on different nodes, the
// second round trip of a session's markers, markers written by EVAL on
// each key's node, and pub/sub, whichever node a publisher talks to.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	started := time.Now()
	cluster := testproc.StartRedisClusterT(t, 3)
	t.Logf("cluster of 3 masters ready in %v", time.Since(started).Round(time.Millisecond))
	rdb, err := NewRedis(RedisConfig{URL: cluster.URL(), Mode: RedisCluster, Timeout: redisTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	cc := rdb.(*redis.ClusterClient)
	nodeOf := slotNodes(t, cc)
	ctx := context.Background()
	const prefix = "authz:"
	clk := newFakeClock()
	inv := NewInvalidations(InvalidationsConfig{Skew: 10 * time.Millisecond, Now: clk.Now})
	store := newL2Store(rdb, L2Config{Prefix: prefix, Invalidations: inv, Now: clk.Now})

	t.Run("access entries and markers on different nodes", func(t *testing.T) {
		src := &stampedSource{now: clk.Now}
		l2 := newL2(t, store, AccessKind(), Lookup[roles.Query, *roles.Access](src))
		// A user whose entry, marker and the organization's marker live on
		// three different nodes.
		user := ""
		for i := range 1000 {
			u := fmt.Sprintf("u%d", i)
			entry, um, om := nodeOf(prefix+"access:v1|"+u+"|org1|"), nodeOf(prefix+"inv:u:"+u), nodeOf(prefix+"inv:o:org1")
			if entry != um && entry != om && um != om {
				user = u
				break
			}
		}
		if user == "" {
			t.Fatal("no user with entry and markers on three nodes")
		}
		for _, want := range []roles.Tier{roles.TierSource, roles.TierL2} {
			if got := tierOf(t, l2, query(user, "org1")); got != want {
				t.Fatalf("lookup: %v, want %v", got, want)
			}
		}
		if err := store.Mark(ctx, []invalidate.Subject{invalidate.UserSubject(user), "o:org1"}, false); err != nil {
			t.Fatal(err)
		}
		if v, err := rdb.Get(ctx, prefix+"inv:u:"+user).Int64(); err != nil || v != clk.Now().UnixNano() {
			t.Errorf("marker = %d, %v; want the mark's time", v, err)
		}
		if got := tierOf(t, l2, query(user, "org1")); got != roles.TierSource {
			t.Errorf("after the marker: %v, want postgres", got)
		}
		clk.Advance(time.Second)
		tierOf(t, l2, query(user, "org1"))
		if got := tierOf(t, l2, query(user, "org1")); got != roles.TierL2 {
			t.Errorf("reloaded after the marker: %v, want l2", got)
		}
		if got := testutil.ToFloat64(l2.m.errors); got != 0 {
			t.Errorf("errors = %v", got)
		}
	})

	t.Run("session markers in a second round trip", func(t *testing.T) {
		token, id := "", ""
		for i := range 1000 {
			tok, sid := fmt.Sprintf("token%d", i), fmt.Sprintf("s%d", i)
			if nodeOf(prefix+"session_token:"+authn.TokenDigest(tok)) != nodeOf(prefix+"inv:s:"+sid) {
				token, id = tok, sid
				break
			}
		}
		src := &sessionSource{now: clk.Now, byKey: map[string]authn.Session{
			token: {Found: true, ID: id, UserID: "u1", ExpiresAt: clk.Now().Add(time.Hour)},
		}}
		l2 := newL2(t, store, SessionTokenKind(), Lookup[string, *authn.Session](src))
		for _, want := range []roles.Tier{roles.TierSource, roles.TierL2} {
			if got := tierOf(t, l2, token); got != want {
				t.Fatalf("lookup: %v, want %v", got, want)
			}
		}
		if err := store.Mark(ctx, []invalidate.Subject{invalidate.SessionSubject(id)}, false); err != nil {
			t.Fatal(err)
		}
		if got := tierOf(t, l2, token); got != roles.TierSource {
			t.Errorf("after the marker: %v, want the source", got)
		}
	})

	t.Run("pub/sub from any node", func(t *testing.T) {
		sub, err := NewRedis(RedisConfig{URL: cluster.URL(), Mode: RedisCluster})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		channel := "authz:invalidate"
		bus := NewRedisBus(sub, channel, zaptest.NewLogger(t))
		got, subscribed := make(chan string, 10), make(chan string, 10)
		bctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			bus.Subscribe(bctx, func() { subscribed <- "subscribed" }, func(b []byte) { got <- string(b) })
		}()
		defer func() { cancel(); <-done }()
		receive(t, subscribed)
		// A publisher outside the sidecar (Better Auth's hooks) may talk to
		// any node; a cluster broadcasts PUBLISH to every node.
		for _, addr := range cluster.Addrs() {
			c := redis.NewClient(&redis.Options{Addr: addr})
			err := c.Publish(ctx, channel, "from "+addr).Err()
			c.Close()
			if err != nil {
				t.Fatal(err)
			}
			if m := receive(t, got); m != "from "+addr {
				t.Errorf("got %q, want the message published on %s", m, addr)
			}
		}
		if err := NewRedisBus(rdb, channel, zap.NewNop()).Publish(ctx, []byte("from the sidecar")); err != nil {
			t.Fatal(err)
		}
		if m := receive(t, got); m != "from the sidecar" {
			t.Errorf("got %q", m)
		}
	})
}

// versionedSource answers access queries with a role naming the user's
// current version, so a stale answer is recognisable.
type versionedSource struct {
	mu       sync.Mutex
	versions map[string]int // guarded by mu; 1 when absent
}

func (s *versionedSource) version(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.versions[user]; ok {
		return v
	}
	return 1
}

func (s *versionedSource) set(user string, v int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.versions[user] = v
}

func (s *versionedSource) Lookup(_ context.Context, q roles.Query) (*roles.Access, roles.Tier, error) {
	started := time.Now()
	return &roles.Access{UserFound: true, OrgID: "org1", Roles: []string{fmt.Sprintf("%s-v%d", q.UserID, s.version(q.UserID))}, LoadedAt: started},
		roles.TierSource, nil
}

// sidecar is one replica's tiers and invalidation service on a Redis.
type sidecar struct {
	l1  *L1[roles.Query, *roles.Access]
	l2  *L2[roles.Query, *roles.Access]
	svc *invalidate.Service
	reg *prometheus.Registry
}

func newSidecar(t *testing.T, name string, cfg RedisConfig, src Lookup[roles.Query, *roles.Access], subscribe bool) *sidecar {
	t.Helper()
	rc := cfg
	rc.Timeout = 2 * time.Second
	rdb, err := NewRedis(rc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	s := &sidecar{reg: prometheus.NewRegistry()}
	log := zaptest.NewLogger(t).Named(name)
	inv := NewInvalidations(InvalidationsConfig{Skew: 100 * time.Millisecond})
	store := NewL2Store(rdb, L2Config{Timeout: 2 * time.Second, Invalidations: inv, BreakerCooldown: 100 * time.Millisecond}, log, s.reg)
	s.l2 = newL2(t, store, AccessKind(), src)
	l1s, err := NewL1Store(L1Config{TTL: time.Hour, Invalidations: inv}, s.reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l1s.Close)
	s.l1 = newL1(t, l1s, AccessKind(), Lookup[roles.Query, *roles.Access](s.l2))
	deps := invalidate.Deps{Local: inv, Markers: store}
	if subscribe {
		sub, err := NewRedis(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sub.Close() })
		bus := NewRedisBus(sub, "authz:invalidate", log)
		bus.minBackoff, bus.pingEvery = 10*time.Millisecond, time.Second
		deps.Bus = bus
	}
	if s.svc, err = invalidate.New(invalidate.Config{Source: name, RetryEvery: 50 * time.Millisecond}, deps, log, s.reg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.svc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// metric reads a counter from s's registry by name and one label.
func (s *sidecar) metric(t *testing.T, name, label, value string) float64 {
	t.Helper()
	families, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// A forced Sentinel failover while requests flow through two replicas:
// no request fails and none gets a wrong answer; afterwards the clients
// follow the new master, and an invalidation published then reaches both
// replicas, and guards a third that never subscribed through its marker.
func TestRedisSentinelFailover(t *testing.T) {
	t.Parallel()
	started := time.Now()
	group := testproc.StartRedisSentinelT(t)
	t.Logf("master, replica and 3 sentinels ready in %v", time.Since(started).Round(time.Millisecond))
	ctx := context.Background()
	cfg := RedisConfig{URL: group.URL(), Mode: RedisSentinel, MasterName: group.MasterName}
	src := &versionedSource{versions: map[string]int{}}
	a := newSidecar(t, "a", cfg, src, true)
	b := newSidecar(t, "b", cfg, src, true)
	c := newSidecar(t, "c", cfg, src, false) // missed every message
	for _, s := range []*sidecar{a, b} {
		waitFor(t, "the first subscription", func() bool {
			return s.metric(t, "authz_invalidation_flushes_total", "reason", "redis_subscribe") >= 1
		})
	}
	users := make([]string, 10)
	for i := range users {
		users[i] = fmt.Sprintf("u%d", i)
	}

	// Requests flow through every replica, L1 and L2, during the failover.
	var (
		stop            atomic.Bool
		checks, wrong   atomic.Int64
		failures, l2Hit atomic.Int64
		wg              sync.WaitGroup
	)
	for _, s := range []*sidecar{a, b, c} {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				u := users[i%len(users)]
				for _, tier := range []Lookup[roles.Query, *roles.Access]{s.l1, s.l2} {
					v, got, err := tier.Lookup(ctx, query(u, "org1"))
					checks.Add(1)
					switch {
					case err != nil:
						failures.Add(1)
						t.Errorf("lookup of %s: %v", u, err)
					case v.Roles[0] != fmt.Sprintf("%s-v1", u):
						wrong.Add(1)
						t.Errorf("lookup of %s answered %v", u, v.Roles)
					case got == roles.TierL2:
						l2Hit.Add(1)
					}
				}
			}
		})
	}
	waitFor(t, "L2 hits before the failover", func() bool { return l2Hit.Load() > 100 })
	failoverStarted := time.Now()
	next, err := group.Failover(ctx)
	if err != nil {
		stop.Store(true)
		wg.Wait()
		t.Fatal(err)
	}
	t.Logf("failover to %s done in %v", next, time.Since(failoverStarted).Round(time.Millisecond))
	// The clients follow: L2 serves (reads and writes) on the new master.
	hits := l2Hit.Load()
	waitFor(t, "L2 hits after the failover", func() bool { return l2Hit.Load() > hits+100 })
	for _, s := range []*sidecar{a, b, c} {
		fresh := fmt.Sprintf("after-failover-%p", s)
		tierOf(t, s.l2, query(fresh, "org1"))
		waitFor(t, "an L2 write on the new master", func() bool { return tierOf(t, s.l2, query(fresh, "org1")) == roles.TierL2 })
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d lookups during the failover: %d failed, %d wrong", checks.Load(), failures.Load(), wrong.Load())

	// An invalidation published after the failover (by a publisher of its
	// own, as Better Auth's hooks are) reaches both subscribed replicas.
	src.set("u1", 2)
	pub := newSidecar(t, "publisher", cfg, src, true)
	waitFor(t, "the publisher's subscription", func() bool {
		return pub.metric(t, "authz_invalidation_flushes_total", "reason", "redis_subscribe") >= 1
	})
	if err := pub.svc.Publish(ctx, invalidate.Message{Kind: invalidate.KindMember, User: "u1", Org: "org1"}); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*sidecar{"a": a, "b": b} {
		waitFor(t, name+" applying the message", func() bool {
			return s.metric(t, "authz_invalidations_total", "kind", "member") == 1
		})
		// Once applied, never the old answer: not from L1, not from L2.
		for _, tier := range []Lookup[roles.Query, *roles.Access]{s.l1, s.l2} {
			if v, _, err := tier.Lookup(ctx, query("u1", "org1")); err != nil || v.Roles[0] != "u1-v2" {
				t.Errorf("%s after the message: %v, %v; want u1-v2", name, v.Roles, err)
			}
		}
		if v, tier, _ := s.l1.Lookup(ctx, query("u2", "org1")); v.Roles[0] != "u2-v1" {
			t.Errorf("%s: another user's answer %v from %v", name, v.Roles, tier)
		}
		// Sentinel kills the demoted master's pub/sub clients: the bus
		// resubscribed, on the new master, and flushed L1 then.
		if n := s.metric(t, "authz_invalidation_flushes_total", "reason", "redis_subscribe"); n < 2 {
			t.Errorf("%s: %v subscriptions, want a resubscription after the failover", name, n)
		}
	}
	// The replica that heard nothing is guarded in L2 by the marker the
	// publisher wrote on the new master.
	if v, _, err := c.l2.Lookup(ctx, query("u1", "org1")); err != nil || v.Roles[0] != "u1-v2" {
		t.Errorf("unsubscribed replica's L2 after the marker: %v, %v; want u1-v2", v.Roles, err)
	}
}
