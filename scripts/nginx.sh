#!/usr/bin/env bash
# nginx.sh: make sure an nginx binary is installed (Debian's package) and
# print its path. Idempotent: when nginx is already there it only prints.
#
# Used by internal/httpauthz's TestNginxAuthRequest, which runs nginx in the
# foreground from a temporary prefix; nothing here starts or configures a
# system nginx.
#
# Debian 12 ships the binary in "nginx" (1.22, with the auth_request module);
# "nginx-light" is only a transitional package there that pulls "nginx" plus
# the echo module, so we install "nginx" directly.
set -euo pipefail

find_nginx() {
	# /usr/sbin is not on a non-root user's PATH on Debian.
	command -v nginx 2>/dev/null && return 0
	[[ -x /usr/sbin/nginx ]] && { echo /usr/sbin/nginx; return 0; }
	return 1
}

if bin=$(find_nginx); then
	echo "$bin"
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "nginx.sh: nginx is not installed and apt-get is not available; install nginx yourself" >&2
	exit 1
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo=(sudo -n)
	else
		echo "nginx.sh: installing nginx needs root (or passwordless sudo)" >&2
		exit 1
	fi
fi

# The package's postinst would start a system nginx on port 80 unless a
# policy-rc.d forbids it (Docker images ship one). Add one for the duration
# of the install only if none exists, so we never leave a daemon behind.
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

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >&2
"${sudo[@]}" apt-get install -y -qq --no-install-recommends nginx >&2

if ! bin=$(find_nginx); then
	echo "nginx.sh: nginx was installed but no nginx binary was found" >&2
	exit 1
fi
echo "$bin"
