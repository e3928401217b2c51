package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// counters are a sidecar's cumulative permission-set (kind access)
// lookups by the tier that answered: L1 hits, L2 hits, and L2 misses,
// which went to PostgreSQL.
type counters struct{ l1Hit, l1Miss, l2Hit, l2Miss float64 }

func (c counters) sub(o counters) counters {
	return counters{c.l1Hit - o.l1Hit, c.l1Miss - o.l1Miss, c.l2Hit - o.l2Hit, c.l2Miss - o.l2Miss}
}

func (c counters) add(o counters) counters {
	return counters{c.l1Hit + o.l1Hit, c.l1Miss + o.l1Miss, c.l2Hit + o.l2Hit, c.l2Miss + o.l2Miss}
}

// lookups is every decision that looked a permission set up.
func (c counters) lookups() float64 { return c.l1Hit + c.l1Miss }

// shares are the parts answered by L1, L2 and PostgreSQL (0 without
// lookups).
func (c counters) shares() (l1, l2, pg float64) {
	n := c.lookups()
	if n == 0 {
		return 0, 0, 0
	}
	return c.l1Hit / n, c.l2Hit / n, c.l2Miss / n
}

// sample is the fleet between two readings.
type sample struct {
	at, dt    time.Duration // end of the interval since the start, its length
	phase     string
	sidecars  int      // in service at its end
	tiers     counters // lookups in the interval, the fleet's
	pgConns   int      // the sidecars' server connections at its end
	pgActive  int      // of which running a query
	pgXacts   float64  // transactions committed in the interval (the fleet's database)
	pgTuples  float64  // rows returned
	pgCalls   float64  // statements run (pg_stat_statements), -1 without it
	redisCmds float64  // commands Redis processed in the interval
	redisConn int      // Redis clients at its end
}

// gauges are the cumulative server counters read at one instant.
type gauges struct {
	xacts, tuples, calls, redisCmds float64
	conns, active, redisConns       int
}

// sampler reads the fleet, PostgreSQL and Redis every interval.
type sampler struct {
	f      *fleet
	pg     *pgx.Conn // the admin database, not the fleet's: its own queries are not counted
	dbName string
	rdb    *redis.Client
	stmts  bool // pg_stat_statements is there

	mu      sync.Mutex
	phase   string   // guarded by mu
	samples []sample // guarded by mu
}

func newSampler(ctx context.Context, f *fleet, adminURL, dbName string, rdb *redis.Client) (*sampler, error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return nil, fmt.Errorf("sampler: %w", err)
	}
	s := &sampler{f: f, pg: conn, dbName: dbName, rdb: rdb}
	var calls float64
	// Only when the server preloads it (shared_preload_libraries) and the
	// extension exists; else pg_stat_database's counters stand in.
	s.stmts = conn.QueryRow(ctx, "SELECT coalesce(sum(calls), 0)::float8 FROM pg_stat_statements").Scan(&calls) == nil
	return s, nil
}

func (s *sampler) close() { s.pg.Close(context.Background()) }

func (s *sampler) setPhase(p string) {
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
}

func (s *sampler) all() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sample(nil), s.samples...)
}

// run samples every interval until ctx ends.
func (s *sampler) run(ctx context.Context, start time.Time, interval time.Duration) error {
	prev, err := s.gauges(ctx)
	if err != nil {
		return err
	}
	s.scrape(ctx) // the baseline of the sidecars already running
	last := time.Now()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		tiers := s.scrape(ctx)
		g, err := s.gauges(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		now := time.Now()
		smp := sample{
			at: now.Sub(start), dt: now.Sub(last), sidecars: len(s.f.inService()), tiers: tiers,
			pgConns: g.conns, pgActive: g.active, pgXacts: g.xacts - prev.xacts, pgTuples: g.tuples - prev.tuples,
			pgCalls: -1, redisCmds: g.redisCmds - prev.redisCmds, redisConn: g.redisConns,
		}
		if s.stmts {
			smp.pgCalls = g.calls - prev.calls
		}
		prev, last = g, now
		s.mu.Lock()
		smp.phase = s.phase
		s.samples = append(s.samples, smp)
		s.mu.Unlock()
	}
}

// scrape reads every sidecar in service and returns the lookups since
// their previous scrape. A sidecar's last seconds before it stops are not
// counted.
func (s *sampler) scrape(ctx context.Context) counters {
	live := s.f.inService()
	deltas := make([]counters, len(live))
	var wg sync.WaitGroup
	for i, m := range live {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			mt, err := m.sc.Metrics(cctx)
			if err != nil {
				return // stopping; counted as nothing
			}
			c := counters{
				l1Hit:  mt.Sum("authz_cache_lookups_total", "tier", "l1", "kind", "access", "result", "hit"),
				l1Miss: mt.Sum("authz_cache_lookups_total", "tier", "l1", "kind", "access", "result", "miss"),
				l2Hit:  mt.Sum("authz_cache_lookups_total", "tier", "l2", "kind", "access", "result", "hit"),
				l2Miss: mt.Sum("authz_cache_lookups_total", "tier", "l2", "kind", "access", "result", "miss"),
			}
			deltas[i] = c.sub(m.last)
			m.last = c // only this goroutine touches m.last
		})
	}
	wg.Wait()
	var sum counters
	for _, d := range deltas {
		sum = sum.add(d)
	}
	return sum
}

// gauges reads PostgreSQL's and Redis's counters.
func (s *sampler) gauges(ctx context.Context) (gauges, error) {
	var g gauges
	err := s.pg.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'authz-sidecar'),
		(SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'authz-sidecar' AND state = 'active'),
		(SELECT xact_commit::float8 FROM pg_stat_database WHERE datname = $1),
		(SELECT tup_returned::float8 FROM pg_stat_database WHERE datname = $1)`, s.dbName).
		Scan(&g.conns, &g.active, &g.xacts, &g.tuples)
	if err != nil {
		return g, fmt.Errorf("sampler: pg_stat: %w", err)
	}
	if s.stmts {
		err := s.pg.QueryRow(ctx, `SELECT coalesce(sum(calls), 0)::float8 FROM pg_stat_statements
			WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)`, s.dbName).Scan(&g.calls)
		if err != nil {
			return g, fmt.Errorf("sampler: pg_stat_statements: %w", err)
		}
	}
	info, err := s.rdb.Info(ctx, "stats", "clients").Result()
	if err != nil {
		return g, fmt.Errorf("sampler: redis INFO: %w", err)
	}
	g.redisCmds = infoField(info, "total_commands_processed")
	g.redisConns = int(infoField(info, "connected_clients"))
	return g, nil
}

// infoField is a numeric field of Redis's INFO answer.
func infoField(info, name string) float64 {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}
