package authn

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Better Auth sets iss and aud to its baseURL origin.
const (
	testIssuer   = "http://127.0.0.1:3101"
	testAudience = "http://127.0.0.1:3101"
)

// testNow lies inside the lifetime of baClaims tokens (iat .. iat+900).
var testNow = time.Unix(1795728100, 0)

func fixedNow() time.Time { return testNow }

// testKey is a signing key pair with the kid and alg its tokens carry.
type testKey struct {
	kid  string
	alg  jwa.SignatureAlgorithm
	priv crypto.Signer
}

func (k testKey) public() crypto.PublicKey { return k.priv.Public() }

func newEd25519Key(t testing.TB, kid string) testKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{kid: kid, alg: jwa.EdDSA, priv: priv}
}

func newECKey(t testing.TB, kid string, alg jwa.SignatureAlgorithm, curve elliptic.Curve) testKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{kid: kid, alg: alg, priv: priv}
}

// RSA key generation is slow; tests share one key (each testKey still has
// its own kid and alg).
var sharedRSAKey = sync.OnceValues(func() (*rsa.PrivateKey, error) {
	return rsa.GenerateKey(rand.Reader, 2048)
})

func newRSAKey(t testing.TB, kid string, alg jwa.SignatureAlgorithm) testKey {
	t.Helper()
	priv, err := sharedRSAKey()
	if err != nil {
		t.Fatal(err)
	}
	return testKey{kid: kid, alg: alg, priv: priv}
}

// jwkJSON is the public JWK of k with kid and alg, as jwx serializes it.
func (k testKey) jwkJSON(t testing.TB) json.RawMessage {
	t.Helper()
	key, err := jwk.FromRaw(k.public())
	if err != nil {
		t.Fatal(err)
	}
	if err := key.Set(jwk.KeyIDKey, k.kid); err != nil {
		t.Fatal(err)
	}
	if err := key.Set(jwk.AlgorithmKey, k.alg); err != nil {
		t.Fatal(err)
	}
	buf, err := json.Marshal(key)
	if err != nil {
		t.Fatal(err)
	}
	return buf
}

// betterAuthJWK is an Ed25519 JWK exactly as Better Auth's /api/auth/jwks
// serves it: alg, crv, kty, x, kid; no use.
func betterAuthJWK(t testing.TB, k testKey) json.RawMessage {
	t.Helper()
	pub, ok := k.public().(ed25519.PublicKey)
	if !ok {
		t.Fatalf("betterAuthJWK: %T is not Ed25519", k.public())
	}
	return json.RawMessage(fmt.Sprintf(`{"alg":"EdDSA","crv":"Ed25519","kty":"OKP","x":"%s","kid":"%s"}`,
		base64.RawURLEncoding.EncodeToString(pub), k.kid))
}

