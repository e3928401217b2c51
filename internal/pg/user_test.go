package pg_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/pg"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

func TestUser(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	seed := pgtest.NewSeeder(t, dbURL)
	until := time.Date(2031, 2, 3, 4, 5, 6, 0, time.UTC)
	seed.User(t, "alice", "Alice")
	seed.User(t, "banned", "Forever")
	seed.Ban(t, "banned", nil)
	seed.User(t, "until", "Until")
	seed.Ban(t, "until", &until)
	// Rows not written by Better Auth: NULL banned and role.
	seed.User(t, "nulls", "Nulls")
	seed.Exec(t, `UPDATE users SET banned = NULL, role = NULL WHERE id = 'nulls'`)
	seed.User(t, "infinite", "Infinite")
	seed.Exec(t, `UPDATE users SET banned = true, "banExpires" = 'infinity' WHERE id = 'infinite'`)
	seed.User(t, "admin", "Admin")
	seed.Exec(t, `UPDATE users SET role = 'user,admin' WHERE id = 'admin'`)

	repo := pg.NewUserRepository(openDB(t, dbURL, pg.Config{}))
	tests := []struct {
		name    string
		id      string
		want    pg.User
		wantErr error
	}{
		{name: "found", id: "alice", want: pg.User{ID: "alice", Name: "Alice", Email: "alice@example.test", Role: "user"}},
		{name: "banned forever", id: "banned", want: pg.User{ID: "banned", Name: "Forever", Email: "banned@example.test", Role: "user", Banned: true}},
		{name: "banned until", id: "until", want: pg.User{ID: "until", Name: "Until", Email: "until@example.test", Role: "user", Banned: true, BanExpires: until}},
		{name: "banned until infinity is forever", id: "infinite", want: pg.User{ID: "infinite", Name: "Infinite", Email: "infinite@example.test", Role: "user", Banned: true}},
		{name: "NULL banned and role", id: "nulls", want: pg.User{ID: "nulls", Name: "Nulls", Email: "nulls@example.test"}},
		{name: "comma-joined global role kept verbatim", id: "admin", want: pg.User{ID: "admin", Name: "Admin", Email: "admin@example.test", Role: "user,admin"}},
		{name: "not found", id: "nobody", wantErr: pg.ErrNotFound},
		{name: "id is matched exactly", id: "ALICE", wantErr: pg.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := repo.User(context.Background(), tt.id)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if errors.Is(err, roles.ErrUnavailable) {
				t.Errorf("not-found must not read as unavailable: %v", err)
			}
			if !got.BanExpires.Equal(tt.want.BanExpires) {
				t.Errorf("BanExpires = %v, want %v", got.BanExpires, tt.want.BanExpires)
			}
			got.BanExpires, tt.want.BanExpires = time.Time{}, time.Time{}
			if got != tt.want {
				t.Errorf("User = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestOrganization(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	seed := pgtest.NewSeeder(t, dbURL)
	seed.Org(t, "org_1", "acme")
	// An organization whose slug is another organization's id.
	seed.Org(t, "org_2", "org_1")

	repo := pg.NewOrganizationRepository(openDB(t, dbURL, pg.Config{}))
	tests := []struct {
		name    string
		ref     string
		want    pg.Organization
		wantErr error
	}{
		{name: "by slug", ref: "acme", want: pg.Organization{ID: "org_1", Slug: "acme", Name: "acme"}},
		{name: "id wins over another organization's slug", ref: "org_1", want: pg.Organization{ID: "org_1", Slug: "acme", Name: "acme"}},
		{name: "by id", ref: "org_2", want: pg.Organization{ID: "org_2", Slug: "org_1", Name: "org_1"}},
		{name: "not found", ref: "nope", wantErr: pg.ErrNotFound},
		{name: "slug is matched exactly", ref: "ACME", wantErr: pg.ErrNotFound},
		{name: "empty reference", ref: "", wantErr: pg.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := repo.Organization(context.Background(), tt.ref)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("Organization = %+v, want %+v", got, tt.want)
			}
		})
	}
}
