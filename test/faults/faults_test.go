package faults

import (
	"context"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// Redis down when the sidecar starts: every decision comes from Postgres,
// and once Redis listens on that port the L2 tier is used again by itself.
func TestRedisDownAtStart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{redis: redisAbsent, args: shortL1})

	for range 3 {
		e.expectAll(t, traffic)
		time.Sleep(250 * time.Millisecond) // past the L1 TTL: every round reaches L2 again
	}
	if n := e.l2Errors(t); n == 0 {
		t.Error("authz_cache_errors_total{tier=l2} = 0 with Redis down; the failures are not counted")
	}
	if n := e.l2(t, "hit"); n != 0 {
		t.Errorf("%v L2 hits with no Redis", n)
	}

	if err := e.redis.Start(); err != nil {
		t.Fatal(err)
	}
	// The breaker's cooldown (2s, not configurable) bounds the wait.
	e.awaitL2Hits(t, recoverWithin)
}

// recoverWithin bounds the waits for recovery after a fault: a failure
// bound far above the few seconds it takes on a loaded machine.
const recoverWithin = time.Minute

// Redis SIGKILLed under continuous traffic: every answer stays right
// (Postgres answers), no gRPC error; restarted, it is used again.
func TestRedisKilledMidTraffic(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{redis: redisRunning, args: shortL1})

	e.expectAll(t, traffic)
	time.Sleep(250 * time.Millisecond) // past the L1 TTL, so the next round reads L2
	e.expectAll(t, traffic)
	if e.l2(t, "hit") == 0 {
		t.Fatal("L2 not in use before the fault; the test would prove nothing")
	}
	errsBefore := e.l2Errors(t)

	// 200 checks, at least 2 s of them; Redis dies once half are answered,
	// so at least 1 s of traffic (five L1 TTLs) meets a dead Redis.
	const workers, perWorker, every = 4, 50, 40 * time.Millisecond
	e.judgeUnderLoad(t, workers, perWorker, every, 7, e.redis.Kill)
	if e.l2Errors(t) == errsBefore {
		t.Error("no L2 error counted after Redis was killed mid-traffic")
	}

	if err := e.redis.Start(); err != nil { // same port, empty
		t.Fatal(err)
	}
	e.awaitL2Hits(t, recoverWithin)
}

// Redis paused (SIGSTOP): connections open, nothing answers. Every Redis
// call gives up after --redis-timeout and Postgres answers, so no check
// fails closed although Redis never answers (without that bound a check
// would wait for the check or load deadline and answer 503).
func TestRedisPaused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{redis: redisRunning, args: append([]string{"--redis-timeout", "25ms"}, shortL1...)})

	e.expectAll(t, traffic)
	time.Sleep(250 * time.Millisecond) // past the L1 TTL, so the next round reads L2
	e.expectAll(t, traffic)
	errsBefore := e.l2Errors(t)

	if err := e.redis.Pause(); err != nil {
		t.Fatal(err)
	}
	const workers, perWorker, every = 4, 30, 50 * time.Millisecond
	// judge counts a 503 as wrong: all of these resolve from Postgres.
	e.judgeUnderLoad(t, workers, perWorker, every, 3, nil)
	if e.l2Errors(t) == errsBefore {
		t.Error("no L2 error (timeout) counted while Redis was paused")
	}

	if err := e.redis.Resume(); err != nil {
		t.Fatal(err)
	}
	e.awaitL2Hits(t, recoverWithin)
}