func jwksBody(t testing.TB, keys ...json.RawMessage) []byte {
	t.Helper()
	buf, err := json.Marshal(map[string][]json.RawMessage{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return buf
}

// jwksServer serves a JWKS that tests can swap, counting requests.
type jwksServer struct {
	*httptest.Server
	hits   atomic.Int64
	body   atomic.Pointer[[]byte]
	status atomic.Int32 // 0: 200
	failN  atomic.Int64 // answer 500 to this many requests first
	delay  atomic.Int64 // nanoseconds to wait before answering
	// gate, when set, holds every request until it is closed or the client
	// gives up: a JWKS that stalls.
	gate atomic.Pointer[chan struct{}]
}

func newJWKSServer(t testing.TB, body []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.set(body)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if d := time.Duration(s.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		if g := s.gate.Load(); g != nil {
			select {
			case <-*g:
			case <-r.Context().Done():
				return
			}
		}
		if s.failN.Add(-1) >= 0 {
			http.Error(w, "not yet", http.StatusInternalServerError)
			return
		}
		if code := s.status.Load(); code != 0 {
			http.Error(w, "failing", int(code))
			return
		}
		// Like Better Auth: JSON, no Cache-Control.
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*s.body.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(body []byte) { s.body.Store(&body) }

// stall makes the server hold requests until the returned func is called.
func (s *jwksServer) stall() (release func()) {
	g := make(chan struct{})
	s.gate.Store(&g)
	return sync.OnceFunc(func() { close(g) })
}

// fakeClock moves only when told, for KeySetConfig.Now.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(testNow.UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// patience bounds the tests' waits for events: a failure bound far above
// what anything takes on a loaded machine, never what a test asserts.
const patience = 30 * time.Second

// await receives from ch within patience.
func await[T any](t testing.TB, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(patience):
		t.Fatalf("no %s within %v", what, patience)
		var zero T
		return zero
	}
}

// newTestKeySet returns a KeySet on srv's URL. cfg.URL is filled in.
func newTestKeySet(t testing.TB, url string, cfg KeySetConfig) *KeySet {
	t.Helper()
	cfg.URL = url
	ks, err := NewKeySet(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// loadedKeySet returns a KeySet that has fetched srv's JWKS once.
func loadedKeySet(t testing.TB, srv *jwksServer, cfg KeySetConfig) *KeySet {
	t.Helper()
	ks := newTestKeySet(t, srv.URL, cfg)
	if err := ks.Refresh(context.Background()); err != nil {
		t.Fatalf("initial Refresh: %v", err)
	}
	return ks
}

func newTestVerifier(t testing.TB, keys KeyLookup, algs ...string) *Verifier {
	t.Helper()
	v, err := NewVerifier(VerifierConfig{
		Issuer:     testIssuer,
		Audiences:  []string{testAudience},
		Leeway:     DefaultLeeway,
		Algorithms: algs,
		Now:        fixedNow,
	}, keys)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// baClaims is a payload shaped like Better Auth's jwt plugin output: the
// whole user row plus iat, sub, exp, iss and aud (a string), 900 s lifetime.
func baClaims() map[string]any {
	const iat = 1795728037
	return map[string]any{
		"iat":           iat,
		"name":          "Bob",
		"email":         "bob@example.com",
		"emailVerified": false,
		"image":         nil,
		"createdAt":     "2026-11-26T15:20:37.000Z",
		"updatedAt":     "2026-11-26T15:20:37.000Z",
		"role":          "user",
		"banned":        false,
		"banReason":     nil,
		"banExpires":    nil,
		"id":            "AQLt9kXfQz3mVw7Yp2bN",
		"sub":           "AQLt9kXfQz3mVw7Yp2bN",
		"exp":           iat + 900,
		"iss":           testIssuer,
		"aud":           testAudience,
	}
}

// with returns a copy of claims with changes applied; a nil value deletes
// the claim (use json.RawMessage("null") for an explicit null).
func with(claims map[string]any, changes map[string]any) map[string]any {
	out := make(map[string]any, len(claims))
	for k, v := range claims {
		out[k] = v
	}
	for k, v := range changes {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = v
	}
	return out
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	buf, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return buf
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// signCompact builds a compact JWS from exact header and payload bytes,
// signed by jwx's signer for alg with key.
func signCompact(t testing.TB, alg jwa.SignatureAlgorithm, key any, header, payload []byte) string {
	t.Helper()
	input := b64url(header) + "." + b64url(payload)
	signer, err := jws.NewSigner(alg)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signer.Sign([]byte(input), key)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64url(sig)
}

// signToken signs claims with k; header defaults to {"alg","kid"} as Better
// Auth sends it, and extra header fields are merged in (nil deletes).
func signToken(t testing.TB, k testKey, extraHeader map[string]any, claims map[string]any) string {
	t.Helper()
	hdr := with(map[string]any{"alg": k.alg.String(), "kid": k.kid}, extraHeader)
	return signCompact(t, k.alg, k.priv, mustJSON(t, hdr), mustJSON(t, claims))
}

// signJWX signs claims the ordinary jwx way (jws.Sign with a kid header),
// as a third-party signer such as Better Auth's jose would.
func signJWX(t testing.TB, k testKey, claims map[string]any) string {
	t.Helper()
	hdrs := jws.NewHeaders()
	if err := hdrs.Set(jws.KeyIDKey, k.kid); err != nil {
		t.Fatal(err)
	}
	tok, err := jws.Sign(mustJSON(t, claims), jws.WithKey(k.alg, k.priv, jws.WithProtectedHeaders(hdrs)))
	if err != nil {
		t.Fatal(err)
	}
	return string(tok)
}

// staticKeys is a KeyLookup over a fixed map, for tests that need no HTTP.
type staticKeys map[string]jwk.Key

func (s staticKeys) Lookup(_ context.Context, kid string) (jwk.Key, error) {
	if k, ok := s[kid]; ok {
		return k, nil
	}
	return nil, ErrUnknownKey
}

func parseJWK(t testing.TB, raw json.RawMessage) jwk.Key {
	t.Helper()
	k, err := jwk.ParseKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// assertNoTokenInError fails if err's message contains the token or any
// long piece of it.
func assertNoTokenInError(t testing.TB, err error, token string) {
	t.Helper()
	if err == nil || token == "" {
		return
	}
	msg := err.Error()
	if strings.Contains(msg, token) {
		t.Fatalf("error message contains the token: %q", msg)
	}
	for _, seg := range strings.Split(token, ".") {
		if len(seg) >= 16 && strings.Contains(msg, seg) {
			t.Fatalf("error message contains a token segment: %q", msg)
		}
	}
}
