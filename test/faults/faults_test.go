package faults

import (
	"context"
	"slices"
	"strings"
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
	e.awaitL2Hits(t, 10*time.Second)
}

// Redis SIGKILLed under continuous traffic: every answer stays right
// (Postgres answers), no gRPC error; restarted, it is used again.
func TestRedisKilledMidTraffic(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{redis: redisRunning, args: append([]string{"--check-timeout", "1s"}, shortL1...)})

	e.expectAll(t, traffic)
	time.Sleep(250 * time.Millisecond)
	e.expectAll(t, traffic)
	if e.l2(t, "hit") == 0 {
		t.Fatal("L2 not in use before the fault; the test would prove nothing")
	}
	errsBefore := e.l2Errors(t)

	const workers, perWorker, every = 4, 50, 40 * time.Millisecond // 200 checks over 2 s
	killed := make(chan struct{})
	go func() {
		time.Sleep(500 * time.Millisecond)
		e.redis.Kill()
		close(killed)
	}()
	e.judgeUnderLoad(t, workers, perWorker, every, 7)
	<-killed
	if e.l2Errors(t) == errsBefore {
		t.Error("no L2 error counted after Redis was killed mid-traffic")
	}

	if err := e.redis.Start(); err != nil { // same port, empty
		t.Fatal(err)
	}
	e.awaitL2Hits(t, 10*time.Second)
}

// Redis paused (SIGSTOP): connections open, nothing answers. Every Redis
// call gives up after --redis-timeout and Postgres answers, so no check
// fails closed although Redis "hangs" for longer than --check-timeout.
func TestRedisPaused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{redis: redisRunning, args: append([]string{"--check-timeout", "500ms", "--redis-timeout", "25ms"}, shortL1...)})

	e.expectAll(t, traffic)
	time.Sleep(250 * time.Millisecond)
	e.expectAll(t, traffic)
	errsBefore := e.l2Errors(t)

	if err := e.redis.Pause(); err != nil {
		t.Fatal(err)
	}
	const workers, perWorker, every = 4, 30, 50 * time.Millisecond
	// judge counts a 503 as wrong: all of these resolve from Postgres.
	e.judgeUnderLoad(t, workers, perWorker, every, 3)
	if e.l2Errors(t) == errsBefore {
		t.Error("no L2 error (timeout) counted while Redis was paused")
	}

	if err := e.redis.Resume(); err != nil {
		t.Fatal(err)
	}
	e.awaitL2Hits(t, 10*time.Second)
}

