// Command loadtest is the load half of `make loadtest` (scripts/loadtest.sh):
// the docker-compose stack run natively, with nginx and auth_request as the
// front proxy. The script starts Better Auth, the sidecar (HTTP mode) and
// nginx on loopback; this command seeds Better Auth through its API, drives a
// closed-loop HTTP load through nginx with a realistic mix of allowed and
// denied requests, checks every answer, runs the same load against a server
// block of the same nginx without auth_request, and prints throughput,
// latency percentiles, statuses, the ratio of the two (the sidecar's cost
// through a real proxy) and the sidecar's own check-time histogram.
//
// It exits non-zero on any wrong answer: a wrong status, a deny that reached
// the application, an allow that reached it under another identity, or a
// sidecar that counted a different number of checks than requests went
// through nginx.
//
// With -free-ports N it only prints N free loopback ports (for the script).
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/authz-sidecar/authz-sidecar/test/baclient"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

// config is the command line, with defaults from the environment.
type config struct {
	freePorts  int
	betterAuth string // Better Auth base URL
	proxy      string // nginx server with auth_request
	baseline   string // nginx server without it, same upstream
	metrics    string // the sidecar's /metrics; empty: skip the histogram
	workers    int
	warmup     time.Duration
	duration   time.Duration
}

func parseConfig(args []string, getenv func(string) string) (config, error) {
	var c config
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.IntVar(&c.freePorts, "free-ports", 0, "print this many free loopback TCP ports and exit")
	fs.StringVar(&c.betterAuth, "better-auth", "", "Better Auth base URL (required)")
	fs.StringVar(&c.proxy, "proxy", "", "nginx server with auth_request to the sidecar, e.g. http://127.0.0.1:8080 (required)")
	fs.StringVar(&c.baseline, "baseline", "", "the same nginx's server without auth_request, same upstream (required)")
	fs.StringVar(&c.metrics, "metrics", "", "the sidecar's /metrics URL (empty: no histogram, no check count)")
	workers, err := envInt(getenv, "LOADTEST_WORKERS", 32)
	if err != nil {
		return c, err
	}
	warmup, err := envDuration(getenv, "LOADTEST_WARMUP", 2*time.Second)
	if err != nil {
		return c, err
	}
	duration, err := envDuration(getenv, "LOADTEST_DURATION", 10*time.Second)
	if err != nil {
		return c, err
	}
	fs.IntVar(&c.workers, "workers", workers, "closed-loop workers = requests in flight ($LOADTEST_WORKERS)")
	fs.DurationVar(&c.warmup, "warmup", warmup, "unmeasured (but checked) load before each measured window ($LOADTEST_WARMUP)")
	fs.DurationVar(&c.duration, "duration", duration, "measured window per server ($LOADTEST_DURATION)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.freePorts > 0 {
		return c, nil
	}
	if c.betterAuth == "" || c.proxy == "" || c.baseline == "" {
		return c, errors.New("-better-auth, -proxy and -baseline are required")
	}
	switch {
	case c.workers < 1 || c.workers > 1024:
		return c, fmt.Errorf("workers %d: want 1..1024", c.workers)
	case c.duration <= 0 || c.duration > 10*time.Minute:
		return c, fmt.Errorf("duration %v: want (0, 10m]", c.duration)
	case c.warmup < 0 || c.warmup > time.Minute:
		return c, fmt.Errorf("warmup %v: want [0, 1m]", c.warmup)
	}
	return c, nil
}

func envInt(getenv func(string) string, name string, def int) (int, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("$%s: %w", name, err)
	}
	return n, nil
}

