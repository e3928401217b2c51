package observe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// The reads from the source of truth, as the op label names them.
const (
	OpMembership     = "membership"
	OpSessionByToken = "session_by_token"
	OpSessionByID    = "session_by_id"
	OpAPIKey         = "api_key"
	// OpSecondarySession is a session read from Better Auth's secondary
	// storage (a Redis of the application's), when the policy says so.
	OpSecondarySession = "secondary_session"
)

// causes bound the cause label: a source error names one of them (see
// causer), else it is other.
var causes = []string{"timeout", "canceled", "connection", "schema", "replica_lag", "other"}

var results = []string{"ok", "error", "timeout", "canceled"}

// causer is an error that says why a read failed, with one of causes
// (internal/pg's *pg.Error does). Read through this interface so that
// observe needs no data-layer import.
type causer interface {
	error
	SourceCause() string
}

// DefaultLogEvery is how often, at most, Sources logs a failure of each
// cause.
const DefaultLogEvery = 10 * time.Second

// SourcesConfig tunes Sources. Zero fields take defaults.
type SourcesConfig struct {
	// LogEvery: at most one log line per cause per LogEvery (the others
	// are counted, and the next line says how many were left out);
	// DefaultLogEvery by default.
	LogEvery time.Duration
	// Now returns the current time; time.Now by default. For tests.
	Now func() time.Time
}

// Sources counts, times and logs the reads from the source of truth
// (PostgreSQL): memberships, sessions and API keys. It decorates the
// repositories so the data layer stays free of metrics and logs. The
// decorators it makes (Members, Sessions, APIKeys) share its metrics:
//
//   - authz_source_query_duration_seconds{op,result}: every read, by op and
//     result (ok, error, timeout, canceled);
//   - authz_source_errors_total{op,cause}: failed reads, by cause (timeout,
//     canceled, connection, schema, replica_lag: a hot standby behind an
//     invalidated change, other).
//
// Every failure is logged with its cause, at most once per cause per
// LogEvery.
type Sources struct {
	log      *zap.Logger
	cfg      SourcesConfig
	duration map[string]map[string]prometheus.Observer // op -> result, resolved once
	errors   map[string]map[string]prometheus.Counter  // op -> cause, resolved once

	mu         sync.Mutex
	lastLogged map[string]time.Time // guarded by mu; by cause
	suppressed map[string]int       // guarded by mu; by cause, since the last line
}

// NewSources registers the source metrics on reg and logs on log.
func NewSources(log *zap.Logger, reg prometheus.Registerer, cfg SourcesConfig) (*Sources, error) {
	if cfg.LogEvery <= 0 {
		cfg.LogEvery = DefaultLogEvery
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "authz_source_query_duration_seconds",
		Help:    "Reads from the source of truth by op (membership, session_by_token, session_by_id, api_key from PostgreSQL; secondary_session from Better Auth's secondary storage) and result (ok, error, timeout, canceled).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"op", "result"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authz_source_errors_total",
		Help: "Failed reads from the source of truth by op and cause (timeout, canceled, connection, schema, replica_lag, other).",
	}, []string{"op", "cause"})
	for _, c := range []prometheus.Collector{duration, errs} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("observe: register source metrics: %w", err)
		}
	}
	s := &Sources{
		log: log.Named("source"), cfg: cfg,
		duration: map[string]map[string]prometheus.Observer{}, errors: map[string]map[string]prometheus.Counter{},
		lastLogged: map[string]time.Time{}, suppressed: map[string]int{},
	}
	// Every series exists from the start (at zero), so rates and alerts
	// work before the first failure.
	for _, op := range []string{OpMembership, OpSessionByToken, OpSessionByID, OpAPIKey, OpSecondarySession} {
		s.duration[op], s.errors[op] = map[string]prometheus.Observer{}, map[string]prometheus.Counter{}
		for _, r := range results {
			s.duration[op][r] = duration.WithLabelValues(op, r)
		}
		for _, c := range causes {
			s.errors[op][c] = errs.WithLabelValues(op, c)
		}
	}
	return s, nil
}

// observe records one read of op that started at start and ended with err.
func (s *Sources) observe(op string, start time.Time, err error) {
	elapsed := time.Since(start).Seconds()
	if err == nil {
		s.duration[op]["ok"].Observe(elapsed)
		return
	}
	cause := causeOf(err)
	result := "error"
	if cause == "timeout" || cause == "canceled" {
		result = cause
	}
	s.duration[op][result].Observe(elapsed)
	s.errors[op][cause].Inc()
	if ok, suppressed := s.logDue(cause); ok {
		s.log.Warn("source read failed", zap.String("op", op), zap.String("cause", cause),
			zap.Int("suppressed", suppressed), zap.Error(err))
	}
}

