package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/authz-sidecar/authz-sidecar/bench/loadgen"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// bench is one benchmark run: its fixtures, its children and its results.
type bench struct {
	cfg    config
	out    io.Writer // the report
	log    io.Writer // progress
	work   string    // temporary directory: policy, child logs
	runID  string
	issuer *issuerKey
	rdb    *redis.Client

	data       *dataset
	req        *requests
	fresh      *freshPool
	policyPath string
	secretPath string           // Better Auth's secret, for --better-auth-secret-file
	db         *pgtest.Database // the run's, dropped by close
	dbURL      string

	servers []*server // started, to stop at the end
	noop    target
	report  report
}

// target is a running server and the load generator's connections to it.
type target struct {
	srv   *server
	conns []grpc.ClientConnInterface
}

func newBench(cfg config, out, log io.Writer) (*bench, error) {
	var salt [4]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "authzbench-")
	if err != nil {
		return nil, fmt.Errorf("work dir: %w", err)
	}
	b := &bench{cfg: cfg, out: out, log: log, work: work, runID: fmt.Sprintf("%08x", binary.BigEndian.Uint32(salt[:]))}
	b.data = newDataset()
	b.req = &requests{d: b.data, salt: binary.BigEndian.Uint32(salt[:])}
	return b, nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "bench: "+format+"\n", args...)
}

// close stops every child, drops the run's database, removes its Redis
// keys and, when the run
// succeeded, its temporary directory (kept on failure for the logs).
func (b *bench) close(ok bool) {
	for _, s := range b.servers {
		s.stop()
	}
	if b.issuer != nil {
		b.issuer.close()
	}
	if b.rdb != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if n, err := b.deleteKeys(ctx, b.redisPrefix("")); err != nil {
			b.logf("cleaning Redis keys: %v", err)
		} else if n > 0 {
			b.logf("removed %d Redis keys of this run", n)
		}
		cancel()
		b.rdb.Close()
	}
	if b.db != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := b.db.Drop(ctx); err != nil {
			b.logf("%v", err)
		}
		cancel()
	}
	if ok {
		os.RemoveAll(b.work)
	} else {
		b.logf("logs kept in %s", b.work)
	}
}

func (b *bench) redisPrefix(instance string) string {
	return "authzbench:" + b.runID + ":" + instance
}

func (b *bench) run(ctx context.Context) error {
	if err := b.setup(ctx); err != nil {
		return err
	}
	// The noop server stays up for the whole run, idle but for its own
	// runs, so each sidecar run is paired with a noop run of the same
	// scenario and concurrency taken just before it: on a shared machine
	// the pair sees the same background load, which keeps the ratio honest.
	s, err := b.start(ctx, "noop", noopReady, b.cfg.Noop)
	if err != nil {
		return err
	}
	conns, closeConns, err := b.dial(s.grpcAddr)
	if err != nil {
		return err
	}
	defer closeConns()
	b.noop = target{s, conns}
	if err := b.runSidecar(ctx); err != nil {
		return err
	}
	return b.finish()
}

