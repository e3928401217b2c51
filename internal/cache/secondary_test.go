package cache

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/invalidate"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
	"github.com/authz-sidecar/authz-sidecar/test/baclient"
)

// storedValue is a session value exactly as Better Auth 1.7.25 writes it
// to secondary storage (test/betterauth/README.md, "Secondary storage").
const storedValue = `{"session": {"id": "RxAskJaSNbP34TVdCSLFuNTOb8WGTCDJ", "ipAddress": "", "userAgent": "curl/7.88.1",
  "expiresAt": "2036-12-05T09:25:54.256Z", "userId": "wmqcNNDAFhgqwsYs2ruLs4oPdnL6vJeC",
  "token": "Uw0Y0ozqQPfejrG45dS328Gp5IwjHaPo", "createdAt": "2026-11-28T09:25:54.256Z",
  "updatedAt": "2026-11-28T09:25:54.256Z", "activeOrganizationId": "yK0ZXouz5O0ty1gvGr9OIdgSOkPWB7xN",
  "activeTeamId": "X51PRCKQoEQlEuEquHIXPwjA3rLRX5oM"},
 "user": {"name": "alice", "email": "alice@example.com", "emailVerified": false, "image": null,
  "createdAt": "2026-11-28T09:25:48.517Z", "updatedAt": "2026-11-28T09:25:48.517Z", "role": "admin",
  "banned": false, "banReason": null, "banExpires": null, "isAnonymous": false,
  "twoFactorEnabled": false, "id": "wmqcNNDAFhgqwsYs2ruLs4oPdnL6vJeC"}}`

