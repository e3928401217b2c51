package pg

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// RegisterPoolMetrics registers gauges and counters of db's connection
// pool on reg, read from pgxpool's statistics at each scrape: what a
// sidecar holds of PostgreSQL's connection budget, and whether its reads
// wait for a connection (a pool too small for its load, or a server slow
// to accept). docs/fleet.md explains the budget.
func (db *DB) RegisterPoolMetrics(reg prometheus.Registerer) error {
	stat := db.pool.Stat
	conns := func(state string, f func(*pgxpool.Stat) int32) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "authz_pg_pool_connections",
			Help:        "PostgreSQL connections of the pool, by state: idle, in_use (running a query) and opening.",
			ConstLabels: prometheus.Labels{"state": state},
		}, func() float64 { return float64(f(stat())) })
	}
	closed := func(reason string, f func(*pgxpool.Stat) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "authz_pg_pool_connections_closed_total",
			Help:        "PostgreSQL connections the pool closed, by reason: idle (unused for the idle time) or lifetime (reached the maximum lifetime).",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(f(stat())) })
	}
	collectors := []prometheus.Collector{
		conns("idle", (*pgxpool.Stat).IdleConns),
		conns("in_use", (*pgxpool.Stat).AcquiredConns),
		conns("opening", (*pgxpool.Stat).ConstructingConns),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "authz_pg_pool_max_connections",
			Help: "The most PostgreSQL connections the pool opens (--pg-max-conns, or the URL's pool_max_conns).",
		}, func() float64 { return float64(stat().MaxConns()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "authz_pg_pool_acquires_total",
			Help: "Connections taken from the pool: one per PostgreSQL read, and per readiness check.",
		}, func() float64 { return float64(stat().AcquireCount()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "authz_pg_pool_acquire_waits_total",
			Help: "Acquires that found no idle connection and waited for one to be opened or given back.",
		}, func() float64 { return float64(stat().EmptyAcquireCount()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "authz_pg_pool_acquire_wait_seconds_total",
			Help: "Time acquires spent waiting for a connection, in total.",
		}, func() float64 { return stat().EmptyAcquireWaitTime().Seconds() }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "authz_pg_pool_connections_opened_total",
			Help: "PostgreSQL connections the pool opened.",
		}, func() float64 { return float64(stat().NewConnsCount()) }),
		closed("idle", (*pgxpool.Stat).MaxIdleDestroyCount),
		closed("lifetime", (*pgxpool.Stat).MaxLifetimeDestroyCount),
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("pg: register pool metrics: %w", err)
		}
	}
	return nil
}
