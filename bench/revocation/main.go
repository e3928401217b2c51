// Command revocation measures how long a role change made in Better Auth
// takes to show on every sidecar replica, under steady load, with each
// event source: Better Auth's hooks publishing invalidations, and
// PostgreSQL triggers with a sidecar LISTENing (sql/invalidation-triggers.sql).
//
// It creates a database, starts the real Better Auth fixture (two
// instances on that database: one with the invalidation hooks, one
// without) and two sidecars (one with --pg-listen) with five-minute cache
// TTLs, so only an invalidation can explain a changed answer; seeds users
// through Better Auth's API; keeps every sidecar busy with reads of other
// users; then, per source, toggles one member's role -changes times, and
// ends -changes sessions by sign-out and -changes by revoke-session (each
// session signed in, then cached by both sidecars through its cookie),
// each time timing until both sidecars give the new answer (for a session:
// 401 to its cookie). It prints p50/p99 revocation latency, the L1 hit
// ratio during the run and the Check latency of the background load, then
// removes what it created.
//
//	go build -o bin/authz-sidecar ./cmd/authz-sidecar
//	go run ./bench/revocation -sidecar bin/authz-sidecar
//
// Needs PostgreSQL and Redis (scripts/services.sh) and the Better Auth
// fixture set up (make betterauth).
package main

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/authz-sidecar/authz-sidecar/bench/loadgen"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
	"github.com/authz-sidecar/authz-sidecar/test/baclient"
)

const password = "correct-horse-battery-staple"

// errMissed is a run that worked but missed the target (exit status 2).
var errMissed = errors.New("target missed")

type config struct {
	sidecar     string
	root        string
	adminURL    string
	redisURL    string
	changes     int
	loadUsers   int
	concurrency int
	timeout     time.Duration
	target      time.Duration
	keep        bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "revocation:", err)
		if errors.Is(err, errMissed) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	var c config
	fs := flag.NewFlagSet("revocation", flag.ContinueOnError)
	fs.StringVar(&c.sidecar, "sidecar", "bin/authz-sidecar", "authz-sidecar binary")
	fs.StringVar(&c.root, "root", ".", "repository root (policies.yaml, sql/, test/betterauth)")
	fs.StringVar(&c.adminURL, "database-url", pgtest.AdminURL(), "PostgreSQL server (a database is created and dropped on it; default $AUTHZ_TEST_DATABASE_URL, as for the tests)")
	fs.StringVar(&c.redisURL, "redis-url", testproc.RedisURL(), "Redis (default $AUTHZ_TEST_REDIS_URL, as for the tests)")
	fs.IntVar(&c.changes, "changes", 100, "role changes, sign-outs and session revocations per event source (each)")
	fs.IntVar(&c.loadUsers, "load-users", 20, "users whose reads make the background load")
	fs.IntVar(&c.concurrency, "concurrency", 4, "background load goroutines per sidecar")
	fs.DurationVar(&c.timeout, "change-timeout", 5*time.Second, "give up on one change after this long")
	fs.DurationVar(&c.target, "target", time.Second, "p99 revocation latency target (exit status 2 when missed)")
	fs.BoolVar(&c.keep, "keep", false, "keep the database and logs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.changes < 1 {
		return errors.New("-changes must be at least 1")
	}
	r := &runner{cfg: c, out: out}
	defer r.cleanup()
	return r.run(ctx)
}

type runner struct {
	cfg      config
	out      io.Writer
	dir      string
	dbURL    string
	prefix   string
	procs    []*testproc.Process
	cleanups []func()
}

func (r *runner) cleanup() {
	for _, p := range slices.Backward(r.procs) {
		p.Stop(5 * time.Second)
	}
	for _, f := range slices.Backward(r.cleanups) {
		f()
	}
}

