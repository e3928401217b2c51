package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/authz-sidecar/authz-sidecar/bench/benchenv"
)

// config is every setting of a fleet run, parsed once, here. What a person
// tunes is an environment variable (FLEET_*, as make bench reads BENCH_*),
// so `FLEET_SIDECARS=60 make fleet` works; paths are flags.
type config struct {
	Sidecar string // an authz-sidecar binary; empty: build one into the work directory

	Sidecars int           // FLEET_SIDECARS: replicas started at once
	Rate     float64       // FLEET_RATE: checks per second, the whole fleet
	Duration time.Duration // FLEET_DURATION: each load phase
	Idle     time.Duration // FLEET_IDLE: the idle phase, no load (0 skips)
	Sample   time.Duration // FLEET_SAMPLE: between two samples
	Users    int           // FLEET_USERS
	Orgs     int           // FLEET_ORGS
	PGConns  int           // FLEET_PG_MAX_CONNS: each sidecar's --pg-max-conns
	// PGReserve is how many of the server's connections the run leaves to
	// others (FLEET_PG_RESERVE): the machine's PostgreSQL is shared.
	PGReserve int
	L1TTL     string // FLEET_L1_TTL: the sidecars' --l1-ttl (empty: its default)
	L2TTL     string // FLEET_L2_TTL: the sidecars' --l2-ttl (empty: its default)
	// RedisTimeout is the sidecars' --redis-timeout (FLEET_REDIS_TIMEOUT;
	// empty: its default, 25ms). On a host whose CPUs are saturated a
	// Redis round trip waits for a CPU, and the breaker then skips L2.
	RedisTimeout string
	RedisURL     string // FLEET_REDIS_URL: an external Redis (empty: a redis-server of the run's own)
	Timeout      time.Duration
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	c := config{
		Sidecars:  40,
		Rate:      400,
		Duration:  20 * time.Second,
		Idle:      150 * time.Second,
		Sample:    2 * time.Second,
		Users:     3000,
		Orgs:      150,
		PGConns:   1, // the machine's PostgreSQL is shared: 40 × the default 4 would not fit
		PGReserve: 30,
		Timeout:   15 * time.Minute,
	}
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Sidecar, "sidecar", "", "authz-sidecar binary (default: build ./cmd/authz-sidecar into a temporary directory)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	env := benchenv.NewReader(getenv)
	env.Int(&c.Sidecars, "FLEET_SIDECARS", 1)
	if v := getenv("FLEET_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 {
			env.Fail(fmt.Errorf("$FLEET_RATE=%q: want checks per second > 0", v))
		}
		c.Rate = r
	}
	env.Duration(&c.Duration, "FLEET_DURATION", 100*time.Millisecond)
	env.Duration(&c.Idle, "FLEET_IDLE", 0)
	env.Duration(&c.Sample, "FLEET_SAMPLE", 100*time.Millisecond)
	env.Duration(&c.Timeout, "FLEET_TIMEOUT", time.Second)
	env.Int(&c.Users, "FLEET_USERS", 10)
	env.Int(&c.Orgs, "FLEET_ORGS", 2)
	env.Int(&c.PGConns, "FLEET_PG_MAX_CONNS", 1)
	env.Int(&c.PGReserve, "FLEET_PG_RESERVE", 0)
	for _, ttl := range []struct {
		p   *string
		env string
	}{{&c.L1TTL, "FLEET_L1_TTL"}, {&c.L2TTL, "FLEET_L2_TTL"}, {&c.RedisTimeout, "FLEET_REDIS_TIMEOUT"}} {
		if v := getenv(ttl.env); v != "" {
			if _, err := time.ParseDuration(v); err != nil {
				env.Fail(fmt.Errorf("$%s=%q: want a duration", ttl.env, v))
			}
			*ttl.p = v
		}
	}
	c.RedisURL = getenv("FLEET_REDIS_URL")
	return c, env.Err()
}
