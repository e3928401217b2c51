#!/usr/bin/env bash
# The load benchmark behind `make bench`: builds the sidecar, the
# do-nothing ext_authz server (bench/noop) and the driver
# (bench/authzbench), makes sure PostgreSQL and Redis answer, and runs the
# driver, which seeds a database of its own (authz_bench_<pid>_<random>,
# dropped at the end), runs every scenario against
# noop and then the sidecar, prints the table and writes
# bench/results/<date>-<commit>.{txt,json} and bench/results/latest.txt.
#
# Loopback only, bounded in time (BENCH_TIMEOUT, default 8m, inside the
# driver; this script kills it a little after that), and nothing is left
# running: the driver stops its children and they die with it.
#
# Tunables (environment): BENCH_DURATION (5s), BENCH_WARMUP (1s),
# BENCH_CONNS (2), BENCH_CONCURRENCY (16,64), BENCH_SCENARIOS (abcdefgh),
# BENCH_FRESH_TOKENS (300000), BENCH_L1_FILL (100000; 0 skips),
# BENCH_RATE (2000; comma list; 0 skips the fixed-rate rows), BENCH_RATE_DURATION (4s),
# BENCH_RATE_INFLIGHT (256), BENCH_SIDECAR_FLAGS
# (appended to every sidecar's flags, e.g. "--max-in-flight 8"); the servers
# as for the tests:
# AUTHZ_TEST_DATABASE_URL, AUTHZ_TEST_REDIS_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}

bash scripts/services.sh
mkdir -p bin
"$GO" build -o bin/authz-sidecar ./cmd/authz-sidecar
"$GO" build -o bin/authz-noop ./bench/noop
"$GO" build -o bin/authzbench ./bench/authzbench

pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

timeout --signal=TERM --kill-after=20s 9m bin/authzbench "$@" &
pid=$!
wait "$pid"
