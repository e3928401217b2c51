package invalidate

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Local is this process's record of invalidations; *cache.Invalidations
// satisfies it.
type Local interface {
	// Invalidate refuses, from now on, every cached answer about subject
	// loaded before now.
	Invalidate(subject Subject)
	// All does so for every answer, in every tier.
	All()
	// FlushLocal does so for every answer held in this process's memory
	// (messages may have been missed).
	FlushLocal()
}

// Markers writes the shared tier's invalidation markers, one per subject
// (and the marker of everything with all); *cache.L2Store satisfies it.
type Markers interface {
	Mark(ctx context.Context, subjects []Subject, all bool) error
}

// Bus is the channel between replicas; *cache.RedisBus satisfies it.
// Subscribe blocks until ctx ends, calling onSubscribed on every
// (re)subscription and onMessage for each message.
type Bus interface {
	Publish(ctx context.Context, payload []byte) error
	Subscribe(ctx context.Context, onSubscribed func(), onMessage func([]byte))
}

// Feed is the database's notification stream; *pg.Listener satisfies it.
// Listen blocks until ctx ends, calling onConnected each time it starts
// listening (notifications sent while it was not are lost) and onNotify
// for each notification payload.
type Feed interface {
	Listen(ctx context.Context, onConnected func(), onNotify func(payload string))
}

// Barrier orders the source's reads after invalidations when the source
// may lag the changes (a hot standby); *pg.Fence satisfies it. Raise is
// called before each invalidation or flush is applied locally, and must
// not block: reads that start after it must reflect every change made
// before it.
type Barrier interface {
	Raise()
}

// Deps are the Service's collaborators. Local is required; each other may
// be nil: no Markers (no L2), no Bus (no channel: only the Feed, applied
// locally), no Feed (messages come from the Bus only), no Barrier (the
// source is the primary: a read after a notification sees its change).
type Deps struct {
	Local   Local
	Markers Markers
	Bus     Bus
	Feed    Feed
	Barrier Barrier
}

