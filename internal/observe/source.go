package observe

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// Source counts and times the queries to the source of truth (Postgres).
// It decorates a roles.Source so the data layer stays free of metrics.
type Source struct {
	next     roles.Source
	duration *prometheus.HistogramVec
}

// NewSource wraps next, registering its metrics on reg.
func NewSource(next roles.Source, reg prometheus.Registerer) (*Source, error) {
	s := &Source{
		next: next,
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "authz_source_query_duration_seconds",
			Help:    "Membership queries to PostgreSQL, by result (ok, error, timeout, canceled).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"result"}),
	}
	if err := reg.Register(s.duration); err != nil {
		return nil, fmt.Errorf("observe: register source metrics: %w", err)
	}
	return s, nil
}

// Membership asks next and records the outcome.
func (s *Source) Membership(ctx context.Context, sub roles.Subject) (roles.Membership, error) {
	start := time.Now()
	m, err := s.next.Membership(ctx, sub)
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded):
		result = "timeout"
	case errors.Is(err, context.Canceled):
		result = "canceled"
	default:
		result = "error"
	}
	s.duration.WithLabelValues(result).Observe(time.Since(start).Seconds())
	return m, err
}
