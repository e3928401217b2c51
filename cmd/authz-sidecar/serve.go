package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/cache"
	"github.com/authz-sidecar/authz-sidecar/internal/extauthz"
	"github.com/authz-sidecar/authz-sidecar/internal/httpauthz"
	"github.com/authz-sidecar/authz-sidecar/internal/invalidate"
	"github.com/authz-sidecar/authz-sidecar/internal/observe"
	"github.com/authz-sidecar/authz-sidecar/internal/pg"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
	"github.com/authz-sidecar/authz-sidecar/internal/tracing"
)

func newLogger(level, format string, out io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch format {
	case "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	case "console":
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		return nil, fmt.Errorf("log format %q: want json or console", format)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(out)), lvl)), nil
}

// listeners are the sockets the sidecar serves on. Tests pass their own.
type listeners struct {
	grpc, ops net.Listener
	// httpAuthz is nil when the HTTP decision endpoint is off.
	httpAuthz net.Listener
}

func (l listeners) close() {
	for _, lis := range []net.Listener{l.grpc, l.ops, l.httpAuthz} {
		if lis != nil {
			lis.Close()
		}
	}
}

// listen opens the configured addresses.
func listen(c serveConfig) (listeners, error) {
	var l listeners
	var err error
	if l.grpc, err = net.Listen("tcp", c.GRPCAddr); err != nil {
		return l, fmt.Errorf("listen grpc: %w", err)
	}
	if l.ops, err = net.Listen("tcp", c.HTTPAddr); err != nil {
		l.close()
		return l, fmt.Errorf("listen http: %w", err)
	}
	if c.HTTPAuthzAddr != "" {
		if l.httpAuthz, err = net.Listen("tcp", c.HTTPAuthzAddr); err != nil {
			l.close()
			return l, fmt.Errorf("listen http authz: %w", err)
		}
	}
	return l, nil
}

// serve runs the sidecar on the configured addresses until ctx ends, then
// drains and returns nil.
func serve(ctx context.Context, c serveConfig, getenv func(string) string, logOut io.Writer) error {
	lis, err := listen(c)
	if err != nil {
		return err
	}
	return runSidecar(ctx, c, getenv, lis, logOut)
}

// runSidecar builds the sidecar and serves on lis (which it closes) until
// ctx ends.
func runSidecar(ctx context.Context, c serveConfig, getenv func(string) string, lis listeners, logOut io.Writer) error {
	defer lis.close()
	log, err := newLogger(c.LogLevel, c.LogFormat, logOut)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // nothing to do about a failed flush at exit
	s, err := build(ctx, c, getenv, log)
	if s != nil {
		defer s.close()
	}
	if err != nil {
		return err
	}
	return s.run(ctx, lis)
}

// sidecar is the built process: every part, constructed in order by build.
type sidecar struct {
	cfg      serveConfig
	log      *zap.Logger
	reg      *prometheus.Registry
	pol      *policy.Policy
	keys     *authn.KeySet // nil when the policy accepts no JWT
	db       *pg.DB
	fence    *pg.Fence // nil when nothing invalidates the caches
	tiers    *tiers
	tracer   *tracing.Tracer // nil: tracing off
	engine   *authz.Engine
	recorder *observe.Recorder
	reload   *reloader
	health   *health.Server
	ready    *readiness
	closers  []func()
}

func (s *sidecar) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