// Config tunes a Service. Zero fields take defaults.
type Config struct {
	// Source names this sidecar in the messages it publishes; hostname:pid
	// by default.
	Source string
	// Timeout bounds one marker write or publish; 1s by default.
	Timeout time.Duration
	// RetryEvery is how often a failed republish is retried (as one
	// KindAll message); 1s by default.
	RetryEvery time.Duration
	// Remember is how many message ids are kept for de-duplication; 4096
	// by default.
	Remember int
	// Now is the clock (tests may replace it).
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.Source == "" {
		host, _ := os.Hostname()
		c.Source = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if c.Timeout <= 0 {
		c.Timeout = time.Second
	}
	if c.RetryEvery <= 0 {
		c.RetryEvery = time.Second
	}
	if c.Remember <= 0 {
		c.Remember = 4096
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Service applies invalidation messages from the bus and the database feed
// to this process's caches, republishes the feed's to the bus, and flushes
// when messages may have been missed:
//
//   - on every (re)subscription to the bus, L1 is flushed (FlushLocal):
//     this replica may have missed messages, but their publishers wrote
//     the L2 markers, so L2 stays usable;
//   - on every (re)connection of the feed, everything is invalidated, on
//     every replica (a KindAll message, with its L2 marker): nobody heard
//     the notifications sent meanwhile, so nobody wrote their markers;
//   - when a feed message cannot be republished, a KindAll message is
//     published as soon as the bus works again.
//
// Messages are applied at most once per id, so a sidecar hearing its own
// republished message (or two listeners republishing one notification)
// does the work once.
type Service struct {
	cfg  Config
	deps Deps
	log  *zap.Logger
	m    metrics

	// needAll is set when a feed message could not be republished or
	// marked: the others missed it.
	needAll atomic.Bool

	mu   sync.Mutex
	seen map[string]struct{}  // guarded by mu
	ring []string             // guarded by mu; ids in arrival order
	next int                  // guarded by mu; ring slot to reuse
	warn map[string]time.Time // guarded by mu; last warning per op
}

// New returns a Service; it does nothing until Run.
func New(cfg Config, deps Deps, log *zap.Logger, reg prometheus.Registerer) (*Service, error) {
	cfg.defaults()
	if deps.Local == nil {
		return nil, fmt.Errorf("invalidate: no local invalidation store")
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Service{
		cfg: cfg, deps: deps, log: log.Named("invalidate"), m: m,
		seen: make(map[string]struct{}, cfg.Remember), ring: make([]string, cfg.Remember),
		warn: map[string]time.Time{},
	}, nil
}

// Run subscribes and listens until ctx ends.
func (s *Service) Run(ctx context.Context) {
	var wg sync.WaitGroup
	if s.deps.Bus != nil {
		wg.Go(func() {
			s.deps.Bus.Subscribe(ctx, s.subscribed, func(b []byte) { s.fromBus(ctx, b) })
		})
	}
	if s.deps.Feed != nil {
		wg.Go(func() {
			s.deps.Feed.Listen(ctx, func() { s.listening(ctx) }, func(p string) { s.fromFeed(ctx, p) })
		})
		wg.Go(func() { s.retry(ctx) })
	}
	wg.Wait()
}

// Publish marks and publishes m (for tools and tests; the Service itself
// publishes only what the feed says). m gets an id, version and time when
// it lacks them.
func (s *Service) Publish(ctx context.Context, m Message) error {
	s.stamp(&m)
	s.remember(m.ID)
	if err := s.mark(ctx, m); err != nil {
		return err
	}
	return s.publish(ctx, m)
}

func (s *Service) stamp(m *Message) {
	if m.V == 0 {
		m.V = Version
	}
	if m.ID == "" {
		m.ID = NewID()
	}
	if m.Src == "" {
		m.Src = s.cfg.Source
	}
	if m.At == 0 {
		m.At = s.cfg.Now().UnixMilli()
	}
}

func (s *Service) subscribed() {
	// Missed messages' changes may not be on a lagging source yet either.
	s.raise()
	s.deps.Local.FlushLocal()
	s.m.flushes.WithLabelValues("redis_subscribe").Inc()
}

func (s *Service) fromBus(ctx context.Context, b []byte) {
	m, err := Parse(b)
	if err != nil {
		// Not one of ours (our publishers always write valid messages):
		// counted and dropped rather than flushing on garbage.
		s.m.messages.WithLabelValues("invalid").Inc()
		s.warnf("decode", "undecodable invalidation message dropped", zap.Error(err), zap.Int("bytes", len(b)))
		return
	}
	if !s.apply(m) {
		return
	}
	// Receivers mark too: the publisher may not have (a third-party
	// publisher, or its Redis write failed). Best effort.
	if err := s.mark(ctx, m); err != nil {
		s.warnf("mark", "writing invalidation markers failed", zap.Error(err))
	}
}

func (s *Service) fromFeed(ctx context.Context, payload string) {
	m, err := Parse([]byte(payload))
	if err != nil {
		// Our own triggers wrote it, so it meant something: forget all.
		s.m.messages.WithLabelValues("invalid").Inc()
		s.warnf("decode", "undecodable database notification; invalidating everything", zap.Error(err))
		m = Message{Kind: KindAll}
		s.stamp(&m)
	}
	if !s.apply(m) {
		return
	}
	s.relay(ctx, m)
}

// listening runs when the feed (re)starts listening: nobody heard what the
// database said before, so every replica forgets everything.
func (s *Service) listening(ctx context.Context) {
	s.m.flushes.WithLabelValues("pg_listen").Inc()
	m := Message{Kind: KindAll}
	s.stamp(&m)
	s.apply(m)
	s.relay(ctx, m)
}

// relay marks and republishes a feed message; on failure the others are
// told to forget everything once the bus works again.
func (s *Service) relay(ctx context.Context, m Message) {
	if err := s.mark(ctx, m); err != nil {
		s.needAll.Store(true)
		s.warnf("mark", "writing invalidation markers failed; will invalidate everything when Redis is back", zap.Error(err))
	}
	if err := s.publish(ctx, m); err != nil {
		s.needAll.Store(true)
		s.warnf("publish", "republishing a database notification failed; will invalidate everything when Redis is back", zap.Error(err))
	}
}

func (s *Service) retry(ctx context.Context) {
	t := time.NewTicker(s.cfg.RetryEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.needAll.Load() {
			continue
		}
		m := Message{Kind: KindAll}
		s.stamp(&m)
		s.remember(m.ID)
		if s.mark(ctx, m) == nil && s.publish(ctx, m) == nil {
			s.needAll.Store(false)
			s.log.Info("published a catch-up invalidation of everything after a failed republish")
		}
	}
}

// apply records m locally unless its id was seen; it reports whether m was
// new.
func (s *Service) apply(m Message) bool {
	if !s.remember(m.ID) {
		s.m.duplicates.Inc()
		return false
	}
	subjects, all := m.Subjects()
	// Before the caches refuse the old answers: a reload they start must
	// not read a source that has not caught up with the change.
	s.raise()
	for _, subject := range subjects {
		s.deps.Local.Invalidate(subject)
	}
	if all {
		s.deps.Local.All()
	}
	s.m.messages.WithLabelValues(string(m.Kind)).Inc()
	if m.At > 0 {
		if lag := s.cfg.Now().Sub(time.UnixMilli(m.At)); lag >= 0 {
			s.m.lag.Observe(lag.Seconds())
		}
	}
	return true
}

// raise tells the barrier, if any, that an invalidation is being applied.
func (s *Service) raise() {
	if s.deps.Barrier != nil {
		s.deps.Barrier.Raise()
	}
}

func (s *Service) mark(ctx context.Context, m Message) error {
	if s.deps.Markers == nil {
		return nil
	}
	subjects, all := m.Subjects()
	cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := s.deps.Markers.Mark(cctx, subjects, all); err != nil {
		s.m.errors.WithLabelValues("mark").Inc()
		return err
	}
	return nil
}

func (s *Service) publish(ctx context.Context, m Message) error {
	if s.deps.Bus == nil {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("invalidate: encode: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := s.deps.Bus.Publish(cctx, b); err != nil {
		s.m.errors.WithLabelValues("publish").Inc()
		return err
	}
	return nil
}

// remember records id and reports whether it is new. The oldest id is
// forgotten when Remember are held.
func (s *Service) remember(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[id]; ok {
		return false
	}
	if old := s.ring[s.next]; old != "" {
		delete(s.seen, old)
	}
	s.ring[s.next] = id
	s.next = (s.next + 1) % len(s.ring)
	s.seen[id] = struct{}{}
	return true
}

// warnf logs at most once per 10 seconds per op, so a Redis outage or a
// flood of garbage does not flood the log.
func (s *Service) warnf(op, msg string, fields ...zap.Field) {
	now := s.cfg.Now()
	s.mu.Lock()
	last, ok := s.warn[op]
	if ok && now.Sub(last) < 10*time.Second {
		s.mu.Unlock()
		return
	}
	s.warn[op] = now
	s.mu.Unlock()
	s.log.Warn(msg, fields...)
}

type metrics struct {
	messages   *prometheus.CounterVec
	flushes    *prometheus.CounterVec
	errors     *prometheus.CounterVec
	duplicates prometheus.Counter
	lag        prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (metrics, error) {
	m := metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_invalidations_total",
			Help: "Invalidation messages applied, by kind (member, user, org, role, session, apikey, all; invalid = undecodable, dropped).",
		}, []string{"kind"}),
		flushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_invalidation_flushes_total",
			Help: "Flushes because messages may have been missed, by reason (redis_subscribe: L1 only; pg_listen: everything, every replica).",
		}, []string{"reason"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_invalidation_errors_total",
			Help: "Failed invalidation operations, by op (mark, publish).",
		}, []string{"op"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authz_invalidation_duplicates_total",
			Help: "Invalidation messages ignored because their id was already applied.",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "authz_invalidation_lag_seconds",
			Help:    "Time from publication to application of invalidation messages (across clocks: approximate).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
	}
	for _, c := range []prometheus.Collector{m.messages, m.flushes, m.errors, m.duplicates, m.lag} {
		if err := reg.Register(c); err != nil {
			return metrics{}, fmt.Errorf("invalidate: register metrics: %w", err)
		}
	}
	return m, nil
}
