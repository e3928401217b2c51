package cache

import "sync"

// flight collapses concurrent loads of one key into one, as
// golang.org/x/sync/singleflight's DoChan does, but runs that load
// through run (the store's loaders) instead of on a goroutine of its own.
// A load goes deep (go-redis, pgx), and a new goroutine's 8 KB stack grew
// two or three times for each one: with DoChan, stack growth was a tenth
// of the CPU of a check answered from Redis or PostgreSQL
// (docs/performance.md).
//
// A caller may stop waiting (its check's deadline) while the load goes on
// and fills the cache for the next one, as with DoChan.
type flight struct {
	mu    sync.Mutex
	calls map[string]*flightCall
}

// flightCall is one load; val and err are set before done is closed.
type flightCall struct {
	done chan struct{}
	val  any
	err  error
}

// start returns the load of key in flight, or starts fn as that load.
func (f *flight) start(key string, run func(func()), fn func() (any, error)) *flightCall {
	f.mu.Lock()
	if c, ok := f.calls[key]; ok {
		f.mu.Unlock()
		return c
	}
	if f.calls == nil {
		f.calls = make(map[string]*flightCall)
	}
	c := &flightCall{done: make(chan struct{})}
	f.calls[key] = c
	f.mu.Unlock()
	run(func() {
		// Deferred, so that waiters are released and the key freed even
		// if fn panics (the panic then ends the process, as with DoChan).
		defer func() {
			f.mu.Lock()
			delete(f.calls, key)
			f.mu.Unlock()
			close(c.done)
		}()
		c.val, c.err = fn()
	})
	return c
}

// loaderCount is how many long-lived goroutines a store keeps for loads:
// about the loads a sidecar has in flight at its default --max-in-flight
// on the cold paths. A load finding them all busy gets a goroutine of its
// own.
const loaderCount = 64

// loaders runs functions on long-lived goroutines, whose grown stacks
// serve the next load.
type loaders struct{ work chan func() }

// newLoaders starts n loaders; they end when stop is closed.
func newLoaders(n int, stop <-chan struct{}) *loaders {
	l := &loaders{work: make(chan func())}
	for range n {
		go func() {
			for {
				select {
				case f := <-l.work:
					f()
				case <-stop:
					return
				}
			}
		}()
	}
	return l
}

// run runs f on an idle loader, or on a new goroutine when none is idle
// (or the store is closed).
func (l *loaders) run(f func()) {
	select {
	case l.work <- f:
	default:
		go f()
	}
}