// Postgres stalled or cut: cached answers keep being served, from L1 and,
// by a replica whose L1 never held them, from L2; a miss fails closed with
// 503 (never a hang); after the fault the miss resolves by itself.
func TestPostgresFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		fault func(*testproc.PGProxy)
	}{
		{"stalled", (*testproc.PGProxy).Stall},
		{"cut", (*testproc.PGProxy).Cut},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Caches that outlive the test; deadlines far above a cold
			// check on a loaded machine, which a stalled Postgres reaches
			// whatever their length (a cut one fails at once).
			e := newEnv(t, envConfig{redis: redisRunning, args: []string{
				"--check-timeout", "10s", "--load-timeout", "10s",
				"--l1-ttl", "1h", "--l1-negative-ttl", "1h", "--l2-ttl", "1h", "--l2-negative-ttl", "1h",
			}})
			primed := []expectation{{"alice", readLeave, 200}, {"erin", readLeave, 403}, {"carol", approve, 403}}
			e.expectAll(t, primed) // Postgres → L2 and L1
			// A replica on the same Redis and database, its L1 empty.
			replica := &env{sc: startSidecar(t, true, e.args...), tokens: e.tokens}

			tt.fault(e.proxy)

			l1 := e.l1Hits(t)
			e.expectAll(t, primed)
			if got := e.l1Hits(t) - l1; got < float64(len(primed)) {
				t.Errorf("%v L1 hits for %d primed keys during the fault, want all", got, len(primed))
			}
			replica.expectAll(t, primed)
			if got := replica.l2(t, "hit"); got < float64(len(primed)) {
				t.Errorf("%v L2 hits for %d primed keys on the replica, want all", got, len(primed))
			}

			// Both misses at once: each waits for the stalled Postgres
			// until a deadline (or fails at once on a cut one).
			misses := []expectation{{"dave", readLeave, 200}, {"frank", approve, 403}}
			var wg sync.WaitGroup
			for _, miss := range misses {
				wg.Go(func() {
					a, err := e.ask(miss)
					if err != nil {
						t.Error(err) // includes a hang past the client deadline
						return
					}
					if !unavailable(a) {
						t.Errorf("%s %s with Postgres %s: got %v, want 503 deadline_exceeded or source_unavailable", miss.who, miss.route, tt.name, a)
					}
				})
			}
			wg.Wait()

			if err := e.proxy.Resume(); err != nil {
				t.Fatal(err)
			}
			e.awaitAnswer(t, expectation{"dave", readLeave, 200}, recoverWithin)
			e.awaitAnswer(t, expectation{"frank", approve, 403}, recoverWithin)
			e.expectAll(t, traffic)
		})
	}
}

// JWKS endpoint gone after the keys were loaded: tokens keep verifying with
// the last good key set; the sidecar stays ready.
func TestJWKSClosedAfterStart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{args: []string{"--jwks-refresh", "200ms", "--jwks-min-refresh", "50ms"}})
	e.expectAll(t, traffic)

	e.iss.close()
	// A failed background refresh, or the test proves nothing.
	waitUntil(t, "a failed JWKS refresh logged after the endpoint closed", func() bool {
		return strings.Contains(e.sc.Proc.Log(), "JWKS fetch failed; keeping the last good key set")
	})
	for _, name := range []string{"alice", "bob", "carol", "erin"} {
		e.tokens[name] = e.iss.token(name) // fresh tokens, same key
	}
	e.expectAll(t, traffic)
	// A kid the last good set lacks is still refused, not let through.
	method, path, _ := strings.Cut(me, " ")
	if a := e.sc.check(t, method, path, e.iss.tokenWithKid("alice", "k-unknown")); a.status != 401 {
		t.Errorf("unknown kid with the JWKS down: got %v, want 401", a)
	}
	if s := e.sc.Health(); s != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health %v after the JWKS closed, want SERVING", s)
	}
	if c := e.sc.HTTPStatus("/readyz"); c != 200 {
		t.Errorf("/readyz %d after the JWKS closed, want 200", c)
	}
}

// JWKS unreachable when the sidecar starts, refusing (reset) or black-holed
// (accepted, never answered): not ready, checks that need a key answer 503
// (not 401: the token may well be fine), checks that need no key are
// answered; once the JWKS answers, the sidecar becomes ready and allows
// without a restart.
func TestJWKSUnreachableAtStart(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name string
		mode reach
	}{{"reset", resetting}, {"hanging", hanging}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			// A check that needs a key waits for a fetch that fails (reset)
			// or never ends (hanging): 503 whatever the check deadline,
			// which only has to be far above a check that needs no key.
			e := newEnv(t, envConfig{jwks: mode.mode, dontWaitForKey: true, args: []string{
				"--jwks-refresh", "300ms", "--jwks-min-refresh", "50ms", "--check-timeout", "5s",
			}})

			if s := e.sc.Health(); s != healthpb.HealthCheckResponse_NOT_SERVING {
				t.Errorf("gRPC health %v without keys, want NOT_SERVING", s)
			}
			if c := e.sc.HTTPStatus("/readyz"); c != 503 {
				t.Errorf("/readyz %d without keys, want 503", c)
			}
			tests := []struct {
				name    string
				route   string
				token   string
				status  int
				reasons []string
			}{
				{"valid token on a permission route", readLeave, e.tokens["alice"], 503, []string{"keys_unavailable", "deadline_exceeded"}},
				{"valid token on an authenticated route", me, e.tokens["erin"], 503, []string{"keys_unavailable", "deadline_exceeded"}},
				{"garbage token", me, "abc.def.ghi", 401, []string{"invalid_token"}},
				{"no token on an authenticated route", me, "", 401, []string{"no_credential"}},
				{"public route needs no key", health, "", 200, []string{""}},
			}
			for _, tt := range tests {
				method, path, _ := strings.Cut(tt.route, " ")
				if a := e.sc.check(t, method, path, tt.token); a.status != tt.status || !slices.Contains(tt.reasons, a.reason) {
					t.Errorf("%s: got %v, want %d %v", tt.name, a, tt.status, tt.reasons)
				}
			}

			e.iss.up()
			waitUntil(t, "SERVING after the JWKS became reachable", func() bool {
				return e.sc.Health() == healthpb.HealthCheckResponse_SERVING
			})
			if c := e.sc.HTTPStatus("/readyz"); c != 200 {
				t.Errorf("/readyz %d once keys loaded, want 200", c)
			}
			e.expectAll(t, traffic)
		})
	}
}

