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
// users; then toggles one member's role -changes times per source, each
// time timing until both sidecars give the new answer. It prints p50/p99
// revocation latency, the L1 hit ratio during the run and the Check
// latency of the background load, then removes what it created.
//
//	go build -o bin/authz-sidecar ./cmd/authz-sidecar
//	go run ./bench/revocation -sidecar bin/authz-sidecar
//
// Needs PostgreSQL and Redis (scripts/services.sh) and the Better Auth
// fixture installed (scripts/betterauth.sh install).
package main

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

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
	fs.StringVar(&c.adminURL, "database-url", envOr("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"), "PostgreSQL server (a database is created and dropped on it)")
	fs.StringVar(&c.redisURL, "redis-url", envOr("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"), "Redis")
	fs.IntVar(&c.changes, "changes", 100, "role changes per event source")
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

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

type runner struct {
	cfg      config
	out      io.Writer
	dir      string
	dbURL    string
	dbName   string
	prefix   string
	procs    []*exec.Cmd
	cleanups []func()
}

func (r *runner) cleanup() {
	for _, p := range slices.Backward(r.procs) {
		if p.Process != nil {
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGTERM)
			done := make(chan struct{})
			go func() { p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
				<-done
			}
		}
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
	if err := r.createDatabase(ctx, "authz_revocation_"+suffix); err != nil {
		return err
	}
	if err := r.redisCleanup(ctx); err != nil {
		return err
	}

	// Better Auth with the hooks; it migrates.
	baURL, err := r.startBetterAuth(ctx, "betterauth-hooks",
		"MIGRATE=1", "ADMIN_EMAILS=alice-"+suffix+"@example.test",
		"INVALIDATION_REDIS_URL="+r.cfg.redisURL, "INVALIDATION_CHANNEL="+channel, "INVALIDATION_REDIS_PREFIX="+r.prefix)
	if err != nil {
		return err
	}
	ba := baclient.New(baURL)
	fmt.Fprintf(r.out, "seeding %d users through Better Auth ...\n", r.cfg.loadUsers+2)
	w, err := seed(ctx, ba, suffix, r.cfg.loadUsers)
	if err != nil {
		return err
	}

	policy, err := r.writePolicy(baURL)
	if err != nil {
		return err
	}
	common := []string{"serve", "--policies", policy, "--database-url", r.dbURL,
		"--redis-url", r.cfg.redisURL, "--redis-prefix", r.prefix, "--invalidation-channel", channel,
		"--l1-ttl", "5m", "--l1-negative-ttl", "5m", "--l2-ttl", "5m", "--l2-negative-ttl", "5m",
		"--check-timeout", "2s", "--log-level", "warn"}
	var scs []*sidecarProc
	for i, extra := range [][]string{{"--pg-listen"}, nil} {
		sc, err := r.startSidecar(ctx, fmt.Sprintf("sidecar-%d", i), append(slices.Clone(common), extra...))
		if err != nil {
			return err
		}
		scs = append(scs, sc)
	}

	// Background load: other users' reads on every sidecar.
	loadCtx, stopLoad := context.WithCancel(ctx)
	load := startLoad(loadCtx, scs, w, r.cfg.concurrency)
	time.Sleep(time.Second) // warm the caches
	before, err := lookups(scs)
	if err != nil {
		stopLoad()
		return err
	}
	startLoadStats := load.snapshot()

	results := map[string][]sample{}
	fmt.Fprintf(r.out, "hooks: %d role changes ...\n", r.cfg.changes)
	if results["hooks"], err = r.toggle(ctx, ba, w, scs); err != nil {
		stopLoad()
		return fmt.Errorf("hooks: %w", err)
	}
	if err := r.applyTriggers(ctx); err != nil {
		stopLoad()
		return err
	}
	bareURL, err := r.startBetterAuth(ctx, "betterauth-bare", "BETTER_AUTH_URL="+baURL)
	if err != nil {
		stopLoad()
		return err
	}
	fmt.Fprintf(r.out, "triggers: %d role changes ...\n", r.cfg.changes)
	if results["triggers"], err = r.toggle(ctx, baclient.New(bareURL), w, scs); err != nil {
		stopLoad()
		return fmt.Errorf("triggers: %w", err)
	}

	after, err := lookups(scs)
	loadStats := load.snapshot().since(startLoadStats)
	stopLoad()
	load.wait()
	if err != nil {
		return err
	}
	return r.report(results, before, after, loadStats)
}

// world is what seed made.
type world struct {
	alice    *baclient.Session
	orgID    string
	target   string // the member whose role is toggled
	targetID string // its member id
	tokens   map[string]string
	load     []string // the load users' names
}

func seed(ctx context.Context, ba *baclient.Client, suffix string, loadUsers int) (*world, error) {
	w := &world{tokens: map[string]string{}}
	names := []string{"alice", "target"}
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
		if name == "target" {
			w.target, w.targetID = name, id
		} else {
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
		if got, err := sc.check(ctx, "POST", path, tok); err != nil || got != current {
			if err := ba.UpdateMemberRole(ctx, w.alice, w.orgID, w.targetID, "member"); err != nil {
				return nil, err
			}
			break
		}
	}
	if _, err := waitAll(ctx, scs, time.Now(), 10*time.Second, "POST", path, tok, current); err != nil {
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
		total, err := waitAll(ctx, scs, start, r.cfg.timeout, "POST", path, tok, want)
		if err != nil {
			return nil, err
		}
		out = append(out, sample{total: total, api: api})
		current = want
		time.Sleep(20 * time.Millisecond) // let the caches settle on the new answer
	}
	return out, nil
}