// setup: binaries present, database seeded, issuer serving, policy
// written and validated by the sidecar itself, tokens signed.
func (b *bench) setup(ctx context.Context) error {
	for _, bin := range []string{b.cfg.Sidecar, b.cfg.Noop} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("binary %s: %w (scripts/bench.sh builds it)", bin, err)
		}
	}
	r := &b.report
	r.Start = time.Now().UTC()
	r.Commit = gitCommit()
	r.GoVersion = runtime.Version()
	r.CPUs = runtime.NumCPU()
	r.CPUModel = cpuModel()
	r.Config = reportConfig{
		Warmup: b.cfg.Warmup.String(), Duration: b.cfg.Duration.String(), Conns: b.cfg.Conns,
		Concurrency: b.cfg.Concurrency, FreshTokens: b.cfg.FreshTokens, Fill: b.cfg.Fill,
	}
	if len(b.cfg.Rates) > 0 {
		r.Config.Rates, r.Config.RateDuration, r.Config.MaxInFlight = b.cfg.Rates, b.cfg.RateDuration.String(), b.cfg.MaxInFlight
	}

	opts, err := redis.ParseURL(b.cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("redis url: %w", err)
	}
	b.rdb = redis.NewClient(opts)
	info, err := b.rdb.Info(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("redis at %s: %w (run scripts/services.sh)", redact(b.cfg.RedisURL), err)
	}
	r.RedisVersion = infoField(info, "redis_version")

	t0 := time.Now()
	b.db, r.PGVersion, err = seed(ctx, b.cfg.AdminURL, b.data)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	b.dbURL = b.db.URL
	b.logf("database %s: %d users, %d organizations, %d memberships, a session and an API key per user (%v)",
		b.db.Name, numUsers, numOrgs, numUsers*orgsPerUser, time.Since(t0).Round(time.Millisecond))

	// The policy accepts Better Auth sessions, so every sidecar needs the
	// secret; it signs the session cookies and bearer tokens of e and f.
	if b.secretPath, err = testproc.WriteSecretFile(b.work); err != nil {
		return err
	}
	b.req.sessionValues = make([]string, numUsers)
	for u := range b.req.sessionValues {
		b.req.sessionValues[u] = signSession(testproc.BetterAuthSecret, b.data.Users[u].SessionToken)
	}

	if b.issuer, err = startIssuer(); err != nil {
		return err
	}
	b.policyPath = filepath.Join(b.work, "policies.yaml")
	if err := writePolicy(b.cfg.Policies, b.policyPath, b.issuer); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, b.cfg.Sidecar, "validate", b.policyPath).CombinedOutput(); err != nil {
		return fmt.Errorf("bench policy does not validate: %v\n%s", err, out)
	}

	t0 = time.Now()
	now := time.Now()
	b.req.userTokens, err = signMany(numUsers, func(u int) (string, error) {
		return b.issuer.sign(&b.data.Users[u], now)
	})
	if err != nil {
		return err
	}
	// Issued 1 s or more before the reusable tokens: Ed25519 signatures
	// are deterministic, so a fresh token issued at the same second as a
	// reusable one would be the same string (and a token-cache hit).
	fresh, err := signMany(b.cfg.FreshTokens, func(j int) (string, error) {
		return b.issuer.sign(&b.data.Users[j%numUsers], now.Add(-time.Duration(1+j/numUsers)*time.Second))
	})
	if err != nil {
		return err
	}
	b.fresh = &freshPool{q: b.req, tokens: fresh}
	if err := b.req.encodeKeys(); err != nil {
		return err
	}
	b.logf("signed %d reusable and %d single-use tokens, encoded %d requests (%v)",
		numUsers, len(fresh), numKeys, time.Since(t0).Round(time.Millisecond))
	return nil
}

func (b *bench) wants(id string) bool { return strings.Contains(b.cfg.Scenarios, id) }

// loads are the loads scenario sc runs at, in order: the closed-loop
// concurrencies, then the fixed rates.
func (b *bench) loads(sc scenario) []load {
	var out []load
	for _, c := range b.cfg.Concurrency {
		out = append(out, load{Conc: c})
	}
	if sc.FixedRate {
		for _, r := range b.cfg.Rates {
			out = append(out, load{Rate: r})
		}
	}
	return out
}

// dial opens cfg.Conns gRPC connections to addr.
func (b *bench) dial(addr string) ([]grpc.ClientConnInterface, func(), error) {
	var conns []*grpc.ClientConn
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	out := make([]grpc.ClientConnInterface, 0, b.cfg.Conns)
	for range b.cfg.Conns {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		conns = append(conns, c)
		out = append(out, c)
	}
	return out, closeAll, nil
}

