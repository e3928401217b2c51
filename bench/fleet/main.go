// Command fleet is `make fleet`: what a fleet of sidecars started at once
// costs PostgreSQL and Redis, and how the cache tiers bound it.
//
// It creates a database with Better Auth's schema (internal/pgtest) holding
// FLEET_USERS users in FLEET_ORGS organizations with the usual spread of
// roles, some banned or deleted; serves a JWKS and signs Better Auth-shaped
// JWTs (internal/jwttest); runs a redis-server of its own (so its counters
// are the fleet's alone; FLEET_REDIS_URL uses another); and starts
// FLEET_SIDECARS sidecars at once (internal/testproc), cold, against that
// one PostgreSQL and that one Redis. A fixed-rate load (bench/loadgen) of
// FLEET_RATE checks per second, spread over the sidecars in service,
// draws users by a Zipf law and checks every answer against the allow or
// the deny (401, 403) the data set and the policy call for. The phases:
//
//	start          the sidecars start at once (no load)
//	cold           load on cold caches
//	steady         the same fleet, warm
//	rolling        each sidecar in turn stopped (drained) and replaced
//	full restart   all stopped, all started at once: L1 cold, L2 warm
//	idle           no load, FLEET_IDLE long: connections given back
//
// Every FLEET_SAMPLE it reads each sidecar's /metrics (which tier answered
// the permission-set lookups), PostgreSQL's pg_stat_activity (the
// sidecars' connections) and pg_stat_database (transactions and rows of
// the fleet's database; pg_stat_statements' calls too when the server
// preloads it) and Redis's INFO (commands, clients). It prints the samples,
// a table per phase and what 1000 sidecars would cost at the same
// per-sidecar load; docs/fleet.md explains it. A wrong answer fails the
// run.
//
// Tunables (environment): FLEET_SIDECARS (40), FLEET_RATE (400),
// FLEET_DURATION (20s per load phase), FLEET_IDLE (2m30s; 0 skips),
// FLEET_SAMPLE (2s), FLEET_USERS (3000), FLEET_ORGS (150),
// FLEET_PG_MAX_CONNS (1; the sidecar's default is 4), FLEET_PG_RESERVE (30
// connections left to others), FLEET_L1_TTL and FLEET_L2_TTL (the
// sidecar's defaults), FLEET_REDIS_TIMEOUT (the sidecar's --redis-timeout,
// 25ms), FLEET_REDIS_URL, FLEET_TIMEOUT (15m);
// AUTHZ_TEST_DATABASE_URL names the server, as for the tests.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"

	"github.com/authz-sidecar/authz-sidecar/bench/loadgen"
	"github.com/authz-sidecar/authz-sidecar/internal/jwttest"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"

	"github.com/authz-sidecar/authz-sidecar/bench/benchenv"
)

func main() { benchenv.Main("fleet", run) }

// requestPool is how many distinct checks are drawn; the load cycles
// through them.
const requestPool = 200_000

