package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/jackc/pgx/v5"

	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
	"github.com/authz-sidecar/authz-sidecar/test/baclient"
)

// revocationBudget is the target: a change made in Better Auth is visible
// on every sidecar within this time, with either event source. The test
// reports the time against it; make bench measures it on a quiet machine
// (bench/revocation). What the test asserts is that the change shows
// within convergeWithin, far below the TTLs: only an invalidation can
// explain it, however loaded the machine.
const revocationBudget = time.Second

// convergeWithin bounds the wait for a change to show.
const convergeWithin = 30 * time.Second

// longTTLs make the caches keep every answer for the whole test, so only
// an invalidation can explain a changed answer. Check and load deadlines
// are far above a cold check on a loaded machine.
var longTTLs = []string{"--l1-ttl", "5m", "--l1-negative-ttl", "5m", "--l2-ttl", "5m", "--l2-negative-ttl", "5m",
	"--jwks-min-refresh", "100ms", "--check-timeout", "30s", "--load-timeout", "30s"}

// freshRedis returns the test Redis URL and a key prefix of the test's own,
// removing its keys afterwards.
func freshRedis(t *testing.T) (string, string) {
	t.Helper()
	_, prefix := testproc.RedisDB(t)
	return testproc.RedisURL(), prefix
}

func applyInvalidationTriggers(t *testing.T, dbURL string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testproc.RepoRootT(t), "sql", "invalidation-triggers.sql"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, string(b)); err != nil {
		t.Fatalf("apply invalidation triggers: %v", err)
	}
}

// metric reads one counter (or the sum of the matching series) from a
// sidecar's /metrics: name, then label, value pairs that must all match.
func metric(t *testing.T, sc *testproc.Sidecar, name string, labels ...string) float64 {
	t.Helper()
	m, err := sc.Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return m.Sum(name, labels...)
}

// l1Lookups returns a sidecar's L1 hits and misses so far.
func l1Lookups(t *testing.T, sc *testproc.Sidecar) (hits, misses float64) {
	return metric(t, sc, "authz_cache_lookups_total", "tier", "l1", "result", "hit"),
		metric(t, sc, "authz_cache_lookups_total", "tier", "l1", "result", "miss")
}

