package cache

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// L1Config configures the in-process tier, for every kind.
type L1Config struct {
	// TTL bounds how long a positive answer (a member's permission set, a
	// session, a key) is served from memory.
	TTL time.Duration
	// NegativeTTL bounds how long "not a member" / "no such user, session
	// or key" is served.
	NegativeTTL time.Duration
	// MaxBytes is the memory budget of every kind together: the sum of
	// entry costs (see L1.cost).
	MaxBytes int64
	// LoadTimeout bounds one load from the next tier. Loads run detached
	// from the caller's context so a caller giving up does not waste the
	// work other waiters (and later callers) need.
	LoadTimeout time.Duration
	// RefreshAhead is the last fraction of an entry's TTL during which a
	// hit still serves the entry but also starts one background reload, so
	// a hot key is replaced before it expires instead of making its callers
	// wait (and a crowd of them load together). 0.15 by default; negative
	// disables it.
	RefreshAhead float64
	// Invalidations, when set, makes L1 refuse entries loaded before an
	// invalidation of one of their subjects (or a flush); nil disables the
	// check.
	Invalidations *Invalidations
	// Jitter is the largest share of TTL and NegativeTTL taken off each
	// entry at random (0.1: each lives between 90% and 100% of its TTL),
	// so entries loaded together do not expire together; 0 (the default)
	// disables it. It never lengthens a TTL.
	Jitter float64
	// Rand is Jitter's random source, returning numbers in [0, 1) and safe
	// for concurrent use; math/rand/v2's Float64 by default (tests inject
	// their own).
	Rand func() float64
	// Now is the clock entry lifetimes (TTL, refresh-ahead, expiry) are
	// measured on; time.Now by default. Hits read it through a coarse copy
	// updated every few milliseconds (tests that move a fake clock update
	// it at once, see sample). Whatever the clock says, ristretto also
	// drops an entry TTL after it was stored, in real time (which reclaims
	// its memory): the clock can only end an entry sooner.
	Now func() time.Time
}

func (c *L1Config) defaults() {
	if c.TTL <= 0 {
		c.TTL = 30 * time.Second
	}
	if c.NegativeTTL <= 0 {
		c.NegativeTTL = 5 * time.Second
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 64 << 20
	}
	if c.LoadTimeout <= 0 {
		c.LoadTimeout = 2 * time.Second
	}
	if c.RefreshAhead == 0 {
		c.RefreshAhead = 0.15
	}
	if c.RefreshAhead < 0 || c.RefreshAhead >= 1 {
		c.RefreshAhead = 0
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// L1Store is the memory every kind's L1 shares: one ristretto cache (one
// budget, one admission and eviction policy across kinds), one clock.
type L1Store struct {
	cfg   L1Config
	inv   *Invalidations // nil: no invalidation checks
	base  time.Time      // origin of the entry times below
	cache *ristretto.Cache[[]byte, cached]
	reg   prometheus.Registerer
	jit   jitter
	// coarse is the L1 clock, advanced every coarseTick by a goroutine:
	// a hit reads it (one atomic load) rather than the system clock, to
	// decide whether the entry expired or should be refreshed ahead, which
	// needs no precision (ristretto's own TTL check, on the system clock,
	// ends an entry on time). It only moves forward.
	coarse    atomic.Int64
	loaders   *loaders
	stop      chan struct{}
	closeOnce sync.Once
}

// coarseTick is the resolution of L1's hot-path clock: far below any
// refresh window (a share of a TTL of seconds).
const coarseTick = 10 * time.Millisecond

// NewL1Store returns the memory of the in-process tier. The metrics of
// each kind are registered on reg by NewL1.
func NewL1Store(cfg L1Config, reg prometheus.Registerer) (*L1Store, error) {
	cfg.defaults()
	// Ristretto wants ~10 counters per expected entry; assume ~200 B per entry.
	counters := max(cfg.MaxBytes/200*10, 10_000)
	c, err := ristretto.NewCache(&ristretto.Config[[]byte, cached]{
		NumCounters:        counters,
		MaxCost:            cfg.MaxBytes,
		BufferItems:        64,
		IgnoreInternalCost: true, // cost already counts the item overhead
		OnEvict:            func(it *ristretto.Item[cached]) { it.Value.header().m.evictions.Inc() },
	})
	if err != nil {
		return nil, fmt.Errorf("cache: new L1: %w", err)
	}
	s := &L1Store{cfg: cfg, inv: cfg.Invalidations, base: cfg.Now(), cache: c, reg: reg, jit: newJitter(cfg.Jitter, cfg.Rand), stop: make(chan struct{})}
	s.loaders = newLoaders(loaderCount, s.stop)
	s.sample()
	go s.tick()
	return s, nil
}

func (s *L1Store) tick() {
	t := time.NewTicker(coarseTick)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sample()
		}
	}
}