// run is the whole program.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	began := time.Now()
	work, err := os.MkdirTemp("", "authz-fleet-")
	if err != nil {
		return err
	}
	keep := true // the logs, when the run fails
	defer func() {
		if keep {
			fmt.Fprintf(stderr, "fleet: logs kept in %s\n", work)
			return
		}
		os.RemoveAll(work)
	}()
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "%6.1fs  %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, a...))
	}

	bin := cfg.Sidecar
	if bin == "" {
		repo, err := testproc.RepoRoot()
		if err != nil {
			return err
		}
		logf("building the sidecar")
		if bin, err = testproc.BuildSidecar(ctx, repo, work, false, stderr); err != nil {
			return err
		}
	}

	adminURL := getenv(pgtest.EnvURL)
	if adminURL == "" {
		adminURL = pgtest.DefaultURL
	}
	if err := checkConnectionBudget(ctx, adminURL, cfg); err != nil {
		return err
	}
	db, err := pgtest.CreateScratch(ctx, adminURL, "authz_fleet", &pgtest.Plural)
	if err != nil {
		return err
	}
	defer db.Drop(context.WithoutCancel(ctx))
	table, err := policy.Parse("fleet.yaml", fmt.Appendf(nil, policyYAML, jwttest.Issuer, jwttest.Issuer+"/jwks"))
	if err != nil {
		return fmt.Errorf("fleet policy: %w", err)
	}
	w := newWorld(cfg.Users, cfg.Orgs, table)
	if err := w.seed(ctx, db); err != nil {
		return err
	}
	keys := jwttest.StartKeys()
	defer keys.Close()
	pool := min(requestPool, max(cfg.Users*5, 1000))
	reqs, distinct, err := w.requests(keys, pool)
	if err != nil {
		return err
	}
	logf("seeded %d users, %d organizations; %d checks drawn, asking for %d distinct (user, organization) keys", cfg.Users, cfg.Orgs, len(reqs), distinct)

	redisURL, prefix := cfg.RedisURL, fmt.Sprintf("authz-fleet-%d:", os.Getpid())
	if redisURL == "" {
		r, err := testproc.NewRedis(work)
		if err != nil {
			return err
		}
		if err := r.Start(); err != nil {
			return err
		}
		defer r.Kill()
		redisURL = r.URL()
	}
	ropts, err := redis.ParseURL(redisURL)
	if err != nil {
		return fmt.Errorf("redis url: %w", err)
	}
	rdb := redis.NewClient(ropts)
	defer rdb.Close()

	policyPath := filepath.Join(work, "policies.yaml")
	if err := os.WriteFile(policyPath, fmt.Appendf(nil, policyYAML, jwttest.Issuer, keys.URL), 0o644); err != nil {
		return err
	}
	sidecarArgs := []string{
		"--policies", policyPath, "--database-url", db.URL, "--redis-url", redisURL, "--redis-prefix", prefix,
		"--pg-max-conns", fmt.Sprint(cfg.PGConns), "--log-format", "json",
	}
	if cfg.L1TTL != "" {
		sidecarArgs = append(sidecarArgs, "--l1-ttl", cfg.L1TTL)
	}
	if cfg.L2TTL != "" {
		sidecarArgs = append(sidecarArgs, "--l2-ttl", cfg.L2TTL)
	}
	if cfg.RedisTimeout != "" {
		sidecarArgs = append(sidecarArgs, "--redis-timeout", cfg.RedisTimeout)
	}
	f := &fleet{bin: bin, dir: work, logDir: work, args: sidecarArgs}
	defer f.kill()

	smp, err := newSampler(ctx, f, adminURL, db.Name, rdb)
	if err != nil {
		return err
	}
	defer smp.close()
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan error, 1)
	start := time.Now()
	smp.setPhase("start")
	go func() { sampled <- smp.run(sctx, start, cfg.Sample) }()

	var phases []phaseResult
	var offset uint64
	load := func(name string, d time.Duration) (*loadgen.Result, error) {
		from := offset
		res, err := loadgen.Run(ctx, loadgen.Config{
			Conns: []grpc.ClientConnInterface{f}, Rate: cfg.Rate, Duration: d, CheckIdentity: true,
			Source: func(i uint64) (loadgen.Request, bool) { return reqs[(from+i)%uint64(len(reqs))], true },
		})
		if res != nil {
			offset += res.Sent
		}
		if errors.Is(err, loadgen.ErrBehind) {
			logf("%s: %v", name, err)
			err = nil
		}
		return res, err
	}
	phase := func(name string, d time.Duration, during func() (string, error)) error {
		smp.setPhase(name)
		t0 := time.Now()
		logf("phase %s", name)
		p := phaseResult{name: name, from: t0.Sub(start)}
		var note string
		var err error
		if d > 0 {
			done := make(chan struct{})
			var derr error
			if during != nil {
				go func() { defer close(done); note, derr = during() }()
			} else {
				close(done)
			}
			// Load in windows of d until what runs during it is done.
			for {
				res, err := load(name, d)
				if err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				p.add(res)
				select {
				case <-done:
				default:
					continue
				}
				break
			}
			err = derr
		} else if during != nil {
			note, err = during()
		}
		p.to, p.note = time.Since(start), note
		phases = append(phases, p)
		return err
	}

	err = func() error {
		if err := phase("start", 0, func() (string, error) {
			t0 := time.Now()
			err := f.startAll(ctx, cfg.Sidecars)
			return fmt.Sprintf("%d sidecars SERVING %.1fs after their start", cfg.Sidecars, time.Since(t0).Seconds()), err
		}); err != nil {
			return err
		}
		if err := phase("cold", cfg.Duration, nil); err != nil {
			return err
		}
		if err := phase("steady", cfg.Duration, nil); err != nil {
			return err
		}
		if err := phase("rolling", cfg.Duration, func() (string, error) {
			t0 := time.Now()
			n, err := f.rollingRestart(ctx, cfg.Duration/time.Duration(cfg.Sidecars+1))
			return fmt.Sprintf("%d sidecars replaced one by one in %.1fs", n, time.Since(t0).Seconds()), err
		}); err != nil {
			return err
		}
		if err := phase("full restart", 0, func() (string, error) {
			t0 := time.Now()
			f.stopAll()
			stopped := time.Since(t0)
			err := f.startAll(ctx, cfg.Sidecars)
			return fmt.Sprintf("all stopped in %.1fs, all SERVING again %.1fs later", stopped.Seconds(), (time.Since(t0) - stopped).Seconds()), err
		}); err != nil {
			return err
		}
		if err := phase("after restart", cfg.Duration, nil); err != nil {
			return err
		}
		if cfg.Idle > 0 {
			if err := phase("idle", 0, func() (string, error) {
				select {
				case <-ctx.Done():
					return "", ctx.Err()
				case <-time.After(cfg.Idle):
				}
				return fmt.Sprintf("no load for %v", cfg.Idle), nil
			}); err != nil {
				return err
			}
		}
		return nil
	}()
	// One last sample closes the last phase.
	time.Sleep(min(cfg.Sample, time.Second))
	stopSampling()
	if serr := <-sampled; err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	r := &report{cfg: cfg, phases: phases, samples: smp.all(), stmts: smp.stmts, warnings: f.warnings(),
		elapsed: time.Since(began), pgVersion: serverVersion(ctx, adminURL), keys: distinct}
	r.print(stdout)
	if n := r.wrong(); n > 0 {
		return fmt.Errorf("%d wrong answers (first: %s); sidecar logs: %s", n, r.firstWrong(), f.logs())
	}
	keep = false
	return nil
}

