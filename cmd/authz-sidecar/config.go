package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/cache"
	"github.com/authz-sidecar/authz-sidecar/internal/extauthz"
	"github.com/authz-sidecar/authz-sidecar/internal/pg"
)

// serveConfig is every setting of "serve", parsed once, here. Each flag
// has an environment variable; a flag on the command line wins.
type serveConfig struct {
	Policies    string
	GRPCAddr    string
	HTTPAddr    string
	DatabaseURL string
	RedisURL    string
	RedisPrefix string
	// RedisMode is the Redis topology (single, cluster, sentinel) and
	// RedisMasterName the Sentinel master's name.
	RedisMode       string
	RedisMasterName string
	// SessionRedis* reach Better Auth's secondary storage, read when the
	// policy says session.storage: secondary.
	SessionRedisURL        string
	SessionRedisPrefix     string
	SessionRedisMode       string
	SessionRedisMasterName string
	LogLevel               string
	LogFormat              string

	CheckTimeout    time.Duration
	MaxInFlight     int
	LoadTimeout     time.Duration
	L1TTL           time.Duration
	L1NegativeTTL   time.Duration
	L1MaxBytes      int64
	L2TTL           time.Duration
	L2NegativeTTL   time.Duration
	TTLJitter       float64
	RedisTimeout    time.Duration
	JWKSRefresh     time.Duration
	JWKSMinRefresh  time.Duration
	TokenCacheBytes int64
	TokenCacheTTL   time.Duration
	MemoryLimit     int64

	InvalidationChannel string
	PGListen            bool
	PGListenURL         string
	InvalidationSkew    time.Duration
	PGMaxConns          int
	PGQueryMode         string
	LogAllowEvery       uint64
	Reflection          bool
	GRPCCodec           string
	GRPCWorkers         int
	DrainTimeout        time.Duration

	// PGPrimaryURL reaches the primary when DatabaseURL is a hot standby,
	// and PGReplicaMaxWait bounds a read's wait for the standby to replay
	// an invalidated change (docs/consistency.md, "Read replicas").
	PGPrimaryURL     string
	PGReplicaMaxWait time.Duration

	SecretFile string

	OTLPEndpoint     string
	OTLPInsecure     bool
	TraceSampleRatio float64

	HTTPAuthzAddr        string
	HTTPAuthzTrusted     string
	HTTPAuthzEnvoyPrefix string

	DecisionIDResponseHeader bool
}

const serveUsage = `Usage: authz-sidecar serve [flags]

Runs the Envoy ext_authz v3 gRPC server (and, when asked, the plain-HTTP
decision endpoint), with health and metrics on --http-addr. Every flag can
also be set by the environment variable in brackets; a flag wins.
docs/configuration.md describes them with examples.

Flags:
`

