package faults

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// The routes of the repository's policies.yaml used here.
const (
	readLeave = "GET /api/orgs/org_acme/leave/l1"             // leave:read or leave:approve
	approve   = "POST /api/orgs/org_acme/leave/l1/approve"    // leave:approve
	deleteOrg = "DELETE /api/orgs/acme"                       // organization:delete, org by slug
	me        = "GET /api/me"                                 // any valid token of an existing user
	health    = "GET /healthz"                                // public
	other     = "GET /api/orgs/org_acme/leave/l1/attachments" // read-leave via **
)

// The seeded organization: alice owner, bob admin, carol and the "fresh"
// users member, erin a user of no organization. dave and frank are never
// asked about before a fault, so their first lookup is a cache miss.
var members = map[string]string{"alice": "owner", "bob": "admin", "carol": "member", "dave": "member", "frank": "member"}

// expectation is one request and the status policies.yaml gives it.
type expectation struct {
	who    string
	route  string // "METHOD /path"
	status int
}

// traffic mixes allows and denies whose answers are known from the seed.
// It never names dave or frank.
var traffic = []expectation{
	{"alice", approve, 200},
	{"alice", deleteOrg, 200},
	{"bob", approve, 200},
	{"bob", deleteOrg, 403},
	{"carol", readLeave, 200},
	{"carol", approve, 403},
	{"carol", other, 200},
	{"erin", readLeave, 403},
	{"erin", me, 200},
	{"bob", me, 200},
}

// Short cache TTLs (L1 much shorter than L2) so that L2 is used within
// a test's lifetime; L2 outlives every case.
var shortL1 = []string{"--l1-ttl", "200ms", "--l1-negative-ttl", "200ms", "--l2-ttl", "1m", "--l2-negative-ttl", "1m"}

type redisMode int

const (
	noRedis      redisMode = iota // no --redis-url: L1 and Postgres only
	redisRunning                  // a redis-server, started before the sidecar
	redisAbsent                   // --redis-url at a port where nothing listens yet
)

type envConfig struct {
	redis          redisMode
	jwks           reach // how the JWKS endpoint starts
	dontWaitForKey bool  // return once live, not once SERVING
	args           []string
}

// env is one sidecar with its own database (seeded directly, not through
// the proxy), Postgres proxy, optional Redis and JWKS issuer.
type env struct {
	seed   *pgtest.Seeder
	proxy  *testproc.PGProxy
	redis  *testproc.Redis
	iss    *issuer
	sc     *sidecar
	args   []string // the sidecar's, for a replica
	tokens map[string]string
}

func newEnv(t *testing.T, cfg envConfig) *env {
	t.Helper()
	dbURL := pgtest.NewDatabase(t)
	e := &env{seed: pgtest.NewSeeder(t, dbURL), tokens: map[string]string{}}
	e.seed.Org(t, "org_acme", "acme")
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin", "frank"} {
		e.seed.User(t, u, u)
		if role, ok := members[u]; ok {
			e.seed.Member(t, "org_acme", u, role)
		}
	}

	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	e.proxy = testproc.NewPGProxyT(t, u.Host)
	u.Host = e.proxy.Addr()

	e.iss = newIssuer(t, cfg.jwks)
	for _, name := range []string{"alice", "bob", "carol", "dave", "erin", "frank"} {
		e.tokens[name] = e.iss.token(name)
	}

	// Generous check and load deadlines by default: a loaded CI machine
	// running the race-built binary must not turn a slow answer into a 503
	// in cases that are not about deadlines. A case that expects a 503
	// stalls or cuts the dependency, so it comes whatever the deadline.
	// The same for Redis calls: with the default 25ms, a healthy Redis on a
	// machine whose load average is 40 timed out, tripped the L2 breaker
	// and left a test without the L2 use it starts from. A killed Redis
	// refuses at once whatever the bound; a paused one is TestRedisPaused's
	// (which sets its own). cfg.args come last, so they override these.
	secret, err := testproc.WriteSecretFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--policies", writePolicy(t, e.iss.URL), "--database-url", u.String(),
		"--better-auth-secret-file", secret, "--log-allow-every", "0",
		"--check-timeout", "30s", "--load-timeout", "30s", "--redis-timeout", "10s"}
	if cfg.redis != noRedis {
		e.redis = testproc.NewRedisT(t)
		if cfg.redis == redisRunning {
			if err := e.redis.Start(); err != nil {
				t.Fatal(err)
			}
		}
		args = append(args, "--redis-url", e.redis.URL(), "--redis-prefix", "authz-faults:"+randID(6)+":")
	}
	e.args = append(args, cfg.args...)
	e.sc = startSidecar(t, !cfg.dontWaitForKey, e.args...)
	return e
}

