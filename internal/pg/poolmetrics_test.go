package pg_test

import (
	"context"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authz-sidecar/authz-sidecar/internal/pg"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// TestPoolMetrics reads the pool metrics around real reads: a connection
// held shows as in use, every read counts an acquire, and each metric
// says what pgxpool's statistics say.
func TestPoolMetrics(t *testing.T) {
	t.Parallel()
	db := openDB(t, pgtest.NewDatabase(t), pg.Config{MaxConns: 2})
	reg := prometheus.NewRegistry()
	if err := db.RegisterPoolMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if err := db.RegisterPoolMetrics(reg); err == nil {
		t.Error("registering twice on one registry: no error")
	}
	ctx := context.Background()
	members := pg.NewMemberRepository(db)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 25 {
				if _, err := members.Membership(ctx, roles.Subject{UserID: "nobody", OrgRef: "none"}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()

	held, err := pg.PoolOf(db).Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stat := pg.PoolOf(db).Stat()
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"authz_pg_pool_connections", []string{"state", "in_use"}, 1},
		{"authz_pg_pool_connections", []string{"state", "idle"}, float64(stat.IdleConns())},
		{"authz_pg_pool_connections", []string{"state", "opening"}, 0},
		{"authz_pg_pool_max_connections", nil, 2},
		{"authz_pg_pool_acquires_total", nil, float64(stat.AcquireCount())},
		{"authz_pg_pool_acquire_waits_total", nil, float64(stat.EmptyAcquireCount())},
		{"authz_pg_pool_acquire_wait_seconds_total", nil, stat.EmptyAcquireWaitTime().Seconds()},
		{"authz_pg_pool_connections_opened_total", nil, float64(stat.NewConnsCount())},
		{"authz_pg_pool_connections_closed_total", []string{"reason", "idle"}, 0},
		{"authz_pg_pool_connections_closed_total", []string{"reason", "lifetime"}, 0},
	}
	got := gatherMetrics(t, reg)
	for _, tt := range tests {
		if !got.Has(tt.name, tt.labels...) {
			t.Errorf("%s%q: not registered", tt.name, tt.labels)
		} else if g := got.Sum(tt.name, tt.labels...); g != tt.want {
			t.Errorf("%s%q = %v, want %v", tt.name, tt.labels, g, tt.want)
		}
	}
	if n := got.Sum("authz_pg_pool_acquires_total"); n < 100 {
		t.Errorf("acquires_total = %v after 100 reads", n)
	}
	if n := got.Sum("authz_pg_pool_connections_opened_total"); n < 1 || n > 2 {
		t.Errorf("connections_opened_total = %v, want 1 or 2 (MaxConns 2)", n)
	}
	held.Release()
	if n := gatherMetrics(t, reg).Sum("authz_pg_pool_connections", "state", "in_use"); n != 0 {
		t.Errorf("in use after release: %v", n)
	}
}

func gatherMetrics(t *testing.T, reg *prometheus.Registry) testproc.Metrics {
	t.Helper()
	m, err := testproc.GatherMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
