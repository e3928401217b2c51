# authz-sidecar. `make demo` runs it; `make test` tests it (what CI runs);
# `make check` is the quick inner loop.
GO       ?= go
BIN      := bin/authz-sidecar
PKGS     := ./...
# What make check runs: every package but the suites that drive built
# binaries and other programs (test/e2e: Better Auth on Bun; test/faults;
# deploy: Compose and Dockerfiles).
CHECK_PKGS = $(shell $(GO) list ./... | grep -v -e /test/ -e /deploy)
FUZZTIME ?= 20s

.PHONY: all build docs test check e2e demo bench fuzz lint setup services betterauth clean compose-check image soak loadtest envoy-routes fleet mutation

all: build

build:
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/authz-sidecar

# Rewrites the generated route lists of envoy/envoy.yaml and
# envoy/envoy-compose.yaml (between their BEGIN/END generated routes
# markers) from policies.yaml; `go test ./envoy/` fails while they disagree.
envoy-routes: build
	@for f in envoy/envoy.yaml envoy/envoy-compose.yaml; do \
	  $(BIN) envoy-routes --policies policies.yaml --cluster app --indent 24 > $$f.routes || exit 1; \
	  awk -v routes=$$f.routes '/# END generated routes/ { skip = 0 } !skip { print } /# BEGIN generated routes/ { while ((getline l < routes) > 0) print l; skip = 1 }' $$f > $$f.new || exit 1; \
	  mv $$f.new $$f; rm -f $$f.routes; \
	done

# Rewrites the generated parts of docs/configuration.md (every command's
# --help); go test ./cmd/authz-sidecar fails while they differ.
docs:
	$(GO) test ./cmd/authz-sidecar -run TestConfigurationDoc -count=1 -update

# Starts (or installs) PostgreSQL and Redis when they are not answering.
services:
	@bash scripts/services.sh

# Installs what the tests and targets run when it is missing (nginx,
# Debian's docker-compose, caddy, pgbouncer); tests themselves install
# nothing.
setup:
	@bash scripts/setup.sh

# Installs the Better Auth fixture app (npm ci) when its lockfile changed.
betterauth:
	@bash scripts/betterauth.sh install

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run ./cmd/authz-sidecar validate policies.yaml
	$(GO) run ./cmd/authz-sidecar test policies_test.yaml >/dev/null

# Everything: unit, integration (real Postgres, Redis, HTTP JWKS, gRPC),
# fuzz seeds and the end-to-end suite against a real Better Auth, with -race.
test: setup services betterauth lint
	$(GO) test -race -count=1 -timeout 12m $(PKGS)

# The inner loop, under a minute with a warm build cache: unit and
# in-process tests (real Postgres and Redis, the serve command run
# in-process), -short and without -race; no Better Auth, end-to-end, fault,
# deploy or nginx tests. make test runs everything, with -race.
check: services
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(CHECK_PKGS)
	$(GO) test -short -count=1 -timeout 5m $(CHECK_PKGS)

# Only the end-to-end suite against a real Better Auth on Bun.
e2e: services betterauth
	$(GO) test -race -count=1 -timeout 10m -run 'E2E' -v ./test/e2e/

demo: services betterauth build
	@bash scripts/demo.sh

# Go micro-benchmarks beside the code, then the load benchmark (scripts/bench.sh):
# the sidecar binary against a do-nothing ext_authz server with the same
# generator and requests; prints the table and writes
# bench/results/<date>-<commit>.{txt,json} and bench/results/latest.txt.
bench: services
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...
	@bash scripts/bench.sh
	@bash scripts/betterauth.sh install >/dev/null
	$(GO) run ./bench/revocation -sidecar bin/authz-sidecar

fuzz:
	@for t in $$($(GO) test -list '^Fuzz' ./internal/policy/ | grep ^Fuzz); do \
	  $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./internal/policy/ || exit 1; done
	@for t in $$($(GO) test -list '^Fuzz' ./internal/authn/ | grep ^Fuzz); do \
	  $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./internal/authn/ || exit 1; done
	@for t in $$($(GO) test -list '^Fuzz' ./internal/extauthz/ | grep ^Fuzz); do \
	  $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./internal/extauthz/ || exit 1; done

# The docker-compose stack run natively on loopback (no Docker engine or Envoy
# here): Better Auth on Bun, the sidecar in HTTP mode, nginx with auth_request
# in front of an echo upstream. A closed-loop load (80% allowed / 20% denied,
# every answer checked) through nginx, then through the same nginx without
# auth_request; prints both and their ratio. Fails on any wrong answer.
# LOADTEST_DURATION (10s), LOADTEST_WARMUP (2s), LOADTEST_WORKERS (32) override.
loadtest: services betterauth
	@bash scripts/loadtest.sh

# Fault-injection soak, not part of `make test`: the race-built sidecar at
# 500 checks/s for 60 s while Redis is killed/restarted and Postgres stalls;
# fails on any wrong decision. SOAK_RATE / SOAK_DURATION override.
soak: services
	@bash scripts/soak.sh

# Fleet simulation, not part of `make test` (go test runs a 3-sidecar
# version): FLEET_SIDECARS (40) sidecars started at once, cold, against one
# PostgreSQL and one Redis, under a fixed-rate mix of users and
# organizations with every answer checked; then a rolling and a full
# restart and an idle spell. Prints PostgreSQL connections and
# transactions/s, Redis commands/s, the share of lookups answered by L1, L2
# and PostgreSQL over time, and what 1000 sidecars would cost
# (docs/fleet.md). FLEET_RATE (400), FLEET_DURATION (20s), FLEET_IDLE
# (2m30s), FLEET_PG_MAX_CONNS (1), FLEET_USERS, FLEET_ORGS override; see
# bench/fleet/main.go.
fleet: services
	$(GO) run ./bench/fleet

# Mutation testing of the decision core (internal/authz, policy, roles,
# authn) with gremlins, which setup installs once: fails when a package's
# tests kill under 95% of the mutants they run (efficacy) or run under 90%
# of all its mutants (mutant coverage). Prints only the mutants that lived
# or were not covered. Slow: about 50 minutes on the shared 2-core machine
# (35 to 60 with the load; docs/testing.md). Not part of make test.
mutation:
	@bash scripts/setup.sh gremlins
	@gremlins="$$($(GO) env GOPATH)/bin/gremlins"; fail=0; \
	for p in ./internal/authz ./internal/policy ./internal/roles ./internal/authn; do \
	  echo "mutation: $$p"; \
	  "$$gremlins" unleash --workers 2 --timeout-coefficient 20 --output-statuses lc \
	    --threshold-efficacy 95 --threshold-mcover 90 $$p || fail=1; \
	done; exit $$fail

# Validates docker-compose.yml with a real Compose parser (setup installs Debian's docker-compose).
compose-check: setup
	@bash scripts/compose-check.sh

image:
	docker build -t authz-sidecar:dev .

clean:
	rm -rf bin
