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
	"time"

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
}

// L1 is the in-process tier: ristretto in front of next, with concurrent
// misses for one key collapsed into a single load.
type L1 struct {
	next  roles.Resolver
	cfg   L1Config
	cache *ristretto.Cache[string, *roles.Access]
	group singleflight.Group
	m     *tierMetrics
}

// NewL1 returns an L1 tier in front of next, registering its metrics on reg.
func NewL1(next roles.Resolver, cfg L1Config, reg prometheus.Registerer) (*L1, error) {
	cfg.defaults()
	m, err := newTierMetrics(reg, "l1")
	if err != nil {
		return nil, err
	}
	// Ristretto wants ~10 counters per expected entry; assume ~200 B per entry.
	counters := max(cfg.MaxBytes/200*10, 10_000)
	c, err := ristretto.NewCache(&ristretto.Config[string, *roles.Access]{
		NumCounters:        counters,
		MaxCost:            cfg.MaxBytes,
		BufferItems:        64,
		IgnoreInternalCost: true, // entryCost already counts the item overhead
		OnEvict:            func(*ristretto.Item[*roles.Access]) { m.evictions.Inc() },
	})
	if err != nil {
		return nil, fmt.Errorf("cache: new L1: %w", err)
	}
	return &L1{next: next, cfg: cfg, cache: c, m: m}, nil
}

// Close stops ristretto's goroutines.
func (l *L1) Close() { l.cache.Close() }

// Wait blocks until pending writes are applied (ristretto buffers them);
// tests and benchmarks use it to make a just-loaded entry visible.
func (l *L1) Wait() { l.cache.Wait() }

// Clear drops every entry, for example after invalidations may have been
// missed.
func (l *L1) Clear() { l.cache.Clear() }

// Resolve answers from memory when it can, else loads through next once per
// key no matter how many callers miss together.
func (l *L1) Resolve(ctx context.Context, q roles.Query) (*roles.Access, roles.Tier, error) {
	key := cacheKey(q)
	if a, ok := l.cache.Get(key); ok {
		l.m.hits.Inc()
		return a, roles.TierL1, nil
	}
	l.m.misses.Inc()
	ch := l.group.DoChan(key, func() (any, error) {
		// Re-check: a flight that just finished may have filled the entry.
		if a, ok := l.cache.Get(key); ok {
			return loaded{a, roles.TierL1}, nil
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
		l.cache.SetWithTTL(key, a, entryCost(key, a), ttl)
		return loaded{a, tier}, nil
	})
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

type loaded struct {
	access *roles.Access
	tier   roles.Tier
}

// cacheKey builds the key shared by L1 and L2: the policy version first, so
// a policy change moves every lookup to fresh keys.
func cacheKey(q roles.Query) string {
	return q.Version + "|" + q.UserID + "|" + q.OrgRef
}

// entryCost approximates the bytes an entry holds, so MaxBytes is a real
// memory budget: key, struct, and every string's header and bytes.
func entryCost(key string, a *roles.Access) int64 {
	const (
		itemOverhead = 96 // ristretto item + map slot
		accessSize   = 144
		stringHeader = 16
	)
	n := int64(itemOverhead + accessSize + len(key) + len(a.OrgID))
	for _, ss := range [][]string{a.Roles, a.Permissions, a.UnknownRoles} {
		for _, s := range ss {
			n += stringHeader + int64(len(s))
		}
	}
	return n
}