// parseServeConfig reads serve's flags over its environment variables over
// the defaults.
func parseServeConfig(args []string, getenv func(string) string, stdout, stderr io.Writer) (serveConfig, error) {
	c := serveConfig{
		Policies:            "./policies.yaml",
		GRPCAddr:            "127.0.0.1:9191",
		HTTPAddr:            "127.0.0.1:9192",
		RedisPrefix:         "authz:",
		RedisMode:           "single",
		SessionRedisMode:    "single",
		LogLevel:            "info",
		LogFormat:           "json",
		CheckTimeout:        100 * time.Millisecond,
		MaxInFlight:         256,
		LoadTimeout:         2 * time.Second,
		L1TTL:               30 * time.Second,
		L1NegativeTTL:       5 * time.Second,
		L1MaxBytes:          64 << 20,
		L2TTL:               5 * time.Minute,
		L2NegativeTTL:       30 * time.Second,
		TTLJitter:           0.1,
		RedisTimeout:        25 * time.Millisecond,
		JWKSRefresh:         5 * time.Minute,
		JWKSMinRefresh:      2 * time.Second,
		TokenCacheBytes:     32 << 20,
		TokenCacheTTL:       time.Minute,
		MemoryLimit:         -1,
		TraceSampleRatio:    1,
		InvalidationChannel: "authz:invalidate",
		InvalidationSkew:    500 * time.Millisecond,
		PGMaxConns:          4,
		PGReplicaMaxWait:    pg.DefaultFenceMaxWait,
		PGQueryMode:         "prepare",
		GRPCCodec:           extauthz.CodecLean,
		GRPCWorkers:         -1,
		LogAllowEvery:       0,
		DrainTimeout:        10 * time.Second,
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var envErrs []error
	str := func(p *string, name, env, help string) {
		if v := getenv(env); v != "" {
			*p = v
		}
		fs.StringVar(p, name, *p, help+" ($"+env+")")
	}
	dur := func(p *time.Duration, name, env, help string) {
		if v := getenv(env); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				envErrs = append(envErrs, fmt.Errorf("$%s: %w", env, err))
			}
			*p = d
		}
		fs.DurationVar(p, name, *p, help+" ($"+env+")")
	}
	i64 := func(p *int64, name, env, help string) {
		if v := getenv(env); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				envErrs = append(envErrs, fmt.Errorf("$%s: %w", env, err))
			}
			*p = n
		}
		fs.Int64Var(p, name, *p, help+" ($"+env+")")
	}
	u64 := func(p *uint64, name, env, help string) {
		if v := getenv(env); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				envErrs = append(envErrs, fmt.Errorf("$%s: %w", env, err))
			}
			*p = n
		}
		fs.Uint64Var(p, name, *p, help+" ($"+env+")")
	}
	integer := func(p *int, name, env, help string) {
		if v := getenv(env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				envErrs = append(envErrs, fmt.Errorf("$%s: %w", env, err))
			}
			*p = n
		}
		fs.IntVar(p, name, *p, help+" ($"+env+")")
	}
	float := func(p *float64, name, env, help string) {
		if v := getenv(env); v != "" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				envErrs = append(envErrs, fmt.Errorf("$%s: %w", env, err))
			}
			*p = f
		}
		fs.Float64Var(p, name, *p, help+" ($"+env+")")
	}
	boolean := func(p *bool, name, env, help string) {
		if v := getenv(env); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				envErrs = append(envErrs, fmt.Errorf("$%s: %w", env, err))
			}
			*p = b
		}
		fs.BoolVar(p, name, *p, help+" ($"+env+")")
	}

	str(&c.Policies, "policies", "AUTHZ_POLICIES", "policy file")
	str(&c.GRPCAddr, "grpc-addr", "AUTHZ_GRPC_ADDR", "ext_authz gRPC listen address")
	str(&c.HTTPAddr, "http-addr", "AUTHZ_HTTP_ADDR", "health (/healthz, /readyz) and metrics (/metrics) listen address")
	str(&c.DatabaseURL, "database-url", "DATABASE_URL", "Better Auth's PostgreSQL database (required; opened read-only)")
	str(&c.RedisURL, "redis-url", "REDIS_URL", "Redis for the L2 tier, e.g. redis://127.0.0.1:6379/0 (empty: no L2 tier)")
	str(&c.RedisPrefix, "redis-prefix", "AUTHZ_REDIS_PREFIX", "prefix of every Redis key")
	str(&c.RedisMode, "redis-mode", "AUTHZ_REDIS_MODE", "Redis topology: single, cluster (--redis-url and its addr=host:port parameters are seed nodes) or sentinel (they are Sentinels; see --redis-master-name)")
	str(&c.RedisMasterName, "redis-master-name", "AUTHZ_REDIS_MASTER_NAME", "Sentinel master name (--redis-mode sentinel)")
	str(&c.SessionRedisURL, "session-redis-url", "AUTHZ_SESSION_REDIS_URL", "Better Auth's secondaryStorage Redis, where sessions are read when the policy says session.storage: secondary (same URL forms as --redis-url)")
	str(&c.SessionRedisPrefix, "session-redis-prefix", "AUTHZ_SESSION_REDIS_PREFIX", "prefix the application's secondaryStorage puts before Better Auth's keys (Better Auth adds none)")
	str(&c.SessionRedisMode, "session-redis-mode", "AUTHZ_SESSION_REDIS_MODE", "topology of --session-redis-url: single, cluster or sentinel")
	str(&c.SessionRedisMasterName, "session-redis-master-name", "AUTHZ_SESSION_REDIS_MASTER_NAME", "Sentinel master name of --session-redis-url")
	str(&c.LogLevel, "log-level", "AUTHZ_LOG_LEVEL", "debug, info, warn or error")
	str(&c.LogFormat, "log-format", "AUTHZ_LOG_FORMAT", "json or console")
	dur(&c.CheckTimeout, "check-timeout", "AUTHZ_CHECK_TIMEOUT", "deadline of one Check; keep it below Envoy's ext_authz timeout")
	integer(&c.MaxInFlight, "max-in-flight", "AUTHZ_MAX_IN_FLIGHT", "most checks decided at once, gRPC and HTTP together; the excess is answered 503 overloaded at once (0: unlimited)")
	dur(&c.LoadTimeout, "load-timeout", "AUTHZ_LOAD_TIMEOUT", "deadline of one load (permissions, a session, an API key) from Redis/Postgres (runs detached from the request)")
	dur(&c.L1TTL, "l1-ttl", "AUTHZ_L1_TTL", "in-process cache TTL of an answer: a permission set, a session, an API key (never past a session's or key's expiry)")
	dur(&c.L1NegativeTTL, "l1-negative-ttl", "AUTHZ_L1_NEGATIVE_TTL", "in-process cache TTL of a not-a-member, no-such-user, no-such-session or no-such-key answer")
	i64(&c.L1MaxBytes, "l1-max-bytes", "AUTHZ_L1_MAX_BYTES", "in-process cache memory budget in bytes")
	dur(&c.L2TTL, "l2-ttl", "AUTHZ_L2_TTL", "Redis TTL of an answer: a permission set, a session, an API key (never past a session's or key's expiry)")
	dur(&c.L2NegativeTTL, "l2-negative-ttl", "AUTHZ_L2_NEGATIVE_TTL", "Redis TTL of a not-a-member, no-such-user, no-such-session or no-such-key answer")
	float(&c.TTLJitter, "cache-ttl-jitter", "AUTHZ_CACHE_TTL_JITTER", "largest share of an L1 or L2 TTL taken off each entry at random, so entries loaded together (a fleet started at once) expire apart; 0 disables, below 1")
	dur(&c.RedisTimeout, "redis-timeout", "AUTHZ_REDIS_TIMEOUT", "deadline of one Redis call (then Postgres is asked)")
	dur(&c.JWKSRefresh, "jwks-refresh", "AUTHZ_JWKS_REFRESH", "background JWKS refresh interval")
	dur(&c.JWKSMinRefresh, "jwks-min-refresh", "AUTHZ_JWKS_MIN_REFRESH", "least time between JWKS fetches triggered by tokens with an unknown kid")
	i64(&c.TokenCacheBytes, "token-cache-bytes", "AUTHZ_TOKEN_CACHE_BYTES", "memory budget of the verified-token cache in bytes (0: default)")
	dur(&c.TokenCacheTTL, "token-cache-ttl", "AUTHZ_TOKEN_CACHE_TTL", "longest a verified token is served from cache (never past its exp)")
	i64(&c.MemoryLimit, "memory-limit", "AUTHZ_MEMORY_LIMIT", "Go soft memory limit in bytes; -1: the L1 and token-cache budgets + 32 MiB; 0: none ($GOMEMLIMIT, if set, wins)")
	str(&c.InvalidationChannel, "invalidation-channel", "AUTHZ_INVALIDATION_CHANNEL", "Redis pub/sub channel of cache invalidations (needs --redis-url; empty: none)")
	boolean(&c.PGListen, "pg-listen", "AUTHZ_PG_LISTEN", "LISTEN on PostgreSQL channel authz_invalidate (sql/invalidation-triggers.sql) and republish to the invalidation channel")
	str(&c.PGListenURL, "pg-listen-url", "AUTHZ_PG_LISTEN_URL", "database URL for --pg-listen; must be the primary, not a standby (empty: --database-url)")
	str(&c.PGPrimaryURL, "pg-primary-url", "AUTHZ_PG_PRIMARY_URL", "the primary, direct (no pooler), when --database-url is a hot standby and caches are invalidated: after each invalidation, reads wait until the standby has replayed the primary's position (empty: --pg-listen-url)")
	dur(&c.PGReplicaMaxWait, "pg-replica-max-wait", "AUTHZ_PG_REPLICA_MAX_WAIT", "longest a read on a hot standby waits for it to replay an invalidated change; then the check fails closed (503, cause replica_lag); keep it below --load-timeout")
	dur(&c.InvalidationSkew, "invalidation-skew", "AUTHZ_INVALIDATION_SKEW", "largest clock difference between replicas tolerated when judging shared cache entries")
	integer(&c.PGMaxConns, "pg-max-conns", "AUTHZ_PG_MAX_CONNS", "PostgreSQL pool size; connections open lazily and close after 1 min idle")
	str(&c.PGQueryMode, "pg-query-mode", "AUTHZ_PG_QUERY_MODE", "prepare (named prepared statements), or describe / simple (no named statements: through PgBouncer in transaction pooling mode)")
	u64(&c.LogAllowEvery, "log-allow-every", "AUTHZ_LOG_ALLOW_EVERY", "log one allow decision in N (0: none); denies are always logged")
	boolean(&c.Reflection, "grpc-reflection", "AUTHZ_GRPC_REFLECTION", "enable gRPC server reflection")
	integer(&c.GRPCWorkers, "grpc-workers", "AUTHZ_GRPC_WORKERS", "gRPC stream workers: goroutines kept to run checks, whose grown stacks are reused instead of grown anew for every check (-1: 4 per CPU; 0: a new goroutine per check, gRPC's default)")
	str(&c.GRPCCodec, "grpc-codec", "AUTHZ_GRPC_CODEC", "how Check requests are read: lean (only the fields a decision uses, the rest validated and skipped; answers in pooled buffers) or proto (gRPC's standard codec, the whole message decoded); both decide alike")
	dur(&c.DrainTimeout, "drain-timeout", "AUTHZ_DRAIN_TIMEOUT", "on SIGTERM, how long in-flight checks may take to finish")

	str(&c.OTLPEndpoint, "otlp-endpoint", "AUTHZ_OTLP_ENDPOINT", "OpenTelemetry: send a span per decision (with the token check and each cache tier) to this OTLP gRPC receiver, host:port (empty: tracing off)")
	boolean(&c.OTLPInsecure, "otlp-insecure", "AUTHZ_OTLP_INSECURE", "OpenTelemetry: no TLS to the OTLP receiver (a collector on loopback or in the pod)")
	float(&c.TraceSampleRatio, "trace-sample-ratio", "AUTHZ_TRACE_SAMPLE_RATIO", "OpenTelemetry: share of new traces sampled; a request's sampled traceparent is always followed")
	str(&c.SecretFile, "better-auth-secret-file", "AUTHZ_BETTER_AUTH_SECRET_FILE", "file holding Better Auth's secret, which signs session cookies (default: $BETTER_AUTH_SECRETS' first entry, else $BETTER_AUTH_SECRET, as Better Auth reads them)")
	str(&c.HTTPAuthzAddr, "http-authz-addr", "AUTHZ_HTTP_AUTHZ_ADDR", "listen address of the plain-HTTP decision endpoint for nginx auth_request, Traefik/Caddy forward auth and Envoy's HTTP ext_authz (empty: off)")
	str(&c.HTTPAuthzTrusted, "http-authz-trusted", "AUTHZ_HTTP_AUTHZ_TRUSTED", "comma-separated CIDRs of the proxies allowed to ask over HTTP (empty: loopback only)")
	str(&c.HTTPAuthzEnvoyPrefix, "http-authz-envoy-prefix", "AUTHZ_HTTP_AUTHZ_ENVOY_PREFIX", "Envoy http_service.path_prefix for Envoy-style HTTP checks, e.g. /envoy (empty: off)")

	// Decision ids for clients.
	boolean(&c.DecisionIDResponseHeader, "decision-id-response-header", "AUTHZ_DECISION_ID_RESPONSE_HEADER", "also send x-authz-decision-id to the client: with every gRPC answer, and with HTTP-mode denies (on HTTP-mode allows the proxy decides)")

	if err := parseFlags(fs, args, serveUsage, stdout, stderr); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "serve takes no arguments, got %q\n", fs.Args())
		return c, errUsage
	}
	if len(envErrs) > 0 {
		return c, fmt.Errorf("bad environment: %w", errors.Join(envErrs...))
	}
	if getenv("GOMEMLIMIT") != "" {
		c.MemoryLimit = 0 // the Go runtime applies the operator's own limit
	}
	if c.DatabaseURL == "" {
		return c, errors.New("a database is required: set --database-url or $DATABASE_URL")
	}
	if c.InvalidationSkew < 0 {
		return c, errors.New("--invalidation-skew must not be negative")
	}
	if _, err := pg.ParseQueryMode(c.PGQueryMode); err != nil {
		return c, fmt.Errorf("--pg-query-mode: %w", err)
	}
	if !slices.Contains(extauthz.Codecs[:], c.GRPCCodec) {
		return c, fmt.Errorf("--grpc-codec %q: want one of %v", c.GRPCCodec, extauthz.Codecs)
	}
	if c.GRPCWorkers < -1 {
		return c, errors.New("--grpc-workers must be -1 (4 per CPU), 0 (none) or more")
	}
	if c.PGMaxConns < 1 {
		return c, errors.New("--pg-max-conns must be at least 1")
	}
	for flag, mode := range map[string]string{"--redis-mode": c.RedisMode, "--session-redis-mode": c.SessionRedisMode} {
		switch mode {
		case cache.RedisSingle, cache.RedisCluster, cache.RedisSentinel:
		default:
			return c, fmt.Errorf("%s %q: want single, cluster or sentinel", flag, mode)
		}
	}
	if c.TraceSampleRatio < 0 || c.TraceSampleRatio > 1 {
		return c, errors.New("--trace-sample-ratio must be between 0 and 1")
	}
	if c.TTLJitter < 0 || c.TTLJitter >= 1 {
		return c, errors.New("--cache-ttl-jitter must be at least 0 and below 1")
	}
	if c.MaxInFlight < 0 {
		return c, errors.New("--max-in-flight must not be negative (0: unlimited)")
	}
	if c.CheckTimeout <= 0 || c.LoadTimeout <= 0 {
		return c, errors.New("--check-timeout and --load-timeout must be positive")
	}
	if c.PGReplicaMaxWait <= 0 {
		return c, errors.New("--pg-replica-max-wait must be positive")
	}
	return c, nil
}

// invalidates reports whether the caches are invalidated: by the Redis
// channel (which needs Redis) or by database notifications.
func (c serveConfig) invalidates() bool {
	return (c.InvalidationChannel != "" && c.RedisURL != "") || c.PGListen
}
