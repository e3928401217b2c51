#!/usr/bin/env bash
# make loadtest: the docker-compose stack run natively on loopback, with nginx
# and auth_request as the front proxy (no Docker engine, and no Envoy binary
# from Debian, on the development machines):
#
#   PostgreSQL + Redis        scripts/services.sh
#   Better Auth on Bun        scripts/betterauth.sh, its own database (dropped
#                             and recreated), schema by its own migrator
#   authz-sidecar             HTTP mode (--http-authz-addr), Redis L2 under a
#                             key prefix of its own, policies.yaml with the
#                             Better Auth URL substituted (as scripts/demo.sh)
#   nginx (one process)       a front with auth_request to the sidecar, a
#                             baseline front without it, and the echo
#                             application both proxy to
#                             (deploy/upstream.nginx.conf)
#
# bench/loadtest then seeds Better Auth through its API, drives a closed-loop
# load with 80% allowed / 20% denied requests through the front, checks every
# answer, runs the same load through the baseline front and prints
# throughput, latency percentiles, statuses, the ratio of the two and the
# sidecar's own check-time histogram. Exits non-zero on any wrong answer.
#
# Loopback only and bounded (the load command is killed after 5 minutes; a run
# takes well under one). Everything it starts is stopped, its database
# dropped and its Redis keys deleted when it ends.
#
# Environment: LOADTEST_DURATION (10s), LOADTEST_WARMUP (2s), LOADTEST_WORKERS
# (32), LOADTEST_DB (authz_loadtest); the servers, named as for the tests:
# AUTHZ_TEST_DATABASE_URL (postgres://postgres@127.0.0.1:5432/postgres, a
# role that may create databases), AUTHZ_TEST_REDIS_URL
# (redis://127.0.0.1:6379/0).
# Extra arguments go to bench/loadtest (scripts/loadtest.sh -h lists them).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
GO=${GO:-go}
export PGOPTIONS="-c client_min_messages=warning"

db="${LOADTEST_DB:-authz_loadtest}"
admin_url="${AUTHZ_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
pgurl="${admin_url%%\?*}"   # server and role: drop the query, then the database
pgurl="${pgurl%/*}"
redis_url="${AUTHZ_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"
if [[ ! $db =~ ^[a-z_][a-z0-9_]*$ ]]; then
	echo "loadtest.sh: LOADTEST_DB must be a lower-case SQL identifier" >&2
	exit 2
fi
# The sidecar reads AUTHZ_* variables as settings: it gets exactly the flags
# below, whatever the caller's environment holds.
while read -r v; do unset "$v"; done < <(compgen -e | grep '^AUTHZ_' || true)

work="$(mktemp -d /tmp/authz-loadtest.XXXXXX)"
# nginx's workers drop root privileges; they must reach their prefix.
chmod 755 "$work"
export BETTERAUTH_PIDFILE="$work/betterauth.pid" BETTERAUTH_LOG="$work/betterauth.log"
redis_prefix="authz-loadtest:$$:"
load_pid=""
sidecar_pid=""
nginx_pid=""
nginx_own_group=0
db_created=0

# stop_pid PID SECONDS: SIGTERM, then SIGKILL if it is still there.
# shellcheck disable=SC2317 # reached from the EXIT trap
stop_pid() {
	local pid=$1 tenths=$(($2 * 10))
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 1 "$tenths"); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317 # the EXIT trap
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n $load_pid ]]; then stop_pid "$load_pid" 5; fi
	if [[ -n $nginx_pid ]]; then
		# SIGTERM: the master stops its workers, then exits.
		stop_pid "$nginx_pid" 5
		# Workers of a master that had to be killed share its group.
		if [[ $nginx_own_group == 1 ]]; then kill -KILL -- "-$nginx_pid" 2>/dev/null || true; fi
	fi
	if [[ -n $sidecar_pid ]]; then stop_pid "$sidecar_pid" 15; fi
	bash scripts/betterauth.sh stop >/dev/null 2>&1 || true
	if [[ $rc != 0 ]]; then
		for f in sidecar.log nginx.log betterauth.log; do
			if [[ -s $work/$f ]]; then
				echo "--- last lines of $f (without decision lines)" >&2
				grep -v '"logger":"decision"' "$work/$f" | tail -n 15 >&2 || true
			fi
		done
	fi
	if [[ $db_created == 1 ]]; then
		psql "$pgurl/postgres" -qX -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
	fi
	redis-cli -u "$redis_url" --scan --pattern "${redis_prefix}*" 2>/dev/null |
		xargs -r redis-cli -u "$redis_url" del >/dev/null 2>&1 || true
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '==> %s\n' "$*"; }