// writePolicy copies the repository's policies.yaml with the issuer's URL as
// issuer, audience and JWKS host.
func writePolicy(t testing.TB, issuerURL string) string {
	t.Helper()
	return testproc.WritePolicyT(t, issuerURL)
}

// ask sends x's request as x.who.
func (e *env) ask(x expectation) (answer, error) {
	method, path, _ := strings.Cut(x.route, " ")
	return e.sc.tryCheck(method, path, e.tokens[x.who])
}

// judge returns an error unless the answer to x is its expected status;
// a 503 is wrong here too (these callers can be answered from Postgres or a
// cache). Safe from any goroutine.
func (e *env) judge(x expectation) error {
	a, err := e.ask(x)
	if err != nil {
		return err
	}
	if a.status != x.status {
		return fmt.Errorf("%s %s: got %v, want %d", x.who, x.route, a, x.status)
	}
	return nil
}

// expectAll asserts every expectation once.
func (e *env) expectAll(t *testing.T, xs []expectation) {
	t.Helper()
	for _, x := range xs {
		if err := e.judge(x); err != nil {
			t.Error(err)
		}
	}
}

func (e *env) l2(t testing.TB, result string) float64 {
	return e.sc.metric(t, "authz_cache_lookups_total", "tier", "l2", "result", result)
}

func (e *env) l1Hits(t testing.TB) float64 {
	return e.sc.metric(t, "authz_cache_lookups_total", "tier", "l1", "result", "hit")
}

func (e *env) l2Errors(t testing.TB) float64 {
	return e.sc.metric(t, "authz_cache_errors_total", "tier", "l2")
}

// judgeUnderLoad judges traffic from workers goroutines, perWorker requests
// each, one per tick of every; worker w starts stride*w into traffic so the
// workers ask different things at once. Every wrong answer fails t. When
// midway is set, it runs once half the requests have been answered, while
// the other half go on.
func (e *env) judgeUnderLoad(t *testing.T, workers, perWorker int, every time.Duration, stride int, midway func()) {
	t.Helper()
	var (
		wg       sync.WaitGroup
		answered atomic.Int64
		half     = int64(workers * perWorker / 2)
	)
	for w := range workers {
		wg.Go(func() {
			tick := time.NewTicker(every)
			defer tick.Stop()
			for i := range perWorker {
				<-tick.C
				if err := e.judge(traffic[(w*stride+i)%len(traffic)]); err != nil {
					t.Error(err)
				}
				if answered.Add(1) == half && midway != nil {
					midway()
				}
			}
		})
	}
	wg.Wait()
}

// awaitL2Hits keeps traffic going (asserting every answer) until the L2
// tier answers a lookup again: the proof that Redis is back in use without
// a restart of the sidecar.
func (e *env) awaitL2Hits(t *testing.T, within time.Duration) {
	t.Helper()
	base := e.l2(t, "hit")
	deadline := time.Now().Add(within)
	for {
		e.expectAll(t, traffic)
		if t.Failed() {
			t.FailNow()
		}
		if e.l2(t, "hit") > base {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no L2 hit within %v of Redis coming back (l2 errors %v)", within, e.l2Errors(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// awaitAnswer asks x until it gets x.status, accepting only 503 (fail
// closed) in between: the proof of automatic recovery.
func (e *env) awaitAnswer(t *testing.T, x expectation, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last answer
	for {
		a, err := e.ask(x)
		if err != nil {
			t.Fatal(err)
		}
		if a.status == x.status {
			return
		}
		if a.status != 503 {
			t.Fatalf("%s %s: got %v while recovering, want %d or 503", x.who, x.route, a, x.status)
		}
		last = a
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: still %v %v after the fault ended", x.who, x.route, last, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitUntil polls cond, for conditions no event announces; recoverWithin
// only bounds a failure.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(recoverWithin)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within %v", what, recoverWithin)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// unavailable reports whether a is the fail-closed answer to a lookup the
// source could not make.
func unavailable(a answer) bool {
	return a.status == 503 && slices.Contains([]string{"deadline_exceeded", "source_unavailable"}, a.reason)
}
