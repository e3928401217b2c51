package cache

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/invalidate"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// newGuardedL2 is an access L2 with invalidation on, in front of a stamped
// source, all three on clk.
func newGuardedL2(t *testing.T, clk *fakeClock, skew time.Duration) (*L2[roles.Query, *roles.Access], *stampedSource, *Invalidations, string) {
	t.Helper()
	rdb, prefix := redisClient(t)
	inv := NewInvalidations(InvalidationsConfig{Skew: skew, Now: clk.Now})
	src := &stampedSource{now: clk.Now}
	l2 := newL2(t, newL2Store(rdb, L2Config{Prefix: prefix, Invalidations: inv, Now: clk.Now}), AccessKind(), Lookup[roles.Query, *roles.Access](src))
	return l2, src, inv, prefix
}

func l2Tier(t *testing.T, l2 *L2[roles.Query, *roles.Access], user, org string) roles.Tier {
	t.Helper()
	return tierOf(t, l2, query(user, org))
}

func TestL2Markers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		user   string
		org    string // the reference cached
		marks  []invalidate.Subject
		all    bool
		reload bool
	}{
		{name: "user marker", user: "u1", org: "org1", marks: []invalidate.Subject{"u:u1"}, reload: true},
		{name: "organization marker by id", user: "u1", org: "org1", marks: []invalidate.Subject{"o:org1"}, reload: true},
		{name: "organization marker by id, entry cached under the slug", user: "u1", org: "acme", marks: []invalidate.Subject{"o:org1"}, reload: true},
		{name: "slug marker", user: "u1", org: "acme", marks: []invalidate.Subject{"o:acme"}, reload: true},
		{name: "everything", user: "u1", org: "org1", all: true, reload: true},
		{name: "another user", user: "u1", org: "org1", marks: []invalidate.Subject{"u:u2"}},
		{name: "another organization", user: "u1", org: "acme", marks: []invalidate.Subject{"o:org2"}},
		{name: "a session", user: "u1", org: "acme", marks: []invalidate.Subject{"s:u1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := newFakeClock()
			l2, _, _, _ := newGuardedL2(t, clk, 10*time.Millisecond)
			if got := l2Tier(t, l2, tt.user, tt.org); got != roles.TierSource {
				t.Fatalf("first lookup: %v", got)
			}
			if got := l2Tier(t, l2, tt.user, tt.org); got != roles.TierL2 {
				t.Fatalf("second lookup: %v, want l2", got)
			}
			// Another replica received the message and marked.
			if err := l2.s.Mark(context.Background(), tt.marks, tt.all); err != nil {
				t.Fatal(err)
			}
			want := roles.TierL2
			if tt.reload {
				want = roles.TierSource
			}
			if got := l2Tier(t, l2, tt.user, tt.org); got != want {
				t.Errorf("after the marker: tier %v, want %v", got, want)
			}
			if tt.reload {
				// The entry reloaded just now is within the skew of the
				// marker and refused; one loaded past the skew is served.
				clk.Advance(20 * time.Millisecond)
				if got := l2Tier(t, l2, tt.user, tt.org); got != roles.TierSource {
					t.Errorf("entry loaded within the skew of the marker: tier %v, want postgres", got)
				}
				if got := l2Tier(t, l2, tt.user, tt.org); got != roles.TierL2 {
					t.Errorf("reloaded entry: tier %v, want l2", got)
				}
				if got := testutil.ToFloat64(l2.m.stale); got < 1 {
					t.Errorf("stale metric = %v", got)
				}
			}
		})
	}
}

// An entry loaded within Skew after a marker may come from a replica whose
// clock is behind: not served.
func TestL2MarkerSkew(t *testing.T) {
	t.Parallel()
	l2, _, _, _ := newGuardedL2(t, newFakeClock(), time.Hour)
	if err := l2.s.Mark(context.Background(), []invalidate.Subject{"u:u1"}, false); err != nil {
		t.Fatal(err)
	}
	l2Tier(t, l2, "u1", "org1")
	if got := l2Tier(t, l2, "u1", "org1"); got != roles.TierSource {
		t.Errorf("entry loaded within the skew of a marker: tier %v, want postgres", got)
	}
}

