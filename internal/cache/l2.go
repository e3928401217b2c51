package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
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
	// Invalidations, when set, turns on invalidation: every read also
	// fetches the markers Mark writes (in the same round trip) and refuses
	// an entry loaded before one of them, or before an invalidation this
	// process received. nil: plain reads, no markers.
	Invalidations *Invalidations
	// MarkTimeout bounds one Mark call; 1s by default. Marks are rare and
	// matter for correctness, so they get longer than Timeout.
	MarkTimeout time.Duration
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
	if c.MarkTimeout <= 0 {
		c.MarkTimeout = time.Second
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
	var (
		a  *roles.Access
		ok bool
	)
	if l.cfg.Invalidations == nil {
		a, ok = l.get(ctx, key)
	} else {
		a, ok = l.getGuarded(ctx, key, q)
	}
	if ok {
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
	return l.decode(key, b)
}

func (l *L2) decode(key string, b []byte) (*roles.Access, bool) {
	var a roles.Access
	if err := json.Unmarshal(b, &a); err != nil {
		// A value we cannot read is a miss, never a grant.
		l.m.errors.Inc()
		l.log.Warn("undecodable L2 entry; treating as a miss", zap.String("key", key), zap.Error(err))
		return nil, false
	}
	return &a, true
}

// Marker keys: the time (unix nanoseconds, wall clock) of the last
// invalidation of a user, of an organization (by id or slug), or of
// everything. An entry loaded before a marker, allowing for clock skew, is
// not served by any replica, including those that missed the message.
func (l *L2) userMarker(id string) string { return l.cfg.Prefix + "inv:u:" + id }
func (l *L2) orgMarker(ref string) string { return l.cfg.Prefix + "inv:o:" + ref }
func (l *L2) allMarker() string           { return l.cfg.Prefix + "inv:all" }

// getGuarded reads the entry and its markers in one pipelined round trip
// (separate GETs rather than MGET, so it also works on Redis Cluster), plus
// a second one for the canonical organization id's marker when q named the
// organization by slug. The entry is a hit only when it was loaded after
// every marker (plus Skew) and after every invalidation this process
// received.
func (l *L2) getGuarded(ctx context.Context, key string, q roles.Query) (*roles.Access, bool) {
	now := l.cfg.Now()
	if !l.brk.allow(now) {
		return nil, false
	}
	cctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	keys := []string{key, l.userMarker(q.UserID), l.allMarker()}
	if q.OrgRef != "" {
		keys = append(keys, l.orgMarker(q.OrgRef))
	}
	vals, err := l.getMany(cctx, keys)
	if err != nil {
		l.failure(now, "get", err)
		return nil, false
	}
	if vals[0] == nil {
		l.success()
		return nil, false
	}
	a, ok := l.decode(key, vals[0])
	if !ok {
		l.success()
		return nil, false
	}
	markers := vals[1:]
	if a.OrgID != "" && a.OrgID != q.OrgRef {
		more, err := l.getMany(cctx, []string{l.orgMarker(a.OrgID)})
		if err != nil {
			l.failure(now, "get", err)
			return nil, false
		}
		markers = append(markers, more...)
	}
	l.success()
	if !l.fresh(a, markers) || !l.cfg.Invalidations.fresh(l.cfg.Invalidations.remoteAt(a.LoadedAt), q.UserID, q.OrgRef, a.OrgID) {
		l.m.stale.Inc()
		return nil, false
	}
	return a, true
}

// getMany GETs keys in one pipeline; a missing key is a nil value.
func (l *L2) getMany(ctx context.Context, keys []string) ([][]byte, error) {
	cmds := make([]*redis.StringCmd, len(keys))
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Get(ctx, k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make([][]byte, len(keys))
	for i, c := range cmds {
		b, err := c.Bytes()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

// fresh reports whether a was loaded more than Skew after every marker
// (times written by different replicas, hence the allowance). An answer
// without a load time is fresh only when there is no marker at all; an
// unreadable marker counts as one written now.
func (l *L2) fresh(a *roles.Access, markers [][]byte) bool {
	newest := int64(math.MinInt64)
	for _, b := range markers {
		if b == nil {
			continue
		}
		t, err := strconv.ParseInt(string(b), 10, 64)
		if err != nil {
			t = l.cfg.Now().UnixNano()
		}
		newest = max(newest, t)
	}
	if newest == math.MinInt64 {
		return true
	}
	if a.LoadedAt.IsZero() {
		return false
	}
	return a.LoadedAt.UnixNano() > newest+int64(l.cfg.Invalidations.cfg.Skew)
}

// markScript sets a marker to ARGV[1] unless it holds a later time, with a
// time to live of ARGV[2] milliseconds: markers only move forward, so a
// late writer of an older invalidation cannot hide a newer one.
// Publishers in other languages run the same script (docs/consistency.md).
const MarkScript = `local cur = redis.call('GET', KEYS[1])
if cur and tonumber(cur) and tonumber(cur) >= tonumber(ARGV[1]) then
	return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`

// Mark writes invalidation markers for users, organizations (ids or slugs)
// and, with all, everything, set to the current time: from then on no
// replica serves an L2 entry loaded earlier about them. Publishers call it
// before publishing a message and receivers on receipt, so that a replica
// that misses the message is still guarded. Markers outlive every entry
// they may concern (the larger TTL plus a minute). It ignores the breaker
// (a marker matters more than a read) and returns the first error.
func (l *L2) Mark(ctx context.Context, users, orgs []string, all bool) error {
	var keys []string
	for _, u := range users {
		keys = append(keys, l.userMarker(u))
	}
	for _, o := range orgs {
		keys = append(keys, l.orgMarker(o))
	}
	if all {
		keys = append(keys, l.allMarker())
	}
	if len(keys) == 0 {
		return nil
	}
	ttl := max(l.cfg.TTL, l.cfg.NegativeTTL) + time.Minute
	if l.cfg.Invalidations != nil {
		ttl += l.cfg.Invalidations.cfg.Skew
	}
	now := strconv.FormatInt(l.cfg.Now().UnixNano(), 10)
	ms := strconv.FormatInt(ttl.Milliseconds(), 10)
	cctx, cancel := context.WithTimeout(ctx, l.cfg.MarkTimeout)
	defer cancel()
	// EVAL rather than EVALSHA: one round trip whether or not the server
	// has the script cached, and marks are rare.
	cmds, err := l.rdb.Pipelined(cctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Eval(cctx, MarkScript, []string{k}, now, ms)
		}
		return nil
	})
	if err != nil {
		l.m.errors.Inc()
		return fmt.Errorf("cache: mark %d keys: %w", len(cmds), err)
	}
	return nil
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
	// The TTL counts from the load, not from this write: an answer never
	// outlives its load by more than the TTL, and so never outlives the
	// markers written after it was loaded (which live longer than the TTL).
	if !a.LoadedAt.IsZero() {
		ttl -= now.Sub(a.LoadedAt)
		if ttl <= 0 {
			return
		}
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