step "services, nginx, builds"
bash scripts/services.sh
bash scripts/setup.sh
nginx="$(command -v nginx || echo /usr/sbin/nginx)"
mkdir -p bin
"$GO" build -o bin/authz-sidecar ./cmd/authz-sidecar
"$GO" build -o "$work/loadtest" ./bench/loadtest
case "${1:-}" in -h | -help | --help)
	"$work/loadtest" -h
	exit 0
	;;
esac
read -r ba_port grpc_port ops_port authz_port front_port baseline_port app_port \
	<<<"$("$work/loadtest" -free-ports 7)"

step "database $db (fresh), Better Auth on Bun"
psql "$pgurl/postgres" -qX -v ON_ERROR_STOP=1 \
	-c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
db_created=1
dburl="$pgurl/$db?sslmode=disable"
ba_url="$(DATABASE_URL="$dburl" PORT="$ba_port" MIGRATE=1 bash scripts/betterauth.sh start)"

step "authz-sidecar (HTTP mode on 127.0.0.1:$authz_port)"
sed -e "s#http://127.0.0.1:3000#$ba_url#g" policies.yaml >"$work/policies.yaml"
bin/authz-sidecar serve --policies "$work/policies.yaml" --database-url "$dburl" \
	--redis-url "$redis_url" --redis-prefix "$redis_prefix" --invalidation-channel "${redis_prefix}invalidate" \
	--grpc-addr "127.0.0.1:$grpc_port" --http-addr "127.0.0.1:$ops_port" \
	--http-authz-addr "127.0.0.1:$authz_port" --log-allow-every 0 \
	</dev/null >"$work/sidecar.log" 2>&1 &
sidecar_pid=$!
for _ in $(seq 1 150); do
	if curl -fsS -o /dev/null "http://127.0.0.1:$ops_port/readyz" 2>/dev/null; then break; fi
	if ! kill -0 "$sidecar_pid" 2>/dev/null; then
		echo "loadtest.sh: the sidecar exited during start-up" >&2
		exit 1
	fi
	sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$ops_port/readyz" || {
	echo "loadtest.sh: the sidecar is not ready after 15 s" >&2
	exit 1
}

step "nginx (front 127.0.0.1:$front_port with auth_request, baseline 127.0.0.1:$baseline_port, app 127.0.0.1:$app_port)"
mkdir -p "$work/nginx"
# Temp path directives exist only for the modules compiled in.
temps=""
for m in fastcgi uwsgi scgi; do
	if ! "$nginx" -V 2>&1 | grep -q -- "--without-http_${m}_module"; then
		temps+="    ${m}_temp_path @PREFIX@/${m};"$'\n'
	fi
done
# The front is the auth_request setup of docs/proxies.md, plus keep-alive pools to the
# sidecar and the application (without them nginx opens a connection per
# request and per check, as any production config would avoid).
cat >"$work/nginx/nginx.conf.in" <<'NGINX'
worker_processes auto;
pid @PREFIX@/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    default_type text/plain;
    keepalive_requests 100000;
    client_body_temp_path @PREFIX@/client_body;
    proxy_temp_path @PREFIX@/proxy;
