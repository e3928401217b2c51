#!/usr/bin/env bash
# make demo: Better Auth on Bun + authz-sidecar on the same PostgreSQL,
# users and an organization made through Better Auth's API, and a table of
# real decisions. Everything it starts is stopped when it ends.
#
# Environment: DEMO_DB (authz_demo), DEMO_BA_PORT (3000), DEMO_GRPC_ADDR
# (127.0.0.1:9191), DEMO_HTTP_ADDR (127.0.0.1:9192), PGURL (the server,
# postgres://postgres@127.0.0.1:5432), REDIS_URL (redis://127.0.0.1:6379/0).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

db="${DEMO_DB:-authz_demo}"
pgurl="${PGURL:-postgres://postgres@127.0.0.1:5432}"
ba_port="${DEMO_BA_PORT:-3000}"
grpc_addr="${DEMO_GRPC_ADDR:-127.0.0.1:9191}"
http_addr="${DEMO_HTTP_ADDR:-127.0.0.1:9192}"
redis_url="${REDIS_URL:-redis://127.0.0.1:6379/0}"
work="$(mktemp -d /tmp/authz-demo.XXXXXX)"
export BETTERAUTH_PIDFILE="$work/betterauth.pid" BETTERAUTH_LOG="$work/betterauth.log"
sidecar_pid=""

cleanup() {
	[ -n "$sidecar_pid" ] && kill "$sidecar_pid" 2>/dev/null && wait "$sidecar_pid" 2>/dev/null
	bash scripts/betterauth.sh stop >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n==> %s\n' "$*"; }

step "database $db (fresh)"
psql "$pgurl/postgres" -qX -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
dburl="$pgurl/$db?sslmode=disable"

step "Better Auth on Bun (schema by its own migrator), without the jwt plugin: cookie sessions alone"
# Its hooks publish sign-outs, revocations and role changes to the sidecar's
# invalidation channel (test/betterauth/server.ts, "Cache invalidation").
prefix="authz-demo:$$:"
channel="${prefix}invalidate"
ba_url="$(DATABASE_URL="$dburl" PORT="$ba_port" MIGRATE=1 JWT_PLUGIN=0 \
	INVALIDATION_REDIS_URL="$redis_url" INVALIDATION_CHANNEL="$channel" INVALIDATION_REDIS_PREFIX="$prefix" \
	bash scripts/betterauth.sh start)"
echo "$ba_url"

step "authz-sidecar (examples/cookie-sessions.yaml; the secret is Better Auth's own)"
sed -e "s#http://127.0.0.1:3000#$ba_url#g" -e "s#app_roles: ../test/betterauth/roles.json#app_roles: $root/test/betterauth/roles.json#" \
	examples/cookie-sessions.yaml >"$work/policies.yaml"
# The fixture's development secret (test/betterauth/server.ts); an app sets its own.
BETTER_AUTH_SECRET="${BETTER_AUTH_SECRET:-authz-sidecar-dev-secret-do-not-use-in-production}" \
bin/authz-sidecar serve --policies "$work/policies.yaml" --database-url "$dburl" --redis-url "$redis_url" \
	--redis-prefix "$prefix" --invalidation-channel "$channel" --grpc-addr "$grpc_addr" --http-addr "$http_addr" --log-format console \
	>"$work/sidecar.log" 2>&1 &
sidecar_pid=$!
for _ in $(seq 1 100); do
	if curl -fsS "http://$http_addr/readyz" >/dev/null 2>&1; then break; fi
	if ! kill -0 "$sidecar_pid" 2>/dev/null; then cat "$work/sidecar.log"; exit 1; fi
	sleep 0.1
done
curl -fsS "http://$http_addr/readyz" >/dev/null || { cat "$work/sidecar.log"; exit 1; }
echo "gRPC $grpc_addr, health and metrics on http://$http_addr"

step "users, organization and roles through Better Auth's API; decisions through the sidecar"
go run ./test/demo --better-auth "$ba_url" --sidecar "$grpc_addr"

step "the sidecar's decision log (last 5 lines)"
tail -n 5 "$work/sidecar.log"
step "done; stopping Better Auth and the sidecar"