// Postgres stalled or cut: cached answers (L1, then L2 once L1 expired)
// keep being served, a miss fails closed with 503 within --check-timeout
// (never a hang), and after the fault the miss resolves by itself.
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
			e := newEnv(t, envConfig{redis: redisRunning, args: []string{
				"--check-timeout", "150ms", "--load-timeout", "1s",
				"--l1-ttl", "1s", "--l1-negative-ttl", "1s", "--l2-ttl", "1m", "--l2-negative-ttl", "1m",
			}})
			primed := []expectation{{"alice", readLeave, 200}, {"erin", readLeave, 403}, {"carol", approve, 403}}
			e.expectAll(t, primed) // Postgres → L2 and L1
			time.Sleep(50 * time.Millisecond)
			e.expectAll(t, primed)

			tt.fault(e.proxy)

			l1 := e.l1Hits(t)
			e.expectAll(t, primed)
			if e.l1Hits(t) == l1 {
				t.Error("no L1 hit for primed keys during the fault")
			}
			time.Sleep(1100 * time.Millisecond) // L1 entries expire; L2 still holds them
			l2 := e.l2(t, "hit")
			e.expectAll(t, primed)
			if got := e.l2(t, "hit") - l2; got < float64(len(primed)) {
				t.Errorf("%v L2 hits for %d primed keys after L1 expiry, want all", got, len(primed))
			}

			for _, miss := range []expectation{{"dave", readLeave, 200}, {"frank", approve, 403}} {
				a, err := e.ask(miss)
				if err != nil {
					t.Fatal(err) // includes exceeding the 2 s client deadline
				}
				if !unavailable(a) {
					t.Errorf("%s %s with Postgres %s: got %v, want 503 deadline_exceeded or source_unavailable", miss.who, miss.route, tt.name, a)
				}
			}

			if err := e.proxy.Resume(); err != nil {
				t.Fatal(err)
			}
			e.awaitAnswer(t, expectation{"dave", readLeave, 200}, 10*time.Second)
			e.awaitAnswer(t, expectation{"frank", approve, 403}, 10*time.Second)
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
	time.Sleep(700 * time.Millisecond) // several failed background refreshes
	if !strings.Contains(e.sc.Proc.Log(), "JWKS fetch failed; keeping the last good key set") {
		t.Fatal("no failed JWKS refresh logged after the endpoint closed; the test proves nothing")
	}
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
			e := newEnv(t, envConfig{jwks: mode.mode, dontWaitForKey: true, args: []string{
				"--jwks-refresh", "300ms", "--jwks-min-refresh", "50ms", "--check-timeout", "300ms",
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
				{"no token on an authenticated route", me, "", 401, []string{"no_token"}},
				{"public route needs no key", health, "", 200, []string{""}},
			}
			for _, tt := range tests {
				method, path, _ := strings.Cut(tt.route, " ")
				if a := e.sc.check(t, method, path, tt.token); a.status != tt.status || !slices.Contains(tt.reasons, a.reason) {
					t.Errorf("%s: got %v, want %d %v", tt.name, a, tt.status, tt.reasons)
				}
			}

			e.iss.up()
			deadline := time.Now().Add(10 * time.Second)
			for e.sc.Health() != healthpb.HealthCheckResponse_SERVING {
				if time.Now().After(deadline) {
					t.Fatal("not SERVING 10s after the JWKS became reachable")
				}
				time.Sleep(50 * time.Millisecond)
			}
			if c := e.sc.HTTPStatus("/readyz"); c != 200 {
				t.Errorf("/readyz %d once keys loaded, want 200", c)
			}
			e.expectAll(t, traffic)
		})
	}
}

// SIGTERM with a check in flight (blocked on a stalled Postgres): the check
// still gets an answer, health turns NOT_SERVING, and the process exits 0
// within --drain-timeout.
func TestSIGTERMDrainsInFlightCheck(t *testing.T) {
	t.Parallel()
	const drain = 2 * time.Second
	e := newEnv(t, envConfig{args: []string{
		"--check-timeout", "1s", "--load-timeout", "1s", "--drain-timeout", drain.String(),
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
	go func() {
		a, err := e.ask(expectation{"dave", readLeave, 200})
		inflight <- result{a, err}
	}()
	time.Sleep(200 * time.Millisecond) // the check is now waiting on Postgres
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
	case <-time.After(drain):
		t.Error("health did not change after SIGTERM")
	}
	cancel() // our watch stream must not hold the drain up

	r := <-inflight // bounded by the 2 s client deadline
	if r.err != nil {
		t.Errorf("in-flight check during drain: %v", r.err)
	} else if r.a.status != 200 && !unavailable(r.a) {
		t.Errorf("in-flight check during drain: got %v, want 200 or 503", r.a)
	}

	state, exited := e.sc.Proc.Wait(drain + 3*time.Second)
	if !exited {
		t.Fatalf("sidecar still running %v after SIGTERM (--drain-timeout %v)", time.Since(sigterm), drain)
	}
	took := time.Since(sigterm)
	t.Logf("exited %v after SIGTERM: %v", took.Round(time.Millisecond), state)
	if state.ExitCode() != 0 {
		t.Errorf("exit status %v after SIGTERM, want 0", state)
	}
	if took > drain+time.Second {
		// Drain plus the HTTP server's 1 s shutdown bound is the most a
		// clean exit may take; more means something waits unbounded.
		t.Errorf("exit took %v after SIGTERM, more than --drain-timeout %v + 1s", took, drain)
	}
}