// build constructs the sidecar in named steps; each step's resources are
// released by close, in reverse order.
func build(ctx context.Context, c serveConfig, getenv func(string) string, log *zap.Logger) (*sidecar, error) {
	s := &sidecar{cfg: c, log: log}
	var err error
	if s.pol, err = policy.Load(c.Policies); err != nil {
		return s, fmt.Errorf("load policy: %w", err)
	}
	for _, w := range s.pol.Warnings {
		log.Warn("policy warning", zap.String("at", w.String()))
	}
	setMemoryLimit(c, log)
	s.reg = prometheus.NewRegistry()
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), readBuildInfo().collector())
	secret, err := sessionSecret(c, getenv)
	if err != nil {
		return s, err
	}
	if s.keys, err = newKeySet(s.pol, c, log, s.reg); err != nil {
		return s, err
	}
	if c.invalidates() {
		// Idle unless DATABASE_URL turns out to be a hot standby.
		primary := cmp.Or(c.PGPrimaryURL, c.PGListenURL)
		if s.fence, err = pg.NewFence(primary, pg.FenceConfig{MaxWait: c.PGReplicaMaxWait}, log, s.reg); err != nil {
			return s, fmt.Errorf("--pg-primary-url: %w", err)
		}
		s.closers = append(s.closers, s.fence.Close)
	}
	mode, _ := pg.ParseQueryMode(c.PGQueryMode) // checked when parsed
	if s.db, err = pg.Open(ctx, c.DatabaseURL, pg.Config{MaxConns: int32(c.PGMaxConns), Schema: s.pol.Schema, QueryMode: mode, Fence: s.fence}); err != nil {
		return s, fmt.Errorf("open database: %w", err)
	}
	s.closers = append(s.closers, func() { closeBounded(s.db.Close, time.Second, log, "postgres pool") })
	if err := s.db.RegisterPoolMetrics(s.reg); err != nil {
		return s, err
	}
	if c.OTLPEndpoint != "" {
		if s.tracer, err = tracing.New(ctx, tracing.Config{Endpoint: c.OTLPEndpoint, Insecure: c.OTLPInsecure, SampleRatio: c.TraceSampleRatio}); err != nil {
			return s, err
		}
		s.closers = append(s.closers, func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = s.tracer.Shutdown(sctx) // best effort: flush the last spans
		})
	}
	if s.tiers, err = newTiers(c, s.pol, s.db, s.fence, s.tracer, log, s.reg); err != nil {
		return s, err
	}
	s.closers = append(s.closers, s.tiers.close)
	states := stateBuilder{keys: s.keys, tokens: s.tiers.tokens, tracer: s.tracer}
	st, err := states.state(s.pol)
	if err != nil {
		return s, err
	}
	if s.engine, err = authz.New(st, s.tiers.deps(), authz.Config{Secret: secret, MaxInFlight: c.MaxInFlight}); err != nil {
		return s, err
	}
	if s.recorder, err = observe.NewRecorder(log, s.reg, observe.Config{AllowSampleRate: c.LogAllowEvery}); err != nil {
		return s, err
	}
	if err = observe.RegisterAdmission(s.reg, s.engine); err != nil {
		return s, err
	}
	s.health = health.NewServer()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.ready = &readiness{keys: s.keys, db: s.db, policy: s.engine.Policy, log: log}
	if s.reload, err = newReloader(c.Policies, states, s.ready.supports, s.engine, log, s.reg); err != nil {
		return s, err
	}
	return s, nil
}

// sessionSecret reads Better Auth's secret from --better-auth-secret-file,
// else from the environment as Better Auth does. It is zero when none is
// set; the engine refuses a policy that accepts sessions without one.
func sessionSecret(c serveConfig, getenv func(string) string) (authn.Secret, error) {
	if c.SecretFile != "" {
		b, err := os.ReadFile(c.SecretFile)
		if err != nil {
			return authn.Secret{}, fmt.Errorf("--better-auth-secret-file: %w", err)
		}
		return authn.NewSecret(strings.TrimRight(string(b), "\r\n"))
	}
	s, _, err := authn.SecretFromEnv(getenv)
	return s, err
}

// newKeySet returns the JWKS key set of the policy's jwt section, fetched
// in the background (nil when the policy accepts no JWT).
func newKeySet(pol *policy.Policy, c serveConfig, log *zap.Logger, reg prometheus.Registerer) (*authn.KeySet, error) {
	if !pol.JWT.Enabled {
		return nil, nil
	}
	refreshes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authz_jwks_refreshes_total",
		Help: "JWKS fetches by result (success, failure).",
	}, []string{"result"})
	if err := reg.Register(refreshes); err != nil {
		return nil, err
	}
	keys, err := authn.NewKeySet(authn.KeySetConfig{
		URL: pol.JWT.JWKSURL, RefreshInterval: c.JWKSRefresh, MinRefreshInterval: c.JWKSMinRefresh,
		OnRefresh: func(err error) {
			if err != nil {
				refreshes.WithLabelValues("failure").Inc()
				return
			}
			refreshes.WithLabelValues("success").Inc()
		},
	}, log)
	if err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	return keys, nil
}

// stateBuilder makes the engine state for a policy: the policy and a
// verifier of its jwt section, behind a new generation of the token cache
// (tokens verified under old jwt settings are verified again).
type stateBuilder struct {
	keys   *authn.KeySet
	tokens *cache.Tokens
	tracer *tracing.Tracer // nil: tracing off
}

