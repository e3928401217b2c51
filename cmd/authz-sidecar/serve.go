package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
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

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
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

// serve runs the sidecar until ctx ends, then drains and returns nil.
func serve(ctx context.Context, c serveConfig, logOut io.Writer) error {
	log, err := newLogger(c.LogLevel, c.LogFormat, logOut)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // nothing to do about a failed flush at exit

	pol, err := policy.Load(c.Policies)
	if err != nil {
		return fmt.Errorf("load policy: %w", err)
	}
	setMemoryLimit(c, log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Keys: fetched in the background; until the first fetch succeeds the
	// sidecar is not ready and answers 503.
	grpcHealth := health.NewServer()
	grpcHealth.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	jwksRefreshes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authz_jwks_refreshes_total",
		Help: "JWKS fetches by result (success, failure).",
	}, []string{"result"})
	reg.MustRegister(jwksRefreshes)
	keys, err := authn.NewKeySet(authn.KeySetConfig{
		URL: pol.JWT.JWKSURL, RefreshInterval: c.JWKSRefresh, MinRefreshInterval: c.JWKSMinRefresh,
		OnRefresh: func(err error) {
			if err != nil {
				jwksRefreshes.WithLabelValues("failure").Inc()
				return
			}
			jwksRefreshes.WithLabelValues("success").Inc()
		},
	}, log)
	if err != nil {
		return fmt.Errorf("key set: %w", err)
	}
	verifier, err := newVerifier(pol, keys)
	if err != nil {
		return err
	}

	db, err := pg.Open(ctx, c.DatabaseURL, pg.Config{MaxConns: int32(c.PGMaxConns)})
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer closeBounded(db.Close, time.Second, log, "postgres pool")

	source, err := observe.NewSource(pg.NewMemberRepository(db), reg)
	if err != nil {
		return err
	}
	var resolver roles.Resolver = roles.NewSourceResolver(source)
	// Invalidation is on when a channel (with Redis) or --pg-listen is set;
	// inv is nil otherwise, and the tiers then skip every check.
	var inv *cache.Invalidations
	if (c.InvalidationChannel != "" && c.RedisURL != "") || c.PGListen {
		inv = cache.NewInvalidations(cache.InvalidationsConfig{
			Horizon: max(c.L1TTL, c.L1NegativeTTL) + max(c.L2TTL, c.L2NegativeTTL) + c.LoadTimeout + c.InvalidationSkew,
			Skew:    c.InvalidationSkew,
		})
	}
	var deps invalidate.Deps
	if inv != nil {
		deps.Local = inv
	}
	if c.RedisURL != "" {
		rdb, err := newRedis(c.RedisURL, c.RedisTimeout)
		if err != nil {
			return err
		}
		// go-redis logs through a process-wide logger of its own; route it
		// into the JSON log stream instead of plain text on stderr.
		redis.SetLogger(redisLogger{log.Named("redis")})
		defer rdb.Close()
		l2, err := cache.NewL2(resolver, rdb, cache.L2Config{
			Prefix: c.RedisPrefix, TTL: c.L2TTL, NegativeTTL: c.L2NegativeTTL, Timeout: c.RedisTimeout,
			Invalidations: inv,
		}, log, reg)
		if err != nil {
			return err
		}
		resolver = l2
		if inv != nil {
			deps.Markers = l2
			if c.InvalidationChannel != "" {
				// Pub/sub needs its own client: a subscription holds a
				// connection and must not share the L2 call deadlines.
				sub, err := redis.ParseURL(c.RedisURL)
				if err != nil {
					return fmt.Errorf("redis url: %w", err)
				}
				subClient := redis.NewClient(sub)
				defer subClient.Close()
				deps.Bus = cache.NewRedisBus(subClient, c.InvalidationChannel, log)
			}
		}
	}
	if c.PGListen {
		listener, err := pg.NewListener(cmp.Or(c.PGListenURL, c.DatabaseURL), pg.ListenerConfig{}, log)
		if err != nil {
			return fmt.Errorf("pg listen: %w", err)
		}
		deps.Feed = listener
	}
	l1, err := cache.NewL1(resolver, cache.L1Config{
		TTL: c.L1TTL, NegativeTTL: c.L1NegativeTTL, MaxBytes: c.L1MaxBytes, LoadTimeout: c.LoadTimeout,
		Invalidations: inv,
	}, reg)
	if err != nil {
		return err
	}
	defer l1.Close()
	var invalidations *invalidate.Service
	if inv != nil {
		if invalidations, err = invalidate.New(invalidate.Config{}, deps, log, reg); err != nil {
			return err
		}
	}

	tokens, err := cache.NewTokens(cache.TokensConfig{MaxBytes: c.TokenCacheBytes, MaxTTL: c.TokenCacheTTL}, reg)
	if err != nil {
		return err
	}
	defer tokens.Close()
	engine := authz.New(pol, tokens.For(verifier), l1, authz.Config{})
	recorder, err := observe.NewRecorder(log, reg, observe.Config{AllowSampleRate: c.LogAllowEvery})
	if err != nil {
		return err
	}
	reload, err := newReloader(c.Policies, keys, tokens, engine, log, reg)
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, extauthz.New(engine, recorder, extauthz.Config{Timeout: c.CheckTimeout}))
	healthpb.RegisterHealthServer(gs, grpcHealth)
	if c.Reflection {
		reflection.Register(gs)
	}

	grpcLis, err := net.Listen("tcp", c.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen grpc: %w", err)
	}
	httpLis, err := net.Listen("tcp", c.HTTPAddr)
	if err != nil {
		grpcLis.Close()
		return fmt.Errorf("listen http: %w", err)
	}
	hs := &http.Server{Handler: opsHandler(keys, reload, reg), ReadHeaderTimeout: 5 * time.Second}

	var authzHTTP *http.Server
	var authzLis net.Listener
	if c.HTTPAuthzAddr != "" {
		h, err := newHTTPAuthz(c, engine, recorder)
		if err != nil {
			grpcLis.Close()
			httpLis.Close()
			return err
		}
		if authzLis, err = net.Listen("tcp", c.HTTPAuthzAddr); err != nil {
			grpcLis.Close()
			httpLis.Close()
			return fmt.Errorf("listen http authz: %w", err)
		}
		authzHTTP = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 64 << 10}
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Go(func() { keys.Run(runCtx) })
	wg.Go(func() { watchReady(runCtx, keys, grpcHealth, log) })
	wg.Go(func() { reload.run(runCtx, hup) })
	if invalidations != nil {
		wg.Go(func() { invalidations.Run(runCtx) })
	}
	wg.Go(func() {
		if err := gs.Serve(grpcLis); err != nil {
			errc <- fmt.Errorf("grpc server: %w", err)
		}
	})
	wg.Go(func() {
		if err := hs.Serve(httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http server: %w", err)
		}
	})
	if authzHTTP != nil {
		wg.Go(func() {
			if err := authzHTTP.Serve(authzLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("http authz server: %w", err)
			}
		})
		log.Info("serving HTTP decisions (nginx auth_request, forward auth, Envoy HTTP service)", zap.String("addr", authzLis.Addr().String()))
	}
	log.Info("serving",
		zap.String("grpc", grpcLis.Addr().String()), zap.String("http", httpLis.Addr().String()),
		zap.String("policy", c.Policies), zap.String("policy_version", pol.Version),
		zap.Bool("redis", c.RedisURL != ""), zap.Bool("invalidation", invalidations != nil))

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}

	// Drain: tell health checkers first, then let in-flight checks finish.
	grpcHealth.Shutdown()
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
		KeepClaims:    claimSources(pol),
	}, keys)
	if err != nil {
		return nil, fmt.Errorf("token verifier: %w", err)
	}
	return v, nil
}

