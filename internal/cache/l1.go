// Package cache holds the permission-set cache tiers that sit in front of
// the source of truth: an in-process ristretto tier (L1) and a Redis tier
// (L2). Each tier is a roles.Resolver decorating the next one, so the
// decision engine sees one interface whatever the stack is.
//
// It is the only package that imports ristretto and go-redis.
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
	"golang.org/x/sync/singleflight"

	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// L1Config sizes the in-process tier.
type L1Config struct {
	// TTL bounds how long a member's permission set is served from memory.
	TTL time.Duration
	// NegativeTTL bounds how long "not a member" / "no such user" is served.
	NegativeTTL time.Duration
	// MaxBytes is the memory budget: the sum of entry costs (see entryCost).
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
	// invalidation of their user or organization (or a flush); nil
	// disables the check.
	Invalidations *Invalidations
	// Now is the clock entry lifetimes (TTL, refresh-ahead) are measured
	// on; time.Now by default. Hits read it through a coarse copy updated
	// every few milliseconds (tests that move a fake clock update it at
	// once, see sample). Whatever the clock says, ristretto also drops an
	// entry TTL after it was stored, in real time (which reclaims its
	// memory): the clock can only end an entry sooner.
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

// L1 is the in-process tier: ristretto in front of next, with concurrent
// misses for one key collapsed into a single load.
type L1 struct {
	next      roles.Resolver
	cfg       L1Config
	inv       *Invalidations // nil: no invalidation checks
	base      time.Time      // origin of the entry times below
	cache     *ristretto.Cache[string, *entry]
	group     singleflight.Group
	m         *tierMetrics
	refreshes *prometheus.CounterVec
	// coarse is the L1 clock, advanced every coarseTick by a goroutine:
	// a hit reads it (one atomic load) rather than the system clock, to
	// decide whether the entry expired or should be refreshed ahead, which
	// needs no precision (ristretto's own TTL check, on the system clock,
	// ends an entry on time). It only moves forward.
	coarse    atomic.Int64
	stop      chan struct{}
	closeOnce sync.Once
}

// coarseTick is the resolution of L1's hot-path clock: far below any
// refresh window (a share of a TTL of seconds).
const coarseTick = 10 * time.Millisecond

// entry is what L1 holds for a key. Once stored, only its two atomic
// fields change.
type entry struct {
	access *roles.Access
	// stored is when the load that made the entry started and loaded the
	// time before which every change is reflected in access (see
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
}

// NewL1 returns an L1 tier in front of next, registering its metrics on reg.
func NewL1(next roles.Resolver, cfg L1Config, reg prometheus.Registerer) (*L1, error) {
	cfg.defaults()
	m, err := newTierMetrics(reg, "l1")
	if err != nil {
		return nil, err
	}
	refreshes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "authz_cache_refreshes_total",
		Help:        "Background reloads of entries near expiry (stale-while-revalidate) by result (ok, error).",
		ConstLabels: prometheus.Labels{"tier": "l1"},
	}, []string{"result"})
	if err := reg.Register(refreshes); err != nil {
		return nil, fmt.Errorf("cache: register l1 refresh metrics: %w", err)
	}
	// Ristretto wants ~10 counters per expected entry; assume ~200 B per entry.
	counters := max(cfg.MaxBytes/200*10, 10_000)
	c, err := ristretto.NewCache(&ristretto.Config[string, *entry]{
		NumCounters:        counters,
		MaxCost:            cfg.MaxBytes,
		BufferItems:        64,
		IgnoreInternalCost: true, // entryCost already counts the item overhead
		OnEvict:            func(*ristretto.Item[*entry]) { m.evictions.Inc() },
	})
	if err != nil {
		return nil, fmt.Errorf("cache: new L1: %w", err)
	}
	l := &L1{
		next: next, cfg: cfg, inv: cfg.Invalidations, base: cfg.Now(), cache: c, m: m, refreshes: refreshes,
		stop: make(chan struct{}),
	}
	l.sample()
	go l.tick()
	return l, nil
}

func (l *L1) tick() {
	t := time.NewTicker(coarseTick)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.sample()
		}
	}
}

// sample reads the clock into coarse. Monotonic: a reading that lost a
// race with a later one is dropped.
func (l *L1) sample() { raise(&l.coarse, l.now()) }

// Close stops ristretto's goroutines and the clock's.
func (l *L1) Close() {
	l.closeOnce.Do(func() {
		close(l.stop)
		l.cache.Close()
	})
}

// Wait blocks until pending writes are applied (ristretto buffers them);
// tests and benchmarks use it to make a just-loaded entry visible.
func (l *L1) Wait() { l.cache.Wait() }

// Clear drops every entry. To forget entries because invalidations may
// have been missed, prefer Invalidations.FlushLocal: it also refuses the
// entries of loads still in flight.
func (l *L1) Clear() { l.cache.Clear() }

// now is the current time on the L1 clock (monotonic with time.Now).
func (l *L1) now() int64 { return int64(l.cfg.Now().Sub(l.base)) }

