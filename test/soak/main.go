// Command soak runs the real authz-sidecar binary under a fixed, bounded
// load (loopback only) while its dependencies fail on a schedule, and
// checks every answer against the one the seeded roles and policies.yaml
// give. It is `make soak`, not part of `make test`.
//
// It starts its own redis-server, a TCP proxy in front of PostgreSQL, a
// JWKS endpoint with Better Auth-shaped Ed25519 tokens and the sidecar,
// seeds a scratch database (users in organizations with known roles, banned
// users, users with no row), then sends checks at -rate per second for
// -duration. By default (60 s): Redis is SIGKILLed at 10 s and restarted at
// 20 s; Postgres is stalled at 30 s for 5 s. The fault times scale with
// -duration unless set.
//
// It prints, per phase, the answers by status, wrong decisions (an allow
// where a deny was expected or the reverse; a 503 is fail-closed, counted
// but not wrong), checks unanswered within -client-deadline (what Envoy
// would time out; on a loaded machine they measure the machine as much as
// the sidecar, so they are reported, not failed on), other gRPC errors,
// and p50/p99/max latency. It exits 1 if any decision was wrong, any Check
// returned a gRPC error other than the client's deadline, or the race
// detector reported a race in the sidecar.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/authz-sidecar/authz-sidecar/internal/jwttest"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

