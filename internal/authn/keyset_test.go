package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestKeySetRotation(t *testing.T) {
	t.Parallel()
	old := newEd25519Key(t, "key-1")
	next := newEd25519Key(t, "key-2")
	srv := newJWKSServer(t, jwksBody(t, betterAuthJWK(t, old)))
	clk := newFakeClock()
	ks := loadedKeySet(t, srv, KeySetConfig{MinRefreshInterval: time.Minute, Now: clk.Now})
	v := newTestVerifier(t, ks)
	ctx := context.Background()
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("fetches after load = %d, want 1", got)
	}
	if _, err := v.Verify(ctx, signToken(t, old, nil, baClaims())); err != nil {
		t.Fatalf("old key before rotation: %v", err)
	}

	// Better Auth rotates: the JWKS serves both keys, tokens use the new one.
	srv.set(jwksBody(t, betterAuthJWK(t, next), betterAuthJWK(t, old)))
	clk.Advance(time.Minute) // past MinRefreshInterval
	tok := signToken(t, next, nil, baClaims())
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("new key after rotation: %v", err)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("fetches after rotation = %d, want exactly 2", got)
	}
	for range 3 {
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.Verify(ctx, signToken(t, old, nil, baClaims())); err != nil {
		t.Fatalf("old key still served: %v", err)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("fetches for known keys = %d, want still 2", got)
	}

	// The old key is withdrawn: after the next refresh its tokens fail.
	srv.set(jwksBody(t, betterAuthJWK(t, next)))
	if err := ks.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, signToken(t, old, nil, baClaims())); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("withdrawn key: error = %v, want ErrUnknownKey", err)
	}
}

func TestKeySetConcurrentMissesFetchOnce(t *testing.T) {
	t.Parallel()
	key := newEd25519Key(t, "key-1")
	tests := []struct {
		name    string
		kid     string
		wantErr error
	}{
		// Never fetched: every caller must share the one fetch and see
		// its result (a caller that skipped it would get ErrNoKeys).
		{name: "known kid on a cold key set", kid: key.kid},
		{name: "unknown kid on a cold key set", kid: "nope", wantErr: ErrUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newJWKSServer(t, jwksBody(t, betterAuthJWK(t, key)))
			srv.delay.Store(int64(100 * time.Millisecond))
			ks := newTestKeySet(t, srv.URL, KeySetConfig{MinRefreshInterval: time.Hour})

			const callers = 64
			start := make(chan struct{})
			errs := make(chan error, callers)
			var wg sync.WaitGroup
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					_, err := ks.Lookup(context.Background(), tt.kid)
					errs <- err
				}()
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
					t.Fatalf("Lookup error = %v, want %v", err, tt.wantErr)
				}
			}
			if got := srv.hits.Load(); got != 1 {
				t.Fatalf("fetches = %d, want 1", got)
			}
		})
	}
}

func TestKeySetConcurrentUnknownKidAfterLoad(t *testing.T) {
	t.Parallel()
	key := newEd25519Key(t, "key-1")
	srv := newJWKSServer(t, jwksBody(t, betterAuthJWK(t, key)))
	clk := newFakeClock()
	ks := loadedKeySet(t, srv, KeySetConfig{MinRefreshInterval: time.Minute, Now: clk.Now})
	// Slow answers, so that most callers join the fetch; those that come
	// after it are within MinRefreshInterval of it (the clock stands still).
	srv.delay.Store(int64(200 * time.Millisecond))
	clk.Advance(time.Minute) // past MinRefreshInterval

	const callers = 64
	start := make(chan struct{})
	var wg sync.WaitGroup
	var unknown atomic.Int64
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := ks.Lookup(context.Background(), "random-kid-"+string(rune('a'+i%26)))
			if errors.Is(err, ErrUnknownKey) {
				unknown.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if got := unknown.Load(); got != callers {
		t.Fatalf("ErrUnknownKey for %d of %d callers", got, callers)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("fetches = %d, want 2 (load + one shared refresh)", got)
	}
}

func TestKeySetRateLimit(t *testing.T) {
	t.Parallel()
	key := newEd25519Key(t, "key-1")
	added := newEd25519Key(t, "key-2")
	srv := newJWKSServer(t, jwksBody(t, betterAuthJWK(t, key)))
	ks := newTestKeySet(t, srv.URL, KeySetConfig{MinRefreshInterval: time.Hour})
	ctx := context.Background()

	if _, err := ks.Lookup(ctx, "a"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("first unknown kid: %v", err)
	}
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("fetches = %d, want 1", got)
	}
	srv.set(jwksBody(t, betterAuthJWK(t, key), betterAuthJWK(t, added)))
	for _, kid := range []string{"b", "a", added.kid} {
		if _, err := ks.Lookup(ctx, kid); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("Lookup(%q) within MinRefreshInterval: %v, want ErrUnknownKey", kid, err)
		}
	}
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("fetches within MinRefreshInterval = %d, want 1", got)
	}
	// Known kids are served from memory regardless.
	if _, err := ks.Lookup(ctx, key.kid); err != nil {
		t.Fatal(err)
	}
	// An explicit Refresh is not rate-limited.
	if err := ks.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Lookup(ctx, added.kid); err != nil {
		t.Fatalf("after Refresh: %v", err)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("fetches = %d, want 2", got)
	}
}