// warm sends a fresh sidecar its first requests gently (one at a time,
// then 8 at once) on memberships no scenario uses, so pools and
// connections are open before anything is measured. Answers that are not
// allows fail the run, except 503s (cold start), which are reported.
func (b *bench) warm(ctx context.Context, t target) error {
	const keys = 500
	offset := uint64(orgsPerUser-1) * numUsers
	for _, w := range []struct{ workers, n int }{{1, 50}, {8, keys}} {
		res, err := loadgen.Run(ctx, loadgen.Config{
			Conns: t.conns, Workers: w.workers, Duration: time.Minute,
			Source: b.req.allKeys(offset, 1, numKeys, uint64(w.n)), CheckIdentity: true,
		})
		if err != nil {
			return err
		}
		if res.Failures() > res.Unavailable {
			return fmt.Errorf("%s warm-up: %d of %d answers were not the expected allow; first: %s",
				t.srv.name, res.Failures(), res.Sent, res.FirstFailure)
		}
		if res.Unavailable > 0 {
			b.report.Notes = append(b.report.Notes, fmt.Sprintf(
				"%s cold start (first requests, concurrency %d): %d of %d answers were 503; first: %s",
				t.srv.name, w.workers, res.Unavailable, res.Sent, res.FirstFailure))
		}
	}
	return nil
}

func (b *bench) start(ctx context.Context, name string, ready readyFunc, bin string, args ...string) (*server, error) {
	s, err := startServer(ctx, name, filepath.Join(b.work, name+".log"), ready, bin, args...)
	if err != nil {
		return nil, err
	}
	b.servers = append(b.servers, s)
	return s, nil
}

// sidecarArgs is serve with everything on loopback, no allow logging, and
// extra flags for the instance.
func (b *bench) sidecarArgs(redisPrefix string, extra ...string) []string {
	args := []string{"serve",
		"--policies", b.policyPath, "--better-auth-secret-file", b.secretPath, "--database-url", b.dbURL,
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--log-allow-every", "0", "--log-format", "json", "--log-level", "info",
	}
	if redisPrefix != "" {
		args = append(args, "--redis-url", b.cfg.RedisURL, "--redis-prefix", redisPrefix)
	}
	args = append(args, extra...)
	return append(args, b.cfg.SidecarFlags...)
}

// sidecarStep is one sidecar instance and what runs on it.
type sidecarStep struct {
	name  string
	redis bool
	flags []string
	ids   string // scenarios it serves
}

// runSidecar runs the scenarios on sidecar instances configured for them
// (see scenario.Setup), then the L1 memory step.
func (b *bench) runSidecar(ctx context.Context) error {
	if len(b.cfg.SidecarFlags) > 0 {
		b.report.Notes = append(b.report.Notes, fmt.Sprintf("every sidecar ran with the extra flags %q (BENCH_SIDECAR_FLAGS)", strings.Join(b.cfg.SidecarFlags, " ")))
	}
	steps := []sidecarStep{
		{name: "sidecar-ad", redis: true, ids: "ad"},
		{name: "sidecar-b", redis: true, flags: []string{"--l1-ttl", "1ms"}, ids: "b"},
		{name: "sidecar-c", flags: []string{"--l1-ttl", "1ms"}, ids: "c"},
		{name: "sidecar-efg", redis: true, ids: "efg"},
		{name: "sidecar-h", redis: true, flags: []string{"--grpc-codec", "proto"}, ids: "h"},
	}
	for _, st := range steps {
		if !strings.ContainsAny(st.ids, b.cfg.Scenarios) {
			continue
		}
		if err := b.sidecarStep(ctx, st); err != nil {
			return err
		}
	}
	if b.cfg.Fill > 0 {
		return b.fillStep(ctx)
	}
	return nil
}