@TEMPS@
    upstream authz_sidecar {
        server 127.0.0.1:@AUTHZ@;
        keepalive 64;
        keepalive_requests 100000;
    }
    upstream app {
        server 127.0.0.1:@APP@;
        keepalive 64;
        keepalive_requests 100000;
    }

    # The application: echoes the request and the identity it was given.
    server {
        listen 127.0.0.1:@APP@;
        location / {
            return 200 "upstream: $request_method $request_uri\nx-auth-user-id: $http_x_auth_user_id\nx-auth-org-id: $http_x_auth_org_id\nx-auth-roles: $http_x_auth_roles\nx-authz-shadow-deny: $http_x_authz_shadow_deny\n";
        }
    }

    # The front: every request is decided by the sidecar first.
    server {
        listen 127.0.0.1:@FRONT@;
        location / {
            auth_request /_authz;
            # Every header the sidecar sets (docs/proxies.md): a client's copy is
            # replaced, or dropped when the answer has none.
            auth_request_set $auth_user_id          $upstream_http_x_auth_user_id;
            auth_request_set $auth_org_id           $upstream_http_x_auth_org_id;
            auth_request_set $auth_roles            $upstream_http_x_auth_roles;
            auth_request_set $auth_org_source       $upstream_http_x_auth_org_source;
            auth_request_set $auth_team_id          $upstream_http_x_auth_team_id;
            auth_request_set $auth_credential       $upstream_http_x_auth_credential;
            auth_request_set $auth_impersonated_by  $upstream_http_x_auth_impersonated_by;
            auth_request_set $auth_api_key_id       $upstream_http_x_auth_api_key_id;
            auth_request_set $authz_shadow_deny     $upstream_http_x_authz_shadow_deny;
            auth_request_set $authz_decision_id     $upstream_http_x_authz_decision_id;
            proxy_set_header X-Auth-User-Id         $auth_user_id;
            proxy_set_header X-Auth-Org-Id          $auth_org_id;
            proxy_set_header X-Auth-Roles           $auth_roles;
            proxy_set_header X-Auth-Org-Source      $auth_org_source;
            proxy_set_header X-Auth-Team-Id         $auth_team_id;
            proxy_set_header X-Auth-Credential      $auth_credential;
            proxy_set_header X-Auth-Impersonated-By $auth_impersonated_by;
            proxy_set_header X-Auth-Api-Key-Id      $auth_api_key_id;
            proxy_set_header X-Authz-Shadow-Deny    $authz_shadow_deny;
            proxy_set_header X-Authz-Decision-Id    $authz_decision_id;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://app;
        }
        location = /_authz {
            internal;
            proxy_pass              http://authz_sidecar/;
            proxy_pass_request_body off;
            proxy_http_version      1.1;
            proxy_set_header Connection         "";
            proxy_set_header Content-Length     "";
            proxy_set_header X-Original-URI     $request_uri;
            proxy_set_header X-Original-Method  $request_method;
            proxy_set_header X-Request-Id       $request_id;
            proxy_set_header X-Forwarded-Uri    "";
            proxy_set_header X-Forwarded-Method "";
        }
    }

    # The baseline: the same proxying without auth_request.
    server {
        listen 127.0.0.1:@BASELINE@;
        location / {
            proxy_set_header X-Auth-User-Id         "";
            proxy_set_header X-Auth-Org-Id          "";
            proxy_set_header X-Auth-Roles           "";
            proxy_set_header X-Auth-Org-Source      "";
            proxy_set_header X-Auth-Team-Id         "";
            proxy_set_header X-Auth-Credential      "";
            proxy_set_header X-Auth-Impersonated-By "";
            proxy_set_header X-Auth-Api-Key-Id      "";
            proxy_set_header X-Authz-Shadow-Deny    "";
            proxy_set_header X-Authz-Decision-Id    "";
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://app;
        }
    }
}
NGINX
awk -v temps="$temps" '{ if ($0 == "@TEMPS@") printf "%s", temps; else print }' "$work/nginx/nginx.conf.in" |
	sed -e "s#@PREFIX@#$work/nginx#g" -e "s#@AUTHZ@#$authz_port#g" -e "s#@APP@#$app_port#g" \
		-e "s#@FRONT@#$front_port#g" -e "s#@BASELINE@#$baseline_port#g" >"$work/nginx/nginx.conf"
nginx_args=(-e stderr -p "$work/nginx/" -c "$work/nginx/nginx.conf")
"$nginx" "${nginx_args[@]}" -t -q
# Its own process group (setsid), so cleanup can reach stray workers too.
setsid "$nginx" "${nginx_args[@]}" -g 'daemon off;' </dev/null >"$work/nginx.log" 2>&1 &
nginx_pid=$!
if [[ "$(ps -o pgid= -p "$nginx_pid" | tr -d ' ')" == "$nginx_pid" ]]; then nginx_own_group=1; fi
for _ in $(seq 1 150); do
	if curl -fsS -o /dev/null "http://127.0.0.1:$baseline_port/" 2>/dev/null; then break; fi
	if ! kill -0 "$nginx_pid" 2>/dev/null; then
		echo "loadtest.sh: nginx exited during start-up" >&2
		exit 1
	fi
	sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$baseline_port/" || {
	echo "loadtest.sh: nginx is not answering after 15 s" >&2
	exit 1
}

step "seeding Better Auth through its API, then the load"
echo
# In the background so that an interrupt runs cleanup at once (bash runs
# traps only between foreground commands); timeout puts it in a process
# group of its own, out of reach of the terminal's ^C.
timeout --signal=TERM --kill-after=10s 5m "$work/loadtest" \
	-better-auth "$ba_url" \
	-proxy "http://127.0.0.1:$front_port" \
	-baseline "http://127.0.0.1:$baseline_port" \
	-metrics "http://127.0.0.1:$ops_port/metrics" \
	"$@" &
load_pid=$!
rc=0
wait "$load_pid" || rc=$?
load_pid=""
exit "$rc"
