package cache

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// tierMetrics counts one tier's lookups of one kind. Labels are fixed per
// tier and kind, so the counters are resolved once here rather than per
// request.
type tierMetrics struct {
	hits, misses, evictions, errors prometheus.Counter
	// stale counts entries found but refused because an invalidation
	// arrived after they were loaded (each is also counted as a miss).
	stale prometheus.Counter
	// refreshes counts background reloads by result (L1 only).
	refreshes *prometheus.CounterVec
}

func newTierMetrics(reg prometheus.Registerer, tier, kind string) (*tierMetrics, error) {
	labels := prometheus.Labels{"tier": tier, "kind": kind}
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "authz_cache_lookups_total",
		Help:        "Cache lookups by tier, kind (access, session_token, session_id, apikey, jwt) and result (hit or miss).",
		ConstLabels: labels,
	}, []string{"result"})
	evictions := prometheus.NewCounter(prometheus.CounterOpts{
		Name:        "authz_cache_evictions_total",
		Help:        "Entries evicted from a cache tier to stay within its budget.",
		ConstLabels: labels,
	})
	errs := prometheus.NewCounter(prometheus.CounterOpts{
		Name:        "authz_cache_errors_total",
		Help:        "Cache tier operations that failed (the lookup went on to the next tier).",
		ConstLabels: labels,
	})
	stale := prometheus.NewCounter(prometheus.CounterOpts{
		Name:        "authz_cache_stale_total",
		Help:        "Cache entries found but not served because an invalidation arrived after they were loaded (also counted as misses).",
		ConstLabels: labels,
	})
	refreshes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "authz_cache_refreshes_total",
		Help:        "Background reloads of entries near expiry (stale-while-revalidate) by result (ok, error).",
		ConstLabels: labels,
	}, []string{"result"})
	for _, c := range []prometheus.Collector{lookups, evictions, errs, stale, refreshes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("cache: register %s %s metrics: %w", tier, kind, err)
		}
	}
	return &tierMetrics{
		hits:      lookups.WithLabelValues("hit"),
		misses:    lookups.WithLabelValues("miss"),
		evictions: evictions,
		errors:    errs,
		stale:     stale,
		refreshes: refreshes,
	}, nil
}
