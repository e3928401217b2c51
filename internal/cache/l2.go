package cache

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/authz-sidecar/authz-sidecar/internal/invalidate"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// L2Config configures the Redis tier, for every kind.
type L2Config struct {
	// Prefix starts every key, so several deployments (or tests) can share
	// one Redis.
	Prefix string
	// TTL of a positive answer; 5 minutes by default.
	TTL time.Duration
	// NegativeTTL of "not a member" / "no such thing" answers.
	NegativeTTL time.Duration
	// Timeout bounds each Redis call. Redis is an optimisation: when it is
	// slow we would rather ask the source than make Envoy wait.
	Timeout time.Duration
	// BreakerFailures consecutive failures open the breaker for
	// BreakerCooldown, during which Redis is not called at all.
	BreakerFailures int
	BreakerCooldown time.Duration
	// Now is the clock (tests may replace it).
	Now func() time.Time
	// Invalidations, when set, turns on invalidation: every read also
	// fetches the markers Mark writes and refuses an entry loaded before
	// one of them, or before an invalidation this process received. nil:
	// plain reads, no markers.
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

// L2Store is what every kind's L2 shares: the Redis client (any topology,
// see NewRedis), the key prefix, one circuit breaker, and the invalidation
// markers. It satisfies invalidate.Markers.
type L2Store struct {
	rdb redis.UniversalClient
	cfg L2Config
	log *zap.Logger
	reg prometheus.Registerer
	brk breaker
	// allKey is the marker of everything: "<prefix>inv:all".
	allKey string
}

var _ invalidate.Markers = (*L2Store)(nil)

// NewL2Store returns the shared part of the Redis tier. The metrics of each
// kind are registered on reg by NewL2.
func NewL2Store(rdb redis.UniversalClient, cfg L2Config, log *zap.Logger, reg prometheus.Registerer) *L2Store {
	cfg.defaults()
	return &L2Store{
		rdb: rdb, cfg: cfg, log: log.Named("l2"), reg: reg,
		brk:    breaker{threshold: cfg.BreakerFailures, cooldown: cfg.BreakerCooldown},
		allKey: cfg.Prefix + "inv:all",
	}
}

// String describes the tier for logs.
func (s *L2Store) String() string { return fmt.Sprintf("redis L2 (prefix %q)", s.cfg.Prefix) }

// L2 is the Redis tier of one kind. A Redis failure is never an error to
// the caller: it is logged (once per outage), counted, and the lookup goes
// on to next.
type L2[Q, V any] struct {
	s    *L2Store
	kind *Kind[Q, V]
	next Lookup[Q, V]
	// keyPrefix starts the kind's entry keys: "<prefix><kind>:".
	keyPrefix string
	m         *tierMetrics
}

// NewL2 returns kind's Redis tier in store s, in front of next.
func NewL2[Q, V any](s *L2Store, kind *Kind[Q, V], next Lookup[Q, V]) (*L2[Q, V], error) {
	m, err := newTierMetrics(s.reg, "l2", kind.Name)
	if err != nil {
		return nil, err
	}
	return &L2[Q, V]{s: s, kind: kind, next: next, keyPrefix: s.cfg.Prefix + kind.Name + ":", m: m}, nil
}

// Lookup answers from Redis when it can, else from next, writing the
// answer back.
func (l *L2[Q, V]) Lookup(ctx context.Context, q Q) (V, roles.Tier, error) {
	key := string(l.kind.AppendKey([]byte(l.keyPrefix), q))
	if v, ok := l.get(ctx, key, q); ok {
		l.m.hits.Inc()
		return v, roles.TierL2, nil
	}
	l.m.misses.Inc()
	v, tier, err := l.next.Lookup(ctx, q)
	if err != nil {
		return v, tier, err
	}
	l.set(ctx, key, q, v)
	return v, tier, nil
}

// markerKey is the Redis key of subject's marker: the time (unix
// nanoseconds, wall clock) of its last invalidation. An entry loaded
// before a marker, allowing for clock skew, is not served by any replica,
// including those that missed the message. Publishers outside the sidecar
// write the same keys (docs/consistency.md).
func (s *L2Store) markerKey(subject invalidate.Subject) string {
	return s.cfg.Prefix + "inv:" + string(subject)
}

// get reads key. With invalidation on, it reads in the same pipelined
// round trip the marker of everything and those of the subjects known
// from q, and, when the answer names more subjects (a session's user, an
// organization's id when q named a slug), their markers in a second one
// (with the marker of everything when q names no subject: the entry is then
// a plain GET).
// Separate GETs rather than MGET: the keys live in different hash slots
// of a Redis Cluster, and the cluster client splits a pipeline by node.
// The entry is a hit only when it was loaded after every marker (plus
// Skew) and after every invalidation this process received.
func (l *L2[Q, V]) get(ctx context.Context, key string, q Q) (v V, ok bool) {
	s := l.s
	now := s.cfg.Now()
	if !s.brk.allow(now) {
		return v, false
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	inv := s.cfg.Invalidations
	var (
		entry   []byte
		markers [][]byte
		asked   []invalidate.Subject
		err     error
	)
	if inv != nil && l.kind.QuerySubjects != nil {
		asked = l.kind.QuerySubjects(make([]invalidate.Subject, 0, 4), q)
		keys := make([]string, 2, 2+len(asked))
		keys[0], keys[1] = key, s.allKey
		for _, subject := range asked {
			keys = append(keys, s.markerKey(subject))
		}
		var vals [][]byte
		if vals, err = s.getMany(cctx, keys); err == nil {
			entry, markers = vals[0], vals[1:]
		}
	} else {
		// Nothing to read with the entry: a plain GET, and the markers, if
		// any, once the answer names its subjects.
		entry, err = s.rdb.Get(cctx, key).Bytes()
		if errors.Is(err, redis.Nil) {
			err = nil
		}
	}
	if err != nil {
		l.failure(now, "get", err)
		return v, false
	}
	s.success()
	if entry == nil {
		return v, false
	}
	if v, ok = l.decode(entry); !ok {
		return v, false
	}
	if inv == nil {
		return v, l.live(now, v)
	}
	subjects := l.kind.Subjects(make([]invalidate.Subject, 0, 4), q, v)
	var more []string
	if asked == nil {
		more = append(more, s.allKey)
	}
	for _, subject := range subjects {
		if !slices.Contains(asked, subject) {
			more = append(more, s.markerKey(subject))
		}
	}
	if len(more) > 0 {
		vals, err := s.getMany(cctx, more)
		if err != nil {
			l.failure(now, "get", err)
			return v, false
		}
		markers = append(markers, vals...)
	}
	loadedAt := l.kind.LoadedAt(v)
	if !s.fresh(loadedAt, markers) || !inv.freshList(inv.remoteAt(loadedAt), subjects) {
		l.m.stale.Inc()
		return v, false
	}
	return v, l.live(now, v)
}

// live reports whether v has not reached its own expiry at now. Redis's
// TTL ends the entry then too, give or take clocks: this is the check on
// this replica's clock.
func (l *L2[Q, V]) live(now time.Time, v V) bool {
	if l.kind.Expires == nil {
		return true
	}
	exp := l.kind.Expires(v)
	return exp.IsZero() || now.Before(exp)
}

// decode reads an entry; a value it cannot read is a miss, never an
// answer.
func (l *L2[Q, V]) decode(b []byte) (V, bool) {
	v, err := l.kind.Decode(b)
	if err != nil {
		l.m.errors.Inc()
		l.s.log.Warn("undecodable L2 entry; treating as a miss", zap.String("kind", l.kind.Name), zap.Error(err))
		return v, false
	}
	return v, true
}

// getMany GETs keys in one pipeline; a missing key is a nil value.
func (s *L2Store) getMany(ctx context.Context, keys []string) ([][]byte, error) {
	cmds := make([]*redis.StringCmd, len(keys))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
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

// fresh reports whether an answer loaded at loadedAt was loaded more than
// Skew after every marker (times written by different replicas, hence the
// allowance). An answer without a load time is fresh only when there is no
// marker at all; an unreadable marker counts as one written now.
func (s *L2Store) fresh(loadedAt time.Time, markers [][]byte) bool {
	newest := int64(math.MinInt64)
	for _, b := range markers {
		if b == nil {
			continue
		}
		t, err := strconv.ParseInt(string(b), 10, 64)
		if err != nil {
			t = s.cfg.Now().UnixNano()
		}
		newest = max(newest, t)
	}
	if newest == math.MinInt64 {
		return true
	}
	if loadedAt.IsZero() {
		return false
	}
	return loadedAt.UnixNano() > newest+int64(s.cfg.Invalidations.cfg.Skew)
}

// MarkScript sets a marker to ARGV[1] unless it holds a later time, with a
// time to live of ARGV[2] milliseconds: markers only move forward, so a
// late writer of an older invalidation cannot hide a newer one. It touches
// KEYS[1] only, so it runs on any topology, Redis Cluster included.
// Publishers in other languages run the same script (docs/consistency.md).
const MarkScript = `local cur = redis.call('GET', KEYS[1])
if cur and tonumber(cur) and tonumber(cur) >= tonumber(ARGV[1]) then
	return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`

// Mark writes the markers of subjects and, with all, of everything, set to
// the current time: from then on no replica serves an L2 entry loaded
// earlier that depends on them. Publishers call it before publishing a
// message and receivers on receipt, so that a replica that misses the
// message is still guarded. Markers outlive every entry they may concern
// (the larger TTL plus a minute). It ignores the breaker (a marker matters
// more than a read) and returns the first error.
func (s *L2Store) Mark(ctx context.Context, subjects []invalidate.Subject, all bool) error {
	keys := make([]string, 0, len(subjects)+1)
	for _, subject := range subjects {
		if subject != "" {
			keys = append(keys, s.markerKey(subject))
		}
	}
	if all {
		keys = append(keys, s.allKey)
	}
	if len(keys) == 0 {
		return nil
	}
	ttl := max(s.cfg.TTL, s.cfg.NegativeTTL) + time.Minute
	if s.cfg.Invalidations != nil {
		ttl += s.cfg.Invalidations.cfg.Skew
	}
	now := strconv.FormatInt(s.cfg.Now().UnixNano(), 10)
	ms := strconv.FormatInt(ttl.Milliseconds(), 10)
	cctx, cancel := context.WithTimeout(ctx, s.cfg.MarkTimeout)
	defer cancel()
	// EVAL rather than EVALSHA: one round trip whether or not the server
	// has the script cached, and marks are rare.
	_, err := s.rdb.Pipelined(cctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Eval(cctx, MarkScript, []string{k}, now, ms)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cache: mark %d keys: %w", len(keys), err)
	}
	return nil
}

// set writes v under key, to live the TTL from its load (not from this
// write) and never past its own expiry.
func (l *L2[Q, V]) set(ctx context.Context, key string, q Q, v V) {
	s := l.s
	now := s.cfg.Now()
	if !s.brk.allow(now) {
		return
	}
	ttl := s.cfg.NegativeTTL
	if l.kind.Positive(q, v) {
		ttl = s.cfg.TTL
	}
	// The TTL counts from the load, not from this write: an answer never
	// outlives its load by more than the TTL, and so never outlives the
	// markers written after it was loaded (which live longer than the TTL).
	if loadedAt := l.kind.LoadedAt(v); !loadedAt.IsZero() {
		ttl -= now.Sub(loadedAt)
	}
	if l.kind.Expires != nil {
		if exp := l.kind.Expires(v); !exp.IsZero() {
			ttl = min(ttl, exp.Sub(now))
		}
	}
	// Redis keeps whole milliseconds: a shorter remainder is not worth it.
	if ttl < time.Millisecond {
		return
	}
	b := l.kind.Encode(nil, v)
	cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := s.rdb.Set(cctx, key, b, ttl).Err(); err != nil {
		l.failure(now, "set", err)
		return
	}
	s.success()
}

func (l *L2[Q, V]) failure(now time.Time, op string, err error) {
	l.m.errors.Inc()
	if opened := l.s.brk.failure(now); opened {
		l.s.log.Warn("redis failing; skipping the L2 tier until it recovers",
			zap.String("op", op), zap.Duration("cooldown", l.s.cfg.BreakerCooldown), zap.Error(err))
	}
}

func (s *L2Store) success() {
	if recovered := s.brk.success(); recovered {
		s.log.Info("redis recovered; L2 tier back in use")
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
