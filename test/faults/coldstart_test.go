package faults

import (
	"sync"
	"testing"
)

// A sidecar started with Redis unreachable warms PostgreSQL before it
// reports SERVING (its pool is connected when it says so), and answers a
// burst of first requests correctly, from PostgreSQL, every time: 20
// restarts, each with cold caches.
//
// The check deadline stays newEnv's generous one: on loopback a cold
// connect costs milliseconds, so no deadline could tell a warmed pool from
// a cold one without also failing on a loaded machine. What the test
// asserts instead is the order of events (connected before SERVING) and
// the answers.
func TestColdStartWithRedisUnreachable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{redis: redisAbsent})
	e.sc.Stop(recoverWithin)

	// Every expectation, dave and frank included: all cold.
	burst := append([]expectation{{"dave", readLeave, 200}, {"frank", approve, 403}}, traffic...)
	const restarts = 20
	for i := range restarts {
		// The previous sidecar stopped: its connections are gone (the
		// server notices a closed socket at once, but let it).
		waitUntil(t, "no sidecar connection left", func() bool { return e.connections(t) == 0 })

		e.sc = startSidecar(t, true, e.args...)
		if n := e.connections(t); n == 0 {
			t.Fatalf("restart %d: SERVING with no connection to PostgreSQL: the pool was not warmed", i)
		}
		var wg sync.WaitGroup
		for _, x := range burst {
			wg.Go(func() {
				if err := e.judge(x); err != nil {
					t.Errorf("restart %d, first requests: %v", i, err)
				}
			})
		}
		wg.Wait()
		if n := e.l2(t, "hit"); n != 0 {
			t.Errorf("restart %d: %v L2 hits with Redis unreachable", i, n)
		}
		e.sc.Stop(recoverWithin)
		if t.Failed() {
			return
		}
	}
}

// connections counts the sidecar's sessions on the env's database.
func (e *env) connections(t *testing.T) int64 {
	t.Helper()
	return e.seed.Int(t, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'authz-sidecar'`)
}
