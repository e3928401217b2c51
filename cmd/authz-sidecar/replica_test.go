package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authz-sidecar/authz-sidecar/internal/invalidate"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// replicaSetup is a primary and a hot standby (pgtest.NewCluster) with
// Better Auth's schema and the invalidation triggers, bob a member of
// acme.
type replicaSetup struct {
	cluster    *pgtest.Cluster
	primaryURL string // Better Auth's database on the primary
	standbyURL string // the same database on the standby
	seed       *pgtest.Seeder
}

func newReplicaSetup(t *testing.T) *replicaSetup {
	t.Helper()
	c := pgtest.NewCluster(t)
	d, standbyURL := c.NewDatabase(t)
	seed := d.Seeder(t)
	triggers, err := os.ReadFile(filepath.Join("..", "..", "sql", "invalidation-triggers.sql"))
	if err != nil {
		t.Fatal(err)
	}
	seed.Exec(t, string(triggers))
	seed.User(t, "bob", "bob")
	seed.Org(t, "acme", "acme")
	seed.Member(t, "acme", "bob", "member")
	c.WaitReplayed(t)
	return &replicaSetup{cluster: c, primaryURL: d.URL, standbyURL: standbyURL, seed: seed}
}

// metric sums the samples of name whose labels include the given pairs
// ("key", "value", ...), scraped from the sidecar's /metrics now.
func (r *running) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	m, err := testproc.ScrapeMetrics(context.Background(), r.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	return m.Sum(name, labels...)
}

// With DATABASE_URL on a hot standby whose replay is paused (lag as long
// as the test wants), a revocation committed on the primary is never
// answered from the standby's old rows: once the sidecar has heard of it,
// checks fail closed (503, cause replica_lag) until the standby has
// replayed it, then deny. Both event sources: the primary's notifications
// (--pg-listen-url), and messages on the Redis channel as Better Auth's
// hooks publish them, which carry no WAL position (--pg-primary-url).
func TestServeReplicaRevocation(t *testing.T) {
	rs := newReplicaSetup(t)
	for _, user := range []string{"carol", "dave"} {
		rs.seed.User(t, user, user)
		rs.seed.Member(t, "acme", user, "member")
	}
	rs.cluster.WaitReplayed(t)
	// The Redis case's channel, set by its start (the cases run in turn).
	var (
		rdb     *redis.Client
		channel string
	)
	tests := []struct {
		name, user string
		// start runs the sidecar, ready to hear of changes; announce
		// tells it of user's revocation, if the database does not.
		start    func(t *testing.T) *running
		announce func(t *testing.T, user string)
	}{
		{
			name: "database notifications", user: "carol",
			start: func(t *testing.T) *running {
				r := startServeOn(t, rs.standbyURL, "--pg-listen", "--pg-listen-url", rs.primaryURL,
					"--pg-replica-max-wait", "200ms", "--l1-ttl", "5m")
				eventually(t, "the sidecar to LISTEN", func() bool {
					return r.metric(t, "authz_invalidation_flushes_total", "reason", "pg_listen") >= 1
				})
				return r
			},
			announce: func(*testing.T, string) {}, // the triggers do
		},
		{
			name: "Better Auth hooks over Redis", user: "dave",
			start: func(t *testing.T) *running {
				var prefix string
				rdb, prefix = testproc.RedisDB(t)
				channel = prefix + "invalidate"
				r := startServeOn(t, rs.standbyURL, "--redis-url", testproc.RedisURL(), "--redis-prefix", prefix,
					"--invalidation-channel", channel, "--pg-primary-url", rs.primaryURL,
					"--pg-replica-max-wait", "200ms", "--l1-ttl", "5m", "--l2-ttl", "5m")
				eventually(t, "the sidecar to subscribe", func() bool {
					return r.metric(t, "authz_invalidation_flushes_total", "reason", "redis_subscribe") >= 1
				})
				m, err := testproc.ScrapeMetrics(context.Background(), r.httpAddr)
				if err != nil {
					t.Fatal(err)
				}
				for _, want := range [][]string{
					{"authz_pg_pool_connections", "state", "in_use"},
					{"authz_pg_pool_max_connections"},
					{"authz_redis_pool_connections", "client", "l2", "state", "idle"},
					{"authz_redis_pool_connections", "client", "bus", "state", "in_use"},
				} {
					if !m.Has(want[0], want[1:]...) {
						t.Errorf("/metrics has no %s%q", want[0], want[1:])
					}
				}
				return r
			},
			announce: func(t *testing.T, user string) {
				msg := `{"v":1,"id":"` + invalidate.NewID() + `","kind":"member","user":"` + user + `","org":"acme","src":"better-auth"}`
				if err := rdb.Publish(context.Background(), channel, msg).Err(); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.start(t)
			token := r.keys.User(tt.user)
			const path = "/api/orgs/acme/leave/1"
			if got := r.status(t, "GET", path, token); got != 200 {
				t.Fatalf("member: %d, want 200", got)
			}

			rs.cluster.PauseReplay(t)
			resumed := false
			t.Cleanup(func() {
				if !resumed {
					rs.cluster.ResumeReplay(t)
				}
			})
			rs.seed.RemoveMember(t, "acme", tt.user)
			tt.announce(t, tt.user)

			// Until the message arrives, the cached allow is what the
			// sidecar knows; after it, never again an allow.
			var seen []int
			eventually(t, "the revocation to be heard", func() bool {
				seen = append(seen, r.status(t, "GET", path, token))
				return seen[len(seen)-1] != 200
			})
			for range 5 {
				seen = append(seen, r.status(t, "GET", path, token))
			}
			heard := slices.IndexFunc(seen, func(s int) bool { return s != 200 })
			if slices.ContainsFunc(seen[heard:], func(s int) bool { return s != 503 }) {
				t.Fatalf("statuses while the standby lags: %v; want 200s, then only 503", seen)
			}
			if n := r.metric(t, "authz_source_errors_total", "cause", "replica_lag", "op", "membership"); n < 1 {
				t.Errorf("authz_source_errors_total{cause=replica_lag} = %v", n)
			}
			if n := r.metric(t, "authz_pg_replica_reads_total", "outcome", "lag"); n < 1 {
				t.Errorf("authz_pg_replica_reads_total{outcome=lag} = %v", n)
			}
			if !strings.Contains(r.logs.String(), "replica lag") {
				t.Error("no log line names the replica lag")
			}

			rs.cluster.ResumeReplay(t)
			resumed = true
			seen = seen[:0]
			eventually(t, "the deny once the standby replayed the revocation", func() bool {
				seen = append(seen, r.status(t, "GET", path, token))
				return seen[len(seen)-1] == 403
			})
			if slices.Contains(seen, 200) {
				t.Fatalf("statuses while the standby caught up: %v; an allow after the revocation", seen)
			}
		})
	}
}

