// Command authzbench is `make bench`: a load benchmark of the authz-sidecar
// binary against a do-nothing ext_authz server (bench/noop), the physical
// floor of this machine, with the same load generator (bench/loadgen) and
// the same requests.
//
// It creates a database of its own (authz_bench_<pid>_<random>, dropped at
// the end) with Better Auth's schema and 10 000
// users in 100 organizations (10 memberships each, a session and an API
// key each), serves a JWKS on loopback, signs Better Auth-shaped EdDSA
// tokens and session cookies (with the fixture secret, also given to the
// sidecar), and runs seven scenarios at each closed-loop concurrency (which
// saturates the machine) and, for all but d, at each fixed rate (a load
// the machine carries, latency counted from each request's intended send
// time), against noop and then the sidecar:
//
//	a  L1 hits          a few users, tokens reused
//	b  L2 hits          10 000 users, L1 TTL 1ms, Redis prefilled
//	c  Postgres         100 000 distinct keys, no Redis, L1 TTL 1ms
//	d  fresh tokens     a new pre-signed token per request, L1 hits
//	e  session cookie   as a, with the Better Auth session cookie
//	f  bearer session   as a, with Authorization: Bearer <session token>.<sig>
//	g  API key          as a, with x-api-key
//
// then fills a fresh sidecar's L1 with 100 000 memberships to measure its
// memory. Every request must be allowed: a single deny or error fails the
// run, since a benchmark of wrong answers is worthless. It prints a table
// and writes it to bench/results/<date>-<commit>.{txt,json} and
// bench/results/latest.txt.
//
// Everything runs on loopback; every child process is stopped at the end
// (and killed if this process dies). Tunables are environment variables:
// BENCH_DURATION (5s), BENCH_WARMUP (1s), BENCH_CONNS (2),
// BENCH_CONCURRENCY (16,64), BENCH_RATE (fixed rates in req/s, 2000;
// comma list, 0 skips), BENCH_RATE_DURATION (4s), BENCH_RATE_INFLIGHT
// (256), BENCH_SCENARIOS (abcdefg), BENCH_FRESH_TOKENS
// (300000), BENCH_L1_FILL (100000; 0 skips), BENCH_TIMEOUT (8m),
// AUTHZ_TEST_DATABASE_URL and AUTHZ_TEST_REDIS_URL (the servers, named as
// for the tests),
// BENCH_CPUPROFILE (a file for this process's CPU profile: the generator's
// cost, not the sidecar's).
package main

import (
	"context"
	"io"
	"os"
	"runtime/pprof"

	"github.com/authz-sidecar/authz-sidecar/bench/benchenv"
)

func main() { benchenv.Main("authzbench", run) }

// run is the whole program.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if path := getenv("BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	b, err := newBench(cfg, stdout, stderr)
	if err != nil {
		return err
	}
	err = b.run(ctx)
	b.close(err == nil)
	return err
}