// sample reads the clock into coarse. Monotonic: a reading that lost a
// race with a later one is dropped.
func (s *L1Store) sample() { raise(&s.coarse, s.now()) }

// now is the current time on the L1 clock (monotonic with time.Now).
func (s *L1Store) now() int64 { return int64(s.cfg.Now().Sub(s.base)) }

// Close stops ristretto's goroutines, the clock's and the idle loaders.
func (s *L1Store) Close() {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.cache.Close()
	})
}

// Wait blocks until pending writes are applied (ristretto buffers them);
// tests and benchmarks use it to make a just-loaded entry visible.
func (s *L1Store) Wait() { s.cache.Wait() }

// Clear drops every entry. To forget entries because invalidations may
// have been missed, prefer Invalidations.FlushLocal: it also refuses the
// entries of loads still in flight.
func (s *L1Store) Clear() { s.cache.Clear() }

// cached is what the store holds: an entry of some kind.
type cached interface{ header() *meta }

// meta is the kind-independent part of an entry. Once stored, only its two
// atomic fields change.
type meta struct {
	// key is the entry's full key, compared on every hit: ristretto keeps
	// only hashes, and no hash collision may pass one query (a session
	// token) off as another.
	key string
	// subjects are the invalidation subjects the answer depends on.
	subjects packedSubjects
	// stored is when the load that made the entry started and loaded the
	// time before which every change is reflected in the answer (see
	// Invalidations.loadedAt), both on the Invalidations clock; since is
	// the smaller of the two. Zero without invalidations.
	stored, loaded, since int64
	// refreshAt is when, on the L1 clock, a hit starts a background
	// reload; expires is when the entry is no longer served.
	refreshAt  int64
	expires    int64
	refreshing atomic.Bool
	// checked is the Invalidations seq at which the entry was last found
	// fresh (see Invalidations.freshL1).
	checked atomic.Uint64
	m       *tierMetrics // the kind's, for evictions
}

type entry[V any] struct {
	meta
	value V
}

func (e *entry[V]) header() *meta { return &e.meta }

// L1 is the in-process tier of one kind: the shared store in front of
// next, with concurrent misses for one key collapsed into a single load.
type L1[Q, V any] struct {
	s      *L1Store
	kind   *Kind[Q, V]
	next   Lookup[Q, V]
	tag    string // kind.Name + "|", the start of every key
	flight flight
	m      *tierMetrics
}

// NewL1 returns kind's L1 tier in store s, in front of next, registering
// its metrics on the store's registerer (one L1 per kind per store).
func NewL1[Q, V any](s *L1Store, kind *Kind[Q, V], next Lookup[Q, V]) (*L1[Q, V], error) {
	m, err := newTierMetrics(s.reg, "l1", kind.Name)
	if err != nil {
		return nil, err
	}
	return &L1[Q, V]{s: s, kind: kind, next: next, tag: kind.Name + "|", m: m}, nil
}

// keyBuf holds a key being built on the hot path. Pooled: a buffer on the
// stack would escape into the kind's AppendKey (called through a function
// value) and cost an allocation per lookup.
type keyBuf struct{ b []byte }

var keyBufs = sync.Pool{New: func() any { return &keyBuf{b: make([]byte, 0, 128)} }}

func putKeyBuf(k *keyBuf) {
	if cap(k.b) <= 1024 {
		keyBufs.Put(k)
	}
}

// Lookup answers from memory when it can, else loads through next once per
// key no matter how many callers miss together. An entry in the last
// RefreshAhead of its TTL is served and reloaded in the background. A hit
// neither allocates nor locks.
func (l *L1[Q, V]) Lookup(ctx context.Context, q Q) (V, roles.Tier, error) {
	kb := keyBufs.Get().(*keyBuf)
	kb.b = l.kind.AppendKey(append(kb.b[:0], l.tag...), q)
	if e, ok := l.get(kb.b); ok {
		// Expired on the L1 clock: a miss, as if ristretto had dropped it.
		if now := l.s.coarse.Load(); now < e.expires {
			if l.usable(e) {
				l.m.hits.Inc()
				if now >= e.refreshAt && e.refreshing.CompareAndSwap(false, true) {
					l.refresh(ctx, e.key, q)
				}
				putKeyBuf(kb)
				return e.value, roles.TierL1, nil
			}
			// Invalidated: never served, reloaded below like a miss.
			l.m.stale.Inc()
		}
	}
	key := string(kb.b)
	putKeyBuf(kb)
	l.m.misses.Inc()
	c := l.flight.start(key, l.s.loaders.run, func() (any, error) { return l.load(ctx, key, q, true) })
	select {
	case <-ctx.Done():
		var zero V
		return zero, roles.TierL1, fmt.Errorf("cache: waiting for load: %w", ctx.Err())
	case <-c.done:
		if c.err != nil {
			var zero V
			return zero, roles.TierNone, c.err
		}
		v := c.val.(loaded[V])
		return v.value, v.tier, nil
	}
}