func (b *bench) sidecarStep(ctx context.Context, st sidecarStep) error {
	prefix := ""
	if st.redis {
		prefix = b.redisPrefix(st.name + ":")
	}
	s, err := b.start(ctx, st.name, sidecarReady, b.cfg.Sidecar, b.sidecarArgs(prefix, st.flags...)...)
	if err != nil {
		return err
	}
	defer s.stop()
	conns, closeConns, err := b.dial(s.grpcAddr)
	if err != nil {
		return err
	}
	defer closeConns()
	sidecar := target{s, conns}
	if err := b.warm(ctx, sidecar); err != nil {
		return err
	}

	// prefill sends one request per user, with its reusable token: it
	// loads one membership per user through the tiers (into Redis when it
	// is on) and every user's token into the verified-token cache. Every
	// answer is checked.
	prefill := func() error {
		t0 := time.Now()
		res, err := loadgen.Run(ctx, loadgen.Config{
			Conns: conns, Workers: 16, Duration: 2 * time.Minute,
			Source: b.req.userKeys(numUsers), CheckIdentity: true,
		})
		if err != nil {
			return err
		}
		// A prefill starts from cold caches and pools: a lookup slower than
		// --check-timeout is answered 503 while its load goes on in the
		// background and fills the caches all the same. That is tolerated
		// here, and reported; any other failure is not.
		if res.Failures() > res.Unavailable {
			return fmt.Errorf("%s prefill: %d of %d answers were not the expected allow; first: %s",
				st.name, res.Failures(), res.Sent, res.FirstFailure)
		}
		if res.Unavailable > 0 {
			b.report.Notes = append(b.report.Notes, fmt.Sprintf(
				"%s prefill (cold caches, concurrency 16): %d of %d answers were 503; first: %s",
				st.name, res.Unavailable, res.Sent, res.FirstFailure))
		}
		b.logf("%s: prefilled %d memberships (%v, %d answered 503)",
			st.name, res.Sent, time.Since(t0).Round(time.Millisecond), res.Unavailable)
		return nil
	}

	noopSources := map[string]func() loadgen.Source{
		"a": b.req.fewKeys,
		"b": func() loadgen.Source { return b.req.userKeys(0) },
		"c": func() loadgen.Source { return b.req.allKeys(0, 1, numKeys, 0) },
		"d": func() loadgen.Source { return b.fresh.source(true) },
		"e": func() loadgen.Source { return b.req.credKeys(credCookie) },
		"f": func() loadgen.Source { return b.req.credKeys(credBearer) },
		"g": func() loadgen.Source { return b.req.credKeys(credAPIKey) },
		"h": b.req.fewKeys,
	}
	for _, sc := range scenarios {
		if !strings.Contains(st.ids, sc.ID) || !b.wants(sc.ID) {
			continue
		}
		for n, l := range b.loads(sc) {
			var src loadgen.Source
			switch sc.ID {
			case "a", "h":
				src = b.req.fewKeys()
			case "b":
				if n == 0 {
					if err := prefill(); err != nil {
						return err
					}
				}
				src = b.req.userKeys(0)
			case "c":
				// Puts every user's token in the token cache, so that c
				// measures Postgres rather than signature checks.
				if n == 0 {
					if err := prefill(); err != nil {
						return err
					}
				}
				src = b.req.allKeys(0, 1, numKeys, 0)
			case "d":
				// Before each run: L1 entries live 30s, and the runs of
				// scenario d must find their memberships there.
				if err := prefill(); err != nil {
					return err
				}
				src = b.fresh.source(false)
			case "e", "f", "g":
				// Steady state: the measured window follows the warm-up,
				// which loads the few sessions, keys and memberships.
				src = b.req.credKeys(sc.Cred)
			}
			if _, err := b.measure(ctx, b.noop, sc, "noop", l, noopSources[sc.ID]()); err != nil {
				return err
			}
			res, err := b.measure(ctx, sidecar, sc, "sidecar", l, src)
			if err != nil {
				return err
			}
			if sc.ID == "d" {
				b.fresh.used(res.Sent)
			}
		}
	}

	mem, err := readMemory(s.pid())
	if err != nil {
		return err
	}
	m := memoryRow{Instance: st.name, Memory: mem}
	switch st.name {
	case "sidecar-ad":
		m.Note = fmt.Sprintf("after a+d: L1 holds the %d memberships of d (30s TTL)", numUsers)
	case "sidecar-b":
		n, err := b.countKeys(ctx, prefix)
		if err != nil {
			return err
		}
		m.Note = fmt.Sprintf("after b: %d memberships cached in Redis; L1 (1ms TTL) holds none live", n)
	case "sidecar-c":
		m.Note = "after c: no Redis, L1 1ms TTL; nothing cached"
	case "sidecar-efg":
		m.Note = fmt.Sprintf("after e+f+g: L1 holds %d sessions, %d API keys and their memberships", fewUsers, fewUsers)
	case "sidecar-h":
		m.Note = fmt.Sprintf("after h (--grpc-codec proto): L1 holds %d memberships", fewUsers)
	}
	if met, err := testproc.ScrapeMetrics(ctx, s.httpAddr); err == nil {
		m.HeapInuse = met.Sum("go_memstats_heap_inuse_bytes")
	}
	b.report.Memory = append(b.report.Memory, m)
	return b.noteWarnings(s)
}

