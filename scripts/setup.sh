#!/usr/bin/env bash
# setup.sh: install the tools the tests and make targets run, from Debian's
# packages, when they are missing. `make test` runs it once before the
# tests, which only look for these binaries (and fail under CI=true,
# skip elsewhere, when one is missing): no test installs anything.
#
#   nginx           internal/httpauthz's auth_request test, make loadtest
#   docker-compose  deploy's Compose validation (unless `docker compose` works)
#   caddy           forward_auth in front of the sidecar
#   pgbouncer       the sidecar behind a connection pooler
#
# `setup.sh gremlins` installs instead one Go tool, with `go install` (no
# Debian package has it), which make mutation runs and make test does not:
#
#   gremlins        mutation testing, pinned to $GREMLINS_VERSION, in
#                   "$(go env GOPATH)/bin"
#
# Idempotent: with everything present it installs nothing and runs no
# apt-get at all; `apt-get update` runs only when something must be
# installed. It never starts a daemon: a package's postinst would start a
# system nginx, caddy or pgbouncer, so a policy-rc.d forbids that for the
# duration of the install (when the machine has none). Needs root or
# password-less sudo only when something is missing.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

GREMLINS_VERSION=v0.6.0

# install_gremlins: go install the pinned gremlins into "$(go env
# GOPATH)/bin" unless that version is there already (go version -m reads
# the version a binary was built from; gremlins --version says "dev").
install_gremlins() {
	local dir bin
	dir="$(go env GOPATH)/bin"
	bin="$dir/gremlins"
	if [[ -x $bin ]] && go version -m "$bin" 2>/dev/null |
		grep -qE "^[[:space:]]+mod[[:space:]]+github.com/go-gremlins/gremlins[[:space:]]+$GREMLINS_VERSION([[:space:]]|$)"; then
		log "gremlins $GREMLINS_VERSION is installed ($bin)"
		return 0
	fi
	log "installing gremlins $GREMLINS_VERSION into $dir"
	GOBIN="$dir" go install "github.com/go-gremlins/gremlins/cmd/gremlins@$GREMLINS_VERSION" >&2
}

if [[ ${1:-} == gremlins ]]; then
	install_gremlins
	exit 0
fi

# have NAME: whether the binary NAME is installed. /usr/sbin is not on a
# non-root user's PATH on Debian, where nginx and pgbouncer live.
have() { command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 ]]; }

compose_ok() {
	{ command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; } ||
		{ command -v docker-compose >/dev/null 2>&1 && docker-compose version >/dev/null 2>&1; }
}

missing=()
have nginx || missing+=(nginx)
compose_ok || missing+=(docker-compose)
have caddy || missing+=(caddy)
have pgbouncer || missing+=(pgbouncer)

if [[ ${#missing[@]} -eq 0 ]]; then
	log "nginx, a Compose parser, caddy and pgbouncer are installed"
	exit 0
fi

command -v apt-get >/dev/null 2>&1 || {
	log "missing: ${missing[*]}, and apt-get is not available; install them yourself"
	exit 1
}
sudo=()
if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo=(sudo -n)
	else
		log "missing: ${missing[*]}; installing them needs root (or password-less sudo)"
		exit 1
	fi
fi

policy=/usr/sbin/policy-rc.d
added_policy=0
if [[ ! -e $policy ]]; then
	printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
	"${sudo[@]}" chmod 0755 "$policy"
	added_policy=1
fi
cleanup() {
	if [[ $added_policy -eq 1 ]]; then
		"${sudo[@]}" rm -f "$policy"
	fi
}
trap cleanup EXIT

log "installing ${missing[*]}"
# Wait for the dpkg lock rather than fail: another engineer's install may
# hold it.
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
"${apt[@]}" update -qq >&2
"${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >&2

for bin in nginx caddy pgbouncer; do
	have "$bin" || { log "$bin is still missing after the install"; exit 1; }
done
compose_ok || { log "no working Compose parser after the install"; exit 1; }
log "installed ${missing[*]}"