func (b stateBuilder) state(pol *policy.Policy) (authz.State, error) {
	st := authz.State{Policy: pol}
	if !pol.JWT.Enabled {
		return st, nil
	}
	v, err := newVerifier(pol, b.keys)
	if err != nil {
		return st, err
	}
	st.Verifier = b.tokens.For(v)
	if b.tracer != nil {
		st.Verifier = b.tracer.Verifier(st.Verifier)
	}
	return st, nil
}

// tiers are the lookups behind decisions, built once in their order:
// ristretto (L1) → Redis (L2, when configured) → PostgreSQL.
type tiers struct {
	access   roles.Resolver
	sessions authz.SessionResolver
	apiKeys  authz.APIKeyResolver
	tokens   *cache.Tokens
	inv      *invalidate.Service // nil when invalidation is off
	closers  []func()
}

func (t *tiers) deps() authz.Deps {
	return authz.Deps{Access: t.access, Sessions: t.sessions, APIKeys: t.apiKeys}
}

func (t *tiers) close() {
	for i := len(t.closers) - 1; i >= 0; i-- {
		t.closers[i]()
	}
}

// newTiers states the tier order once, for every kind of lookup; serve and
// explain both use it. pol is the policy the process starts with: its
// session.storage cannot change without a restart (see restartNeeded).
func newTiers(c serveConfig, pol *policy.Policy, db *pg.DB, fence *pg.Fence, tracer *tracing.Tracer, log *zap.Logger, reg prometheus.Registerer) (*tiers, error) {
	t := &tiers{}
	cache.LogRedisTo(log.Named("redis"))

	// The sources of truth, one per kind, counted and logged by observe.
	sources, err := observe.NewSources(log, reg, observe.SourcesConfig{})
	if err != nil {
		return t, err
	}
	accessSource := cache.LookupFunc[roles.Query, *roles.Access](roles.NewSourceResolver(sources.Members(pg.NewMemberRepository(db)), nil).Resolve)
	sessions := sourceSessions{sources.Sessions(pg.NewSessionRepository(db))}
	var tokenSource cache.Lookup[string, *authn.Session] = cache.LookupFunc[string, *authn.Session](sessions.SessionByToken)
	keySource := cache.LookupFunc[string, *authn.APIKey](sourceAPIKeys{sources.APIKeys(pg.NewAPIKeyRepository(db))}.APIKeyByHash)
	secondary := pol.Session.Storage == policy.StorageSecondary
	if secondary {
		if c.SessionRedisURL == "" {
			return t, errors.New("the policy reads sessions from Better Auth's secondary storage (session.storage: secondary): set --session-redis-url")
		}
		// Better Auth's Redis is the sessions' source of truth: its calls
		// are bounded by the load deadline, like a database query.
		srdb, err := cache.NewRedis(cache.RedisConfig{
			URL: c.SessionRedisURL, Mode: c.SessionRedisMode, MasterName: c.SessionRedisMasterName, Timeout: c.LoadTimeout,
		})
		if err != nil {
			return t, fmt.Errorf("--session-redis-url: %w", err)
		}
		t.closers = append(t.closers, func() { srdb.Close() })
		if err := cache.RegisterRedisPoolMetrics(reg, "sessions", srdb); err != nil {
			return t, err
		}
		secondarySessions := cache.NewSecondarySessions(srdb, cache.SecondaryStorageConfig{Prefix: c.SessionRedisPrefix})
		tokenSource = cache.LookupFunc[string, *authn.Session](sources.Secondary(secondarySessions).SessionByToken)
	}

	// Invalidation is on when a channel (with Redis) or --pg-listen is set;
	// inv is nil otherwise, and the tiers then skip every check.
	var inv *cache.Invalidations
	if c.invalidates() {
		inv = cache.NewInvalidations(cache.InvalidationsConfig{
			Horizon: max(c.L1TTL, c.L1NegativeTTL) + max(c.L2TTL, c.L2NegativeTTL) + c.LoadTimeout + c.InvalidationSkew,
			Skew:    c.InvalidationSkew,
		})
	}
	var deps invalidate.Deps
	if inv != nil {
		deps.Local = inv
	}
	if fence != nil {
		// Raised before each invalidation reaches the caches, so that a
		// reload from a hot standby waits for the change (pg.Fence).
		deps.Barrier = fence
	}
	ly := layers{tracer: tracer}
	if c.RedisURL != "" {
		redisCfg := cache.RedisConfig{URL: c.RedisURL, Mode: c.RedisMode, MasterName: c.RedisMasterName, Timeout: c.RedisTimeout}
		rdb, err := cache.NewRedis(redisCfg)
		if err != nil {
			return t, fmt.Errorf("--redis-url: %w", err)
		}
		t.closers = append(t.closers, func() { rdb.Close() })
		if err := cache.RegisterRedisPoolMetrics(reg, "l2", rdb); err != nil {
			return t, err
		}
		ly.l2 = cache.NewL2Store(rdb, cache.L2Config{
			Prefix: c.RedisPrefix, TTL: c.L2TTL, NegativeTTL: c.L2NegativeTTL, Timeout: c.RedisTimeout,
			Jitter: c.TTLJitter, Invalidations: inv,
		}, log, reg)
		if inv != nil {
			deps.Markers = ly.l2
			if c.InvalidationChannel != "" {
				// Pub/sub needs its own client: a subscription holds a
				// connection and must not share the L2 call deadlines.
				redisCfg.Timeout = 0
				sub, err := cache.NewRedis(redisCfg)
				if err != nil {
					return t, fmt.Errorf("--redis-url: %w", err)
				}
				t.closers = append(t.closers, func() { sub.Close() })
				if err := cache.RegisterRedisPoolMetrics(reg, "bus", sub); err != nil {
					return t, err
				}
				deps.Bus = cache.NewRedisBus(sub, c.InvalidationChannel, log)
			}
		}
	}
	if c.PGListen {
		listener, err := pg.NewListener(cmp.Or(c.PGListenURL, c.DatabaseURL), pg.ListenerConfig{}, log)
		if err != nil {
			return t, fmt.Errorf("pg listen: %w", err)
		}
		deps.Feed = listener
	}
	if ly.l1, err = cache.NewL1Store(cache.L1Config{
		TTL: c.L1TTL, NegativeTTL: c.L1NegativeTTL, MaxBytes: c.L1MaxBytes, LoadTimeout: c.LoadTimeout,
		Jitter: c.TTLJitter, Invalidations: inv,
	}, reg); err != nil {
		return t, err
	}
	t.closers = append(t.closers, ly.l1.Close)

	// The tiers, nearest first, for every kind: L1 → L2 (with Redis) →
	// source. Sessions in Better Auth's secondary storage skip L2: reading
	// L2 would cost what reading their source does.
	access, err := stack(ly, cache.AccessKind(), accessSource, true)
	if err != nil {
		return t, err
	}
	byToken, err := stack(ly, cache.SessionTokenKind(), tokenSource, !secondary)
	if err != nil {
		return t, err
	}
	var byID cache.Lookup[string, *authn.Session]
	if !secondary { // secondary storage keys sessions by token only
		if byID, err = stack(ly, cache.SessionIDKind(), cache.LookupFunc[string, *authn.Session](sessions.SessionByID), true); err != nil {
			return t, err
		}
	}
	keys, err := stack(ly, cache.APIKeyKind(), keySource, true)
	if err != nil {
		return t, err
	}
	t.access = cache.AccessResolver{Lookup: access}
	t.sessions = cache.SessionResolver{ByToken: byToken, ByID: byID}
	t.apiKeys = cache.APIKeyResolver{ByHash: keys}

	if inv != nil {
		if t.inv, err = invalidate.New(invalidate.Config{}, deps, log, reg); err != nil {
			return t, err
		}
	}
	if t.tokens, err = cache.NewTokens(cache.TokensConfig{MaxBytes: c.TokenCacheBytes, MaxTTL: c.TokenCacheTTL}, reg); err != nil {
		return t, err
	}
	t.closers = append(t.closers, t.tokens.Close)
	return t, nil
}