func envDuration(getenv func(string) string, name string, def time.Duration) (time.Duration, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("$%s: %w", name, err)
	}
	return d, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	c, err := parseConfig(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if c.freePorts > 0 {
		ports, err := freePorts(c.freePorts)
		if err != nil {
			return err
		}
		s := make([]string, len(ports))
		for i, p := range ports {
			s[i] = strconv.Itoa(p)
		}
		_, err = fmt.Fprintln(stdout, strings.Join(s, " "))
		return err
	}

	// The whole run is bounded: two phases of warm-up and window, plus
	// seeding and scrapes.
	ctx, cancel := context.WithTimeout(ctx, 2*(c.warmup+c.duration)+2*time.Minute)
	defer cancel()

	tag := make([]byte, 4)
	rand.Read(tag)
	seedCtx, seedCancel := context.WithTimeout(ctx, time.Minute)
	w, err := seed(seedCtx, baclient.New(c.betterAuth), hex.EncodeToString(tag))
	seedCancel()
	if err != nil {
		return fmt.Errorf("seed Better Auth: %w", err)
	}

	mix := defaultMix()
	sched := schedule(mix)
	client := newClient(c.workers)
	defer client.CloseIdleConnections()
	guarded := &plan{base: strings.TrimRight(c.proxy, "/"), mix: mix, sched: sched, world: w, guarded: true}
	baseline := &plan{base: strings.TrimRight(c.baseline, "/"), mix: mix, sched: sched, world: w}
	for _, p := range []*plan{guarded, baseline} {
		if err := preflight(ctx, client, p); err != nil {
			return err
		}
	}

	rep := report{cfg: c, mix: mix, world: w}
	if rep.guarded, err = runPhase(ctx, client, guarded, c, true); err != nil {
		return err
	}
	if rep.baseline, err = runPhase(ctx, client, baseline, c, false); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("run interrupted: %w", err)
	}
	rep.write(stdout)
	return rep.verdict()
}

// preflight sends one request of each kind, one at a time, so that a
// broken set-up fails with a clear message before any load.
func preflight(ctx context.Context, client *http.Client, p *plan) error {
	seen := make([]bool, len(p.mix))
	var buf strings.Builder
	for i := range uint64(len(p.sched)) {
		c := p.call(i)
		if seen[c.kind] {
			continue
		}
		seen[c.kind] = true
		var body bytes.Buffer
		status, err := send(ctx, client, c, &body)
		if err == nil {
			err = c.want.check(status, body.Bytes())
		}
		if err != nil {
			fmt.Fprintf(&buf, "\n  %s: %s (%s): %v", p.mix[c.kind].name, c.want.request, p.base, err)
		}
	}
	if buf.Len() > 0 {
		return fmt.Errorf("preflight failed:%s", buf.String())
	}
	return nil
}

// phase is one server's measured window and what the sidecar counted in it.
type phase struct {
	warmupWrong uint64
	warmupFirst []string
	out         outcome
	// checks is the sidecar's decision-time histogram over the measured
	// window, by result; nil when not scraped.
	checks map[string]*histogram
}

// runPhase warms up, then measures. For the guarded server it scrapes the
// sidecar's histogram right before and after the window: no request is in
// flight at either moment, so the difference is exactly the window's checks.
func runPhase(ctx context.Context, client *http.Client, p *plan, c config, guarded bool) (phase, error) {
	var ph phase
	if c.warmup > 0 {
		warm := drive(ctx, client, p.call, len(p.mix), c.workers, c.warmup)
		ph.warmupWrong, ph.warmupFirst = warm.wrong, warm.failures
	}
	scrape := guarded && c.metrics != ""
	var before map[string]*histogram
	if scrape {
		var err error
		if before, err = scrapeChecks(ctx, client, c.metrics); err != nil {
			return ph, err
		}
	}
	ph.out = drive(ctx, client, p.call, len(p.mix), c.workers, c.duration)
	if scrape {
		after, err := scrapeChecks(ctx, client, c.metrics)
		if err != nil {
			return ph, err
		}
		ph.checks = make(map[string]*histogram, len(after))
		for result, h := range after {
			ph.checks[result] = h.since(before[result])
		}
	}
	return ph, nil
}
