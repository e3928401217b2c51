package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// L2Config configures the Redis tier.
type L2Config struct {
	// Prefix starts every key, so several deployments (or tests) can share
	// one Redis.
	Prefix string
	// TTL of a resolved permission set; 5 minutes by default.
	TTL time.Duration
	// NegativeTTL of "not a member" answers.
	NegativeTTL time.Duration
	// Timeout bounds each Redis call. Redis is an optimisation: when it is
	// slow we would rather ask Postgres than make Envoy wait.
	Timeout time.Duration
	// BreakerFailures consecutive failures open the breaker for
	// BreakerCooldown, during which Redis is not called at all.
	BreakerFailures int
	BreakerCooldown time.Duration
	// Now is the clock (tests may replace it).
	Now func() time.Time
}

func (c *L2Config) defaults() {
	if c.Prefix == "" {
		c.Prefix = "authz:"
	}
	if c.TTL <= 0 {
		c.TTL = 5 * time.Minute
	}
	if c.NegativeTTL <= 0 {
		c.NegativeTTL = 30 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 25 * time.Millisecond
	}
	if c.BreakerFailures <= 0 {
		c.BreakerFailures = 3
	}
	if c.BreakerCooldown <= 0 {
		c.BreakerCooldown = 2 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// L2 is the Redis tier. A Redis failure is never an error to the caller: it
// is logged (once per outage), counted, and the lookup goes on to next.
type L2 struct {
	next roles.Resolver
	rdb  redis.UniversalClient
	cfg  L2Config
	log  *zap.Logger
	m    *tierMetrics
	brk  breaker
}

// NewL2 returns a Redis tier in front of next.
func NewL2(next roles.Resolver, rdb redis.UniversalClient, cfg L2Config, log *zap.Logger, reg prometheus.Registerer) (*L2, error) {
	cfg.defaults()
	m, err := newTierMetrics(reg, "l2")
	if err != nil {
		return nil, err
	}
	return &L2{
		next: next, rdb: rdb, cfg: cfg, log: log.Named("l2"), m: m,
		brk: breaker{threshold: cfg.BreakerFailures, cooldown: cfg.BreakerCooldown},
	}, nil
}

// Resolve answers from Redis when it can, else from next, writing the
// answer back.
func (l *L2) Resolve(ctx context.Context, q roles.Query) (*roles.Access, roles.Tier, error) {
	key := l.cfg.Prefix + "perm:" + cacheKey(q)
	if a, ok := l.get(ctx, key); ok {
		l.m.hits.Inc()
		return a, roles.TierL2, nil
	}
	l.m.misses.Inc()
	a, tier, err := l.next.Resolve(ctx, q)
	if err != nil {
		return nil, tier, err
	}
	l.set(ctx, key, a)
	return a, tier, nil
}

func (l *L2) get(ctx context.Context, key string) (*roles.Access, bool) {
	now := l.cfg.Now()
	if !l.brk.allow(now) {
		return nil, false
	}
	cctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	b, err := l.rdb.Get(cctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		l.success()
		return nil, false
	}
	if err != nil {
		l.failure(now, "get", err)
		return nil, false
	}
	l.success()
	var a roles.Access
	if err := json.Unmarshal(b, &a); err != nil {
		// A value we cannot read is a miss, never a grant.
		l.m.errors.Inc()
		l.log.Warn("undecodable L2 entry; treating as a miss", zap.String("key", key), zap.Error(err))
		return nil, false
	}
	return &a, true
}

func (l *L2) set(ctx context.Context, key string, a *roles.Access) {
	now := l.cfg.Now()
	if !l.brk.allow(now) {
		return
	}
	b, err := json.Marshal(a)
	if err != nil {
		l.m.errors.Inc()
		return
	}
	ttl := l.cfg.TTL
	if !a.Member() {
		ttl = l.cfg.NegativeTTL
	}
	cctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	if err := l.rdb.Set(cctx, key, b, ttl).Err(); err != nil {
		l.failure(now, "set", err)
		return
	}
	l.success()
}

func (l *L2) failure(now time.Time, op string, err error) {
	l.m.errors.Inc()
	if opened := l.brk.failure(now); opened {
		l.log.Warn("redis failing; skipping the L2 tier until it recovers",
			zap.String("op", op), zap.Duration("cooldown", l.cfg.BreakerCooldown), zap.Error(err))
	}
}

func (l *L2) success() {
	if recovered := l.brk.success(); recovered {
		l.log.Info("redis recovered; L2 tier back in use")
	}
}

// breaker is a minimal circuit breaker: after threshold consecutive
// failures it opens for cooldown; then one call at a time probes until one
// succeeds. It keeps a dead Redis from costing a timeout per request.
type breaker struct {
	threshold int
	cooldown  time.Duration

	mu        sync.Mutex
	failures  int       // guarded by mu
	openUntil time.Time // guarded by mu
	open      bool      // guarded by mu; true from opening until a success
}

func (b *breaker) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return true
	}
	if now.Before(b.openUntil) {
		return false
	}
	// Half-open: let this call probe, hold the others off for another period.
	b.openUntil = now.Add(b.cooldown)
	return true
}

// failure records a failure and reports whether the breaker just opened.
func (b *breaker) failure(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures++
	if b.failures < b.threshold {
		return false
	}
	wasOpen := b.open
	b.open = true
	b.openUntil = now.Add(b.cooldown)
	return !wasOpen
}

// success records a success and reports whether the breaker just closed.
func (b *breaker) success() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures = 0
	wasOpen := b.open
	b.open = false
	return wasOpen
}

// String describes the tier for logs.
func (l *L2) String() string { return fmt.Sprintf("redis L2 (prefix %q)", l.cfg.Prefix) }