// layers are the stores of the tiers every kind goes through.
type layers struct {
	l1     *cache.L1Store
	l2     *cache.L2Store  // nil without Redis
	tracer *tracing.Tracer // nil: tracing off
}

// stack puts kind's tiers in front of src: L1 → L2 (when there is Redis
// and withL2) → src.
func stack[Q, V any](ly layers, kind *cache.Kind[Q, V], src cache.Lookup[Q, V], withL2 bool) (cache.Lookup[Q, V], error) {
	next := traced(ly, "authz.source", kind.Name, src)
	if ly.l2 != nil && withL2 {
		l2, err := cache.NewL2(ly.l2, kind, next)
		if err != nil {
			return nil, err
		}
		next = traced(ly, "authz.l2", kind.Name, cache.Lookup[Q, V](l2))
	}
	l1, err := cache.NewL1(ly.l1, kind, next)
	if err != nil {
		return nil, err
	}
	return traced(ly, "authz.l1", kind.Name, cache.Lookup[Q, V](l1)), nil
}

// traced is next with a span per call when tracing is on.
func traced[Q, V any](ly layers, name, kind string, next cache.Lookup[Q, V]) cache.Lookup[Q, V] {
	if ly.tracer == nil {
		return next
	}
	return tracing.Lookup(ly.tracer, name, kind, next)
}