// checkConnectionBudget refuses a run whose sidecars could take more
// connections than the server has free, less those left to others: the
// machine's PostgreSQL is shared, and a fleet start opens up to
// --pg-max-conns per sidecar at once (pg.DB.Warm).
func checkConnectionBudget(ctx context.Context, adminURL string, cfg config) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("postgres unreachable (make services, or set %s): %w", pgtest.EnvURL, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var maxConns, reserved, used int
	if err := conn.QueryRow(ctx, `SELECT current_setting('max_connections')::int, current_setting('superuser_reserved_connections')::int,
		(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int`).Scan(&maxConns, &reserved, &used); err != nil {
		return fmt.Errorf("connection budget: %w", err)
	}
	// +4: the seeding and sampling connections.
	free := maxConns - reserved - used - cfg.PGReserve - 4
	if need := cfg.Sidecars * cfg.PGConns; need > free {
		return fmt.Errorf("%d sidecars × --pg-max-conns %d = %d connections, but the server has %d free after leaving %d to others "+
			"(max_connections %d, %d in use): lower FLEET_SIDECARS or FLEET_PG_MAX_CONNS, or put PgBouncer in front (docs/fleet.md)",
			cfg.Sidecars, cfg.PGConns, need, free, cfg.PGReserve, maxConns, used)
	}
	return nil
}

func serverVersion(ctx context.Context, adminURL string) string {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "?"
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var v string
	if conn.QueryRow(ctx, "SHOW server_version").Scan(&v) != nil {
		return "?"
	}
	return v
}
