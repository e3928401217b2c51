package cache

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// TestRedisPoolMetrics reads the Redis pool metrics of a client built as
// the sidecar builds it, around plain commands, pipelines and a held
// connection: in_use follows the held connection, and every metric says
// what go-redis's statistics say, the pipeline pool included.
func TestRedisPoolMetrics(t *testing.T) {
	t.Parallel()
	_, prefix := redisClient(t) // reachable (or failing under CI), and keys cleaned up
	rdb, err := NewRedis(RedisConfig{URL: testproc.RedisURL(), Timeout: redisTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	reg := prometheus.NewRegistry()
	if err := RegisterRedisPoolMetrics(reg, "l2", rdb); err != nil {
		t.Fatal(err)
	}
	if err := RegisterRedisPoolMetrics(reg, "l2", rdb); err == nil {
		t.Error("registering one client twice: no error")
	}
	ctx := context.Background()
	if err := rdb.Set(ctx, prefix+"k", "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Get(ctx, prefix+"k")
		p.Get(ctx, prefix+"other")
		return nil
	}); err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	held := rdb.(*redis.Client).Conn()
	defer held.Close()
	if err := held.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	var total, idle uint32
	var want redis.PoolStats
	for s := rdb.PoolStats(); s != nil; s = (*redis.PoolStats)(s.PipelineStats) {
		total += s.TotalConns
		idle += s.IdleConns
		want.WaitCount += s.WaitCount
		want.Timeouts += s.Timeouts
		want.WaitDurationNs += s.WaitDurationNs
	}
	if total < 2 {
		t.Fatalf("go-redis counts %d connections after a command, a pipeline and a held connection", total)
	}
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"authz_redis_pool_connections", []string{"client", "l2", "state", "in_use"}, float64(total - idle)},
		{"authz_redis_pool_connections", []string{"client", "l2", "state", "idle"}, float64(idle)},
		{"authz_redis_pool_waits_total", []string{"client", "l2"}, float64(want.WaitCount)},
		{"authz_redis_pool_wait_seconds_total", []string{"client", "l2"}, float64(want.WaitDurationNs) / 1e9},
		{"authz_redis_pool_timeouts_total", []string{"client", "l2"}, float64(want.Timeouts)},
	}
	got, err := testproc.GatherMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		if !got.Has(tt.name, tt.labels...) {
			t.Errorf("%s%q: not registered", tt.name, tt.labels)
		} else if g := got.Sum(tt.name, tt.labels...); g != tt.want {
			t.Errorf("%s%q = %v, want %v", tt.name, tt.labels, g, tt.want)
		}
	}
	if n := got.Sum("authz_redis_pool_connections", "client", "l2", "state", "in_use"); n != 1 {
		t.Errorf("in use with one connection held: %v", n)
	}
	if err := held.Close(); err != nil {
		t.Fatal(err)
	}
	got, err = testproc.GatherMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if n := got.Sum("authz_redis_pool_connections", "client", "l2", "state", "in_use"); n != 0 {
		t.Errorf("in use after the held connection was given back: %v", n)
	}
}
