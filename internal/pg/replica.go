package pg

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// ErrReplicaLag is matched by the error of a read refused because the hot
// standby DATABASE_URL reaches has not replayed, within
// FenceConfig.MaxWait, a change the caches were told about (or because
// the primary's position could not be learnt). The read fails closed: an
// answer from before the change must not be served or cached.
var ErrReplicaLag = errors.New("replica lag")

// CauseReplicaLag: the standby had not replayed an invalidated change in
// time (ErrReplicaLag).
const CauseReplicaLag = "replica_lag"

// DefaultFenceMaxWait is how long a read on a standby waits, by default,
// for it to replay an invalidated change.
const DefaultFenceMaxWait = time.Second

// FenceConfig tunes a Fence. Zero fields take defaults.
type FenceConfig struct {
	// MaxWait bounds how long one read waits for the standby to replay
	// the primary's position (and for that position to be learnt);
	// DefaultFenceMaxWait by default. Keep it below the load timeout, so
	// that a lagging standby is reported as such rather than as a
	// timeout.
	MaxWait time.Duration
	// ConnectTimeout bounds one connection to the primary;
	// DefaultConnectTimeout by default.
	ConnectTimeout time.Duration
	// Retry is the wait between failed attempts to read the primary's
	// position; 100ms by default.
	Retry time.Duration
}

func (c *FenceConfig) defaults() {
	if c.MaxWait <= 0 {
		c.MaxWait = DefaultFenceMaxWait
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.Retry <= 0 {
		c.Retry = 100 * time.Millisecond
	}
}

// Fence keeps reads from a hot standby from returning data older than an
// invalidation the caches applied. A cache refuses answers loaded before
// an invalidation of their subject and reloads; on a primary the reload
// sees the change (the notification or hook came after its commit), but a
// standby may not have replayed it yet, and the reload would put the old
// answer back in the cache, stamped as newer than the invalidation.
//
// So every invalidation is raised here before the caches apply it (Raise,
// through invalidate.Barrier); Run then reads the primary's WAL insert
// position, which is past the commit of every change notified so far. A
// read on the standby that starts afterwards first waits until that
// position is known and the standby has replayed it
// (pg_last_wal_replay_lsn), at most MaxWait; otherwise it fails with
// ErrReplicaLag, which callers treat like any unavailable source: fail
// closed. One position read covers every invalidation raised before it,
// so a burst costs one primary query.
//
// A Fence does nothing until a DB finds that it reads a standby
// (activate): on a primary, Raise is one atomic load and reads never
// consult it.
//
// The insert position (pg_current_wal_insert_lsn) rather than the write
// position: with synchronous_commit=off a commit, and its notification,
// may precede the WAL write of its commit record.
type Fence struct {
	pool *pgxpool.Pool // the primary; nil when no primary URL was given
	cfg  FenceConfig
	log  *zap.Logger
	m    fenceMetrics

	// active is set once a DB read a standby through this fence.
	active atomic.Bool
	// raised counts raised invalidations; covered is the count the last
	// position read covers (it read after they were raised), and target
	// that position, stored before covered is. replayed is the greatest
	// replay position the standby reported.
	raised, covered  atomic.Uint64
	target, replayed atomic.Uint64
	kick             chan struct{} // wakes Run; capacity 1

	mu      sync.Mutex
	changed chan struct{} // guarded by mu; closed and replaced when covered moves
	warned  time.Time     // guarded by mu; last position-error warning
}

// NewFence configures a Fence reading the primary's position through
// primaryURL (a direct connection to the primary: a standby cannot tell
// it, and a pooler may route to either). An empty primaryURL makes a
// fence that refuses every read once a standby is found, naming the
// setting to add. It registers its metrics on reg; it does not connect.
func NewFence(primaryURL string, cfg FenceConfig, log *zap.Logger, reg prometheus.Registerer) (*Fence, error) {
	cfg.defaults()
	f := &Fence{cfg: cfg, log: log.Named("replica"), kick: make(chan struct{}, 1), changed: make(chan struct{})}
	if primaryURL != "" {
		pcfg, err := pgxpool.ParseConfig(primaryURL)
		if err != nil {
			return nil, fmt.Errorf("pg: fence: %w", err)
		}
		pcfg.MaxConns = 1 // one position read at a time, from Run
		pcfg.MaxConnIdleTime = DefaultMaxConnIdleTime
		pcfg.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
		pcfg.ConnConfig.RuntimeParams["application_name"] = applicationName + "-fence"
		pcfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
		if f.pool, err = pgxpool.NewWithConfig(context.Background(), pcfg); err != nil {
			return nil, fmt.Errorf("pg: fence: %w", err)
		}
	}
	var err error
	if f.m, err = newFenceMetrics(reg); err != nil {
		return nil, err
	}
	return f, nil
}

// Close closes the connection to the primary.
func (f *Fence) Close() {
	if f.pool != nil {
		f.pool.Close()
	}
}

// Raise says that the caches are about to apply an invalidation: reads on
// the standby that start from now on wait for a primary position read
// after this call. It never blocks. It does nothing while no standby was
// found.
func (f *Fence) Raise() {
	if !f.active.Load() {
		return
	}
	f.raised.Add(1)
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// activate starts fencing, raising once: changes invalidated while the
// database still looked like a primary need a position too.
func (f *Fence) activate() {
	if f.active.CompareAndSwap(false, true) {
		f.log.Info("DATABASE_URL is a hot standby: reads after an invalidation wait until it has replayed the change",
			zap.Duration("max_wait", f.cfg.MaxWait))
	}
	f.Raise()
}

// Run reads the primary's position whenever invalidations were raised
// since the last read, until ctx ends. A failed read is retried every
// Retry; reads on the standby meanwhile wait, then fail closed.
func (f *Fence) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.kick:
		}
		for g := f.raised.Load(); f.covered.Load() < g; g = f.raised.Load() {
			lsn, err := f.position(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				f.m.positionErrors.Inc()
				f.warn("reading the primary's WAL position failed; reads on the standby fail closed until it works", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(f.cfg.Retry):
				}
				continue
			}
			raise64(&f.target, lsn)
			f.covered.Store(g)
			f.mu.Lock()
			close(f.changed)
			f.changed = make(chan struct{})
			f.mu.Unlock()
		}
	}
}

