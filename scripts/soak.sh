#!/usr/bin/env bash
# make soak: the race-built authz-sidecar under a fixed load while Redis is
# killed and restarted and PostgreSQL stalls (test/soak). Loopback only;
# everything it starts is stopped and its scratch database dropped when it
# ends. Exits non-zero on any wrong decision, gRPC error or data race.
#
# Environment: SOAK_RATE (500 checks/s), SOAK_DURATION (60s; the fault times
# scale with it), AUTHZ_TEST_DATABASE_URL (the PostgreSQL server, as for the
# tests). Extra arguments go to the driver, e.g.
#   scripts/soak.sh -duration 30s -rate 300 -keep
# (scripts/soak.sh -h lists them).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
exec go run ./test/soak -repo "$root" "$@"
