package pg_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authz-sidecar/authz-sidecar/internal/pg"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// fenced opens the sidecar's pool on databaseURL with a fence reading the
// primary at primaryURL (none when empty), and runs the fence until t
// ends.
func fenced(t *testing.T, databaseURL, primaryURL string, maxWait time.Duration) (*pg.DB, *pg.Fence, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	f, err := pg.NewFence(primaryURL, pg.FenceConfig{MaxWait: maxWait, Retry: 10 * time.Millisecond}, zap.NewNop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	db := openDB(t, databaseURL, pg.Config{Fence: f})
	if _, err := db.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	return db, f, reg
}

// counter reads one series of a counter vector from reg.
func counter(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range families {
		if fam.GetName() != name {
			continue
		}
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return 0
}

// TestReplicaFence runs reads on a real hot standby (pg_basebackup -R on
// loopback) while a revocation committed on the primary is held back by
// paused replay: after the invalidation is raised, no read may return the
// revoked membership; it waits for replay, or fails closed with
// ErrReplicaLag.
func TestReplicaFence(t *testing.T) {
	c := pgtest.NewCluster(t)
	d, standbyURL := c.NewDatabase(t)
	seed := d.Seeder(t)
	seed.User(t, "bob", "bob")
	seed.Org(t, "acme", "acme")
	seed.Member(t, "acme", "bob", "member")
	c.WaitReplayed(t)
	bob := roles.Subject{UserID: "bob", OrgRef: "acme"}
	ctx := context.Background()

	// revoke removes bob from acme on the primary while the standby's
	// replay is paused, and raises the invalidation the notification
	// would; replay resumes when t ends.
	revoke := func(t *testing.T, f *pg.Fence) {
		t.Helper()
		c.PauseReplay(t)
		t.Cleanup(func() {
			c.ResumeReplay(t)
			c.WaitReplayed(t)
			seed.Member(t, "acme", "bob", "member")
			c.WaitReplayed(t)
		})
		seed.RemoveMember(t, "acme", "bob")
		f.Raise()
	}

	t.Run("primary: no fencing", func(t *testing.T) {
		db, f, reg := fenced(t, d.URL, c.PrimaryURL, time.Second)
		if db.Standby() {
			t.Fatal("the primary is reported as a standby")
		}
		f.Raise() // a no-op: nothing to fence
		m, err := pg.NewMemberRepository(db).Membership(ctx, bob)
		if err != nil || len(m.Roles) == 0 {
			t.Fatalf("Membership = %+v, %v; want bob's roles", m, err)
		}
		if n := counter(t, reg, "authz_pg_replica_reads_total", "outcome", "current"); n != 0 {
			t.Errorf("%v fenced reads on a primary", n)
		}
	})

	t.Run("standby behind a revocation fails closed", func(t *testing.T) {
		db, f, reg := fenced(t, standbyURL, c.PrimaryURL, 200*time.Millisecond)
		if !db.Standby() {
			t.Fatal("the standby is not reported as one")
		}
		// The precondition reads through a fence that waits as long as a
		// loaded machine needs: a fence raises itself when it finds the
		// standby, and with 200ms a standby a few bytes behind read as
		// lagging (seen with four suites running at once).
		patient, _, _ := fenced(t, standbyURL, c.PrimaryURL, time.Minute)
		if m, err := pg.NewMemberRepository(patient).Membership(ctx, bob); err != nil || len(m.Roles) == 0 {
			t.Fatalf("before the revocation: Membership = %+v, %v; want bob's roles", m, err)
		}
		repo := pg.NewMemberRepository(db)
		revoke(t, f)
		for range 3 {
			m, err := repo.Membership(ctx, bob)
			if !errors.Is(err, pg.ErrReplicaLag) || !errors.Is(err, roles.ErrUnavailable) {
				t.Fatalf("Membership = %+v, %v; want ErrReplicaLag (and ErrUnavailable)", m, err)
			}
			if pe, ok := errors.AsType[*pg.Error](err); !ok || pe.Cause != pg.CauseReplicaLag {
				t.Fatalf("error %v: want a *pg.Error with cause %s", err, pg.CauseReplicaLag)
			}
		}
		if n := counter(t, reg, "authz_pg_replica_reads_total", "outcome", "lag"); n != 3 {
			t.Errorf("lag outcomes = %v, want 3", n)
		}
	})

	t.Run("standby behind a revocation waits for replay", func(t *testing.T) {
		db, f, reg := fenced(t, standbyURL, c.PrimaryURL, time.Minute)
		repo := pg.NewMemberRepository(db)
		revoke(t, f)
		type result struct {
			m   roles.Membership
			err error
		}
		got := make(chan result, 1)
		go func() {
			m, err := repo.Membership(ctx, bob)
			got <- result{m, err}
		}()
		// Whenever the read started, it needs the revocation's position,
		// which the standby reaches only once replay resumes.
		c.ResumeReplay(t)
		r := <-got
		if r.err != nil || len(r.m.Roles) != 0 {
			t.Fatalf("after replay: Membership = %+v, %v; want no roles", r.m, r.err)
		}
		if n := counter(t, reg, "authz_pg_replica_reads_total", "outcome", "waited"); n != 1 {
			t.Errorf("waited outcomes = %v, want 1", n)
		}
	})

	t.Run("standby with the primary unreachable fails closed", func(t *testing.T) {
		// Port 1 on loopback: connection refused at once.
		db, _, _ := fenced(t, standbyURL, "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable", 200*time.Millisecond)
		if _, err := pg.NewMemberRepository(db).Membership(ctx, bob); !errors.Is(err, pg.ErrReplicaLag) {
			t.Fatalf("Membership: %v, want ErrReplicaLag", err)
		}
	})

	t.Run("standby without a primary URL fails closed", func(t *testing.T) {
		f, err := pg.NewFence("", pg.FenceConfig{}, zap.NewNop(), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		db := openDB(t, standbyURL, pg.Config{Fence: f})
		if _, err := db.Check(ctx); !errors.Is(err, roles.ErrUnavailable) || !strings.Contains(err.Error(), "--pg-primary-url") {
			t.Fatalf("Check: %v, want unavailable, naming --pg-primary-url", err)
		}
		if _, err := pg.NewMemberRepository(db).Membership(ctx, bob); !errors.Is(err, roles.ErrUnavailable) {
			t.Fatalf("Membership: %v, want ErrUnavailable", err)
		}
	})

	t.Run("standby without invalidations is not fenced", func(t *testing.T) {
		db := openDB(t, standbyURL, pg.Config{})
		if m, err := pg.NewMemberRepository(db).Membership(ctx, bob); err != nil || len(m.Roles) == 0 {
			t.Fatalf("Membership = %+v, %v; want bob's roles", m, err)
		}
	})
}