// The invalidations this process received apply to L2 reads too, before
// any marker is there (the marker write may be in flight).
func TestL2LocalInvalidations(t *testing.T) {
	t.Parallel()
	l2, _, inv, _ := newGuardedL2(t, newFakeClock(), 10*time.Millisecond)
	l2Tier(t, l2, "u1", "org1")
	inv.Invalidate("u:u1")
	if got := l2Tier(t, l2, "u1", "org1"); got != roles.TierSource {
		t.Errorf("after a local invalidation: tier %v, want postgres", got)
	}
}

// Markers only move forward: a late write of an older invalidation does not
// hide a newer one.
func TestMarkersOnlyMoveForward(t *testing.T) {
	t.Parallel()
	l2, _, _, prefix := newGuardedL2(t, newFakeClock(), 0)
	ctx := context.Background()
	now := time.Now()
	l2.s.cfg.Now = func() time.Time { return now }
	if err := l2.s.Mark(ctx, []invalidate.Subject{"u:u1"}, false); err != nil {
		t.Fatal(err)
	}
	l2.s.cfg.Now = func() time.Time { return now.Add(-time.Second) }
	if err := l2.s.Mark(ctx, []invalidate.Subject{"u:u1"}, false); err != nil {
		t.Fatal(err)
	}
	got, err := l2.s.rdb.Get(ctx, prefix+"inv:u:u1").Result()
	if err != nil {
		t.Fatal(err)
	}
	if got != strconv.FormatInt(now.UnixNano(), 10) {
		t.Errorf("marker = %s, want %d (the later time)", got, now.UnixNano())
	}
	ttl, err := l2.s.rdb.PTTL(ctx, prefix+"inv:u:u1").Result()
	if err != nil || ttl <= 5*time.Minute {
		t.Errorf("marker TTL = %v, %v; want more than the L2 TTL", ttl, err)
	}
}

// Entries expire a TTL after they were loaded, not after they were written,
// so they never outlive the markers written after their load.
// redisClockStep allows for Redis counting TTLs on its own clock: wall
// time, in milliseconds, read when a command starts.
const redisClockStep = time.Second

func TestL2TTLCountsFromLoad(t *testing.T) {
	t.Parallel()
	rdb, prefix := redisClient(t)
	clk := newFakeClock()
	src := &stampedSource{loadedAt: clk.Now().Add(-4 * time.Minute)}
	l2 := newL2(t, newL2Store(rdb, L2Config{Prefix: prefix, TTL: 5 * time.Minute, Now: clk.Now}), AccessKind(), Lookup[roles.Query, *roles.Access](src))
	written := time.Now()
	l2Tier(t, l2, "u1", "org1")
	ttl, err := rdb.PTTL(context.Background(), prefix+"access:v1|u1|org1|").Result()
	// Redis counts the minute down in real time from the write.
	if err != nil || ttl > time.Minute || ttl < time.Minute-time.Since(written)-redisClockStep {
		t.Errorf("TTL of an entry loaded 4 minutes ago = %v, %v; want 1m less the time since it was written", ttl, err)
	}
	// Loaded longer ago than the TTL: not written at all.
	src.loadedAt = clk.Now().Add(-6 * time.Minute)
	l2Tier(t, l2, "u2", "org1")
	if n, _ := rdb.Exists(context.Background(), prefix+"access:v1|u2|org1|").Result(); n != 0 {
		t.Error("an answer older than the TTL was written")
	}
}