func (r *runner) run(ctx context.Context) error {
	var err error
	if r.cfg.root, err = filepath.Abs(r.cfg.root); err != nil {
		return err
	}
	if r.cfg.sidecar, err = filepath.Abs(r.cfg.sidecar); err != nil {
		return err
	}
	if r.dir, err = os.MkdirTemp("", "authz-revocation-"); err != nil {
		return err
	}
	if !r.cfg.keep {
		r.cleanups = append(r.cleanups, func() { os.RemoveAll(r.dir) })
	}
	suffix := randHex(4)
	r.prefix = "authzrev:" + suffix + ":"
	channel := r.prefix + "invalidate"
	db, err := pgtest.CreateScratch(ctx, r.cfg.adminURL, "authz_revocation", nil)
	if err != nil {
		return err
	}
	r.dbURL = db.URL
	if !r.cfg.keep {
		r.cleanups = append(r.cleanups, func() {
			if err := db.Drop(context.Background()); err != nil {
				fmt.Fprintln(os.Stderr, "revocation:", err)
			}
		})
	}
	if err := r.redisCleanup(ctx); err != nil {
		return err
	}

	// Better Auth with the hooks; it migrates.
	baURL, err := r.startBetterAuth("betterauth-hooks", false, "ADMIN_EMAILS=alice-"+suffix+"@example.test",
		"INVALIDATION_REDIS_URL="+r.cfg.redisURL, "INVALIDATION_CHANNEL="+channel, "INVALIDATION_REDIS_PREFIX="+r.prefix)
	if err != nil {
		return err
	}
	ba := baclient.New(baURL)
	fmt.Fprintf(r.out, "seeding %d users through Better Auth ...\n", r.cfg.loadUsers+3)
	w, err := seed(ctx, ba, suffix, r.cfg.loadUsers)
	if err != nil {
		return err
	}

	policy, err := testproc.WritePolicy(r.cfg.root, r.dir, baURL)
	if err != nil {
		return err
	}
	secret, err := testproc.WriteSecretFile(r.dir)
	if err != nil {
		return err
	}
	common := []string{"--policies", policy, "--better-auth-secret-file", secret, "--database-url", r.dbURL,
		"--redis-url", r.cfg.redisURL, "--redis-prefix", r.prefix, "--invalidation-channel", channel,
		"--l1-ttl", "5m", "--l1-negative-ttl", "5m", "--l2-ttl", "5m", "--l2-negative-ttl", "5m",
		"--check-timeout", "2s"}
	var scs []*sidecarProc
	for i, extra := range [][]string{{"--pg-listen"}, nil} {
		sc, err := r.startSidecar(fmt.Sprintf("sidecar-%d", i), append(slices.Clone(common), extra...))
		if err != nil {
			return err
		}
		scs = append(scs, sc)
	}

	// Background load: other users' reads on every sidecar.
	loadCtx, stopLoad := context.WithCancel(ctx)
	load := startLoad(loadCtx, scs, w, r.cfg.concurrency)
	time.Sleep(time.Second) // warm the caches
	before, err := lookups(ctx, scs)
	if err != nil {
		stopLoad()
		return err
	}
	startLoadStats := load.snapshot()

	results := map[row][]sample{}
	if err := r.changes(ctx, "hooks", ba, w, scs, results); err != nil {
		stopLoad()
		return err
	}
	if err := r.applyTriggers(ctx); err != nil {
		stopLoad()
		return err
	}
	bareURL, err := r.startBetterAuth("betterauth-bare", true, "BETTER_AUTH_URL="+baURL)
	if err != nil {
		stopLoad()
		return err
	}
	if err := r.changes(ctx, "triggers", baclient.New(bareURL), w, scs, results); err != nil {
		stopLoad()
		return err
	}

	after, err := lookups(ctx, scs)
	loadStats := load.snapshot().since(startLoadStats)
	stopLoad()
	load.wait()
	if err != nil {
		return err
	}
	return r.report(results, before, after, loadStats)
}

// row is one line of the report: an event source and a kind of change.
type row struct{ source, change string }

// The kinds of change, in the report's order.
const (
	changeRole    = "role change"
	changeSignOut = "sign-out"
	changeRevoke  = "revoke-session"
)

// changes makes every kind of change -changes times through ba, the
// Better Auth instance of source, and records the samples.
func (r *runner) changes(ctx context.Context, source string, ba *baclient.Client, w *world, scs []*sidecarProc, results map[row][]sample) error {
	var err error
	fmt.Fprintf(r.out, "%s: %d role changes ...\n", source, r.cfg.changes)
	if results[row{source, changeRole}], err = r.toggle(ctx, ba, w, scs); err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	for _, change := range []string{changeSignOut, changeRevoke} {
		fmt.Fprintf(r.out, "%s: %d sessions ended by %s ...\n", source, r.cfg.changes, change)
		if results[row{source, change}], err = r.endSessions(ctx, ba, w, scs, change); err != nil {
			return fmt.Errorf("%s %s: %w", source, change, err)
		}
	}
	return nil
}

