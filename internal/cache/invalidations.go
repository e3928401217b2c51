package cache

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/invalidate"
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

// Invalidations records when each subject (a user, an organization by id
// or slug, a session, an API key: see invalidate.Subject) was last
// invalidated, so the cache tiers can refuse answers loaded before that.
// Entries cannot be found by subject in the tiers (they are keyed by
// query), so instead of deleting entries the tiers compare each answer's
// load time with the times of its subjects on every hit.
//
// Times are nanoseconds on the process's monotonic clock since the store
// was made, so a wall-clock step cannot reorder two local events. Answers
// loaded by other replicas carry wall-clock times (LoadedAt after an L2
// round trip); they are converted on the wall clock and moved Skew into
// the past.
//
// The methods are safe for concurrent use. A nil *Invalidations is valid
// and invalidates nothing. It satisfies invalidate.Local.
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
	subjects  map[invalidate.Subject]int64 // guarded by mu
	lastPrune int64                        // guarded by mu
}

var _ invalidate.Local = (*Invalidations)(nil)

// never is "no invalidation yet"; unknown is the load time of an answer
// that carries none: older than any invalidation, newer than never.
const (
	never   = math.MinInt64
	unknown = math.MinInt64 + 1
)

// NewInvalidations returns an empty store.
func NewInvalidations(cfg InvalidationsConfig) *Invalidations {
	cfg.defaults()
	s := &Invalidations{cfg: cfg, base: cfg.Now(), subjects: map[invalidate.Subject]int64{}}
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

// Invalidate refuses, from now on, every answer that depends on subject
// and was loaded before now, in L1 and (through the loaded-at check L2
// also makes) answers read from L2.
func (s *Invalidations) Invalidate(subject invalidate.Subject) {
	if s == nil || subject == "" {
		return
	}
	s.mu.Lock()
	t := s.now()
	s.subjects[subject] = t
	if t-s.lastPrune > int64(s.cfg.Horizon/4) {
		s.prune(t)
	}
	s.mu.Unlock()
	// Only after the map holds t: a reader that sees the new seq or latest
	// must find the entry when it looks.
	s.seq.Add(1)
	raise(&s.latest, t)
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

// prune forgets invalidations older than the horizon, keeping memory
// bounded by the invalidation rate. To stay safe whatever the horizon, the
// newest forgotten time becomes the floor of "all": an answer loaded before
// a forgotten invalidation is never served (it should have expired anyway).
// Called with mu held.
func (s *Invalidations) prune(now int64) {
	s.lastPrune = now
	cutoff := now - int64(s.cfg.Horizon)
	floor := int64(never)
	for k, t := range s.subjects {
		if t < cutoff {
			floor = max(floor, t)
			delete(s.subjects, k)
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

// fresh reports whether an answer depending on subjects, loaded at
// loaded, is newer than every invalidation that concerns it, FlushLocal
// excluded. It does not allocate.
func (s *Invalidations) fresh(loaded int64, subjects packedSubjects) bool {
	if verdict, decided := s.quick(loaded); decided {
		return verdict
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for rest := subjects; ; {
		subject, more, ok := rest.next()
		if !ok {
			return true
		}
		if t, found := s.subjects[subject]; found && loaded <= t {
			return false
		}
		rest = more
	}
}

// freshList is fresh for subjects in a slice.
func (s *Invalidations) freshList(loaded int64, subjects []invalidate.Subject) bool {
	if verdict, decided := s.quick(loaded); decided {
		return verdict
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, subject := range subjects {
		if t, found := s.subjects[subject]; found && loaded <= t {
			return false
		}
	}
	return true
}

// quick decides without the map when it can: loaded after everything
// recorded (fresh), or not after the last invalidation of everything.
func (s *Invalidations) quick(loaded int64) (verdict, decided bool) {
	if loaded > s.latest.Load() {
		return true, true
	}
	if loaded <= s.all.Load() {
		return false, true
	}
	return false, false
}

// freshL1 is fresh for an L1 entry, which FlushLocal concerns too by the
// time the entry's load started (stored); since is min(loaded, stored).
// A fresh verdict is remembered in the entry until the next invalidation.
func (s *Invalidations) freshL1(e *meta) bool {
	if e.since > s.latest.Load() {
		return true
	}
	seq := s.seq.Load()
	if e.checked.Load() == seq {
		return true
	}
	if e.stored <= s.local.Load() || !s.fresh(e.loaded, e.subjects) {
		return false
	}
	e.checked.Store(seq)
	return true
}

// loadedAt is the time, on this store's clock, before which every committed
// change is known to be reflected in an answer stamped loadedAt, which tier
// answered, the load having started at stored. An answer from the source
// started its query after stored (and carries the exact time); one from
// another tier may come from another replica, whose clock may be ahead by
// up to Skew.
func (s *Invalidations) loadedAt(loadedAt time.Time, tier roles.Tier, stored int64) int64 {
	if tier == roles.TierSource {
		if loadedAt.IsZero() {
			return stored
		}
		return s.at(loadedAt)
	}
	return s.remoteAt(loadedAt)
}

// remoteAt converts a load time written by any replica, allowing for skew.
func (s *Invalidations) remoteAt(t time.Time) int64 {
	at := s.at(t)
	if at == unknown {
		return unknown
	}
	return at - int64(s.cfg.Skew)
}