type config struct {
	repo           string
	bin            string
	race           bool
	rate           int
	duration       time.Duration
	redisKillAt    time.Duration
	redisRestartAt time.Duration
	pgStallAt      time.Duration
	pgStallFor     time.Duration
	users, orgs    int
	checkTimeout   time.Duration
	clientDeadline time.Duration
	l1TTL, l2TTL   time.Duration
	seed           uint64
	keep           bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	envDur := func(name string, def time.Duration) time.Duration {
		if d, err := time.ParseDuration(getenv(name)); err == nil {
			return d
		}
		return def
	}
	envInt := func(name string, def int) int {
		if n, err := strconv.Atoi(getenv(name)); err == nil {
			return n
		}
		return def
	}
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.repo, "repo", ".", "repository root (policies.yaml, cmd/authz-sidecar)")
	fs.StringVar(&c.bin, "bin", "", "a built authz-sidecar to run (default: build one)")
	fs.BoolVar(&c.race, "race", true, "build the sidecar with -race")
	fs.IntVar(&c.rate, "rate", envInt("SOAK_RATE", 500), "checks per second ($SOAK_RATE)")
	fs.DurationVar(&c.duration, "duration", envDur("SOAK_DURATION", 60*time.Second), "load duration ($SOAK_DURATION)")
	fs.DurationVar(&c.redisKillAt, "redis-kill-at", 0, "SIGKILL Redis at (default duration/6)")
	fs.DurationVar(&c.redisRestartAt, "redis-restart-at", 0, "restart Redis at (default duration/3)")
	fs.DurationVar(&c.pgStallAt, "pg-stall-at", 0, "stall Postgres at (default duration/2)")
	fs.DurationVar(&c.pgStallFor, "pg-stall-for", 0, "for (default duration/12)")
	fs.IntVar(&c.users, "users", 200, "seeded users")
	fs.IntVar(&c.orgs, "orgs", 5, "seeded organizations")
	fs.DurationVar(&c.checkTimeout, "check-timeout", 100*time.Millisecond, "the sidecar's --check-timeout")
	fs.DurationVar(&c.clientDeadline, "client-deadline", time.Second, "each Check's deadline, as Envoy's ext_authz timeout")
	fs.DurationVar(&c.l1TTL, "l1-ttl", 2*time.Second, "the sidecar's --l1-ttl and --l1-negative-ttl")
	fs.DurationVar(&c.l2TTL, "l2-ttl", 30*time.Second, "the sidecar's --l2-ttl and --l2-negative-ttl")
	fs.Uint64Var(&c.seed, "seed", uint64(time.Now().UnixNano()), "request mix random seed")
	fs.BoolVar(&c.keep, "keep", false, "keep the logs directory even when the run passes")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	d := c.duration
	for _, f := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.redisKillAt, d / 6}, {&c.redisRestartAt, d / 3}, {&c.pgStallAt, d / 2}, {&c.pgStallFor, d / 12}} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	switch {
	case c.rate <= 0 || c.rate > 5000:
		return c, fmt.Errorf("-rate %d: want 1..5000", c.rate)
	case c.duration <= 0 || c.duration > time.Hour:
		return c, fmt.Errorf("-duration %v: want up to 1h", c.duration)
	case !(c.redisKillAt < c.redisRestartAt && c.redisRestartAt <= c.pgStallAt && c.pgStallAt+c.pgStallFor <= c.duration):
		return c, fmt.Errorf("fault schedule out of order: kill %v < restart %v <= stall %v, stall+%v <= %v",
			c.redisKillAt, c.redisRestartAt, c.pgStallAt, c.pgStallFor, c.duration)
	case c.users < c.orgs*10 || c.orgs < 2:
		return c, fmt.Errorf("-users %d -orgs %d: want at least 2 orgs and 10 users per org", c.users, c.orgs)
	}
	return c, nil
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c, err := parseConfig(args, getenv, stderr)
	if err != nil {
		if err != flag.ErrHelp {
			fmt.Fprintln(stderr, "soak:", err)
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	work, err := os.MkdirTemp("", "authz-soak-")
	if err != nil {
		fmt.Fprintln(stderr, "soak:", err)
		return 2
	}
	code := soak(ctx, c, work, stdout, stderr)
	if code == 0 && !c.keep {
		os.RemoveAll(work)
	} else {
		fmt.Fprintf(stdout, "logs kept in %s\n", work)
	}
	return code
}

// soak sets everything up, runs the load and the faults, and reports.
func soak(ctx context.Context, c config, work string, stdout, stderr io.Writer) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "soak: "+format+"\n", args...)
		return 2
	}
	say := func(format string, args ...any) { fmt.Fprintf(stdout, format+"\n", args...) }

	bin := c.bin
	if bin == "" {
		say("building the sidecar (race %v)", c.race)
		var err error
		if bin, err = testproc.BuildSidecar(ctx, c.repo, work, c.race, stderr); err != nil {
			return fail("%v", err)
		}
	}

	db, err := pgtest.CreateScratch(ctx, "", "authz_soak", &pgtest.Plural)
	if err != nil {
		return fail("%v", err)
	}
	defer func() {
		if err := db.Drop(context.Background()); err != nil {
			fmt.Fprintln(stderr, "soak:", err)
		}
	}()
	shipped, err := os.ReadFile(filepath.Join(c.repo, "policies.yaml"))
	if err != nil {
		return fail("%v", err)
	}
	pol, err := policy.Parse("policies.yaml", shipped)
	if err != nil {
		return fail("%v", err)
	}
	w, err := newWorld(c.users, c.orgs, pol)
	if err != nil {
		return fail("%v", err)
	}
	if err := w.seed(ctx, db.URL); err != nil {
		return fail("seed: %v", err)
	}

	u, err := url.Parse(db.URL)
	if err != nil {
		return fail("%v", err)
	}
	proxy, err := testproc.NewPGProxy(u.Host)
	if err != nil {
		return fail("%v", err)
	}
	defer proxy.Close()
	u.Host = proxy.Addr()

	rds, err := testproc.NewRedis(work)
	if err != nil {
		return fail("%v", err)
	}
	if err := rds.Start(); err != nil {
		return fail("%v", err)
	}
	defer rds.Kill()

	// Better Auth's JWKS and tokens in its shape (iss and aud
	// jwttest.Issuer), valid for the whole run.
	keys := jwttest.StartKeys()
	defer keys.Close()
	exp := time.Now().Add(c.duration + 10*time.Minute).Unix()
	for _, usr := range w.users {
		usr.token = keys.User(usr.id, "exp", exp)
	}
	policyPath, err := testproc.WritePolicy(c.repo, work, jwttest.Issuer,
		"jwks_url: "+jwttest.Issuer+"/api/auth/jwks", "jwks_url: "+keys.URL)
	if err != nil {
		return fail("%v", err)
	}

	secret, err := testproc.WriteSecretFile(work)
	if err != nil {
		return fail("%v", err)
	}
	sc, err := testproc.StartSidecar(bin, c.repo, work, "--log-format", "json",
		"--policies", policyPath, "--better-auth-secret-file", secret, "--database-url", u.String(),
		"--redis-url", rds.URL(), "--redis-prefix", "authz-soak:"+randID(4)+":",
		"--check-timeout", c.checkTimeout.String(),
		"--l1-ttl", c.l1TTL.String(), "--l1-negative-ttl", c.l1TTL.String(),
		"--l2-ttl", c.l2TTL.String(), "--l2-negative-ttl", c.l2TTL.String(),
		"--log-allow-every", "0")
	if err != nil {
		return fail("%v", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			sc.Stop(sidecarGrace)
		}
	}()
	if err := sc.WaitReady(testproc.Serving, 20*time.Second); err != nil {
		return fail("%v", err)
	}

	phases := []phase{
		{"baseline", 0, c.redisKillAt},
		{"redis down", c.redisKillAt, c.redisRestartAt},
		{"redis back", c.redisRestartAt, c.pgStallAt},
		{"pg stalled", c.pgStallAt, c.pgStallAt + c.pgStallFor},
		{"pg back", c.pgStallAt + c.pgStallFor, c.duration},
	}
	st := newStats(phases)
	say("load: %d checks/s for %v, %d users in %d organizations, sidecar --check-timeout %v, client deadline %v, seed %d",
		c.rate, c.duration, len(w.users), len(w.orgs), c.checkTimeout, c.clientDeadline, c.seed)

	start := time.Now()
	faultErr := make(chan error, 1)
	go func() {
		faultErr <- runFaults(ctx, start, []fault{
			{c.redisKillAt, "SIGKILL redis", func() error { rds.Kill(); return nil }},
			{c.redisRestartAt, "restart redis (same port, empty)", rds.Start},
			{c.pgStallAt, "stall postgres", func() error { proxy.Stall(); return nil }},
			{c.pgStallAt + c.pgStallFor, "resume postgres", proxy.Resume},
		}, stdout)
	}()
	runLoad(ctx, authv3.NewAuthorizationClient(sc.Conn), w, st, start, c.rate, c.duration, c.clientDeadline, c.seed)
	if err := <-faultErr; err != nil {
		return fail("fault: %v", err)
	}
	if ctx.Err() != nil {
		return fail("interrupted")
	}

	say("\nresults (%v of load):", time.Since(start).Round(time.Millisecond))
	wrong, timeouts, grpcErrors := st.print(stdout)
	say("\nsidecar counters:")
	printMetrics(stdout, sc.HTTP)

	sc.Stop(sidecarGrace)
	stopped = true
	races := sc.Proc.DataRaces()
	say("\nwrong decisions: %d, gRPC errors: %d, data races: %d (client timeouts: %d, 503s: fail-closed, not failures)",
		wrong, grpcErrors, races, timeouts)
	if wrong > 0 || grpcErrors > 0 || races > 0 {
		say("FAIL")
		return 1
	}
	say("PASS")
	return 0
}

// sidecarGrace is how long the sidecar may take to drain after SIGTERM
// before it is killed.
const sidecarGrace = 15 * time.Second

type fault struct {
	at   time.Duration
	name string
	do   func() error
}

func runFaults(ctx context.Context, start time.Time, faults []fault, out io.Writer) error {
	for _, f := range faults {
		select {
		case <-time.After(time.Until(start.Add(f.at))):
		case <-ctx.Done():
			return nil
		}
		fmt.Fprintf(out, "t=%5.1fs  %s\n", time.Since(start).Seconds(), f.name)
		if err := f.do(); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	return nil
}

// printMetrics prints the cache counters from /metrics.
func printMetrics(out io.Writer, addr string) {
	m, err := testproc.ScrapeMetrics(context.Background(), addr)
	if err != nil {
		fmt.Fprintln(out, "  /metrics:", err)
		return
	}
	for _, s := range m {
		if s.Name == "authz_cache_lookups_total" || s.Name == "authz_cache_errors_total" {
			fmt.Fprintf(out, "  %s %s %g\n", s.Name, s.LabelString(), s.Value)
		}
	}
}