// sourceSessions and sourceAPIKeys ask PostgreSQL directly (counted and
// logged by observe).
type sourceSessions struct{ repo *observe.Sessions }

func (s sourceSessions) SessionByToken(ctx context.Context, token string) (*authn.Session, roles.Tier, error) {
	started := time.Now()
	v, err := s.repo.SessionByToken(ctx, token)
	if err != nil {
		return nil, roles.TierSource, err
	}
	v.LoadedAt = started
	return &v, roles.TierSource, nil
}

func (s sourceSessions) SessionByID(ctx context.Context, id string) (*authn.Session, roles.Tier, error) {
	started := time.Now()
	v, err := s.repo.SessionByID(ctx, id)
	if err != nil {
		return nil, roles.TierSource, err
	}
	v.LoadedAt = started
	return &v, roles.TierSource, nil
}

type sourceAPIKeys struct{ repo *observe.APIKeys }

func (s sourceAPIKeys) APIKeyByHash(ctx context.Context, hash string) (*authn.APIKey, roles.Tier, error) {
	started := time.Now()
	v, err := s.repo.APIKeyByHash(ctx, hash)
	if err != nil {
		return nil, roles.TierSource, err
	}
	v.LoadedAt = started
	return &v, roles.TierSource, nil
}

// run serves until ctx ends or a server fails, then drains.
func (s *sidecar) run(ctx context.Context, lis listeners) error {
	c, log := s.cfg, s.log
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var decider tracing.Decider = s.engine
	if s.tracer != nil {
		decider = s.tracer.Decider(s.engine)
	}
	gs, err := extauthz.NewGRPCServer(extauthz.New(decider, s.recorder, extauthz.Config{Timeout: c.CheckTimeout, DecisionIDResponseHeader: c.DecisionIDResponseHeader}), c.GRPCCodec,
		extauthz.StreamWorkers(c.GRPCWorkers))
	if err != nil {
		return err
	}
	healthpb.RegisterHealthServer(gs, s.health)
	if c.Reflection {
		reflection.Register(gs)
	}
	hs := &http.Server{Handler: opsHandler(s.ready, s.reload, s.reg), ReadHeaderTimeout: 5 * time.Second}
	var authzHTTP *http.Server
	if lis.httpAuthz != nil {
		h, err := newHTTPAuthz(c, decider, s.recorder)
		if err != nil {
			return err
		}
		authzHTTP = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 64 << 10}
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	if s.keys != nil {
		wg.Go(func() { s.keys.Run(runCtx) })
	}
	wg.Go(func() { s.ready.watch(runCtx, s.health, log) })
	wg.Go(func() { s.reload.run(runCtx, hup) })
	if s.tiers.inv != nil {
		wg.Go(func() { s.tiers.inv.Run(runCtx) })
	}
	if s.fence != nil {
		wg.Go(func() { s.fence.Run(runCtx) })
	}
	wg.Go(func() {
		if err := gs.Serve(lis.grpc); err != nil {
			errc <- fmt.Errorf("grpc server: %w", err)
		}
	})
	wg.Go(func() {
		if err := hs.Serve(lis.ops); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http server: %w", err)
		}
	})
	if authzHTTP != nil {
		wg.Go(func() {
			if err := authzHTTP.Serve(lis.httpAuthz); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("http authz server: %w", err)
			}
		})
		log.Info("serving HTTP decisions (nginx auth_request, forward auth, Envoy HTTP service)", zap.String("addr", lis.httpAuthz.Addr().String()))
	}
	log.Info("serving", zap.String("version", readBuildInfo().Version),
		zap.String("grpc", lis.grpc.Addr().String()), zap.String("http", lis.ops.Addr().String()),
		zap.String("policy", c.Policies), zap.String("policy_version", s.pol.Version),
		zap.Stringer("credentials", s.pol.Enabled()),
		zap.Bool("redis", c.RedisURL != ""), zap.Bool("invalidation", s.tiers.inv != nil))

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}

	// Drain: tell health checkers first, then let in-flight checks finish.
	s.health.Shutdown()
	log.Info("draining", zap.Duration("timeout", c.DrainTimeout))
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(c.DrainTimeout):
		log.Warn("drain timeout; closing remaining connections")
		gs.Stop()
	}
	shutCtx, shutCancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer shutCancel()
	if authzHTTP != nil {
		_ = authzHTTP.Shutdown(shutCtx)
	}
	_ = hs.Shutdown(shutCtx)
	cancel()
	wg.Wait()
	log.Info("stopped")
	return runErr
}