// TestServeReplicaRevocationLatency measures how long a revocation
// committed on the primary takes to turn an allow into a deny, with
// DATABASE_URL on the primary and on a hot standby (--pg-listen on the
// primary either way, cached allows with a 5-minute TTL so only the
// invalidation can explain the deny). It logs the figures quoted in
// docs/consistency.md ("Read replicas"):
//
//	go test -race -count=1 -run TestServeReplicaRevocationLatency -v ./cmd/authz-sidecar
func TestServeReplicaRevocationLatency(t *testing.T) {
	rs := newReplicaSetup(t)
	const rounds = 15
	for _, tt := range []struct {
		name, databaseURL string
	}{
		{"primary", rs.primaryURL},
		{"standby", rs.standbyURL},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := startServeOn(t, tt.databaseURL, "--pg-listen", "--pg-listen-url", rs.primaryURL, "--l1-ttl", "5m")
			eventually(t, "the sidecar to LISTEN", func() bool {
				return r.metric(t, "authz_invalidation_flushes_total", "reason", "pg_listen") >= 1
			})
			bob := r.keys.User("bob")
			const path = "/api/orgs/acme/leave/1"
			var (
				lat       []time.Duration
				failClose int // 503s: the standby took longer than --pg-replica-max-wait
			)
			for range rounds {
				rs.seed.Member(t, "acme", "bob", "member")
				eventually(t, "bob's membership to show", func() bool { return r.status(t, "GET", path, bob) == 200 })
				start := time.Now()
				rs.seed.RemoveMember(t, "acme", "bob")
				deadline := start.Add(patience)
				for {
					s := r.status(t, "GET", path, bob)
					if s == 403 {
						break
					}
					if s == 503 {
						failClose++
					}
					if (s != 200 && s != 503) || time.Now().After(deadline) {
						t.Fatalf("after the revocation: %d (want 200 or 503 until 403, within %v)", s, patience)
					}
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			t.Logf("revocation latency, DATABASE_URL on the %s: p50 %v, max %v (%d revocations; %d checks failed closed meanwhile)",
				tt.name, lat[len(lat)/2].Round(100*time.Microsecond), lat[len(lat)-1].Round(100*time.Microsecond), rounds, failClose)
		})
	}
}