func TestKeySetKeepsLastGoodSet(t *testing.T) {
	t.Parallel()
	key := newEd25519Key(t, "key-1")
	tests := []struct {
		name   string
		break_ func(*jwksServer)
	}{
		{name: "server closed", break_: func(s *jwksServer) { s.Close() }},
		{name: "server errors", break_: func(s *jwksServer) { s.status.Store(503) }},
		{name: "garbage body", break_: func(s *jwksServer) { s.set([]byte("<html>")) }},
		{name: "empty key set", break_: func(s *jwksServer) { s.set([]byte(`{"keys":[]}`)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newJWKSServer(t, jwksBody(t, betterAuthJWK(t, key)))
			var results []error
			var mu sync.Mutex
			clk := newFakeClock()
			ks := loadedKeySet(t, srv, KeySetConfig{
				MinRefreshInterval: time.Minute,
				Now:                clk.Now,
				OnRefresh: func(err error) {
					mu.Lock()
					results = append(results, err)
					mu.Unlock()
				},
			})
			loaded := fetchedAt(ks)
			v := newTestVerifier(t, ks)
			ctx := context.Background()
			tt.break_(srv)

			if err := ks.Refresh(ctx); err == nil {
				t.Fatal("Refresh succeeded against a broken JWKS")
			}
			if !ks.Ready() || !fetchedAt(ks).Equal(loaded) {
				t.Fatalf("Ready() = %v, the fetch time moved: the good set was dropped", ks.Ready())
			}
			if _, err := v.Verify(ctx, signToken(t, key, nil, baClaims())); err != nil {
				t.Fatalf("last good key no longer verifies: %v", err)
			}
			// An unknown kid still triggers a (failing) refresh, and is a
			// token problem, not "no keys".
			clk.Advance(time.Minute) // past MinRefreshInterval
			if _, err := v.Verify(ctx, signToken(t, newEd25519Key(t, "other"), nil, baClaims())); !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("unknown kid: %v, want ErrUnknownKey", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(results) != 3 || results[0] != nil || results[1] == nil || results[2] == nil {
				t.Fatalf("OnRefresh results = %v, want [nil, err, err]", results)
			}
		})
	}
}

func TestKeySetNeverReachable(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, nil)
	srv.Close()
	var calls atomic.Int64
	// A clock that stands still: the Lookup below is within the default
	// MinRefreshInterval of the Refresh however slow the machine.
	clk := newFakeClock()
	ks := newTestKeySet(t, srv.URL, KeySetConfig{Now: clk.Now, OnRefresh: func(error) { calls.Add(1) }})
	ctx := context.Background()
	if err := ks.Refresh(ctx); err == nil {
		t.Fatal("Refresh succeeded against a closed server")
	}
	if ks.Ready() || !fetchedAt(ks).IsZero() {
		t.Fatalf("Ready() = %v, fetched at %v", ks.Ready(), fetchedAt(ks))
	}
	if _, err := ks.Lookup(ctx, "any"); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("Lookup error = %v, want ErrNoKeys", err)
	}
	if got := calls.Load(); got != 1 {
		// The Lookup was rate-limited (default 10 s after the Refresh).
		t.Fatalf("OnRefresh calls = %d, want 1", got)
	}
}

// jwkWith returns raw (a JWK object) with fields changed; a nil value
// deletes the field.
func jwkWith(t *testing.T, raw json.RawMessage, changes map[string]any) json.RawMessage {
	t.Helper()
	m := map[string]any{}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return mustJSON(t, with(m, changes))
}