func newVerifier(pol *policy.Policy, keys *authn.KeySet) (*authn.Verifier, error) {
	v, err := authn.NewVerifier(authn.VerifierConfig{
		Issuer:        pol.JWT.Issuer,
		Audiences:     pol.JWT.Audiences,
		Algorithms:    pol.JWT.Algorithms,
		Leeway:        pol.JWT.Leeway,
		MaxTokenBytes: pol.JWT.MaxTokenBytes,
		KeepClaims:    claimsRead(pol),
	}, keys)
	if err != nil {
		return nil, fmt.Errorf("token verifier: %w", err)
	}
	return v, nil
}

// readiness says whether the sidecar can answer: signing keys loaded (when
// the policy accepts JWTs) and the database warmed, its schema as the
// sidecar reads it and able to serve the policy in force. Each failure
// names its cause.
type readiness struct {
	keys   *authn.KeySet
	db     *pg.DB
	policy func() *policy.Policy // the policy in force
	log    *zap.Logger

	warm bool // Warm succeeded; only probe (one goroutine) touches it

	mu       sync.Mutex
	dbErr    error        // guarded by mu: the last database check's failure
	features *pg.Features // guarded by mu: what the last successful check found
}

// check returns why the sidecar is not ready, or nil.
func (r *readiness) check() error {
	var errs []error
	if r.keys != nil && !r.keys.Ready() {
		errs = append(errs, errors.New("signing keys not loaded"))
	}
	r.mu.Lock()
	if r.dbErr != nil {
		errs = append(errs, r.dbErr)
	}
	r.mu.Unlock()
	return errors.Join(errs...)
}

// probe checks the database now. Until it first succeeds, Warm connects
// the pool, checks the schema and prepares every query, so the first
// request pays none of it; then Check verifies the schema is still there.
// The policy in force must not need an optional part the database lacks.
func (r *readiness) probe(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var f pg.Features
	var err error
	if !r.warm {
		if f, err = r.db.Warm(pctx); err == nil {
			r.warm = true
			naming, tables := r.db.Tables()
			r.log.Info("database checked", zap.String("naming", naming), zap.Any("tables", tables),
				zap.Strings("features_on", f.On()), zap.Strings("features_off", f.Off()), zap.Stringer("query_mode", r.db.Mode()),
				zap.Bool("standby", r.db.Standby()))
			if !f.ReadOnly {
				r.log.Warn("database sessions are not read-only; set default_transaction_read_only on the role or in the pooler")
			}
		}
	} else {
		f, err = r.db.Check(pctx)
	}
	checked := err == nil
	if err == nil {
		err = supports(f, r.policy())
	}
	if err != nil {
		err = fmt.Errorf("database: %w", err)
	}
	r.mu.Lock()
	r.dbErr = err
	if checked {
		r.features = &f
	}
	r.mu.Unlock()
}

// supports refuses a policy that needs a part of Better Auth's schema the
// database lacks (a policy reload is checked with it), as far as the last
// check knows; before the first check, readiness will tell.
func (r *readiness) supports(pol *policy.Policy) error {
	r.mu.Lock()
	f := r.features
	r.mu.Unlock()
	if f == nil {
		return nil
	}
	return supports(*f, pol)
}

