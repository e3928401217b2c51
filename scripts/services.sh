#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis are installed and answering on
# 127.0.0.1:5432 and 127.0.0.1:6379, installing them from Debian's packages
# and starting them when needed (scripts/setup.sh installs the other tools
# the tests run). Idempotent; safe to run before every test.
#
# On a machine where it installs PostgreSQL itself, it allows password-less
# (trust) connections from 127.0.0.1 and ::1 only, which is what the tests
# and `make demo` use. Do not run it on a machine whose PostgreSQL you care
# about securing; point AUTHZ_TEST_DATABASE_URL at it instead.
set -euo pipefail

PGHOST_=127.0.0.1
PGPORT_=5432
REDIS_PORT=6379

log() { printf 'services: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

pg_up() { pg_isready -q -h "$PGHOST_" -p "$PGPORT_" 2>/dev/null; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

ensure_postgres() {
  if command -v pg_isready >/dev/null && pg_up; then return; fi
  local fresh=0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql postgresql-client
    fresh=1
  fi
  local ver
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  if [ "$fresh" = 1 ]; then
    local hba=/etc/postgresql/$ver/main/pg_hba.conf
    # Trust loopback only, ahead of the packaged rules.
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  log "starting PostgreSQL $ver"
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 1 60); do pg_up && return; sleep 0.5; done
  log "PostgreSQL did not come up on $PGHOST_:$PGPORT_"; exit 1
}

ensure_redis() {
  if command -v redis-cli >/dev/null && redis_up; then return; fi
  command -v redis-server >/dev/null || apt_install redis-server
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir /tmp --logfile /tmp/authz-redis.log
  for _ in $(seq 1 40); do redis_up && return; sleep 0.25; done
  log "Redis did not come up on 127.0.0.1:$REDIS_PORT"; exit 1
}

ensure_postgres
ensure_redis

log "PostgreSQL $PGHOST_:$PGPORT_ and Redis 127.0.0.1:$REDIS_PORT are up"
