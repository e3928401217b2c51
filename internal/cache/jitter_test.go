package cache

import (
	"context"
	"testing"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// seq is a random source that returns its values in turn (then the last
// one again).
func seq(vals ...float64) func() float64 {
	i := 0
	return func() float64 {
		v := vals[min(i, len(vals)-1)]
		i++
		return v
	}
}

func TestJitterApply(t *testing.T) {
	t.Parallel()
	const ttl = 100 * time.Second
	tests := []struct {
		name string
		frac float64
		rnd  float64
		want time.Duration
	}{
		{"off", 0, 0.5, ttl},
		{"lowest draw keeps the TTL", 0.2, 0, ttl},
		{"middle draw", 0.2, 0.5, 90 * time.Second},
		{"highest draw stays above 1-frac", 0.2, 0.999, ttl - time.Duration(0.2*0.999*float64(ttl))},
		{"negative disables", -0.1, 0.5, ttl},
		{"a whole TTL or more disables", 1, 0.5, ttl},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := newJitter(tt.frac, seq(tt.rnd)).apply(ttl)
			if got != tt.want {
				t.Errorf("apply(%v) = %v, want %v", ttl, got, tt.want)
			}
			if got > ttl || got < ttl-time.Duration(max(tt.frac, 0)*float64(ttl)) {
				t.Errorf("apply(%v) = %v: outside [(1-frac)·ttl, ttl]", ttl, got)
			}
		})
	}
}

// Two answers loaded at the same instant expire at different instants,
// each within [(1-Jitter)·TTL, TTL] of the load, positive and negative
// alike: a fleet started at once does not come back to L2 in step.
func TestL1JitteredTTLs(t *testing.T) {
	t.Parallel()
	const ttl, negative = time.Minute, 10 * time.Second
	clk := newFakeClock()
	// Draws in load order: org1 keeps its TTL, org2 loses 10% of it, the
	// not-a-member answer (org9) 20% of its negative TTL.
	s := newL1Store(t, L1Config{TTL: ttl, NegativeTTL: negative, RefreshAhead: -1, Now: clk.Now,
		Jitter: 0.4, Rand: seq(0, 0.25, 0.5)})
	l := newL1(t, s, AccessKind(), Lookup[roles.Query, *roles.Access](&stampedSource{}))
	qs := []roles.Query{query("u1", "org1"), query("u2", "acme"), query("u1", "org9")}
	for _, q := range qs {
		if got := tierOf(t, l, q); got != roles.TierSource {
			t.Fatalf("first lookup of %v: %v", q, got)
		}
	}
	// Each is served until just before its own jittered end, and not at it
	// (checked from the earliest end to the latest).
	ends := []struct {
		q    roles.Query
		life time.Duration
	}{{qs[2], negative * 8 / 10}, {qs[1], ttl * 9 / 10}, {qs[0], ttl}}
	var elapsed time.Duration
	for _, e := range ends {
		advance(clk, s, e.life-time.Nanosecond-elapsed)
		if got := tierOf(t, l, e.q); got != roles.TierL1 {
			t.Errorf("%v just before %v: tier %v, want l1", e.q, e.life, got)
		}
		advance(clk, s, time.Nanosecond)
		elapsed = e.life
		if got := tierOf(t, l, e.q); got == roles.TierL1 {
			t.Errorf("%v served at %v, past its jittered TTL", e.q, e.life)
		}
	}
}

// L2 writes each entry with its own jittered TTL (counted from the load).
func TestL2JitteredTTLs(t *testing.T) {
	t.Parallel()
	rdb, prefix := redisClient(t)
	clk := newFakeClock()
	src := &stampedSource{now: clk.Now}
	l2 := newL2(t, newL2Store(rdb, L2Config{Prefix: prefix, TTL: 100 * time.Second, NegativeTTL: 10 * time.Second,
		Now: clk.Now, Jitter: 0.5, Rand: seq(0, 0.5, 0.5)}), AccessKind(), Lookup[roles.Query, *roles.Access](src))
	ctx := context.Background()
	tests := []struct {
		q    roles.Query
		key  string
		want time.Duration
	}{
		{query("u1", "org1"), "access:v1|u1|org1|", 100 * time.Second},
		{query("u2", "org1"), "access:v1|u2|org1|", 75 * time.Second},
		{query("u1", "org9"), "access:v1|u1|org9|", 7500 * time.Millisecond},
	}
	for _, tt := range tests {
		if _, tier, err := l2.Lookup(ctx, tt.q); err != nil || tier != roles.TierSource {
			t.Fatalf("%v: %v, %v", tt.q, tier, err)
		}
		// Redis counts down in real time from the SET: allow what a loaded
		// machine takes between the SET and the PTTL, never more than the TTL.
		got, err := rdb.PTTL(ctx, prefix+tt.key).Result()
		if err != nil || got > tt.want || got < tt.want-patience {
			t.Errorf("%s: PTTL %v, %v; want %v", tt.key, got, err, tt.want)
		}
	}
}