// fillStep loads cfg.Fill distinct memberships into a fresh sidecar's L1
// (no Redis, default L1 settings) and measures its memory before and after.
func (b *bench) fillStep(ctx context.Context) error {
	const name = "sidecar-fill"
	fill := uint64(min(b.cfg.Fill, numUsers*orgsPerUser))
	s, err := b.start(ctx, name, sidecarReady, b.cfg.Sidecar, b.sidecarArgs("")...)
	if err != nil {
		return err
	}
	defer s.stop()
	conns, closeConns, err := b.dial(s.grpcAddr)
	if err != nil {
		return err
	}
	defer closeConns()
	if err := b.warm(ctx, target{s, conns}); err != nil {
		return err
	}
	load := func(src loadgen.Source, workers int) (*loadgen.Result, error) {
		res, err := loadgen.Run(ctx, loadgen.Config{
			Conns: conns, Workers: workers, Duration: 3 * time.Minute, Source: src, CheckIdentity: true,
		})
		if err != nil {
			return nil, err
		}
		// As in a prefill: loads from cold caches may outlast
		// --check-timeout (503, the load still fills L1); noted, tolerated.
		if res.Failures() > res.Unavailable {
			return nil, fmt.Errorf("%s: %d of %d answers were not the expected allow; first: %s",
				name, res.Failures(), res.Sent, res.FirstFailure)
		}
		if res.Unavailable > 0 {
			b.report.Notes = append(b.report.Notes, fmt.Sprintf("%s (loading from Postgres, concurrency %d): %d of %d answers were 503; first: %s",
				name, workers, res.Unavailable, res.Sent, res.FirstFailure))
		}
		return res, nil
	}
	before, err := readMemory(s.pid())
	if err != nil {
		return err
	}
	m0, err := testproc.ScrapeMetrics(ctx, s.httpAddr)
	if err != nil {
		return err
	}
	t0 := time.Now()
	res, err := load(b.req.allKeys(0, 1, numKeys, fill), 64)
	if err != nil {
		return err
	}
	took := time.Since(t0)
	m1, err := testproc.ScrapeMetrics(ctx, s.httpAddr)
	if err != nil {
		return err
	}
	// Count what L1 holds: re-read every 10th key and count L1 hits. The
	// re-read also allocates enough to run the GC a few times, so the
	// memory read after it is mostly live data, not garbage of the fill.
	sample := fill / 10
	if _, err := load(b.req.allKeys(0, 10, numKeys, sample), 16); err != nil {
		return err
	}
	after, err := readMemory(s.pid())
	if err != nil {
		return err
	}
	m2, err := testproc.ScrapeMetrics(ctx, s.httpAddr)
	if err != nil {
		return err
	}
	hits := tierDelta(m1, m2).L1Hit
	cached := int(float64(fill) * hits / float64(sample))
	f := fillRow{
		Requested: int(fill), Took: took.Round(time.Millisecond).String(),
		Throughput: float64(res.Sent) / took.Seconds(),
		Before:     before, After: after, CachedEstimate: cached, Sample: int(sample), SampleHits: int(hits),
		Evictions:  m2.Sum("authz_cache_evictions_total", "tier", "l1") - m0.Sum("authz_cache_evictions_total", "tier", "l1"),
		HeapBefore: m0.Sum("go_memstats_heap_inuse_bytes"), HeapAfter: m2.Sum("go_memstats_heap_inuse_bytes"),
		LiveBefore: liveHeap(m0), LiveAfter: liveHeap(m2),
	}
	if cached > 0 {
		f.BytesPerEntry = float64(after.RSSKiB-before.RSSKiB) * 1024 / float64(cached)
		f.LiveBytesPerEntry = (f.LiveAfter - f.LiveBefore) / float64(cached)
	}
	b.report.Fill = &f
	b.logf("%s: %d memberships loaded in %v; L1 holds ~%d; RSS %d -> %d KiB",
		name, fill, f.Took, cached, before.RSSKiB, after.RSSKiB)
	return b.noteWarnings(s)
}

