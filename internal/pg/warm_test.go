package pg_test

import (
	"cmp"
	"context"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authz-sidecar/authz-sidecar/internal/pg"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// Warm opens the whole pool and readies every statement on each
// connection, so that the first requests pay neither a connect nor a
// prepare.
func TestWarm(t *testing.T) {
	t.Parallel()
	d := pgtest.NewDatabaseWith(t, pgtest.Options{Layout: pgtest.Singular})
	for _, tt := range []struct {
		mode      pg.QueryMode
		wantNamed bool // named prepared statements on the server
	}{
		{pg.QueryPrepare, true},
		{pg.QueryDescribe, false},
		{pg.QuerySimple, false},
	} {
		t.Run(tt.mode.String(), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := openDB(t, d.URL, pg.Config{QueryMode: tt.mode, MaxConns: 3})
			pool := pg.PoolOf(db)
			if n := pool.Stat().TotalConns(); n != 0 {
				t.Fatalf("Open connected %d connections, want none (lazy)", n)
			}
			f, err := db.Warm(ctx)
			if err != nil {
				t.Fatalf("Warm: %v", err)
			}
			if !f.Sessions || !f.APIKeys {
				t.Errorf("Features = %+v", f)
			}
			if n := pool.Stat().TotalConns(); n != 3 {
				t.Errorf("after Warm: %d connections, want 3 (MaxConns)", n)
			}
			statements := pg.Statements(db)

			// Each connection holds a prepared statement for each query (or
			// none, in the pooler modes).
			conns := make([]*pgx.Conn, 0, 3)
			for range 3 {
				c, err := pool.Acquire(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Release()
				conns = append(conns, c.Conn())
			}
			for i, c := range conns {
				var prepared []string
				err := c.QueryRow(ctx, "SELECT coalesce(array_agg(statement), '{}') FROM pg_prepared_statements",
					pgx.QueryExecModeSimpleProtocol).Scan(&prepared)
				if err != nil {
					t.Fatal(err)
				}
				for name, sql := range statements {
					if got := slices.Contains(prepared, sql); got != tt.wantNamed {
						t.Errorf("connection %d: %s prepared = %v, want %v", i, name, got, tt.wantNamed)
					}
				}
			}
		})
	}

	t.Run("no connect on the first requests", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		db := openDB(t, d.URL, pg.Config{MaxConns: 4})
		if _, err := db.Warm(ctx); err != nil {
			t.Fatal(err)
		}
		pool := pg.PoolOf(db)
		before := pool.Stat().NewConnsCount()
		repo := pg.NewMemberRepository(db)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				if _, err := repo.Membership(ctx, roles.Subject{UserID: "u", OrgRef: "o"}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if after := pool.Stat().NewConnsCount(); after != before {
			t.Errorf("%d connections opened by the first requests, want none", after-before)
		}
	})

	t.Run("idle connections are closed", func(t *testing.T) {
		t.Parallel()
		// pgxpool looks every minute by default; the test looks faster.
		db := openDB(t, d.URL+"&pool_health_check_period=50ms", pg.Config{MaxConns: 2, MaxConnIdleTime: 100 * time.Millisecond})
		if _, err := db.Warm(context.Background()); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for pg.PoolOf(db).Stat().TotalConns() > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if n := pg.PoolOf(db).Stat().TotalConns(); n != 0 {
			t.Errorf("%d connections left, want 0", n)
		}
	})
}

// Every mode answers the same.
func TestQueryModes(t *testing.T) {
	t.Parallel()
	d := pgtest.NewDatabaseWith(t, pgtest.Options{Layout: pgtest.Plural})
	seedMembers(t, d)
	seed := d.Seeder(t)
	seed.Session(t, pgtest.Session{ID: "s1", Token: "tok1", UserID: "alice", ExpiresAt: future, ActiveOrganizationID: "org1"})
	seed.APIKey(t, pgtest.APIKey{ID: "k1", ConfigID: "default", ReferenceID: "alice", Hash: "h1", Permissions: ptr(`{"a":["b"]}`)})
	for _, mode := range []pg.QueryMode{pg.QueryPrepare, pg.QueryDescribe, pg.QuerySimple} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			db := openDB(t, d.URL, pg.Config{QueryMode: mode})
			checkAnswers(t, db)
		})
	}
}

// checkAnswers asks db what seedMembers and one session and key wrote, as
// on a Plural database with every part.
func checkAnswers(t *testing.T, db *pg.DB) {
	t.Helper()
	ctx := context.Background()
	repo := pg.NewMemberRepository(db)
	for _, tt := range membershipCases {
		got, err := repo.Membership(ctx, tt.sub)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		want := tt.want
		if !got.BanExpires.Equal(want.BanExpires) {
			t.Errorf("%s: BanExpires = %v, want %v", tt.name, got.BanExpires, want.BanExpires)
		}
		got.BanExpires, want.BanExpires = time.Time{}, time.Time{}
		slices.SortFunc(got.DynamicRoles, func(a, b roles.DynamicRole) int { return cmp.Compare(a.Name, b.Name) })
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Membership =\n %#v\nwant\n %#v", tt.name, got, want)
		}
	}
	s, err := pg.NewSessionRepository(db).SessionByToken(ctx, "tok1")
	if err != nil || !s.Found || s.ID != "s1" || !s.ExpiresAt.Equal(future) || s.ActiveOrganizationID != "org1" {
		t.Errorf("SessionByToken = %+v, %v", s, err)
	}
	k, err := pg.NewAPIKeyRepository(db).APIKeyByHash(ctx, "h1")
	if err != nil || !k.Found || k.ID != "k1" || !reflect.DeepEqual(k.Permissions, []string{"a:b"}) {
		t.Errorf("APIKeyByHash = %+v, %v", k, err)
	}
}