// SIGTERM with a check in flight (blocked on a stalled Postgres): the check
// still gets an answer (its deadline comes before the drain's), health
// turns NOT_SERVING, and the process exits 0 without the drain having to
// cut anything.
func TestSIGTERMDrainsInFlightCheck(t *testing.T) {
	t.Parallel()
	// The check's deadline far above a cold check on a loaded machine (the
	// stalled Postgres reaches it whatever its length), the drain's far
	// above the check's.
	const check, drain = 10 * time.Second, time.Minute
	e := newEnv(t, envConfig{args: []string{
		"--check-timeout", check.String(), "--load-timeout", check.String(), "--drain-timeout", drain.String(),
	}})
	e.expectAll(t, traffic[:2]) // the pool holds a connection

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch, err := e.sc.health.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health watch: %v %v", r, err)
	}

	e.proxy.Stall()
	type result struct {
		a   answer
		err error
	}
	inflight := make(chan result, 1)
	held := e.proxy.Held()
	go func() {
		a, err := e.ask(expectation{"dave", readLeave, 200})
		inflight <- result{a, err}
	}()
	waitUntil(t, "the check's query held by the stalled Postgres", func() bool { return e.proxy.Held() > held })
	select {
	case r := <-inflight:
		t.Fatalf("the check answered before SIGTERM (%v %v); it should be waiting on the stalled Postgres", r.a, r.err)
	default:
	}
	sigterm := time.Now()
	if err := e.sc.Proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	statusc := make(chan healthpb.HealthCheckResponse_ServingStatus, 1)
	go func() {
		r, err := watch.Recv()
		if err != nil {
			statusc <- healthpb.HealthCheckResponse_UNKNOWN
			return
		}
		statusc <- r.GetStatus()
	}()
	select {
	case s := <-statusc:
		if s != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("health after SIGTERM: %v, want NOT_SERVING", s)
		}
	case <-time.After(recoverWithin):
		t.Error("health did not change after SIGTERM")
	}
	cancel() // our watch stream must not hold the drain up

	r := <-inflight // bounded by the client deadline
	if r.err != nil {
		t.Errorf("in-flight check during drain: %v", r.err)
	} else if r.a.status != 200 && !unavailable(r.a) {
		t.Errorf("in-flight check during drain: got %v, want 200 or 503", r.a)
	}

	// Drain plus the HTTP server's 1 s shutdown bound is the most an exit
	// may take; far more means something waits unbounded.
	state, exited := e.sc.Proc.Wait(drain + recoverWithin)
	if !exited {
		t.Fatalf("sidecar still running %v after SIGTERM (--drain-timeout %v)", time.Since(sigterm), drain)
	}
	t.Logf("exited %v after SIGTERM: %v", time.Since(sigterm).Round(time.Millisecond), state)
	if state.ExitCode() != 0 {
		t.Errorf("exit status %v after SIGTERM, want 0", state)
	}
	// The in-flight check ended by itself: the drain did not have to cut it.
	if strings.Contains(e.sc.Proc.Log(), "drain timeout") {
		t.Error("the drain timed out and cut connections; the in-flight check should have ended first")
	}
}