// measure runs one (scenario, server, load) and records it. It fails on
// any answer that is not the expected allow, and on a fixed-rate run that
// could not keep its schedule (loadgen.ErrBehind).
func (b *bench) measure(ctx context.Context, t target, sc scenario, kind string, l load, src loadgen.Source) (*loadgen.Result, error) {
	s := t.srv
	sidecar := kind == "sidecar"
	var before testproc.Metrics
	if sidecar {
		var err error
		if before, err = testproc.ScrapeMetrics(ctx, s.httpAddr); err != nil {
			return nil, err
		}
	}
	cpu0, err := cpuTime(s.pid())
	if err != nil {
		return nil, err
	}
	var pg0 map[int32]time.Duration
	if sidecar {
		pg0 = pgBackends(ctx, b.dbURL)
	}
	lc := loadgen.Config{
		Conns: t.conns, Workers: l.Conc, Warmup: b.cfg.Warmup, Duration: b.cfg.Duration,
		Source: src, CheckIdentity: sidecar,
	}
	if l.Rate > 0 {
		lc.Workers, lc.Rate, lc.MaxInFlight, lc.Duration = 0, float64(l.Rate), b.cfg.MaxInFlight, b.cfg.RateDuration
	}
	stall := watchStalls(5 * time.Millisecond)
	res, err := loadgen.Run(ctx, lc)
	maxStall := stall()
	// A run that fell behind its schedule is still recorded and logged
	// below, for the diagnosis, and then fails the benchmark.
	behind := err
	if err != nil && !errors.Is(err, loadgen.ErrBehind) {
		return nil, err
	}
	cpu1, err := cpuTime(s.pid())
	if err != nil {
		return nil, err
	}
	row := runRow{
		Scenario: sc.ID, Name: sc.Name, Server: kind, Concurrency: l.Conc,
		Summary: loadgen.Summarize(res.Latencies, res.Elapsed), Sent: res.Sent,
		Failures: res.Failures(), Unavailable: res.Unavailable, Exhausted: res.Exhausted,
		DriverStall: maxStall,
	}
	if l.Rate > 0 {
		lag := loadgen.Summarize(res.SendLags, 0)
		row.FixedRate = &fixedRateRow{
			Rate: l.Rate, MaxInFlight: lc.MaxInFlight, Late: res.Late,
			SendLagP50: lag.P50, SendLagP99: lag.P99, SendLagMax: lag.Max,
		}
	}
	row.PGCPUPerRequest = -1
	if res.Sent > 0 {
		row.CPUPerRequest = (cpu1 - cpu0) / time.Duration(res.Sent)
		if d := pgCPUDelta(pg0, pgBackends(ctx, b.dbURL)); sidecar && d >= 0 {
			row.PGCPUPerRequest = d / time.Duration(res.Sent)
		}
	}
	if sidecar {
		after, err := testproc.ScrapeMetrics(ctx, s.httpAddr)
		if err != nil {
			return nil, err
		}
		t := tierDelta(before, after)
		row.Tiers = &t
		tok := tokenDelta(before, after)
		row.TokenHits = &tok
		if floor := b.report.find(sc.ID, "noop", l); floor != nil {
			r := loadgen.Compare(row.Summary, floor.Summary)
			row.Ratio = &r
		}
	}
	b.report.Runs = append(b.report.Runs, row)
	sched := ""
	if f := row.FixedRate; f != nil {
		sched = fmt.Sprintf("  late %d  send lag p99 %s max %s", f.Late, loadgen.FormatDuration(f.SendLagP99), loadgen.FormatDuration(f.SendLagMax))
	}
	b.logf("%-12s %-7s c=%-7s %8.0f req/s  p50 %-8s p99 %-8s p99.9 %-8s CPU/req %-6s PG/req %-6s stall %-6s 503s %d  %s  tok %s%s",
		sc.Name, kind, l, row.Summary.Throughput, loadgen.FormatDuration(row.Summary.P50), loadgen.FormatDuration(row.Summary.P99),
		loadgen.FormatDuration(row.Summary.P999), loadgen.FormatDuration(row.CPUPerRequest), row.pgCPUText(), loadgen.FormatDuration(maxStall), res.Unavailable, row.tierText(), row.tokenText(), sched)
	// A deny, an error or a wrong identity is a wrong answer: the run is
	// void. A 503 (the sidecar's --check-timeout expired) is a slow answer,
	// not a wrong one: it is counted and shown, since on a shared 2-core
	// machine a stall of the whole host can cause a few.
	if res.Failures() > res.Unavailable {
		return nil, fmt.Errorf("%s against %s at load %s: %d of %d answers were not the expected allow "+
			"(%d denied, of which %d were 503s; %d errors; %d wrong identity); first: %s — a benchmark of wrong answers is worthless",
			sc.Name, kind, l, res.Failures(), res.Sent, res.Denied, res.Unavailable, res.Errors, res.WrongIdentity, res.FirstFailure)
	}
	if behind != nil {
		// The server (or this machine) could not carry the rate: its
		// latencies are those of an overload, not of that rate.
		return nil, fmt.Errorf("%s against %s at %s: %w (lower BENCH_RATE or raise BENCH_RATE_INFLIGHT)", sc.Name, kind, l, behind)
	}
	if res.Unavailable > 0 {
		b.report.Notes = append(b.report.Notes, fmt.Sprintf("%s %s c=%s: %d of %d answers were 503 (timeouts, or overloaded refusals); first: %s",
			sc.Name, kind, l, res.Unavailable, res.Sent, res.FirstFailure))
	}
	if res.Exhausted {
		b.report.Notes = append(b.report.Notes, fmt.Sprintf(
			"the requests of %s ran out during %s c=%s: its window was %v instead of %v (for d, raise BENCH_FRESH_TOKENS)",
			sc.Name, kind, l, res.Elapsed.Round(time.Millisecond), lc.Duration))
	}
	return res, nil
}

