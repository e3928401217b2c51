package cache

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// readBatcher sends the GETs of concurrent lookups to Redis together: one
// pipeline (one write, one read, on each side) carries the reads of every
// lookup that arrived while maxRoundTrips were out, instead of one round
// trip each. A lookup that finds fewer out sends its own at once, so a
// quiet sidecar waits for nothing; a busy one waits for the first round
// trip to return, and spends a syscall pair (and Redis a read and a write)
// per batch rather than per lookup.
//
// It changes what is read in no way: each GET was already its own command
// in a pipeline (entry and markers are not read atomically; see L2.get),
// and every lookup judges the values it asked for.
type readBatcher struct {
	rdb     redis.UniversalClient
	timeout time.Duration

	mu      sync.Mutex
	pending []*readReq // guarded by mu; waiting for the next round trip
	out     int        // guarded by mu; round trips out (at most maxRoundTrips)
}

// maxRoundTrips bounds the round trips out at once. A lookup that finds
// fewer sends its own at once; past it lookups queue for the next one to
// return. More than one, so that one slow round trip (a stalled host) does
// not hold every lookup behind it until the tier's timeout.
const maxRoundTrips = 4

// maxBatch bounds the GETs of one pipeline (a lookup's GETs are never
// split). One round trip is out at a time, so the batches carry at most
// maxBatch GETs per round trip: 250 000 lookups of 4 GETs a second at a
// 1 ms round trip, far beyond what reaches L2 past L1.
const maxBatch = 1024

// readReq is one lookup's GETs and, once done is closed, their values (nil
// for a missing key) or the first error.
type readReq struct {
	keys []string
	vals [][]byte
	err  error
	done chan struct{}
}

// getMany GETs keys in the next round trip; a missing key is a nil value.
// It returns early with ctx's error if ctx ends first.
func (b *readBatcher) getMany(ctx context.Context, keys []string) ([][]byte, error) {
	r := &readReq{keys: keys, done: make(chan struct{})}
	b.mu.Lock()
	b.pending = append(b.pending, r)
	if b.out == maxRoundTrips {
		b.mu.Unlock()
		select {
		case <-r.done:
			return r.vals, r.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	// A round trip free: this lookup sends its own (and whatever queued).
	b.out++
	batch := b.take()
	b.mu.Unlock()
	b.exec(batch)
	b.mu.Lock()
	if len(b.pending) > 0 {
		// Lookups queued behind the round trips: a drainer sends them, on
		// this round trip's slot, so this one returns now.
		go b.drain()
	} else {
		b.out--
	}
	b.mu.Unlock()
	// r went out in batch unless lookups were queued before it (then
	// another round trip carries it): wait for whichever does.
	select {
	case <-r.done:
		return r.vals, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// take removes up to maxBatch GETs' worth of lookups from pending.
// Called with mu held.
func (b *readBatcher) take() []*readReq {
	n, i := 0, 0
	for ; i < len(b.pending); i++ {
		n += len(b.pending[i].keys)
		if n > maxBatch && i > 0 {
			break
		}
	}
	batch := b.pending[:i:i]
	b.pending = append([]*readReq(nil), b.pending[i:]...)
	return batch
}

// drain sends the queued lookups, a batch per round trip, until none is
// left, on a round trip slot its caller handed over.
func (b *readBatcher) drain() {
	b.mu.Lock()
	for len(b.pending) > 0 {
		batch := b.take()
		b.mu.Unlock()
		b.exec(batch)
		b.mu.Lock()
	}
	b.out--
	b.mu.Unlock()
}

// exec runs one pipeline of every GET of batch and hands each lookup its
// values. The round trip is bounded by the tier's timeout and detached
// from every caller: one caller giving up must not fail the others' reads.
func (b *readBatcher) exec(batch []*readReq) {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	n := 0
	for _, r := range batch {
		n += len(r.keys)
	}
	cmds := make([]*redis.StringCmd, 0, n)
	_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, r := range batch {
			for _, k := range r.keys {
				cmds = append(cmds, p.Get(ctx, k))
			}
		}
		return nil
	})
	_ = err // each command carries its own error (a connection's, every one's)
	for _, r := range batch {
		r.vals = make([][]byte, len(r.keys))
		for i := range r.keys {
			c := cmds[0]
			cmds = cmds[1:]
			v, err := c.Bytes()
			switch {
			case errors.Is(err, redis.Nil):
			case err != nil:
				if r.err == nil {
					r.err = err
				}
			default:
				r.vals[i] = v
			}
		}
		if r.err != nil {
			r.vals = nil
		}
		close(r.done)
	}
}
