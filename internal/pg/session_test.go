package pg_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/pg"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
)

func TestSessions(t *testing.T) {
	t.Parallel()
	expires := time.Date(2099, 1, 2, 3, 4, 5, 0, time.UTC)
	variants := []struct {
		layout  pgtest.Layout
		without []pgtest.Part
	}{
		{pgtest.Plural, nil}, {pgtest.Singular, nil}, {pgtest.Custom, nil},
		// Without teams and the admin plugin, their session columns are gone.
		{pgtest.Singular, []pgtest.Part{pgtest.Teams, pgtest.Admin}},
	}
	for _, v := range variants {
		t.Run(v.layout.String(), func(t *testing.T) {
			t.Parallel()
			d, db := newLayoutDB(t, v.layout, v.without...)
			seed := d.Seeder(t)
			seed.User(t, "u1", "U")
			seed.User(t, "admin", "A")
			seed.Session(t, pgtest.Session{ID: "s1", Token: "tok1", UserID: "u1", ExpiresAt: expires,
				ActiveOrganizationID: "org1", ActiveTeamID: "team1", ImpersonatedBy: "admin"})
			seed.Session(t, pgtest.Session{ID: "s2", Token: "tok2", UserID: "u1", ExpiresAt: expires})
			seed.Session(t, pgtest.Session{ID: "s3", Token: "tok3", UserID: "u1", ExpiresAt: expires})
			seed.Exec(t, "UPDATE "+d.Layout.T("session")+" SET "+d.Layout.C("session", "expiresAt")+" = 'infinity' WHERE "+d.Layout.C("session", "id")+" = 's3'")
			repo := pg.NewSessionRepository(db)

			full := authn.Session{Found: true, ID: "s1", UserID: "u1", ExpiresAt: expires, ActiveOrganizationID: "org1"}
			if d.Has(pgtest.Teams) {
				full.ActiveTeamID = "team1"
			}
			if d.Has(pgtest.Admin) {
				full.ImpersonatedBy = "admin"
			}
			tests := []struct {
				name string
				get  func() (authn.Session, error)
				want authn.Session
			}{
				{"by token", func() (authn.Session, error) { return repo.SessionByToken(context.Background(), "tok1") }, full},
				{"by id", func() (authn.Session, error) { return repo.SessionByID(context.Background(), "s1") }, full},
				{"NULL fields are empty", func() (authn.Session, error) { return repo.SessionByToken(context.Background(), "tok2") },
					authn.Session{Found: true, ID: "s2", UserID: "u1", ExpiresAt: expires}},
				{"infinity never expires", func() (authn.Session, error) { return repo.SessionByID(context.Background(), "s3") },
					authn.Session{Found: true, ID: "s3", UserID: "u1", ExpiresAt: time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)}},
				{"unknown token", func() (authn.Session, error) { return repo.SessionByToken(context.Background(), "nope") }, authn.Session{}},
				{"an id is not a token", func() (authn.Session, error) { return repo.SessionByToken(context.Background(), "s1") }, authn.Session{}},
				{"a token is not an id", func() (authn.Session, error) { return repo.SessionByID(context.Background(), "tok1") }, authn.Session{}},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					got, err := tt.get()
					if err != nil {
						t.Fatal(err)
					}
					if !got.ExpiresAt.Equal(tt.want.ExpiresAt) {
						t.Errorf("ExpiresAt = %v, want %v", got.ExpiresAt, tt.want.ExpiresAt)
					}
					got.ExpiresAt, tt.want.ExpiresAt = time.Time{}, time.Time{}
					if !reflect.DeepEqual(got, tt.want) {
						t.Errorf("session = %+v, want %+v", got, tt.want)
					}
				})
			}
		})
	}
}

// Sessions whose user row is gone are not found, as in Better Auth's
// findSession (its foreign key cascades, but a database may lack it).
func TestSessionWithoutUser(t *testing.T) {
	t.Parallel()
	d, db := newLayoutDB(t, pgtest.Plural)
	seed := d.Seeder(t)
	seed.User(t, "u1", "U")
	seed.Session(t, pgtest.Session{ID: "s1", Token: "tok1", UserID: "u1", ExpiresAt: time.Now().Add(time.Hour)})
	seed.Exec(t, `ALTER TABLE sessions DROP CONSTRAINT "sessions_userId_fkey"`)
	seed.Exec(t, `DELETE FROM users WHERE id = 'u1'`)
	got, err := pg.NewSessionRepository(db).SessionByToken(context.Background(), "tok1")
	if err != nil || got.Found {
		t.Errorf("SessionByToken = %+v, %v; want not found", got, err)
	}
}

// Without a session table (Better Auth's secondaryStorage alone), no
// session is found, and nothing is asked.
func TestSessionsWithoutTable(t *testing.T) {
	t.Parallel()
	_, db := newLayoutDB(t, pgtest.Singular, pgtest.Sessions)
	repo := pg.NewSessionRepository(db)
	for _, get := range []func() (authn.Session, error){
		func() (authn.Session, error) { return repo.SessionByToken(context.Background(), "tok") },
		func() (authn.Session, error) { return repo.SessionByID(context.Background(), "id") },
	} {
		if got, err := get(); err != nil || got.Found {
			t.Errorf("got %+v, %v; want not found, no error", got, err)
		}
	}
	if s := pg.Statements(db); s["session by token"] != "" || s["session by id"] != "" {
		t.Errorf("session statements built without a session table: %q", s)
	}
}