// waitAll polls every sidecar every millisecond until each answers want,
// returning when the last one did, measured from start.
func waitAll(ctx context.Context, scs []*sidecarProc, start time.Time, limit time.Duration, method, path, tok string, want int) (time.Duration, error) {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		last time.Duration
		errs []error
	)
	for _, sc := range scs {
		wg.Go(func() {
			for {
				got, err := sc.check(ctx, method, path, tok)
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

func (r *runner) report(results map[string][]sample, before, after [2]float64, load loadStats) error {
	hits, misses := after[0]-before[0], after[1]-before[1]
	fmt.Fprintf(r.out, "\nrevocation latency (role change in Better Auth -> new answer on both of 2 sidecars; 5m cache TTLs)\n")
	fmt.Fprintf(r.out, "%-9s %7s %9s %9s %9s %16s %16s\n", "source", "changes", "p50", "p99", "max", "p50 after call", "p99 after call")
	missed := false
	for _, src := range []string{"hooks", "triggers"} {
		s := results[src]
		totals := make([]time.Duration, len(s))
		afters := make([]time.Duration, len(s))
		for i, x := range s {
			totals[i] = x.total
			afters[i] = max(0, x.total-x.api)
		}
		p99 := percentile(totals, 99)
		fmt.Fprintf(r.out, "%-9s %7d %9s %9s %9s %16s %16s\n", src, len(s),
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

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(i, len(s))-1)]
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
					got, err := sc.check(ctx, "GET", path, w.tokens[name])
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

func (r *runner) createDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, r.cfg.adminURL)
	if err != nil {
		return fmt.Errorf("postgres at %s: %w", r.cfg.adminURL, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	u, err := url.Parse(r.cfg.adminURL)
	if err != nil {
		return err
	}
	u.Path = "/" + name
	r.dbURL, r.dbName = u.String(), name
	if !r.cfg.keep {
		r.cleanups = append(r.cleanups, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := pgx.Connect(ctx, r.cfg.adminURL)
			if err != nil {
				return
			}
			defer conn.Close(ctx)
			conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		})
	}
	return nil
}

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

func (r *runner) writePolicy(baURL string) (string, error) {
	b, err := os.ReadFile(filepath.Join(r.cfg.root, "policies.yaml"))
	if err != nil {
		return "", err
	}
	s := strings.ReplaceAll(string(b), "http://127.0.0.1:3000", baURL)
	if s == string(b) {
		return "", errors.New("policies.yaml no longer names http://127.0.0.1:3000")
	}
	p := filepath.Join(r.dir, "policies.yaml")
	return p, os.WriteFile(p, []byte(s), 0o600)
}

// start runs bin in its own process group (killed with this process: the
// children get SIGKILL when it dies), output to a log file.
func (r *runner) start(name, dir string, env []string, bin string, args ...string) (string, error) {
	logPath := filepath.Join(r.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return "", err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return "", fmt.Errorf("start %s: %w", name, err)
	}
	f.Close()
	r.procs = append(r.procs, cmd)
	return logPath, nil
}

func (r *runner) startBetterAuth(ctx context.Context, name string, env ...string) (string, error) {
	dir := filepath.Join(r.cfg.root, "test", "betterauth")
	bun := filepath.Join(dir, "node_modules", ".bin", "bun")
	if _, err := os.Stat(bun); err != nil {
		return "", fmt.Errorf("Better Auth fixture not installed (scripts/betterauth.sh install): %w", err)
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	env = append([]string{"PORT=" + strconv.Itoa(port), "DATABASE_URL=" + r.dbURL, "BETTER_AUTH_URL=" + u}, env...)
	logPath, err := r.start(name, dir, env, bun, "server.ts")
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(u + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				// BETTER_AUTH_URL of the bare instance is the hooked one's
				// (same issuer); API calls go to its own port.
				return u, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return "", fmt.Errorf("%s not healthy after 30s (log %s)", name, logPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type sidecarProc struct {
	name   string
	http   string
	client authv3.AuthorizationClient
}

func (r *runner) startSidecar(ctx context.Context, name string, args []string) (*sidecarProc, error) {
	var ports [2]int
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	grpcAddr, httpAddr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	logPath, err := r.start(name, r.cfg.root, nil, r.cfg.sidecar, append(args, "--grpc-addr", grpcAddr, "--http-addr", httpAddr)...)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	r.cleanups = append(r.cleanups, func() { conn.Close() })
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(20 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("%s not SERVING after 20s (log %s)", name, logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &sidecarProc{name: name, http: httpAddr, client: authv3.NewAuthorizationClient(conn)}, nil
}

func (s *sidecarProc) check(ctx context.Context, method, path, token string) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := s.client.Check(cctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Headers: map[string]string{"authorization": "Bearer " + token},
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
func lookups(scs []*sidecarProc) ([2]float64, error) {
	var out [2]float64
	for _, sc := range scs {
		resp, err := http.Get("http://" + sc.http + "/metrics")
		if err != nil {
			return out, err
		}
		s := bufio.NewScanner(resp.Body)
		s.Buffer(make([]byte, 1<<20), 1<<20)
		for s.Scan() {
			line := s.Text()
			if !strings.HasPrefix(line, "authz_cache_lookups_total{") || !strings.Contains(line, `tier="l1"`) {
				continue
			}
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err != nil {
				continue
			}
			if strings.Contains(line, `result="hit"`) {
				out[0] += v
			} else if strings.Contains(line, `result="miss"`) {
				out[1] += v
			}
		}
		resp.Body.Close()
	}
	return out, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	crand.Read(b)
	return hex.EncodeToString(b)
}