// supports is f.Supports(pol), adding that creating the missing part is
// not enough: the sidecar finds the optional parts once, at its first
// successful check, and builds its queries for them (pg.DB.Check), so it
// must be restarted after the migration.
func supports(f pg.Features, pol *policy.Policy) error {
	if err := f.Supports(pol); err != nil {
		return fmt.Errorf("%w; then restart the sidecar (it finds the optional parts of the schema at start)", err)
	}
	return nil
}

// watch keeps gRPC health in step with readiness: SERVING once everything
// is ready, NOT_SERVING while something is not. It checks every 100ms
// until ready, then every 4 to 5s, at random (a fleet of sidecars must not
// ping the database often, nor all at once when they started together).
func (r *readiness) watch(ctx context.Context, h *health.Server, log *zap.Logger) {
	const fast, slow = 100 * time.Millisecond, 5 * time.Second
	t := time.NewTimer(0)
	defer t.Stop()
	serving := false
	var lastCause string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.probe(ctx)
		err := r.check()
		switch {
		case err == nil && !serving:
			h.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			log.Info("ready")
			serving, lastCause = true, ""
		case err != nil && (serving || err.Error() != lastCause):
			h.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
			log.Warn("not ready", zap.Error(err))
			serving, lastCause = false, err.Error()
		}
		if serving {
			t.Reset(slow - rand.N(slow/5))
		} else {
			t.Reset(fast)
		}
	}
}

// opsHandler serves liveness, readiness and metrics. Readiness names every
// cause of not being ready; a rejected policy reload does not make the
// sidecar unready (the previous policy keeps serving) but is shown.
func opsHandler(ready *readiness, reload *reloader, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		version, reloadErr := reload.status()
		status, body := http.StatusOK, "ready\n"
		if err := ready.check(); err != nil {
			status, body = http.StatusServiceUnavailable, "not ready: "+strings.ReplaceAll(err.Error(), "\n", "; ")+"\n"
		}
		body += "policy version: " + version + "\n"
		if reloadErr != nil {
			body += "last policy reload failed (previous policy in force):\n" + reloadErr.Error() + "\n"
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		w.Write([]byte(body))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

func newHTTPAuthz(c serveConfig, engine httpauthz.Decider, recorder *observe.Recorder) (*httpauthz.Handler, error) {
	cfg := httpauthz.Config{Timeout: c.CheckTimeout, EnvoyPathPrefix: c.HTTPAuthzEnvoyPrefix, DecisionIDResponseHeader: c.DecisionIDResponseHeader}
	for _, s := range strings.Split(c.HTTPAuthzTrusted, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("--http-authz-trusted %q: %w", s, err)
		}
		cfg.TrustedProxies = append(cfg.TrustedProxies, p)
	}
	h, err := httpauthz.NewHandler(engine, recorder, cfg)
	if err != nil {
		return nil, fmt.Errorf("http authz: %w", err)
	}
	return h, nil
}

// closeBounded runs close but gives up waiting after d: closing a pool over
// a stalled network can take pgx's 15 s cancel-request deadline, and
// shutdown must stay within the drain budget.
func closeBounded(closeFn func(), d time.Duration, log *zap.Logger, what string) {
	done := make(chan struct{})
	go func() {
		closeFn()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		log.Warn("gave up waiting for close", zap.String("what", what), zap.Duration("after", d))
	}
}

// claimsRead lists the claims decisions read (claim: organization and team
// sources, the session claim); cached identities keep only these.
func claimsRead(pol *policy.Policy) []string {
	names := []string{}
	for _, s := range append(pol.OrgSources[:len(pol.OrgSources):len(pol.OrgSources)], pol.TeamSources...) {
		if s.Kind == policy.FromClaim {
			names = append(names, s.Name)
		}
	}
	if pol.JWT.SessionClaim != "" {
		names = append(names, pol.JWT.SessionClaim)
	}
	return names
}

// setMemoryLimit gives the Go runtime a soft memory limit derived from the
// cache budgets, so the heap (and RSS) stays near what the caches may hold
// instead of growing to twice the live heap under the default GOGC. The
// caches' cost accounting over-estimates their live heap, so the limit sits
// above what they can hold.
func setMemoryLimit(c serveConfig, log *zap.Logger) {
	limit := c.MemoryLimit
	if limit < 0 {
		limit = c.L1MaxBytes + c.TokenCacheBytes + 32<<20
	}
	if limit > 0 {
		debug.SetMemoryLimit(limit)
		log.Info("memory limit", zap.Int64("bytes", limit))
	}
}