// causeOf names why err happened, from causes.
func causeOf(err error) string {
	if c, ok := errors.AsType[causer](err); ok && slices.Contains(causes, c.SourceCause()) {
		return c.SourceCause()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	// A Redis client's (secondary storage) network failures.
	if ne, ok := errors.AsType[net.Error](err); ok {
		if ne.Timeout() {
			return "timeout"
		}
		return "connection"
	}
	return "other"
}

// logDue reports whether a failure of cause may be logged now, and how many
// of that cause were not since the last line.
func (s *Sources) logDue(cause string) (bool, int) {
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if last, ok := s.lastLogged[cause]; ok && now.Sub(last) < s.cfg.LogEvery {
		s.suppressed[cause]++
		return false, 0
	}
	n := s.suppressed[cause]
	s.lastLogged[cause], s.suppressed[cause] = now, 0
	return true, n
}

// Source decorates a roles.Source (membership reads).
type Source struct {
	next roles.Source
	s    *Sources
}

// Members wraps next.
func (s *Sources) Members(next roles.Source) *Source { return &Source{next: next, s: s} }

// Membership asks next and records the outcome.
func (src *Source) Membership(ctx context.Context, sub roles.Subject) (roles.Membership, error) {
	start := time.Now()
	m, err := src.next.Membership(ctx, sub)
	src.s.observe(OpMembership, start, err)
	return m, err
}

// SessionSource reads Better Auth sessions (*pg.SessionRepository).
type SessionSource interface {
	SessionByToken(ctx context.Context, token string) (authn.Session, error)
	SessionByID(ctx context.Context, id string) (authn.Session, error)
}

// Sessions decorates a SessionSource.
type Sessions struct {
	next SessionSource
	s    *Sources
}

// Sessions wraps next.
func (s *Sources) Sessions(next SessionSource) *Sessions { return &Sessions{next: next, s: s} }

// SessionByToken asks next and records the outcome (never the token).
func (src *Sessions) SessionByToken(ctx context.Context, token string) (authn.Session, error) {
	start := time.Now()
	v, err := src.next.SessionByToken(ctx, token)
	src.s.observe(OpSessionByToken, start, err)
	return v, err
}

// SessionByID asks next and records the outcome.
func (src *Sessions) SessionByID(ctx context.Context, id string) (authn.Session, error) {
	start := time.Now()
	v, err := src.next.SessionByID(ctx, id)
	src.s.observe(OpSessionByID, start, err)
	return v, err
}

// APIKeySource reads Better Auth API keys (*pg.APIKeyRepository).
type APIKeySource interface {
	APIKeyByHash(ctx context.Context, hash string) (authn.APIKey, error)
}

// APIKeys decorates an APIKeySource.
type APIKeys struct {
	next APIKeySource
	s    *Sources
}

// APIKeys wraps next.
func (s *Sources) APIKeys(next APIKeySource) *APIKeys { return &APIKeys{next: next, s: s} }

// APIKeyByHash asks next and records the outcome.
func (src *APIKeys) APIKeyByHash(ctx context.Context, hash string) (authn.APIKey, error) {
	start := time.Now()
	v, err := src.next.APIKeyByHash(ctx, hash)
	src.s.observe(OpAPIKey, start, err)
	return v, err
}

// SecondarySource reads sessions from Better Auth's secondary storage
// (*cache.SecondarySessions).
type SecondarySource interface {
	SessionByToken(ctx context.Context, token string) (*authn.Session, roles.Tier, error)
}

// Secondary is a SecondarySource whose reads are recorded.
type Secondary struct {
	next SecondarySource
	s    *Sources
}

// Secondary decorates next: secondary storage is the sessions' source of
// truth then, and its failures are counted and logged like PostgreSQL's.
func (s *Sources) Secondary(next SecondarySource) *Secondary { return &Secondary{next: next, s: s} }

// SessionByToken asks next and records the outcome (never the token).
func (src *Secondary) SessionByToken(ctx context.Context, token string) (*authn.Session, roles.Tier, error) {
	start := time.Now()
	v, tier, err := src.next.SessionByToken(ctx, token)
	src.s.observe(OpSecondarySession, start, err)
	return v, tier, err
}