// world is what seed made.
type world struct {
	alice    *baclient.Session
	orgID    string
	target   string // the member whose role is toggled
	targetID string // its member id
	tokens   map[string]string
	load     []string // the load users' names
	// visitor is the member whose sessions are signed out and revoked
	// (its own user, so role changes and session ends never touch each
	// other's cache entries); visitorSession is its first session, which
	// calls revoke-session.
	visitor        string // its email
	visitorSession *baclient.Session
}

func seed(ctx context.Context, ba *baclient.Client, suffix string, loadUsers int) (*world, error) {
	w := &world{tokens: map[string]string{}}
	names := []string{"alice", "target", "visitor"}
	for i := range loadUsers {
		names = append(names, fmt.Sprintf("load%d", i))
	}
	sessions := map[string]*baclient.Session{}
	for _, name := range names {
		s, err := ba.SignUp(ctx, name+"-"+suffix+"@example.test", password, name)
		if err != nil {
			return nil, fmt.Errorf("sign up %s: %w", name, err)
		}
		sessions[name] = s
	}
	w.alice = sessions["alice"]
	var err error
	if w.orgID, err = ba.CreateOrganization(ctx, w.alice, "Revocation "+suffix, "revocation-"+suffix); err != nil {
		return nil, err
	}
	for _, name := range names[1:] {
		id, err := ba.AddMember(ctx, w.alice, sessions[name], w.orgID, "member")
		if err != nil {
			return nil, fmt.Errorf("add %s: %w", name, err)
		}
		switch name {
		case "target":
			w.target, w.targetID = name, id
		case "visitor":
			w.visitor, w.visitorSession = sessions[name].Email, sessions[name]
		default:
			w.load = append(w.load, name)
		}
	}
	for name, s := range sessions {
		if w.tokens[name], err = ba.Token(ctx, s); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// sample is one change: from the start of the API call to the moment the
// last sidecar answered the new way, and how long the call itself took.
type sample struct {
	total, api time.Duration
}

// toggle flips the target between member and admin, timing each flip on
// the approve route (admin: 200, member: 403).
func (r *runner) toggle(ctx context.Context, ba *baclient.Client, w *world, scs []*sidecarProc) ([]sample, error) {
	path := "/api/orgs/" + w.orgID + "/leave/l1/approve"
	tok := w.tokens[w.target]
	// Start from a known state, cached on both sidecars.
	current := 403
	for _, sc := range scs {
		if got, err := sc.check(ctx, "POST", path, bearer(tok)); err != nil || got != current {
			if err := ba.UpdateMemberRole(ctx, w.alice, w.orgID, w.targetID, "member"); err != nil {
				return nil, err
			}
			break
		}
	}
	if _, err := waitAll(ctx, scs, time.Now(), 10*time.Second, "POST", path, bearer(tok), current); err != nil {
		return nil, fmt.Errorf("initial state: %w", err)
	}
	var out []sample
	for range r.cfg.changes {
		role, want := "admin", 200
		if current == 200 {
			role, want = "member", 403
		}
		start := time.Now()
		if err := ba.UpdateMemberRole(ctx, w.alice, w.orgID, w.targetID, role); err != nil {
			return nil, err
		}
		api := time.Since(start)
		total, err := waitAll(ctx, scs, start, r.cfg.timeout, "POST", path, bearer(tok), want)
		if err != nil {
			return nil, err
		}
		out = append(out, sample{total: total, api: api})
		current = want
		time.Sleep(20 * time.Millisecond) // let the caches settle on the new answer
	}
	return out, nil
}

// endSessions signs the visitor in -changes times and ends each new
// session by change (sign-out with the session itself, or revoke-session
// from the visitor's first session), timing from the call until both
// sidecars refuse the session's cookie (401). Before each, both sidecars
// must have allowed the cookie, so the session is in their caches (5m
// TTLs): only an invalidation explains the 401.
func (r *runner) endSessions(ctx context.Context, ba *baclient.Client, w *world, scs []*sidecarProc, change string) ([]sample, error) {
	path := "/api/orgs/" + w.orgID + "/leave/l1"
	var out []sample
	for range r.cfg.changes {
		s, err := ba.SignIn(ctx, w.visitor, password)
		if err != nil {
			return nil, err
		}
		cookie := map[string]string{"cookie": s.Cookie.Name + "=" + s.Cookie.Value}
		if _, err := waitAll(ctx, scs, time.Now(), 10*time.Second, "GET", path, cookie, 200); err != nil {
			return nil, fmt.Errorf("new session: %w", err)
		}
		start := time.Now()
		if change == changeSignOut {
			err = ba.SignOut(ctx, s)
		} else {
			err = ba.RevokeSession(ctx, w.visitorSession, s.RawToken())
		}
		if err != nil {
			return nil, err
		}
		api := time.Since(start)
		total, err := waitAll(ctx, scs, start, r.cfg.timeout, "GET", path, cookie, 401)
		if err != nil {
			return nil, err
		}
		out = append(out, sample{total: total, api: api})
	}
	return out, nil
}

// bearer is the Authorization header of a JWT.
func bearer(tok string) map[string]string { return map[string]string{"authorization": "Bearer " + tok} }

// waitAll polls every sidecar every millisecond until each answers want
// to a request with headers, returning when the last one did, measured
// from start.
func waitAll(ctx context.Context, scs []*sidecarProc, start time.Time, limit time.Duration, method, path string, headers map[string]string, want int) (time.Duration, error) {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		last time.Duration
		errs []error
	)
	for _, sc := range scs {
		wg.Go(func() {
			for {
				got, err := sc.check(ctx, method, path, headers)
				if err == nil && got == want {
					mu.Lock()
					last = max(last, time.Since(start))
					mu.Unlock()
					return
				}
				if time.Since(start) > limit || ctx.Err() != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("%s still answers %d (err %v) after %v", sc.name, got, err, limit))
					mu.Unlock()
					return
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
	return last, errors.Join(errs...)
}

func (r *runner) report(results map[row][]sample, before, after [2]float64, load loadStats) error {
	hits, misses := after[0]-before[0], after[1]-before[1]
	fmt.Fprintf(r.out, "\nrevocation latency (change in Better Auth -> new answer on both of 2 sidecars; 5m cache TTLs)\n")
	fmt.Fprintf(r.out, "  role change: a member's role toggled (admin <-> member), until the approve route answers 200 / 403\n")
	fmt.Fprintf(r.out, "  sign-out, revoke-session: a session ended, until its cookie answers 401\n")
	fmt.Fprintf(r.out, "%-9s %-15s %7s %9s %9s %9s %16s %16s\n", "source", "change", "changes", "p50", "p99", "max", "p50 after call", "p99 after call")
	missed := false
	for _, k := range []row{
		{"hooks", changeRole}, {"hooks", changeSignOut}, {"hooks", changeRevoke},
		{"triggers", changeRole}, {"triggers", changeSignOut}, {"triggers", changeRevoke},
	} {
		s := results[k]
		totals := make([]time.Duration, len(s))
		afters := make([]time.Duration, len(s))
		for i, x := range s {
			totals[i] = x.total
			afters[i] = max(0, x.total-x.api)
		}
		p99 := percentile(totals, 99)
		fmt.Fprintf(r.out, "%-9s %-15s %7d %9s %9s %9s %16s %16s\n", k.source, k.change, len(s),
			ms(percentile(totals, 50)), ms(p99), ms(slices.Max(totals)),
			ms(percentile(afters, 50)), ms(percentile(afters, 99)))
		if p99 >= r.cfg.target {
			missed = true
		}
	}
	fmt.Fprintf(r.out, "\nL1 during the run (both sidecars): hit ratio %.4f (%.0f hits, %.0f misses)\n", hits/(hits+misses), hits, misses)
	fmt.Fprintf(r.out, "background load: %d checks, %d errors, client-side latency p50 %s p99 %s\n",
		load.n, load.errors, us(load.p(50)), us(load.p(99)))
	if missed {
		return fmt.Errorf("%w: p99 revocation latency target %v", errMissed, r.cfg.target)
	}
	fmt.Fprintf(r.out, "\np99 revocation latency target %v met\n", r.cfg.target)
	return nil
}

// percentile is the p-th percentile of d (nearest rank), unsorted.
func percentile(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return loadgen.Percentile(s, float64(p)/100)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
func us(d time.Duration) string { return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond)) }

// --- background load

type loadStats struct {
	n, errors int64
	lat       []time.Duration // a sample
}

func (s loadStats) since(o loadStats) loadStats {
	return loadStats{n: s.n - o.n, errors: s.errors - o.errors, lat: s.lat[min(len(o.lat), len(s.lat)):]}
}

func (s loadStats) p(q int) time.Duration { return percentile(s.lat, q) }

type loader struct {
	wg     sync.WaitGroup
	n, err atomic.Int64
	mu     sync.Mutex
	lat    []time.Duration // guarded by mu; every 16th check
}

func startLoad(ctx context.Context, scs []*sidecarProc, w *world, concurrency int) *loader {
	l := &loader{}
	path := "/api/orgs/" + w.orgID + "/leave/l1"
	for _, sc := range scs {
		for range concurrency {
			l.wg.Go(func() {
				for ctx.Err() == nil {
					name := w.load[rand.IntN(len(w.load))]
					start := time.Now()
					got, err := sc.check(ctx, "GET", path, bearer(w.tokens[name]))
					d := time.Since(start)
					if ctx.Err() != nil {
						return
					}
					if err != nil || got != 200 {
						l.err.Add(1)
					}
					if l.n.Add(1)%16 == 0 {
						l.mu.Lock()
						l.lat = append(l.lat, d)
						l.mu.Unlock()
					}
				}
			})
		}
	}
	return l
}

func (l *loader) snapshot() loadStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return loadStats{n: l.n.Load(), errors: l.err.Load(), lat: slices.Clone(l.lat)}
}

func (l *loader) wait() { l.wg.Wait() }

// --- processes and services

func (r *runner) redisCleanup(ctx context.Context) error {
	opts, err := redis.ParseURL(r.cfg.redisURL)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(opts)
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return fmt.Errorf("redis at %s: %w", r.cfg.redisURL, err)
	}
	r.cleanups = append(r.cleanups, func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, r.prefix+"*", 500).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		rdb.Close()
	})
	return nil
}

