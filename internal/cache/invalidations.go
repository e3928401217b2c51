package cache

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// InvalidationsConfig tunes an Invalidations store.
type InvalidationsConfig struct {
	// Horizon is the oldest an answer held by any tier can be: an
	// invalidation older than that concerns nothing cached any more and is
	// forgotten. Wiring sets it to L1 TTL + L2 TTL + load timeout + Skew;
	// 10 minutes by default. Too short a horizon costs extra loads, never
	// a stale answer (see prune).
	Horizon time.Duration
	// Skew is the clock difference between replicas tolerated when an
	// answer loaded by another replica (through L2) is judged against an
	// invalidation time taken here: such an answer counts as loaded Skew
	// earlier than it says. 500ms by default.
	Skew time.Duration
	// Now is the clock; time.Now by default (tests replace it). Local
	// times are measured from the store's creation on it, answers' load
	// times compared with it, so the tiers and sources a store judges
	// must use the same clock.
	Now func() time.Time
}

func (c *InvalidationsConfig) defaults() {
	if c.Horizon <= 0 {
		c.Horizon = 10 * time.Minute
	}
	if c.Skew < 0 {
		c.Skew = 0
	}
	if c.Skew == 0 {
		c.Skew = 500 * time.Millisecond
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Invalidations records when each user and organization was last
// invalidated, so the cache tiers can refuse answers loaded before that.
// Entries cannot be found by user or organization in the tiers (L1 is keyed
// by version, user and organization reference together), so instead of
// deleting entries the tiers compare each answer's load time with these
// times on every hit.
//
// Times are nanoseconds on the process's monotonic clock since the store
// was made, so a wall-clock step cannot reorder two local events. Answers
// loaded by other replicas carry wall-clock times (roles.Access.LoadedAt
// after a JSON round trip); they are converted on the wall clock and moved
// Skew into the past.
//
// The methods are safe for concurrent use. A nil *Invalidations is valid
// and invalidates nothing.
type Invalidations struct {
	cfg  InvalidationsConfig
	base time.Time

	// latest is the greatest time stored in any field below, raised only
	// after that field is written: an answer loaded after it needs no other
	// look-up, which is the common case on the hot path.
	latest atomic.Int64
	// seq counts recorded invalidations, incremented after each is written
	// (and before latest is raised). An L1 entry remembers the seq at which
	// it was last found fresh: while seq has not moved, it still is, and a
	// hit costs two atomic loads instead of a lock and map look-ups.
	seq atomic.Uint64
	// all is the last invalidation of everything (an "all" message, or the
	// newest invalidation forgotten by prune); it applies to every tier.
	all atomic.Int64
	// local is the last flush of this process's L1 (messages may have been
	// missed); it applies to L1 only, by the time an entry was stored.
	local atomic.Int64

	mu        sync.RWMutex
	users     map[string]int64 // guarded by mu
	orgs      map[string]int64 // guarded by mu; ids and slugs alike
	lastPrune int64            // guarded by mu
}

// never is "no invalidation yet"; unknown is the load time of an answer
// that carries none: older than any invalidation, newer than never.
const (
	never   = math.MinInt64
	unknown = math.MinInt64 + 1
)

// NewInvalidations returns an empty store.
func NewInvalidations(cfg InvalidationsConfig) *Invalidations {
	cfg.defaults()
	s := &Invalidations{
		cfg: cfg, base: cfg.Now(),
		users: map[string]int64{}, orgs: map[string]int64{},
	}
	s.latest.Store(never)
	s.all.Store(never)
	s.local.Store(never)
	return s
}

// now is the current time on the store's clock.
func (s *Invalidations) now() int64 { return int64(s.cfg.Now().Sub(s.base)) }

// at converts t to the store's clock; a zero t is unknown. A t with a
// monotonic reading (taken in this process) converts on the monotonic
// clock, a decoded one on the wall clock.
func (s *Invalidations) at(t time.Time) int64 {
	if t.IsZero() {
		return unknown
	}
	return int64(t.Sub(s.base))
}

// User invalidates every answer about user id, in every organization.
func (s *Invalidations) User(id string) {
	if s != nil {
		s.record(s.users, id)
	}
}

// Org invalidates every answer about the organization ref, an id or a
// slug: answers whose canonical id or whose reference is ref.
func (s *Invalidations) Org(ref string) {
	if s != nil {
		s.record(s.orgs, ref)
	}
}

// All invalidates every answer, in L1 and (through the loaded-at check L2
// also makes) answers read from L2.
func (s *Invalidations) All() {
	if s == nil {
		return
	}
	t := s.now()
	raise(&s.all, t)
	s.seq.Add(1)
	raise(&s.latest, t)
}

// FlushLocal invalidates every entry this process's L1 holds now, and
// nothing else: after missed messages, L1 may hold what an invalidation
// removed, while L2 is still guarded by the markers others wrote.
func (s *Invalidations) FlushLocal() {
	if s == nil {
		return
	}
	t := s.now()
	raise(&s.local, t)
	s.seq.Add(1)
	raise(&s.latest, t)
}

func (s *Invalidations) record(m map[string]int64, key string) {
	if key == "" {
		return
	}
	s.mu.Lock()
	t := s.now()
	m[key] = t
	if t-s.lastPrune > int64(s.cfg.Horizon/4) {
		s.prune(t)
	}
	s.mu.Unlock()
	// Only after the map holds t: a reader that sees the new seq or latest
	// must find the entry when it looks.
	s.seq.Add(1)
	raise(&s.latest, t)
}

// prune forgets invalidations older than the horizon, keeping memory
// bounded by the invalidation rate. To stay safe whatever the horizon, the
// newest forgotten time becomes the floor of "all": an answer loaded before
// a forgotten invalidation is never served (it should have expired anyway).
// Called with mu held.
func (s *Invalidations) prune(now int64) {
	s.lastPrune = now
	cutoff := now - int64(s.cfg.Horizon)
	floor := int64(never)
	for _, m := range []map[string]int64{s.users, s.orgs} {
		for k, t := range m {
			if t < cutoff {
				floor = max(floor, t)
				delete(m, k)
			}
		}
	}
	if floor != never {
		raise(&s.all, floor)
	}
}

// raise sets v to t unless it already holds a later time.
func raise(v *atomic.Int64, t int64) {
	for {
		cur := v.Load()
		if cur >= t || v.CompareAndSwap(cur, t) {
			return
		}
	}
}

// fresh reports whether an answer about user in organization ref (whose
// canonical id is orgID, possibly equal to ref or empty), loaded at loaded,
// is newer than every invalidation that concerns it, FlushLocal excluded.
func (s *Invalidations) fresh(loaded int64, user, ref, orgID string) bool {
	if loaded > s.latest.Load() {
		return true
	}
	if loaded <= s.all.Load() {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if t, ok := s.users[user]; ok && loaded <= t {
		return false
	}
	if ref != "" {
		if t, ok := s.orgs[ref]; ok && loaded <= t {
			return false
		}
	}
	if orgID != "" && orgID != ref {
		if t, ok := s.orgs[orgID]; ok && loaded <= t {
			return false
		}
	}
	return true
}

// freshL1 is fresh for an L1 entry, which FlushLocal concerns too by the
// time the entry's load started (stored). since is min(loaded, stored).
// A fresh verdict is remembered in the entry until the next invalidation.
func (s *Invalidations) freshL1(e *entry, user, ref string) bool {
	if e.since > s.latest.Load() {
		return true
	}
	seq := s.seq.Load()
	if e.checked.Load() == seq {
		return true
	}
	if e.stored <= s.local.Load() || !s.fresh(e.loaded, user, ref, e.access.OrgID) {
		return false
	}
	e.checked.Store(seq)
	return true
}

// loadedAt is the time, on this store's clock, before which every committed
// change is known to be reflected in a, which tier answered, the load having
// started at stored. An answer from the source started its query after
// stored (and carries the exact time); one from another tier may come from
// another replica, whose clock may be ahead by up to Skew.
func (s *Invalidations) loadedAt(a *roles.Access, tier roles.Tier, stored int64) int64 {
	if tier == roles.TierSource {
		if a.LoadedAt.IsZero() {
			return stored
		}
		return s.at(a.LoadedAt)
	}
	return s.remoteAt(a.LoadedAt)
}

// remoteAt converts a load time written by any replica, allowing for skew.
func (s *Invalidations) remoteAt(t time.Time) int64 {
	at := s.at(t)
	if at == unknown {
		return unknown
	}
	return at - int64(s.cfg.Skew)
}