// watchReady flips gRPC health to SERVING once keys are known.
func watchReady(ctx context.Context, keys *authn.KeySet, h *health.Server, log *zap.Logger) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if keys.Ready() {
			h.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			log.Info("ready: signing keys loaded")
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// opsHandler serves liveness, readiness and metrics. Readiness needs
// signing keys; a rejected policy reload does not make the sidecar unready
// (the previous policy keeps serving) but is shown in the body.
func opsHandler(keys *authn.KeySet, reload *reloader, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		version, reloadErr := reload.status()
		status, body := http.StatusOK, "ready\n"
		if !keys.Ready() {
			status, body = http.StatusServiceUnavailable, "not ready: signing keys not loaded\n"
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

func newHTTPAuthz(c serveConfig, engine *authz.Engine, recorder *observe.Recorder) (*httpauthz.Handler, error) {
	cfg := httpauthz.Config{Timeout: c.CheckTimeout, EnvoyPathPrefix: c.HTTPAuthzEnvoyPrefix}
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

// newRedis opens the L2 client. Per-call deadlines must bound socket reads
// and writes too: without ContextTimeoutEnabled go-redis ignores them and a
// paused Redis holds each call for its 3-5 s socket timeouts, long past the
// check deadline.
func newRedis(url string, timeout time.Duration) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	opts.ContextTimeoutEnabled = true
	opts.ReadTimeout, opts.WriteTimeout = timeout, timeout
	return redis.NewClient(opts), nil
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

// redisLogger adapts zap to go-redis's logging interface.
type redisLogger struct{ log *zap.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn(fmt.Sprintf(format, v...))
}

// claimSources lists the claims decisions read (claim: organization
// sources); cached identities keep only these.
func claimSources(pol *policy.Policy) []string {
	names := []string{}
	for _, s := range pol.OrgSources {
		if s.Kind == policy.OrgFromClaim {
			names = append(names, s.Name)
		}
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