func (r *runner) applyTriggers(ctx context.Context) error {
	b, err := os.ReadFile(filepath.Join(r.cfg.root, "sql", "invalidation-triggers.sql"))
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, r.dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, string(b)); err != nil {
		return fmt.Errorf("apply triggers: %w", err)
	}
	return nil
}

// startBetterAuth starts the fixture on the run's database (migrating it
// unless noMigrate), its log in the run's directory, and returns its URL.
// The bare instance's BETTER_AUTH_URL (env) is the hooked one's: same
// issuer; API calls go to its own port.
func (r *runner) startBetterAuth(name string, noMigrate bool, env ...string) (string, error) {
	ba, err := testproc.NewBetterAuth(testproc.BetterAuthOptions{
		DatabaseURL: r.dbURL, Env: env, NoMigrate: noMigrate, Root: r.cfg.root, Name: name,
	}, r.dir)
	if err != nil {
		return "", err
	}
	r.procs = append(r.procs, ba.Proc)
	return ba.URL, nil
}

type sidecarProc struct {
	name string
	*testproc.Sidecar
	client authv3.AuthorizationClient
}

func (r *runner) startSidecar(name string, args []string) (*sidecarProc, error) {
	sc, err := testproc.StartSidecar(r.cfg.sidecar, r.cfg.root, r.dir, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	r.procs = append(r.procs, sc.Proc)
	r.cleanups = append(r.cleanups, func() { sc.Conn.Close() })
	if err := sc.WaitReady(testproc.Serving, time.Minute); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &sidecarProc{name: name, Sidecar: sc, client: authv3.NewAuthorizationClient(sc.Conn)}, nil
}

// check asks s about a request with headers; it returns 200 for an allow,
// else the denial's HTTP status.
func (s *sidecarProc) check(ctx context.Context, method, path string, headers map[string]string) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := s.client.Check(cctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Headers: headers,
		}},
	}})
	if err != nil {
		return 0, err
	}
	if resp.GetOkResponse() != nil {
		return 200, nil
	}
	return int(resp.GetDeniedResponse().GetStatus().GetCode()), nil
}

// lookups sums L1 hits and misses over the sidecars.
func lookups(ctx context.Context, scs []*sidecarProc) ([2]float64, error) {
	var out [2]float64
	for _, sc := range scs {
		m, err := sc.Metrics(ctx)
		if err != nil {
			return out, err
		}
		out[0] += m.Sum("authz_cache_lookups_total", "tier", "l1", "result", "hit")
		out[1] += m.Sum("authz_cache_lookups_total", "tier", "l1", "result", "miss")
	}
	return out, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	crand.Read(b)
	return hex.EncodeToString(b)
}
