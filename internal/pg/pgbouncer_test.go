package pg_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/authz-sidecar/authz-sidecar/internal/pg"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// The pooler modes work through PgBouncer in transaction pooling mode:
// two server connections under a client pool of four, so one client
// connection's statements run on whichever server connection is free.
func TestPgBouncerTransactionMode(t *testing.T) {
	t.Parallel()
	d := pgtest.NewDatabaseWith(t, pgtest.Options{Layout: pgtest.Plural})
	seedMembers(t, d)
	seed := d.Seeder(t)
	seed.Session(t, pgtest.Session{ID: "s1", Token: "tok1", UserID: "alice", ExpiresAt: future, ActiveOrganizationID: "org1"})
	seed.APIKey(t, pgtest.APIKey{ID: "k1", ConfigID: "default", ReferenceID: "alice", Hash: "h1", Permissions: ptr(`{"a":["b"]}`)})
	// Read-only comes from the pooler here (or the role): the pooler
	// modes send no session settings.
	bouncer := pgtest.NewPgBouncer(t, d.URL, pgtest.PgBouncerOptions{PoolSize: 2, ConnectQuery: "SET default_transaction_read_only = on"})

	for _, mode := range []pg.QueryMode{pg.QueryDescribe, pg.QuerySimple} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := openDB(t, bouncer, pg.Config{QueryMode: mode, MaxConns: 4})
			f, err := db.Warm(ctx)
			if err != nil {
				t.Fatalf("Warm: %v", err)
			}
			if !f.ReadOnly {
				t.Error("Features.ReadOnly = false; the pooler's connect_query sets it")
			}
			checkAnswers(t, db)

			// Many transactions at once, interleaved over the two server
			// connections.
			members, sessions, keys := pg.NewMemberRepository(db), pg.NewSessionRepository(db), pg.NewAPIKeyRepository(db)
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Go(func() {
					for range 25 {
						m, err := members.Membership(ctx, roles.Subject{UserID: "bob", OrgRef: "acme", TeamRef: "team1"})
						if err != nil || len(m.Roles) != 2 || m.TeamID != "team1" {
							t.Errorf("worker %d: Membership = %+v, %v", i, m, err)
							return
						}
						s, err := sessions.SessionByID(ctx, "s1")
						if err != nil || !s.Found {
							t.Errorf("worker %d: SessionByID = %+v, %v", i, s, err)
							return
						}
						k, err := keys.APIKeyByHash(ctx, "h1")
						if err != nil || !k.Found {
							t.Errorf("worker %d: APIKeyByHash = %+v, %v", i, k, err)
							return
						}
					}
				})
			}
			wg.Wait()
			if _, err := db.Check(ctx); err != nil {
				t.Errorf("Check: %v", err)
			}
			_, err = pg.PoolOf(db).Exec(ctx, `UPDATE members SET role = 'owner'`)
			if err == nil || !strings.Contains(err.Error(), "read-only transaction") {
				t.Errorf("write through the pooler: err = %v, want a read-only transaction error", err)
			}
		})
	}

	t.Run("without read-only from the pooler, Features says so", func(t *testing.T) {
		t.Parallel()
		plain := pgtest.NewPgBouncer(t, d.URL, pgtest.PgBouncerOptions{})
		db := openDB(t, plain, pg.Config{QueryMode: pg.QueryDescribe})
		f, err := db.Warm(context.Background())
		if err != nil || f.ReadOnly {
			t.Errorf("Warm = %+v, %v; want ReadOnly false, no error", f, err)
		}
	})

	// Prepare mode sends session settings as startup parameters, which
	// PgBouncer refuses: the error says what to do instead.
	t.Run("prepare mode is refused, with a hint", func(t *testing.T) {
		t.Parallel()
		db := openDB(t, bouncer, pg.Config{QueryMode: pg.QueryPrepare})
		_, err := db.Check(context.Background())
		if !errors.Is(err, roles.ErrUnavailable) {
			t.Fatalf("Check: %v, want roles.ErrUnavailable", err)
		}
		for _, want := range []string{"unsupported startup parameter", "use query mode describe or simple"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error does not say %q: %v", want, err)
			}
		}
	})
}
