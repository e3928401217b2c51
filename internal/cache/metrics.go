package cache

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// tierMetrics counts one tier's lookups. Labels are fixed per tier, so the
// counters are resolved once here rather than per request.
type tierMetrics struct {
	hits, misses, evictions, errors prometheus.Counter
	// stale counts entries found but refused because an invalidation
	// arrived after they were loaded (each is also counted as a miss).
	stale prometheus.Counter
}

func newTierMetrics(reg prometheus.Registerer, tier string) (*tierMetrics, error) {
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "authz_cache_lookups_total",
		Help:        "Permission-set cache lookups by tier and result (hit or miss).",
		ConstLabels: prometheus.Labels{"tier": tier},
	}, []string{"result"})
	evictions := prometheus.NewCounter(prometheus.CounterOpts{
		Name:        "authz_cache_evictions_total",
		Help:        "Entries evicted from a cache tier to stay within its budget.",
		ConstLabels: prometheus.Labels{"tier": tier},
	})
	errs := prometheus.NewCounter(prometheus.CounterOpts{
		Name:        "authz_cache_errors_total",
		Help:        "Cache tier operations that failed (the lookup went on to the next tier).",
		ConstLabels: prometheus.Labels{"tier": tier},
	})
	stale := prometheus.NewCounter(prometheus.CounterOpts{
		Name:        "authz_cache_stale_total",
		Help:        "Cache entries found but not served because an invalidation arrived after they were loaded (also counted as misses).",
		ConstLabels: prometheus.Labels{"tier": tier},
	})
	for _, c := range []prometheus.Collector{lookups, evictions, errs, stale} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("cache: register %s metrics: %w", tier, err)
		}
	}
	return &tierMetrics{
		hits:      lookups.WithLabelValues("hit"),
		misses:    lookups.WithLabelValues("miss"),
		evictions: evictions,
		errors:    errs,
		stale:     stale,
	}, nil
}