func TestKeySetSkipsUnusableKeys(t *testing.T) {
	t.Parallel()
	good := newEd25519Key(t, "good")
	goodJWK := betterAuthJWK(t, good)
	b64 := base64.RawURLEncoding.EncodeToString

	privJWK := func() json.RawMessage {
		k, err := jwk.FromRaw(good.priv)
		if err != nil {
			t.Fatal(err)
		}
		_ = k.Set(jwk.KeyIDKey, "private")
		return mustJSON(t, k)
	}()
	rsaSmall, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p256 := newECKey(t, "p256", jwa.ES256, elliptic.P256())
	offCurve := func() json.RawMessage {
		pub := p256.public().(*ecdsa.PublicKey)
		y := pub.Y.Bytes()
		y = append(make([]byte, 32-len(y)), y...)
		y[31] ^= 1
		return jwkWith(t, p256.jwkJSON(t), map[string]any{"kid": "offcurve", "y": b64(y)})
	}()

	unusable := map[string]struct {
		raw json.RawMessage
		why string // the reason usableKey gives
	}{
		"no kid":             {jwkWith(t, goodJWK, map[string]any{"kid": nil}), "no kid"},
		"empty kid":          {jwkWith(t, goodJWK, map[string]any{"kid": ""}), "no kid"},
		"symmetric":          {json.RawMessage(`{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQ","kid":"hmac","alg":"HS256"}`), "not an asymmetric public key"},
		"private":            {privJWK, "not an asymmetric public key"},
		"X25519":             {jwkWith(t, goodJWK, map[string]any{"kid": "x25519", "crv": "X25519", "alg": nil}), "is not Ed25519"},
		"short Ed25519":      {jwkWith(t, goodJWK, map[string]any{"kid": "short", "x": b64(make([]byte, 31))}), "wrong length"},
		"EC point off curve": {offCurve, "not on curve"},
		"RSA 1024":           {newRSAKeyJWK(t, rsaSmall, "rsa1024"), "shorter than 2048"},
		"alg of other kty":   {jwkWith(t, goodJWK, map[string]any{"kid": "algmismatch", "alg": "RS256"}), "does not fit"},
		"alg none":           {jwkWith(t, goodJWK, map[string]any{"kid": "algnone", "alg": "none"}), "does not fit"},
		"use enc":            {jwkWith(t, goodJWK, map[string]any{"kid": "enc", "use": "enc"}), "has use"},
		"key_ops encrypt":    {jwkWith(t, goodJWK, map[string]any{"kid": "ops", "key_ops": []string{"encrypt"}}), "no verify key_op"},
		"unknown kty":        {json.RawMessage(`{"kty":"XYZ","kid":"xyz"}`), "invalid key type"},
		"not an object":      {json.RawMessage(`"key"`), "unparseable"},
	}

	for name, tt := range unusable {
		t.Run("only "+name, func(t *testing.T) {
			t.Parallel()
			if _, err := usableKey(tt.raw); err == nil || !strings.Contains(err.Error(), tt.why) {
				t.Fatalf("usableKey error = %v, want one containing %q", err, tt.why)
			}
			srv := newJWKSServer(t, jwksBody(t, tt.raw))
			ks := newTestKeySet(t, srv.URL, KeySetConfig{})
			if err := ks.Refresh(context.Background()); err == nil {
				t.Fatal("Refresh succeeded with no usable key")
			}
			if ks.Ready() {
				t.Fatal("Ready() = true")
			}
		})
	}

	t.Run("mixed with a good key", func(t *testing.T) {
		t.Parallel()
		body := []json.RawMessage{goodJWK}
		for _, tt := range unusable {
			body = append(body, tt.raw)
		}
		// A second key with the good kid: the first one is kept.
		body = append(body, betterAuthJWK(t, newEd25519Key(t, good.kid)))
		srv := newJWKSServer(t, jwksBody(t, body...))
		ks := loadedKeySet(t, srv, KeySetConfig{MinRefreshInterval: time.Hour})
		v := newTestVerifier(t, ks, "EdDSA", "ES256", "RS256")
		if _, err := v.Verify(context.Background(), signToken(t, good, nil, baClaims())); err != nil {
			t.Fatalf("good key: %v", err)
		}
		idx := ks.current.Load()
		if len(idx.byKID) != 1 {
			t.Fatalf("usable keys = %v, want only %q", keysOf(idx), good.kid)
		}
		for _, kid := range []string{"hmac", "private", "x25519", "short", "offcurve", "rsa1024", "algmismatch", "enc", "ops"} {
			if _, err := ks.Lookup(context.Background(), kid); !errors.Is(err, ErrUnknownKey) {
				t.Errorf("Lookup(%q) = %v, want ErrUnknownKey", kid, err)
			}
		}
	})
}