// position reads the primary's WAL insert position.
func (f *Fence) position(ctx context.Context) (uint64, error) {
	if f.pool == nil {
		return 0, errors.New("DATABASE_URL is a hot standby and no primary URL is set (--pg-primary-url or --pg-listen-url)")
	}
	ctx, cancel := context.WithTimeout(ctx, f.cfg.MaxWait+f.cfg.ConnectTimeout)
	defer cancel()
	var lsn int64
	if err := f.pool.QueryRow(ctx, "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::int8").Scan(&lsn); err != nil {
		return 0, fmt.Errorf("pg: primary position: %w", err)
	}
	return uint64(lsn), nil
}

// replayFunc reads the standby's replay position, and whether it is still
// in recovery (a promoted standby is a primary: its reads are current).
type replayFunc func(ctx context.Context) (lsn uint64, recovering bool, err error)

// wait returns once the standby has replayed the primary's position as of
// the last invalidation raised before the call, or ErrReplicaLag after
// MaxWait (another error when replay fails otherwise or ctx ends).
func (f *Fence) wait(ctx context.Context, replay replayFunc) error {
	g := f.raised.Load()
	if f.covered.Load() >= g && f.replayed.Load() >= f.target.Load() {
		f.m.current.Inc() // the common case: nothing new since the last wait
		return nil
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, f.cfg.MaxWait)
	defer cancel()
	lag := func(format string, args ...any) error {
		f.m.outcome.WithLabelValues("lag").Inc()
		return fmt.Errorf("%w: %s (waited %v)", ErrReplicaLag, fmt.Sprintf(format, args...), time.Since(start).Round(time.Millisecond))
	}
	for f.covered.Load() < g {
		f.mu.Lock()
		changed := f.changed
		f.mu.Unlock()
		if f.covered.Load() >= g {
			break
		}
		select {
		case <-changed:
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return lag("the primary's WAL position after the last invalidation is not known")
		}
	}
	target := f.target.Load()
	for backoff := time.Millisecond; ; backoff = min(2*backoff, 20*time.Millisecond) {
		if f.replayed.Load() >= target {
			break
		}
		lsn, recovering, err := replay(wctx)
		if err != nil {
			if ctx.Err() == nil && wctx.Err() != nil {
				return lag("the standby has not replayed %s", formatLSN(target))
			}
			f.m.outcome.WithLabelValues("error").Inc()
			return err
		}
		if !recovering {
			break // promoted: a primary reads what was committed
		}
		raise64(&f.replayed, lsn)
		if lsn >= target {
			break
		}
		select {
		case <-time.After(backoff):
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return lag("the standby replayed %s, not yet %s", formatLSN(lsn), formatLSN(target))
		}
	}
	f.m.outcome.WithLabelValues("waited").Inc()
	f.m.waited.Observe(time.Since(start).Seconds())
	return nil
}

// warn logs at most once per 10 seconds.
func (f *Fence) warn(msg string, err error) {
	f.mu.Lock()
	due := time.Since(f.warned) >= 10*time.Second
	if due {
		f.warned = time.Now()
	}
	f.mu.Unlock()
	if due {
		f.log.Warn(msg, zap.Error(err))
	}
}

// raise64 sets v to n unless it already holds more.
func raise64(v *atomic.Uint64, n uint64) {
	for {
		cur := v.Load()
		if cur >= n || v.CompareAndSwap(cur, n) {
			return
		}
	}
}

// formatLSN writes a WAL position as PostgreSQL does (0/16B3748).
func formatLSN(lsn uint64) string { return fmt.Sprintf("%X/%X", lsn>>32, uint32(lsn)) }

type fenceMetrics struct {
	current        prometheus.Counter
	outcome        *prometheus.CounterVec
	waited         prometheus.Histogram
	positionErrors prometheus.Counter
}

func newFenceMetrics(reg prometheus.Registerer) (fenceMetrics, error) {
	outcome := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authz_pg_replica_reads_total",
		Help: "Reads on a hot standby by what the replica fence did: current (replayed past every invalidation already), waited (waited for replay, then read), lag (gave up after the maximum wait: failed closed), error (reading the replay position failed).",
	}, []string{"outcome"})
	m := fenceMetrics{
		current: outcome.WithLabelValues("current"),
		outcome: outcome,
		waited: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "authz_pg_replica_wait_seconds",
			Help:    "Time reads on a hot standby waited for it to replay an invalidated change (reads that waited and then read).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		positionErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authz_pg_replica_position_errors_total",
			Help: "Failed reads of the primary's WAL position by the replica fence (reads on the standby fail closed meanwhile).",
		}),
	}
	for _, o := range []string{"waited", "lag", "error"} {
		outcome.WithLabelValues(o)
	}
	for _, c := range []prometheus.Collector{outcome, m.waited, m.positionErrors} {
		if err := reg.Register(c); err != nil {
			return fenceMetrics{}, fmt.Errorf("pg: register fence metrics: %w", err)
		}
	}
	return m, nil
}