func (b *bench) noteWarnings(s *server) error {
	if n, first := s.warnCount(); n > 0 {
		b.report.Notes = append(b.report.Notes, fmt.Sprintf("%s logged %d warnings/errors; first: %s", s.name, n, first))
	}
	return nil
}

// countKeys counts the Redis keys under prefix.
func (b *bench) countKeys(ctx context.Context, prefix string) (int, error) {
	n := 0
	iter := b.rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		n++
	}
	return n, iter.Err()
}

// deleteKeys removes the Redis keys under prefix.
func (b *bench) deleteKeys(ctx context.Context, prefix string) (int, error) {
	n := 0
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := b.rdb.Del(ctx, batch...).Err()
		n += len(batch)
		batch = batch[:0]
		return err
	}
	iter := b.rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	return n, errors.Join(iter.Err(), flush())
}

// liveHeap estimates the live heap at the last GC from the GC's next
// target: the runtime sets it to live*(1+GOGC/100).
func liveHeap(m testproc.Metrics) float64 {
	gogc := 100.0
	if v := m.Sum("go_gc_gogc_percent"); v > 0 {
		gogc = v
	}
	return m.Sum("go_memstats_next_gc_bytes") / (1 + gogc/100)
}

func infoField(info, key string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+":"); ok {
			return v
		}
	}
	return "?"
}

func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "nogit"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		c += "-dirty"
	}
	return c
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}
