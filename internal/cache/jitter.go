package cache

import (
	"math/rand/v2"
	"time"
)

// jitter shortens TTLs by a random share, so that entries loaded together
// (a fleet of sidecars started at once, a deploy that flushed every L1) do
// not expire together and come back to Redis or PostgreSQL in one wave.
// It only ever shortens: every documented staleness bound (a TTL is the
// longest an answer is served) still holds.
type jitter struct {
	// frac is the largest share of a TTL taken off; 0 disables.
	frac float64
	// rnd returns a number in [0, 1); safe for concurrent use.
	rnd func() float64
}

// newJitter validates frac (0 <= frac < 1; anything else disables it) and
// defaults rnd to math/rand/v2's Float64.
func newJitter(frac float64, rnd func() float64) jitter {
	if frac <= 0 || frac >= 1 {
		frac = 0
	}
	if rnd == nil {
		rnd = rand.Float64
	}
	return jitter{frac: frac, rnd: rnd}
}

// apply returns ttl less a random share of it in [0, frac).
func (j jitter) apply(ttl time.Duration) time.Duration {
	if j.frac == 0 || ttl <= 0 {
		return ttl
	}
	return ttl - time.Duration(j.frac*j.rnd()*float64(ttl))
}
