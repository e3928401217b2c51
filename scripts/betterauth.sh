#!/usr/bin/env bash
# Installs, migrates, starts and stops the Better Auth fixture server in
# test/betterauth (used by the Go end-to-end tests and `make demo`).
#
#   scripts/betterauth.sh install   npm ci when node_modules is missing or the lockfile changed
#   scripts/betterauth.sh migrate   create/alter the Better Auth tables in $DATABASE_URL, then exit
#   scripts/betterauth.sh start     start the server in the background, wait for /healthz,
#                                   print its base URL
#   scripts/betterauth.sh stop      stop the server started by `start`
#   scripts/betterauth.sh roles     rewrite test/betterauth/roles.json from access.ts (print-roles.ts)
#
# Needs Node >= 20 and npm; the Bun runtime comes from the npm package `bun`.
# Environment: DATABASE_URL (required for migrate/start), PORT (3000), HOST (127.0.0.1),
# BETTERAUTH_PIDFILE (/tmp/authz-betterauth.pid), BETTERAUTH_LOG (/tmp/authz-betterauth.log),
# plus everything test/betterauth/server.ts reads (MIGRATE, JWT_EXPIRATION, ADMIN_EMAILS, ...).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/test/betterauth"
bun="$dir/node_modules/.bin/bun"
stamp="$dir/node_modules/.authz-lock.sha256"
pidfile="${BETTERAUTH_PIDFILE:-/tmp/authz-betterauth.pid}"
logfile="${BETTERAUTH_LOG:-/tmp/authz-betterauth.log}"
port="${PORT:-3000}"
host="${HOST:-127.0.0.1}"

die() {
	echo "betterauth.sh: $*" >&2
	exit 1
}

lock_sum() {
	cat "$dir/package.json" "$dir/package-lock.json" "$dir/.npmrc" | sha256sum | cut -d' ' -f1
}

install() {
	command -v npm >/dev/null || die "npm not found (Node >= 20 with npm is required)"
	local want
	want="$(lock_sum)"
	if [[ -d "$dir/node_modules" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$bun" --version >/dev/null 2>&1; then
		return 0
	fi
	echo "betterauth.sh: npm ci in $dir" >&2
	# .npmrc (legacy-peer-deps) lets @better-auth/api-key sit beside better-auth.
	(cd "$dir" && npm ci --no-audit --no-fund) >&2
	# The npm package `bun` puts the real binary in place with a postinstall
	# script; an npm that skips dependency scripts leaves a placeholder.
	if ! "$bun" --version >/dev/null 2>&1; then
		(cd "$dir/node_modules/bun" && node install.js) >&2
	fi
	"$bun" --version >/dev/null 2>&1 || die "$bun does not run after npm ci"
	echo "$want" >"$stamp"
}

need_database_url() {
	[[ -n "${DATABASE_URL:-}" ]] || die "DATABASE_URL is required, e.g. postgres://postgres@127.0.0.1:5432/betterauth"
}

migrate() {
	need_database_url
	install
	(cd "$dir" && MIGRATE_ONLY=1 "$bun" server.ts)
}

running_pid() {
	[[ -f "$pidfile" ]] || return 1
	local pid
	pid="$(cat "$pidfile")"
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
	# A stale pidfile may name a reused PID: only claim our own server.
	if [[ -r "/proc/$pid/cmdline" ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'server\.ts'; then
		return 1
	fi
	echo "$pid"
}

healthy() {
	local url="http://$host:$port/healthz"
	if command -v curl >/dev/null; then
		curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null
	else
		node -e 'fetch(process.argv[1], { signal: AbortSignal.timeout(2000) })
			.then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "$url"
	fi
}

start() {
	need_database_url
	install
	local pid
	if pid="$(running_pid)"; then
		die "already running with pid $pid (pidfile $pidfile); run: $0 stop"
	fi
	: >"$logfile"
	# exec keeps the recorded PID the server's own; stdio goes to the log so a
	# caller reading this script's output is not held open by the server.
	(cd "$dir" && exec "$bun" server.ts) </dev/null >>"$logfile" 2>&1 &
	pid=$!
	echo "$pid" >"$pidfile"

	local deadline=$((SECONDS + 30))
	until healthy; do
		if ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$pidfile"
			tail -n 40 "$logfile" >&2 || true
			die "server exited during start-up (log: $logfile)"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 40 "$logfile" >&2 || true
			kill "$pid" 2>/dev/null || true
			rm -f "$pidfile"
			die "server not healthy after 30 s (log: $logfile)"
		fi
		sleep 0.2
	done
	echo "${BETTER_AUTH_URL:-http://127.0.0.1:$port}"
}

roles() {
	install
	# EXTRA_STATIC_ROLE would add a role to the output: roles.json is the app's own.
	(cd "$dir" && EXTRA_STATIC_ROLE= "$bun" print-roles.ts >roles.json.tmp && mv roles.json.tmp roles.json)
	echo "betterauth.sh: wrote $dir/roles.json" >&2
}

stop() {
	local pid
	if ! pid="$(running_pid)"; then
		rm -f "$pidfile"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$pidfile"
}

case "${1:-}" in
install) install ;;
migrate) migrate ;;
start) start ;;
stop) stop ;;
roles) roles ;;
*)
	echo "usage: $0 install|migrate|start|stop|roles" >&2
	exit 2
	;;
esac