// get returns the entry stored under key, if it is this kind's and really
// key's.
func (l *L1[Q, V]) get(key []byte) (*entry[V], bool) {
	c, ok := l.s.cache.Get(key)
	if !ok {
		return nil, false
	}
	e, ok := c.(*entry[V])
	return e, ok && e.key == string(key)
}

// usable reports whether e may be served: no invalidation of its subjects
// since it was loaded. It does not allocate: it runs on every hit.
func (l *L1[Q, V]) usable(e *entry[V]) bool {
	return l.s.inv == nil || l.s.inv.freshL1(&e.meta)
}

// refresh reloads key in the background, joining a load already in flight
// for it. A failed refresh is not retried: the entry expires, and the next
// caller loads (and sees the error) as on any miss.
func (l *L1[Q, V]) refresh(ctx context.Context, key string, q Q) {
	c := l.flight.start(key, l.s.loaders.run, func() (any, error) { return l.load(ctx, key, q, false) })
	go func() {
		if <-c.done; c.err != nil {
			l.m.refreshes.WithLabelValues("error").Inc()
			return
		}
		l.m.refreshes.WithLabelValues("ok").Inc()
	}()
}

// load asks next and stores the answer. With recheck, a usable entry that a
// flight which just finished stored is returned instead.
func (l *L1[Q, V]) load(ctx context.Context, key string, q Q, recheck bool) (any, error) {
	if recheck {
		if e, ok := l.get([]byte(key)); ok && l.s.coarse.Load() < e.expires && l.usable(e) {
			return loaded[V]{e.value, roles.TierL1}, nil
		}
	}
	inv := l.s.inv
	var stored int64
	if inv != nil {
		stored = inv.now()
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.s.cfg.LoadTimeout)
	defer cancel()
	v, tier, err := l.next.Lookup(lctx, q)
	if err != nil {
		return nil, err
	}
	cfg := &l.s.cfg
	ttl := cfg.NegativeTTL
	if l.kind.Positive(q, v) {
		ttl = cfg.TTL
	}
	ttl = l.s.jit.apply(ttl)
	if l.kind.Expires != nil {
		// Never served past its own expiry (a session's expiresAt), even
		// by a hit that reads the coarse clock late.
		if exp := l.kind.Expires(v); !exp.IsZero() {
			ttl = min(ttl, exp.Sub(cfg.Now())-coarseTick)
		}
	}
	if ttl <= 0 {
		return loaded[V]{v, tier}, nil
	}
	now := l.s.now()
	e := &entry[V]{value: v}
	e.key, e.subjects, e.m = key, l.kind.subjects(q, v), l.m
	e.refreshAt, e.expires = now+int64(float64(ttl)*(1-cfg.RefreshAhead)), now+int64(ttl)
	if cfg.RefreshAhead == 0 {
		e.refreshAt = math.MaxInt64
	}
	if inv != nil {
		e.stored = stored
		e.loaded = inv.loadedAt(l.kind.LoadedAt(v), tier, stored)
		e.since = min(e.stored, e.loaded)
	}
	l.s.cache.SetWithTTL([]byte(key), e, l.cost(e), ttl)
	return loaded[V]{v, tier}, nil
}

type loaded[V any] struct {
	value V
	tier  roles.Tier
}

// cost approximates the bytes an entry holds, so MaxBytes is a real memory
// budget: ristretto's bookkeeping, the entry, its key and subjects, and
// what the kind counts in the answer.
func (l *L1[Q, V]) cost(e *entry[V]) int64 {
	// ristretto's per-item bookkeeping: the store's map slot (key and
	// conflict hashes, the value as an interface, the expiry), the expiry
	// bucket's slot and the admission policy's cost entry, with Go's map
	// overhead.
	const itemOverhead = 192
	return itemOverhead + heapSize(int(unsafe.Sizeof(*e))) + heapSize(len(e.key)) + heapSize(len(e.subjects)) + l.kind.Cost(e.value)
}

// heapSize is what the allocator takes for an object of n bytes: Go rounds
// small objects up to a size class (steps of 16 bytes up to 256, then
// coarser). It errs on the large side.
func heapSize(n int) int64 {
	switch {
	case n <= 0:
		return 0
	case n <= 8:
		return 8
	case n <= 256:
		return int64(n+15) &^ 15
	case n <= 512:
		return int64(n+63) &^ 63
	case n <= 1024:
		return int64(n+127) &^ 127
	default:
		return int64(n+n/8+255) &^ 255
	}
}

// stringsSize is heapSize of a slice of strings: the array of headers and
// each string's bytes.
func stringsSize(ss []string) int64 {
	n := heapSize(16 * len(ss))
	for _, s := range ss {
		n += heapSize(len(s))
	}
	return n
}

// Wait applies the store's pending writes (tests and benchmarks).
func (l *L1[Q, V]) Wait() { l.s.Wait() }
