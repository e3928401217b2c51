package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// config is every setting of a benchmark run, parsed once, here. Paths are
// flags (scripts/bench.sh sets them); what a person tunes is an
// environment variable, so `BENCH_DURATION=10s make bench` works.
type config struct {
	Sidecar    string // authz-sidecar binary
	Noop       string // bench/noop binary
	Policies   string // the repository's policies.yaml, copied with the bench JWKS
	Schema     string // Better Auth's schema (pg_dump)
	ResultsDir string

	AdminURL string // a PostgreSQL role that may CREATE DATABASE
	RedisURL string

	Warmup      time.Duration
	Duration    time.Duration
	Conns       int
	Concurrency []int
	Scenarios   string // subset of "abcd"
	FreshTokens int    // pre-signed single-use tokens for scenario d
	Fill        int    // memberships loaded into L1 for the memory step (0: skip)
	Timeout     time.Duration
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	c := config{
		Sidecar:     "bin/authz-sidecar",
		Noop:        "bin/authz-noop",
		Policies:    "policies.yaml",
		Schema:      "internal/pgtest/schema.sql",
		ResultsDir:  "bench/results",
		AdminURL:    "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		RedisURL:    "redis://127.0.0.1:6379/0",
		Warmup:      time.Second,
		Duration:    5 * time.Second,
		Conns:       2,
		Concurrency: []int{16, 64},
		Scenarios:   "abcd",
		FreshTokens: 300_000,
		Fill:        100_000,
		Timeout:     8 * time.Minute,
	}
	fs := flag.NewFlagSet("authzbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Sidecar, "sidecar", c.Sidecar, "authz-sidecar binary")
	fs.StringVar(&c.Noop, "noop", c.Noop, "do-nothing ext_authz server binary (bench/noop)")
	fs.StringVar(&c.Policies, "policies", c.Policies, "policies.yaml to benchmark (its jwt section is pointed at the bench JWKS)")
	fs.StringVar(&c.Schema, "schema", c.Schema, "Better Auth schema (SQL)")
	fs.StringVar(&c.ResultsDir, "results", c.ResultsDir, "directory for <date>-<commit>.{txt,json} and latest.txt")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	var errs []error
	str := func(p *string, envs ...string) {
		for _, e := range envs {
			if v := getenv(e); v != "" {
				*p = v
				return
			}
		}
	}
	dur := func(p *time.Duration, env string) {
		if v := getenv(env); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				errs = append(errs, fmt.Errorf("$%s=%q: want a positive duration", env, v))
				return
			}
			*p = d
		}
	}
	integer := func(p *int, env string, least int) {
		if v := getenv(env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < least {
				errs = append(errs, fmt.Errorf("$%s=%q: want an integer >= %d", env, v, least))
				return
			}
			*p = n
		}
	}
	str(&c.AdminURL, "BENCH_DATABASE_URL", "AUTHZ_TEST_DATABASE_URL")
	str(&c.RedisURL, "BENCH_REDIS_URL", "AUTHZ_TEST_REDIS_URL")
	dur(&c.Warmup, "BENCH_WARMUP")
	dur(&c.Duration, "BENCH_DURATION")
	dur(&c.Timeout, "BENCH_TIMEOUT")
	integer(&c.Conns, "BENCH_CONNS", 1)
	integer(&c.FreshTokens, "BENCH_FRESH_TOKENS", 1000)
	integer(&c.Fill, "BENCH_L1_FILL", 0)
	if v := getenv("BENCH_CONCURRENCY"); v != "" {
		c.Concurrency = nil
		for f := range strings.SplitSeq(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				errs = append(errs, fmt.Errorf("$BENCH_CONCURRENCY=%q: want positive integers, comma-separated", v))
				break
			}
			c.Concurrency = append(c.Concurrency, n)
		}
	}
	if v := getenv("BENCH_SCENARIOS"); v != "" {
		c.Scenarios = strings.ReplaceAll(v, ",", "")
		if strings.Trim(c.Scenarios, "abcd") != "" {
			errs = append(errs, fmt.Errorf("$BENCH_SCENARIOS=%q: want letters from a, b, c, d", v))
		}
	}
	return c, errors.Join(errs...)
}
