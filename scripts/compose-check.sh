#!/usr/bin/env bash
# compose-check.sh: validate docker-compose.yml with a real Compose parser.
# No Docker engine is needed: `config` only parses, interpolates and checks
# the file against the Compose schema.
#
#   scripts/compose-check.sh [FILE]     FILE defaults to docker-compose.yml
#
# Uses `docker compose` (the v2 plugin) when it works, else `docker-compose`
# (Debian 12's docker-compose package is v1.29.2, which scripts/setup.sh
# installs; this script installs nothing). Relative paths in FILE are
# resolved against the repository root, whatever FILE's directory.
#
# Exit status: 0 valid; 1 invalid (the parser's message is printed);
# 2 no Compose parser is installed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
file="${1:-$root/docker-compose.yml}"
[[ -f "$file" ]] || { echo "compose-check.sh: $file: no such file" >&2; exit 1; }
file="$(cd "$(dirname "$file")" && pwd)/$(basename "$file")"

# find_parser prints the command that runs Compose, or fails.
find_parser() {
	if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
		echo "docker compose"
	elif command -v docker-compose >/dev/null 2>&1 && docker-compose version >/dev/null 2>&1; then
		echo "docker-compose"
	else
		return 1
	fi
}

if ! parser="$(find_parser)"; then
	echo "compose-check.sh: no Compose parser: run scripts/setup.sh (Debian's docker-compose) or install the docker compose plugin" >&2
	exit 2
fi

# --profile bench: validate the profiled services too.
# shellcheck disable=SC2086 # $parser is one or two words
if ! out="$($parser --project-directory "$root" -f "$file" --profile bench config -q 2>&1)"; then
	echo "compose-check.sh: $file is not valid ($parser):" >&2
	echo "$out" >&2
	exit 1
fi
# Warnings (an unset variable, a deprecated key) are printed but pass.
[[ -z "$out" ]] || echo "$out" >&2
echo "compose-check.sh: $(basename "$file") is valid ($parser $($parser version --short 2>/dev/null || true))"