func keysOf(idx *keyIndex) []string {
	var out []string
	for kid := range idx.byKID {
		out = append(out, kid)
	}
	return out
}

func newRSAKeyJWK(t *testing.T, priv *rsa.PrivateKey, kid string) json.RawMessage {
	t.Helper()
	k, err := jwk.FromRaw(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	_ = k.Set(jwk.KeyIDKey, kid)
	return mustJSON(t, k)
}

func TestKeySetFetchFailures(t *testing.T) {
	t.Parallel()
	good := jwksBody(t, betterAuthJWK(t, newEd25519Key(t, "good")))
	tests := []struct {
		name   string
		body   []byte
		status int32
		cfg    KeySetConfig
	}{
		{name: "invalid JSON", body: []byte(`{"keys":[`)},
		{name: "no keys member", body: []byte(`{}`)},
		{name: "keys not an array", body: []byte(`{"keys":{}}`)},
		{name: "top-level array", body: []byte(`[]`)},
		{name: "empty body", body: []byte(``)},
		{name: "status 500", body: good, status: 500},
		{name: "status 404", body: good, status: 404},
		{name: "body over MaxBodyBytes", body: good, cfg: KeySetConfig{MaxBodyBytes: int64(len(good) - 1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newJWKSServer(t, tt.body)
			srv.status.Store(tt.status)
			ks := newTestKeySet(t, srv.URL, tt.cfg)
			if err := ks.Refresh(context.Background()); err == nil {
				t.Fatal("Refresh succeeded")
			}
			if ks.Ready() {
				t.Fatal("Ready() = true")
			}
		})
	}

	t.Run("body exactly MaxBodyBytes", func(t *testing.T) {
		t.Parallel()
		srv := newJWKSServer(t, good)
		ks := newTestKeySet(t, srv.URL, KeySetConfig{MaxBodyBytes: int64(len(good))})
		if err := ks.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("fetch timeout", func(t *testing.T) {
		t.Parallel()
		srv := newJWKSServer(t, good)
		t.Cleanup(srv.stall()) // never answers while the test runs
		ks := newTestKeySet(t, srv.URL, KeySetConfig{FetchTimeout: 50 * time.Millisecond})
		// Only FetchTimeout can end the fetch; patience only bounds a
		// failure of this test.
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		err := ks.Refresh(ctx)
		if err == nil {
			t.Fatal("Refresh succeeded")
		}
		if ctx.Err() != nil {
			t.Fatalf("Refresh ended by the test's own deadline (%v), not by FetchTimeout", err)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Refresh error = %v, want a deadline", err)
		}
	})
}

func TestKeySetLookupContextEnds(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, jwksBody(t, betterAuthJWK(t, newEd25519Key(t, "k"))))
	release := srv.stall()
	t.Cleanup(release)
	refreshed := make(chan error, 1)
	ks := newTestKeySet(t, srv.URL, KeySetConfig{FetchTimeout: patience, OnRefresh: func(err error) { refreshed <- err }})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := ks.Lookup(ctx, "k")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lookup error = %v, want DeadlineExceeded", err)
	}
	if isTokenError(err) {
		t.Fatal("a context error counted as unauthenticated")
	}
	// The shared fetch was not cancelled with the caller: once the JWKS
	// answers, it completes.
	release()
	if err := await(t, "fetch result", refreshed); err != nil {
		t.Fatalf("the fetch the caller gave up on failed: %v", err)
	}
	if !ks.Ready() {
		t.Fatal("not ready after the fetch")
	}
}

func TestKeySetRun(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, jwksBody(t, betterAuthJWK(t, newEd25519Key(t, "k"))))
	srv.failN.Store(3) // never succeeded yet: retried with backoff
	results := make(chan error, 100)
	ks := newTestKeySet(t, srv.URL, KeySetConfig{
		InitialBackoff:  time.Millisecond,
		RefreshInterval: 10 * time.Millisecond,
		OnRefresh:       func(err error) { results <- err },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		ks.Run(ctx)
		close(done)
	}()

	// Run fetches at once, retries each failure, then keeps refreshing on
	// its schedule (whose durations TestKeySetRunSchedule checks).
	for i, wantOK := range []bool{false, false, false, true, true, true} {
		if err := await(t, "refresh", results); (err == nil) != wantOK {
			t.Fatalf("attempt %d: error %v, want success %v", i, err, wantOK)
		}
	}
	if !ks.Ready() {
		t.Fatal("not ready after a successful fetch")
	}

	cancel()
	await(t, "Run's return after ctx was cancelled", done)
	// Run is the only thing that schedules fetches: once it has returned,
	// none starts.
}

// Run waits InitialBackoff after a first failure, doubling the wait after
// each further one up to RefreshInterval, then RefreshInterval between
// fetches once a key set is loaded.
func TestKeySetRunSchedule(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, jwksBody(t, betterAuthJWK(t, newEd25519Key(t, "k"))))
	ks := newTestKeySet(t, srv.URL, KeySetConfig{InitialBackoff: time.Millisecond, RefreshInterval: 20 * time.Millisecond})
	var waits []time.Duration
	backoff := ks.cfg.InitialBackoff
	for range 7 {
		var wait time.Duration
		wait, backoff = ks.nextWait(backoff)
		waits = append(waits, wait)
	}
	ms := time.Millisecond
	if want := []time.Duration{1 * ms, 2 * ms, 4 * ms, 8 * ms, 16 * ms, 20 * ms, 20 * ms}; !slices.Equal(waits, want) {
		t.Errorf("waits while no set was ever loaded = %v, want %v (doubling, capped at RefreshInterval)", waits, want)
	}
	if err := ks.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if wait, _ := ks.nextWait(backoff); wait != 20*ms {
		t.Errorf("wait once loaded = %v, want RefreshInterval", wait)
	}
}

func TestNewKeySetConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     KeySetConfig
		wantErr bool
	}{
		{name: "https", cfg: KeySetConfig{URL: "https://app.example.com/api/auth/jwks"}},
		{name: "http", cfg: KeySetConfig{URL: "http://127.0.0.1:3101/api/auth/jwks"}},
		{name: "empty URL", cfg: KeySetConfig{}, wantErr: true},
		{name: "relative URL", cfg: KeySetConfig{URL: "/api/auth/jwks"}, wantErr: true},
		{name: "file URL", cfg: KeySetConfig{URL: "file:///etc/passwd"}, wantErr: true},
		{name: "unparseable URL", cfg: KeySetConfig{URL: "http://[::1"}, wantErr: true},
		{name: "negative interval", cfg: KeySetConfig{URL: "https://a.example/j", RefreshInterval: -1}, wantErr: true},
		{name: "negative min interval", cfg: KeySetConfig{URL: "https://a.example/j", MinRefreshInterval: -1}, wantErr: true},
		{name: "negative body", cfg: KeySetConfig{URL: "https://a.example/j", MaxBodyBytes: -1}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ks, err := NewKeySet(tt.cfg, nil)
			if (err != nil) != tt.wantErr {
				t.Fatalf("NewKeySet error = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && (ks.cfg.RefreshInterval != DefaultRefreshInterval || ks.cfg.MinRefreshInterval != DefaultMinRefreshInterval ||
				ks.cfg.FetchTimeout != DefaultFetchTimeout || ks.cfg.MaxBodyBytes != DefaultMaxBodyBytes) {
				t.Fatalf("defaults not applied: %+v", ks.cfg)
			}
		})
	}

	t.Run("URL credentials are redacted", func(t *testing.T) {
		t.Parallel()
		ks, err := NewKeySet(KeySetConfig{URL: "https://user:s3cret@a.example/j"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(ks.url, "s3cret") {
			t.Fatalf("url for logs = %q", ks.url)
		}
	})
}

func TestKeySetRedirects(t *testing.T) {
	t.Parallel()
	body := jwksBody(t, betterAuthJWK(t, newEd25519Key(t, "k")))

	t.Run("http to http is followed", func(t *testing.T) {
		t.Parallel()
		plain := newJWKSServer(t, body)
		redirect := httptest.NewServer(http.RedirectHandler(plain.URL+"/jwks", http.StatusFound))
		t.Cleanup(redirect.Close)
		ks := newTestKeySet(t, redirect.URL, KeySetConfig{})
		if err := ks.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("https to http is refused", func(t *testing.T) {
		t.Parallel()
		plain := newJWKSServer(t, body)
		redirect := httptest.NewTLSServer(http.RedirectHandler(plain.URL+"/jwks", http.StatusFound))
		t.Cleanup(redirect.Close)
		// The test server's certificate, with the package's redirect policy.
		client := redirect.Client()
		client.CheckRedirect = noDowngrade
		ks := newTestKeySet(t, redirect.URL, KeySetConfig{HTTPClient: client})
		if err := ks.Refresh(context.Background()); err == nil {
			t.Fatal("followed a redirect from https to http")
		}
		if plain.hits.Load() != 0 {
			t.Fatal("the http server was contacted")
		}
	})
}

// TestNoDowngrade: redirects are followed up to net/http's limit of 10, and
// never from https to http.
func TestNoDowngrade(t *testing.T) {
	t.Parallel()
	req := func(rawURL string) *http.Request {
		r, err := http.NewRequest(http.MethodGet, rawURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	via := func(n int, scheme string) []*http.Request {
		v := make([]*http.Request, n)
		for i := range v {
			v[i] = req(scheme + "://a.example/jwks")
		}
		return v
	}
	tests := []struct {
		name string
		req  *http.Request
		via  []*http.Request
		ok   bool
	}{
		{"first redirect", req("https://b.example/jwks"), via(1, "https"), true},
		{"ninth redirect", req("https://b.example/jwks"), via(9, "https"), true},
		{"tenth redirect is one too many", req("https://b.example/jwks"), via(10, "https"), false},
		{"http to http", req("http://b.example/jwks"), via(1, "http"), true},
		{"http to https", req("https://b.example/jwks"), via(1, "http"), true},
		{"https to http", req("http://b.example/jwks"), via(1, "https"), false},
		{"https to http after an https hop", req("http://b.example/jwks"), via(2, "https"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := noDowngrade(tt.req, tt.via); (err == nil) != tt.ok {
				t.Errorf("noDowngrade = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

// TestKeySetLogs: a failed fetch is a warning (operators alert on it), a
// good one is not; a skipped key warns once per reason, and the set of
// reasons remembered is bounded.
func TestKeySetLogs(t *testing.T) {
	t.Parallel()
	good := jwksBody(t, betterAuthJWK(t, newEd25519Key(t, "good")))
	tests := []struct {
		name   string
		status int32
		warns  int
	}{
		{"fetch fails", 500, 1},
		{"fetch succeeds", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newJWKSServer(t, good)
			srv.status.Store(tt.status)
			core, logs := observer.New(zapcore.DebugLevel)
			ks, err := NewKeySet(KeySetConfig{URL: srv.URL}, zap.New(core))
			if err != nil {
				t.Fatal(err)
			}
			_ = ks.Refresh(context.Background())
			if n := logs.FilterMessage("JWKS fetch failed; keeping the last good key set").FilterLevelExact(zapcore.WarnLevel).Len(); n != tt.warns {
				t.Errorf("%d fetch warnings, want %d", n, tt.warns)
			}
			if n := logs.FilterMessage("JWKS fetched").Len(); n != 1-tt.warns {
				t.Errorf("%d fetch debug lines, want %d", n, 1-tt.warns)
			}
		})
	}

	t.Run("warn once, bounded", func(t *testing.T) {
		t.Parallel()
		core, logs := observer.New(zapcore.WarnLevel)
		ks, err := NewKeySet(KeySetConfig{URL: "https://a.example/jwks"}, zap.New(core))
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			ks.warnOnce("r", "skipped")
		}
		if n := logs.Len(); n != 1 {
			t.Errorf("a reason seen twice logged %d times", n)
		}
		for i := range 300 {
			ks.warnOnce(fmt.Sprint("reason ", i), "skipped")
		}
		if n := len(ks.warned); n != maxWarned {
			t.Errorf("%d reasons remembered, want %d", n, maxWarned)
		}
	})
}

// fetchedAt is when ks's current key set was fetched, or the zero time if
// none was.
func fetchedAt(ks *KeySet) time.Time {
	if idx := ks.current.Load(); idx != nil {
		return idx.fetchedAt
	}
	return time.Time{}
}