// L1 over a guarded L2, as wired: an invalidation received here reloads
// from the source, past both tiers, and the reloaded answer is then served
// from L1 (no loop through L2).
func TestTiersInvalidation(t *testing.T) {
	t.Parallel()
	rdb, prefix := redisClient(t)
	// Every tier, store and the source on one fake clock: the whole test
	// happens within the skew of the marker, whatever the machine's speed.
	clk := newFakeClock()
	const skew = 10 * time.Second
	inv := NewInvalidations(InvalidationsConfig{Skew: skew, Now: clk.Now})
	src := &stampedSource{now: clk.Now}
	store := newL2Store(rdb, L2Config{Prefix: prefix, Invalidations: inv, Now: clk.Now})
	l2 := newL2(t, store, AccessKind(), Lookup[roles.Query, *roles.Access](src))
	l1 := newInvL1(t, l2, inv, L1Config{Now: clk.Now})
	// Another replica's L1 on the same Redis, which missed the message.
	otherInv := NewInvalidations(InvalidationsConfig{Skew: skew, Now: clk.Now})
	otherL2 := newL2(t, newL2Store(rdb, L2Config{Prefix: prefix, Invalidations: otherInv, Now: clk.Now}), AccessKind(), Lookup[roles.Query, *roles.Access](src))
	other := newInvL1(t, otherL2, nil, L1Config{Now: clk.Now})
	for _, want := range []roles.Tier{roles.TierSource, roles.TierL1} {
		if got := tierOf(t, l1, query("u1", "org1")); got != want {
			t.Fatalf("warm-up: %v, want %v", got, want)
		}
	}
	if got := tierOf(t, other, query("u1", "org1")); got != roles.TierL2 {
		t.Fatalf("other replica warm-up: %v, want l2", got)
	}
	// The message: applied here, marked in Redis.
	inv.Invalidate("u:u1")
	if err := store.Mark(context.Background(), []invalidate.Subject{"u:u1"}, false); err != nil {
		t.Fatal(err)
	}
	// Answers loaded from now on are loaded after the invalidation (but
	// within the skew of the marker).
	clk.Advance(time.Second)
	calls := src.calls.Load()
	for i, want := range []roles.Tier{roles.TierSource, roles.TierL1, roles.TierL1} {
		if got := tierOf(t, l1, query("u1", "org1")); got != want {
			t.Errorf("lookup %d after the invalidation: %v, want %v", i, got, want)
		}
	}
	if n := src.calls.Load() - calls; n != 1 {
		t.Errorf("source calls after the invalidation = %d, want 1", n)
	}
	// The other replica's L2 read (after a flush of its L1) honours the
	// marker even though it never heard the message: what L1 reloaded was
	// loaded within the skew after the marker, so it reloads too.
	other.s.Clear()
	other.Wait()
	if got := tierOf(t, other, query("u1", "org1")); got != roles.TierSource {
		t.Errorf("other replica after the marker: %v, want postgres", got)
	}
}

// A session found by token names its subjects only in the answer: L2 reads
// their markers in a second round trip, and a marker of the session or of
// its user refuses the entry on every replica.
func TestL2SessionMarkers(t *testing.T) {
	t.Parallel()
	for _, subject := range []invalidate.Subject{"s:s1", "u:u1"} {
		t.Run(string(subject), func(t *testing.T) {
			t.Parallel()
			rdb, prefix := redisClient(t)
			clk := newFakeClock()
			inv := NewInvalidations(InvalidationsConfig{Skew: 10 * time.Millisecond, Now: clk.Now})
			src := &sessionSource{now: clk.Now, byKey: map[string]authn.Session{
				"tok": {Found: true, ID: "s1", UserID: "u1", ExpiresAt: clk.Now().Add(time.Hour)},
				"s1":  {Found: true, ID: "s1", UserID: "u1", ExpiresAt: clk.Now().Add(time.Hour)},
			}}
			store := newL2Store(rdb, L2Config{Prefix: prefix, Invalidations: inv, Now: clk.Now})
			byToken := newL2(t, store, SessionTokenKind(), Lookup[string, *authn.Session](src))
			byID := newL2(t, store, SessionIDKind(), Lookup[string, *authn.Session](src))
			for _, want := range []roles.Tier{roles.TierSource, roles.TierL2} {
				if got := tierOf(t, byToken, "tok"); got != want {
					t.Fatalf("by token: %v, want %v", got, want)
				}
				if got := tierOf(t, byID, "s1"); got != want {
					t.Fatalf("by id: %v, want %v", got, want)
				}
			}
			// Another replica marked; this one never heard of it.
			if err := store.Mark(context.Background(), []invalidate.Subject{subject}, false); err != nil {
				t.Fatal(err)
			}
			if got := tierOf(t, byToken, "tok"); got != roles.TierSource {
				t.Errorf("by token after marking %s: %v, want postgres", subject, got)
			}
			if got := tierOf(t, byID, "s1"); got != roles.TierSource {
				t.Errorf("by id after marking %s: %v, want postgres", subject, got)
			}
			if got := testutil.ToFloat64(byToken.m.stale); got != 1 {
				t.Errorf("stale = %v, want 1", got)
			}
		})
	}
}