// converge polls every client every 10ms until each answers want for the
// request, and returns when the last one did, measured from start, and
// true. It fails the test and returns false if that takes longer than
// limit.
func converge(t *testing.T, clients []authv3.AuthorizationClient, start time.Time, limit time.Duration, method, path, token string, want int) (time.Duration, bool) {
	t.Helper()
	var (
		mu   sync.Mutex
		last time.Duration
		wg   sync.WaitGroup
		errs []string
	)
	for i, c := range clients {
		w := &world{client: c}
		wg.Go(func() {
			for {
				got, body := w.decide(t, method, path, token)
				if got == want {
					mu.Lock()
					last = max(last, time.Since(start))
					mu.Unlock()
					return
				}
				if time.Since(start) > limit {
					mu.Lock()
					errs = append(errs, fmt.Sprintf("sidecar %d still answers %d (%s) after %v", i, got, body, limit))
					mu.Unlock()
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	for _, e := range errs {
		t.Error(e)
	}
	return last, len(errs) == 0
}

// TestFreshness measures how long a change made in Better Auth takes to
// show on two sidecar replicas whose caches would otherwise keep the old
// answer for five minutes: (a) with Better Auth's hooks publishing
// invalidations (no triggers), (b) with PostgreSQL triggers and a sidecar
// LISTENing and republishing (changes made through a Better Auth without
// hooks). Both must stay under revocationBudget, and steady traffic must be
// served from L1.
func TestFreshness(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.NewEmptyDatabase(t)
	redisURL, prefix := freshRedis(t)
	channel := prefix + "invalidate"
	suffix := randSuffix()
	aliceEmail := "alice-" + suffix + "@example.test"

	// Better Auth with the invalidation hooks (it also migrates).
	hooked := startBetterAuth(t, dbURL, "ADMIN_EMAILS="+aliceEmail,
		"INVALIDATION_REDIS_URL="+redisURL, "INVALIDATION_CHANNEL="+channel, "INVALIDATION_REDIS_PREFIX="+prefix)
	ba := baclient.New(hooked.URL)
	users := map[string]*baclient.Session{}
	for _, name := range []string{"alice", "bob", "carol", "dave"} {
		s, err := ba.SignUp(ctx, name+"-"+suffix+"@example.test", password, name)
		if err != nil {
			t.Fatalf("sign up %s: %v", name, err)
		}
		users[name] = s
	}
	alice := users["alice"]
	orgID, err := ba.CreateOrganization(ctx, alice, "Fresh "+suffix, "fresh-"+suffix)
	if err != nil {
		t.Fatal(err)
	}
	member := map[string]string{}
	for _, name := range []string{"bob", "carol", "dave"} {
		id, err := ba.AddMember(ctx, alice, users[name], orgID, "member")
		if err != nil {
			t.Fatalf("add %s: %v", name, err)
		}
		member[name] = id
	}
	tokens := map[string]string{}
	for name, s := range users {
		tok, err := ba.Token(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		tokens[name] = tok
	}

	policy := writePolicy(t, hooked.URL)
	common := append([]string{"--redis-url", redisURL, "--redis-prefix", prefix, "--invalidation-channel", channel,
		"--better-auth-secret-file", secretFile(t)}, longTTLs...)
	listener := startSidecar(t, policy, dbURL, append([]string{"--pg-listen"}, common...)...)
	plain := startSidecar(t, policy, dbURL, common...)
	sidecars := []*testproc.Sidecar{listener, plain}
	clients := []authv3.AuthorizationClient{
		authv3.NewAuthorizationClient(listener.Conn), authv3.NewAuthorizationClient(plain.Conn),
	}

	org := "/api/orgs/" + orgID
	approvePath, readPath := org+"/leave/l1/approve", org+"/leave/l1"

	t.Run("steady traffic is served from L1", func(t *testing.T) {
		// Warm both sidecars, then measure a window without changes.
		for _, c := range clients {
			w := &world{client: c}
			for _, name := range []string{"alice", "bob", "carol", "dave"} {
				w.decide(t, "GET", readPath, tokens[name])
			}
		}
		before := make([][2]float64, len(sidecars))
		for i, sc := range sidecars {
			before[i][0], before[i][1] = l1Lookups(t, sc)
		}
		for range 250 {
			for _, c := range clients {
				w := &world{client: c}
				for _, name := range []string{"alice", "bob", "carol", "dave"} {
					if got, body := w.decide(t, "GET", readPath, tokens[name]); got != 200 {
						t.Fatalf("%s read: %d %s", name, got, body)
					}
				}
			}
		}
		for i, sc := range sidecars {
			hits, misses := l1Lookups(t, sc)
			hits, misses = hits-before[i][0], misses-before[i][1]
			ratio := hits / (hits + misses)
			t.Logf("sidecar %d: L1 hit ratio %.4f (%v hits, %v misses)", i, ratio, hits, misses)
			if hits+misses < 1000 || ratio < 0.99 {
				t.Errorf("sidecar %d: L1 hit ratio %.4f over %v lookups, want > 0.99", i, ratio, hits+misses)
			}
		}
	})

	// Each step primes both sidecars with the old answer, makes the change
	// through Better Auth, and measures until both give the new one.
	type step struct {
		name         string
		method, path string
		user         string
		before, want int
		change       func(ba *baclient.Client) error
	}
	run := func(t *testing.T, ba *baclient.Client, steps []step) {
		for _, s := range steps {
			for i, c := range clients {
				w := &world{client: c}
				if got, body := w.decide(t, s.method, s.path, tokens[s.user]); got != s.before {
					t.Fatalf("%s: sidecar %d answers %d (%s) before the change, want %d", s.name, i, got, body, s.before)
				}
			}
			start := time.Now()
			if err := s.change(ba); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			api := time.Since(start)
			took, ok := converge(t, clients, start, convergeWithin, s.method, s.path, tokens[s.user], s.want)
			if !ok {
				t.FailNow() // the later steps start from this one's answer
			}
			over := ""
			if took > revocationBudget {
				over = fmt.Sprintf(" (over the %v budget: a loaded machine?)", revocationBudget)
			}
			t.Logf("%s: visible on both sidecars %v after the API call started (the call took %v)%s",
				s.name, took.Round(time.Millisecond), api.Round(time.Millisecond), over)
		}
	}

	t.Run("hooks only", func(t *testing.T) {
		run(t, ba, []step{
			{"promotion", "POST", approvePath, "bob", 403, 200, func(ba *baclient.Client) error {
				return ba.UpdateMemberRole(ctx, alice, orgID, member["bob"], "admin")
			}},
			{"revocation", "POST", approvePath, "bob", 200, 403, func(ba *baclient.Client) error {
				return ba.UpdateMemberRole(ctx, alice, orgID, member["bob"], "member")
			}},
			{"removal", "GET", readPath, "carol", 200, 403, func(ba *baclient.Client) error {
				return ba.RemoveMember(ctx, alice, orgID, member["carol"])
			}},
		})
		if n := metric(t, plain, "authz_invalidations_total", "kind", "member"); n < 3 {
			t.Errorf("plain sidecar applied %v member invalidations, want >= 3", n)
		}
	})

	t.Run("triggers only", func(t *testing.T) {
		applyInvalidationTriggers(t, dbURL)
		// A Better Auth on the same database without the hooks: only the
		// triggers can tell the sidecars.
		bare := startBetterAuth(t, dbURL, "BETTER_AUTH_URL="+hooked.URL)
		bc := baclient.New(bare.URL)
		run(t, bc, []step{
			{"promotion", "POST", approvePath, "dave", 403, 200, func(ba *baclient.Client) error {
				return ba.UpdateMemberRole(ctx, alice, orgID, member["dave"], "admin")
			}},
			{"revocation", "POST", approvePath, "dave", 200, 403, func(ba *baclient.Client) error {
				return ba.UpdateMemberRole(ctx, alice, orgID, member["dave"], "member")
			}},
			{"ban", "GET", readPath, "bob", 200, 403, func(ba *baclient.Client) error {
				return ba.BanUser(ctx, alice, users["bob"].UserID, "e2e")
			}},
		})
		if n := metric(t, plain, "authz_invalidations_total", "kind", "user"); n < 1 {
			t.Errorf("plain sidecar applied %v user invalidations, want >= 1 (republished by the listener)", n)
		}
		if n := metric(t, listener, "authz_invalidation_flushes_total", "reason", "pg_listen"); n < 1 {
			t.Errorf("listener flushes{pg_listen} = %v, want >= 1", n)
		}
	})
}