// usable reports whether e may answer q: no invalidation since it was
// loaded. It does not allocate: it runs on every hit.
func (l *L1) usable(e *entry, q roles.Query) bool {
	return l.inv == nil || l.inv.freshL1(e, q.UserID, q.OrgRef)
}

// Resolve answers from memory when it can, else loads through next once per
// key no matter how many callers miss together. An entry in the last
// RefreshAhead of its TTL is served and reloaded in the background.
func (l *L1) Resolve(ctx context.Context, q roles.Query) (*roles.Access, roles.Tier, error) {
	key := cacheKey(q)
	if e, ok := l.cache.Get(key); ok {
		// Expired on the L1 clock: a miss, as if ristretto had dropped it.
		if now := l.coarse.Load(); now < e.expires {
			if l.usable(e, q) {
				l.m.hits.Inc()
				if now >= e.refreshAt && e.refreshing.CompareAndSwap(false, true) {
					l.refresh(ctx, key, q)
				}
				return e.access, roles.TierL1, nil
			}
			// Invalidated: never served, reloaded below like a miss.
			l.m.stale.Inc()
		}
	}
	l.m.misses.Inc()
	ch := l.group.DoChan(key, func() (any, error) { return l.load(ctx, key, q, true) })
	select {
	case <-ctx.Done():
		return nil, roles.TierL1, fmt.Errorf("cache: waiting for load: %w", ctx.Err())
	case r := <-ch:
		if r.Err != nil {
			return nil, roles.TierNone, r.Err
		}
		v := r.Val.(loaded)
		return v.access, v.tier, nil
	}
}

// refresh reloads key in the background, joining a load already in flight
// for it. A failed refresh is not retried: the entry expires, and the next
// caller loads (and sees the error) as on any miss.
func (l *L1) refresh(ctx context.Context, key string, q roles.Query) {
	ch := l.group.DoChan(key, func() (any, error) { return l.load(ctx, key, q, false) })
	go func() {
		if r := <-ch; r.Err != nil {
			l.refreshes.WithLabelValues("error").Inc()
			return
		}
		l.refreshes.WithLabelValues("ok").Inc()
	}()
}

// load asks next and stores the answer. With recheck, a usable entry that a
// flight which just finished stored is returned instead.
func (l *L1) load(ctx context.Context, key string, q roles.Query, recheck bool) (any, error) {
	if recheck {
		if e, ok := l.cache.Get(key); ok && l.coarse.Load() < e.expires && l.usable(e, q) {
			return loaded{e.access, roles.TierL1}, nil
		}
	}
	var stored int64
	if l.inv != nil {
		stored = l.inv.now()
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.LoadTimeout)
	defer cancel()
	a, tier, err := l.next.Resolve(lctx, q)
	if err != nil {
		return nil, err
	}
	ttl := l.cfg.TTL
	if !a.Member() {
		ttl = l.cfg.NegativeTTL
	}
	now := l.now()
	e := &entry{access: a, refreshAt: now + int64(float64(ttl)*(1-l.cfg.RefreshAhead)), expires: now + int64(ttl)}
	if l.cfg.RefreshAhead == 0 {
		e.refreshAt = math.MaxInt64
	}
	if l.inv != nil {
		e.stored = stored
		e.loaded = l.inv.loadedAt(a, tier, stored)
		e.since = min(e.stored, e.loaded)
	}
	l.cache.SetWithTTL(key, e, entryCost(key, a), ttl)
	return loaded{a, tier}, nil
}

type loaded struct {
	access *roles.Access
	tier   roles.Tier
}

// cacheKey builds the key shared by L1 and L2: the policy version first, so
// a policy change moves every lookup to fresh keys.
func cacheKey(q roles.Query) string {
	return q.Version + "|" + q.UserID + "|" + q.OrgRef + "|" + q.TeamRef
}

// entryCost approximates the bytes an entry holds, so MaxBytes is a real
// memory budget: key, struct, and every string's header and bytes.
func entryCost(key string, a *roles.Access) int64 {
	const (
		itemOverhead = 96 // ristretto item + map slot
		entrySize    = 64 // entry: pointer, five times, flag, seq
		accessSize   = int(unsafe.Sizeof(roles.Access{}))
		stringHeader = 16
		grantSize    = 40 // Grant: string header + slice header
	)
	n := int64(itemOverhead + entrySize + accessSize + len(key) + len(a.OrgID) + len(a.TeamID) + len(a.InvalidRoles))
	for _, ss := range [][]string{a.Roles, a.UnknownRoles, a.PlatformRoles} {
		for _, s := range ss {
			n += stringHeader + int64(len(s))
		}
	}
	for _, gs := range []roles.Grants{a.Grants, a.Platform} {
		for _, g := range gs {
			n += grantSize + int64(len(g.Role))
			for _, p := range g.Perms {
				n += stringHeader + int64(len(p))
			}
		}
	}
	return n
}
