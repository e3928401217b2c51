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

func ptr[T any](v T) *T { return &v }

func TestAPIKeys(t *testing.T) {
	t.Parallel()
	expires := time.Date(2099, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, layout := range layouts {
		t.Run(layout.String(), func(t *testing.T) {
			t.Parallel()
			d, db := newLayoutDB(t, layout)
			seed := d.Seeder(t)
			// As the api-key plugin creates them: every row carries the
			// rate-limit defaults, whether the limit is on or not.
			window, limit := ptr(86_400_000), ptr(10)
			for _, k := range []pgtest.APIKey{
				{ID: "k1", ConfigID: "user", ReferenceID: "u1", Hash: "h1", Enabled: ptr(true), ExpiresAt: &expires,
					RateLimitEnabled: ptr(false), RateLimitTimeWindow: window, RateLimitMax: limit,
					Permissions: ptr(`{"project":["write","read"],"files":["read"]}`)},
				{ID: "k2", ConfigID: "org", ReferenceID: "o1", Hash: "h2", RateLimitTimeWindow: window, RateLimitMax: limit},
				{ID: "k3", ConfigID: "user", ReferenceID: "u1", Hash: "h3", Enabled: ptr(false)},
				{ID: "k4", ConfigID: "user", ReferenceID: "u1", Hash: "h4", Enabled: ptr(true), Remaining: ptr(5), RateLimitEnabled: ptr(false)},
				{ID: "k5", ConfigID: "user", ReferenceID: "u1", Hash: "h5", RateLimitEnabled: ptr(true), RateLimitMax: limit},
				{ID: "k6", ConfigID: "user", ReferenceID: "u1", Hash: "h6", RateLimitEnabled: ptr(false), Permissions: ptr(`{"project":["read"`)},
				{ID: "k7", ConfigID: "user", ReferenceID: "u1", Hash: "h7", RateLimitEnabled: ptr(false)},
			} {
				seed.APIKey(t, k)
			}
			seed.Exec(t, "UPDATE "+d.Layout.T("apikey")+" SET "+d.Layout.C("apikey", "expiresAt")+" = '-infinity' WHERE "+d.Layout.C("apikey", "id")+" = 'k7'")
			repo := pg.NewAPIKeyRepository(db)

			tests := []struct {
				name string
				hash string
				want authn.APIKey
			}{
				{"enabled, expiring, rate limit off, permissions", "h1", authn.APIKey{Found: true, ID: "k1", ConfigID: "user", ReferenceID: "u1",
					Enabled: true, ExpiresAt: expires, Permissions: []string{"files:read", "project:read", "project:write"}}},
				{"NULL enabled and rateLimitEnabled mean Better Auth's defaults: on", "h2", authn.APIKey{Found: true, ID: "k2", ConfigID: "org", ReferenceID: "o1",
					Enabled: true, Counted: true}},
				{"disabled", "h3", authn.APIKey{Found: true, ID: "k3", ConfigID: "user", ReferenceID: "u1"}},
				{"a remaining count is counted", "h4", authn.APIKey{Found: true, ID: "k4", ConfigID: "user", ReferenceID: "u1", Enabled: true, Counted: true}},
				{"a rate limit without a window is skipped", "h5", authn.APIKey{Found: true, ID: "k5", ConfigID: "user", ReferenceID: "u1", Enabled: true}},
				{"unparsable permissions grant nothing", "h6", authn.APIKey{Found: true, ID: "k6", ConfigID: "user", ReferenceID: "u1", Enabled: true}},
				{"-infinity has expired", "h7", authn.APIKey{Found: true, ID: "k7", ConfigID: "user", ReferenceID: "u1", Enabled: true, ExpiresAt: time.Unix(0, 0).UTC()}},
				{"unknown hash", "nope", authn.APIKey{}},
				{"an id is not a hash", "k1", authn.APIKey{}},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					got, err := repo.APIKeyByHash(context.Background(), tt.hash)
					if err != nil {
						t.Fatal(err)
					}
					if !got.ExpiresAt.Equal(tt.want.ExpiresAt) {
						t.Errorf("ExpiresAt = %v, want %v", got.ExpiresAt, tt.want.ExpiresAt)
					}
					got.ExpiresAt, tt.want.ExpiresAt = time.Time{}, time.Time{}
					if !reflect.DeepEqual(got, tt.want) {
						t.Errorf("key = %+v, want %+v", got, tt.want)
					}
				})
			}
		})
	}
}

// The key column is indexed but not unique: a hash stored twice still
// answers one key, as Better Auth's findOne does.
func TestAPIKeyDuplicateHash(t *testing.T) {
	t.Parallel()
	d, db := newLayoutDB(t, pgtest.Plural)
	seed := d.Seeder(t)
	seed.APIKey(t, pgtest.APIKey{ID: "a", ConfigID: "default", ReferenceID: "u", Hash: "same"})
	seed.APIKey(t, pgtest.APIKey{ID: "b", ConfigID: "default", ReferenceID: "u", Hash: "same"})
	got, err := pg.NewAPIKeyRepository(db).APIKeyByHash(context.Background(), "same")
	if err != nil || !got.Found || (got.ID != "a" && got.ID != "b") {
		t.Errorf("APIKeyByHash = %+v, %v; want one of the keys", got, err)
	}
}

// Without the api-key plugin's table, no key is found, and nothing is
// asked.
func TestAPIKeysWithoutTable(t *testing.T) {
	t.Parallel()
	_, db := newLayoutDB(t, pgtest.Custom, pgtest.APIKeys)
	got, err := pg.NewAPIKeyRepository(db).APIKeyByHash(context.Background(), "h")
	if err != nil || got.Found {
		t.Errorf("APIKeyByHash = %+v, %v; want not found, no error", got, err)
	}
	if s := pg.Statements(db)["api key"]; s != "" {
		t.Errorf("api key statement built without an apikey table: %q", s)
	}
}
