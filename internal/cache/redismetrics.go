package cache

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// RegisterRedisPoolMetrics registers gauges and counters of rdb's
// connection pools on reg, labelled client (l2: the Redis tier; bus:
// invalidation pub/sub; sessions: Better Auth's secondary storage), read
// from go-redis's statistics at each scrape. They count the pipeline pool
// with the main one (and, on a cluster, every node's): what a sidecar holds
// of Redis's client budget, and whether its calls wait for a connection.
func RegisterRedisPoolMetrics(reg prometheus.Registerer, client string, rdb redis.UniversalClient) error {
	stats := func() (total redis.PoolStats) {
		s := rdb.PoolStats()
		for s != nil {
			total.TotalConns += s.TotalConns
			total.IdleConns += s.IdleConns
			total.WaitCount += s.WaitCount
			total.WaitDurationNs += s.WaitDurationNs
			total.Timeouts += s.Timeouts
			s = (*redis.PoolStats)(s.PipelineStats)
		}
		return total
	}
	conns := func(state string, f func(redis.PoolStats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "authz_redis_pool_connections",
			Help:        "Redis connections of a client's pools, by state: idle or in_use.",
			ConstLabels: prometheus.Labels{"client": client, "state": state},
		}, func() float64 { return f(stats()) })
	}
	labels := prometheus.Labels{"client": client}
	collectors := []prometheus.Collector{
		conns("idle", func(s redis.PoolStats) float64 { return float64(s.IdleConns) }),
		conns("in_use", func(s redis.PoolStats) float64 { return float64(s.TotalConns) - float64(s.IdleConns) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "authz_redis_pool_waits_total", ConstLabels: labels,
			Help: "Redis calls that waited for a connection of the pool.",
		}, func() float64 { return float64(stats().WaitCount) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "authz_redis_pool_wait_seconds_total", ConstLabels: labels,
			Help: "Time Redis calls spent waiting for a connection, in total.",
		}, func() float64 { return float64(stats().WaitDurationNs) / 1e9 }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "authz_redis_pool_timeouts_total", ConstLabels: labels,
			Help: "Redis calls that gave up waiting for a connection of the pool.",
		}, func() float64 { return float64(stats().Timeouts) }),
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("cache: register redis pool metrics of %s: %w", client, err)
		}
	}
	return nil
}