func TestSecondarySessions(t *testing.T) {
	t.Parallel()
	const token, user = "Uw0Y0ozqQPfejrG45dS328Gp5IwjHaPo", "wmqcNNDAFhgqwsYs2ruLs4oPdnL6vJeC"
	created := time.Date(2026, 11, 28, 9, 25, 54, 256e6, time.UTC)
	impersonated := `{"session":{"id":"s2","userId":"u2","expiresAt":"2036-01-01T00:00:00.000Z","createdAt":"2026-01-01T00:00:00.000Z","impersonatedBy":"admin1","activeOrganizationId":null},"user":{"id":"u2"}}`
	tests := []struct {
		name    string
		value   string // stored under the token; empty: none
		revoked string // revoked-sessions-before-<user>; empty: none
		want    *authn.Session
	}{
		{name: "live session", value: storedValue, want: &authn.Session{Found: true, ID: "RxAskJaSNbP34TVdCSLFuNTOb8WGTCDJ", UserID: user,
			ExpiresAt: time.Date(2036, 12, 5, 9, 25, 54, 256e6, time.UTC), ActiveOrganizationID: "yK0ZXouz5O0ty1gvGr9OIdgSOkPWB7xN", ActiveTeamID: "X51PRCKQoEQlEuEquHIXPwjA3rLRX5oM"}},
		{name: "impersonation, null fields", value: impersonated, want: &authn.Session{Found: true, ID: "s2", UserID: "u2",
			ExpiresAt: time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC), ImpersonatedBy: "admin1"}},
		{name: "no such token", want: &authn.Session{}},
		// Better Auth: createdAt < revoked-sessions-before → revoked.
		{name: "created before the revocation", value: storedValue, revoked: itoa(created.UnixMilli() + 1), want: &authn.Session{}},
		{name: "created at the revocation", value: storedValue, revoked: itoa(created.UnixMilli()), want: &authn.Session{Found: true}},
		{name: "created after the revocation", value: storedValue, revoked: itoa(created.UnixMilli() - 1), want: &authn.Session{Found: true}},
		{name: "unreadable revocation marker", value: storedValue, revoked: "soon", want: &authn.Session{}},
		{name: "not JSON", value: `{"session":`, want: &authn.Session{}},
		{name: "no user", value: `{"session":{"id":"s","userId":"u","expiresAt":"2036-01-01T00:00:00.000Z"}}`, want: &authn.Session{}},
		{name: "no session", value: `{"user":{"id":"u"}}`, want: &authn.Session{}},
		{name: "unreadable expiry", value: `{"session":{"id":"s","userId":"u","expiresAt":"tomorrow"},"user":{"id":"u"}}`, want: &authn.Session{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rdb, prefix := redisClient(t)
			ctx := context.Background()
			app := prefix + "app:" // the application's own secondaryStorage prefix
			if tt.value != "" {
				rdb.Set(ctx, app+token, tt.value, time.Hour)
			}
			if tt.revoked != "" {
				rdb.Set(ctx, app+"revoked-sessions-before-"+user, tt.revoked, time.Hour)
			}
			loaded := time.Now()
			src := NewSecondarySessions(rdb, SecondaryStorageConfig{Prefix: app, Now: func() time.Time { return loaded }})
			got, tier, err := src.SessionByToken(ctx, token)
			if err != nil || tier != roles.TierSource {
				t.Fatalf("SessionByToken: %v, %v", tier, err)
			}
			if got.Found != tt.want.Found || !got.LoadedAt.Equal(loaded) {
				t.Fatalf("got %+v, want found=%v, loaded at %v", got, tt.want.Found, loaded)
			}
			if tt.want.ID != "" {
				want := *tt.want
				want.LoadedAt = loaded
				if *got != want {
					t.Errorf("got %+v\nwant %+v", got, want)
				}
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// Better Auth's Redis being down is "cannot know", never "no session".
func TestSecondarySessionsUnavailable(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
	defer rdb.Close()
	_, _, err := NewSecondarySessions(rdb, SecondaryStorageConfig{}).SessionByToken(context.Background(), "tok")
	if !errors.Is(err, roles.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if containsString(err.Error(), "tok") {
		t.Errorf("the error quotes the token: %v", err)
	}
}

// Against the real Better Auth with secondary storage: what the sidecar
// reads is what get-session says, and the fixture's invalidations (its
// storage wrapper's session and user messages) make L1 drop a session on
// set-active, sign-out and revoke-sessions.
func TestSecondarySessionsWithBetterAuth(t *testing.T) {
	t.Parallel()
	rdb, prefix := redisClient(t)
	app, channel := prefix+"ba:", prefix+"invalidate"
	ba := testproc.StartBetterAuth(t, testproc.BetterAuthOptions{
		DatabaseURL: pgtest.NewEmptyDatabase(t),
		Env: []string{
			"SECONDARY_STORAGE_REDIS_URL=" + testproc.RedisURL(), "SECONDARY_STORAGE_PREFIX=" + app,
			"INVALIDATION_REDIS_URL=" + testproc.RedisURL(), "INVALIDATION_CHANNEL=" + channel, "INVALIDATION_REDIS_PREFIX=" + prefix,
		},
	})
	client := baclient.New(ba.URL)
	ctx := context.Background()

	// The sidecar's side: L1 over the secondary storage, invalidated by
	// the channel.
	inv := NewInvalidations(InvalidationsConfig{})
	s := newL1Store(t, L1Config{TTL: time.Hour, Invalidations: inv})
	src := NewSecondarySessions(rdb, SecondaryStorageConfig{Prefix: app})
	l1 := newL1(t, s, SessionTokenKind(), Lookup[string, *authn.Session](LookupFunc[string, *authn.Session](src.SessionByToken)))
	subscribed := make(chan string, 10)
	svc, err := invalidate.New(invalidate.Config{}, invalidate.Deps{
		Local: flushNotifier{inv, subscribed}, Markers: newL2Store(rdb, L2Config{Prefix: prefix, Invalidations: inv}),
		Bus: NewRedisBus(rdb, channel, zaptest.NewLogger(t)),
	}, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	svcCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { svc.Run(svcCtx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	receive(t, subscribed) // the subscription's flush, before anything is cached

	alice, err := client.SignUp(ctx, "alice@example.com", "correct horse battery", "alice")
	if err != nil {
		t.Fatal(err)
	}
	info, err := client.GetSession(ctx, alice)
	if err != nil || info == nil {
		t.Fatalf("get-session: %v, %v", info, err)
	}
	got, tier, err := l1.Lookup(ctx, alice.RawToken())
	if err != nil || tier != roles.TierSource || !got.Found || got.ID != info.ID || got.UserID != alice.UserID ||
		!got.ExpiresAt.Equal(info.ExpiresAt) || got.ActiveOrganizationID != "" {
		t.Fatalf("first lookup = %+v, %v, %v; want get-session's %+v", got, tier, err, info)
	}
	l1.Wait() // the entry is visible
	if got := tierOf(t, l1, alice.RawToken()); got != roles.TierL1 {
		t.Fatalf("second lookup: %v, want l1", got)
	}

	// Creating an organization makes it the session's active one: the
	// session update is announced, and L1 reloads.
	org, err := client.CreateOrganization(ctx, alice, "Acme", "acme")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the session update to reach L1", func() bool {
		v, _, err := l1.Lookup(ctx, alice.RawToken())
		return err == nil && v.ActiveOrganizationID == org
	})

	// Sign-out deletes the key: announced, and L1 forgets the session.
	if err := client.SignOut(ctx, alice); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the sign-out to reach L1", func() bool {
		v, _, err := l1.Lookup(ctx, alice.RawToken())
		return err == nil && !v.Found
	})

	// revoke-sessions writes the user's revocation marker (a user message)
	// and deletes the sessions (session messages). A value put back in
	// Redis is still refused: the marker says it was revoked.
	two, err := client.SignIn(ctx, "alice@example.com", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if v, _, _ := l1.Lookup(ctx, two.RawToken()); !v.Found {
		t.Fatal("second session not found")
	}
	stored, err := rdb.Get(ctx, app+two.RawToken()).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := client.RevokeSessions(ctx, two); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the revocation to reach L1", func() bool {
		v, _, err := l1.Lookup(ctx, two.RawToken())
		return err == nil && !v.Found
	})
	rdb.Set(ctx, app+two.RawToken(), stored, time.Hour)
	if v, _, err := src.SessionByToken(ctx, two.RawToken()); err != nil || v.Found {
		t.Errorf("a revoked session's value put back: %+v, %v; want not found", v, err)
	}
}

// flushNotifier tells when the invalidation service flushed L1 (on each
// subscription).
type flushNotifier struct {
	*Invalidations
	flushed chan<- string
}

func (f flushNotifier) FlushLocal() {
	f.Invalidations.FlushLocal()
	f.flushed <- "flushed"
}
