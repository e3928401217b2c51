package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/authz-sidecar/authz-sidecar/bench/loadgen"

	"github.com/authz-sidecar/authz-sidecar/bench/benchenv"
)

// config is every setting of a benchmark run, parsed once, here. Paths are
// flags (scripts/bench.sh sets them); what a person tunes is an
// environment variable, so `BENCH_DURATION=10s make bench` works.
type config struct {
	Sidecar    string // authz-sidecar binary
	Noop       string // bench/noop binary
	Policies   string // the repository's policies.yaml, copied with the bench JWKS
	ResultsDir string

	AdminURL string // a PostgreSQL role that may CREATE DATABASE
	RedisURL string

	Warmup      time.Duration
	Duration    time.Duration
	Conns       int
	Concurrency []int
	// Rates are the fixed-rate (open-loop) loads of scenarios a, b and c,
	// in requests per second, run after the closed-loop ones (none: skip).
	Rates        []int
	RateDuration time.Duration // measured window of a fixed-rate run
	MaxInFlight  int           // bound on a fixed-rate run's requests in flight
	Scenarios    string        // subset of allScenarios
	FreshTokens  int           // pre-signed single-use tokens for scenario d
	Fill         int           // memberships loaded into L1 for the memory step (0: skip)
	Timeout      time.Duration
	// SidecarFlags are appended to every sidecar's command line, e.g.
	// "--max-in-flight 8" to watch the admission limit shed load.
	SidecarFlags []string
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	c := config{
		Sidecar:     "bin/authz-sidecar",
		Noop:        "bin/authz-noop",
		Policies:    "policies.yaml",
		ResultsDir:  "bench/results",
		AdminURL:    "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		RedisURL:    "redis://127.0.0.1:6379/0",
		Warmup:      time.Second,
		Duration:    5 * time.Second,
		Conns:       2,
		Concurrency: []int{16, 64},
		// A load this 2-core machine carries with the generator, the
		// server, Redis and Postgres on it: the sidecar's closed-loop
		// throughput is 6000 (Postgres) to 33000 (L1) req/s.
		Rates:        []int{2000},
		RateDuration: 4 * time.Second,
		MaxInFlight:  loadgen.DefaultMaxInFlight,
		Scenarios:    allScenarios,
		FreshTokens:  300_000,
		Fill:         100_000,
		Timeout:      8 * time.Minute,
	}
	fs := flag.NewFlagSet("authzbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Sidecar, "sidecar", c.Sidecar, "authz-sidecar binary")
	fs.StringVar(&c.Noop, "noop", c.Noop, "do-nothing ext_authz server binary (bench/noop)")
	fs.StringVar(&c.Policies, "policies", c.Policies, "policies.yaml to benchmark (its jwt section is pointed at the bench JWKS)")
	fs.StringVar(&c.ResultsDir, "results", c.ResultsDir, "directory for <date>-<commit>.{txt,json} and latest.txt")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	env := benchenv.NewReader(getenv)
	str := func(p *string, envs ...string) {
		for _, e := range envs {
			if v := getenv(e); v != "" {
				*p = v
				return
			}
		}
	}
	str(&c.AdminURL, "AUTHZ_TEST_DATABASE_URL")
	str(&c.RedisURL, "AUTHZ_TEST_REDIS_URL")
	env.Duration(&c.Warmup, "BENCH_WARMUP", time.Nanosecond)
	env.Duration(&c.Duration, "BENCH_DURATION", time.Nanosecond)
	env.Duration(&c.RateDuration, "BENCH_RATE_DURATION", time.Nanosecond)
	env.Duration(&c.Timeout, "BENCH_TIMEOUT", time.Nanosecond)
	env.Int(&c.Conns, "BENCH_CONNS", 1)
	env.Int(&c.FreshTokens, "BENCH_FRESH_TOKENS", 1000)
	env.Int(&c.Fill, "BENCH_L1_FILL", 0)
	env.Int(&c.MaxInFlight, "BENCH_RATE_INFLIGHT", 1)
	list := func(p *[]int, name string, allowNone bool) {
		v := getenv(name)
		if v == "" {
			return
		}
		*p = nil
		if allowNone && strings.TrimSpace(v) == "0" {
			return
		}
		for f := range strings.SplitSeq(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				env.Fail(fmt.Errorf("$%s=%q: want positive integers, comma-separated", name, v))
				return
			}
			*p = append(*p, n)
		}
	}
	c.SidecarFlags = strings.Fields(getenv("BENCH_SIDECAR_FLAGS"))
	list(&c.Concurrency, "BENCH_CONCURRENCY", false)
	list(&c.Rates, "BENCH_RATE", true)
	if v := getenv("BENCH_SCENARIOS"); v != "" {
		c.Scenarios = strings.ReplaceAll(v, ",", "")
		if strings.Trim(c.Scenarios, allScenarios) != "" {
			env.Fail(fmt.Errorf("$BENCH_SCENARIOS=%q: want letters from %s", v, allScenarios))
		}
	}
	return c, env.Err()
}
