// Package jwttest is test support: an Ed25519 key set served as a Better
// Auth-shaped JWKS over real HTTP (httptest), and tokens shaped like the
// ones Better Auth's jwt plugin issues. Import it only from tests and test
// drivers (bench/fleet).
package jwttest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Issuer is the iss and aud of tokens minted by default.
const Issuer = "https://auth.example.test"

// Keys is a JWKS endpoint with keys that can be added (rotation).
type Keys struct {
	// URL of the JWKS endpoint.
	URL string
	// Hits counts the requests the endpoint served.
	Hits atomic.Int64

	mu   sync.Mutex
	keys map[string]ed25519.PrivateKey // guarded by mu
	srv  *httptest.Server
}

// NewKeys serves a JWKS with one key, kid "k1", until t ends.
func NewKeys(t testing.TB) *Keys {
	k := StartKeys()
	t.Cleanup(k.srv.Close)
	return k
}

// StartKeys is NewKeys for a driver that is not a test: it serves until
// Close.
func StartKeys() *Keys {
	k := &Keys{keys: map[string]ed25519.PrivateKey{}}
	k.AddKey("k1")
	k.srv = httptest.NewServer(http.HandlerFunc(k.serve))
	k.URL = k.srv.URL
	return k
}

// Close stops serving (the endpoint goes down).
func (k *Keys) Close() { k.srv.Close() }

func (k *Keys) serve(w http.ResponseWriter, _ *http.Request) {
	k.Hits.Add(1)
	k.mu.Lock()
	defer k.mu.Unlock()
	keys := []map[string]string{}
	for kid, key := range k.keys {
		keys = append(keys, map[string]string{
			"alg": "EdDSA", "crv": "Ed25519", "kty": "OKP", "kid": kid,
			"x": base64.RawURLEncoding.EncodeToString(key.Public().(ed25519.PublicKey)),
		})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"keys": keys})
}

// AddKey adds a new Ed25519 key under kid.
func (k *Keys) AddKey(kid string) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	k.mu.Lock()
	k.keys[kid] = key
	k.mu.Unlock()
}

// B64 is base64url(JSON(v)), a JWT segment.
func B64(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Token signs claims over Better Auth-shaped defaults (valid for 15
// minutes, iss and aud Issuer) with the key kid; a nil claim value removes
// the default. An unknown kid signs with a fresh key the JWKS does not have.
// header entries are added to {"alg":"EdDSA","kid":kid}.
func (k *Keys) Token(kid string, header, claims map[string]any) string {
	now := time.Now()
	c := map[string]any{
		"name": "User", "email": "user@example.test", "emailVerified": false, "image": nil,
		"createdAt": now.Add(-time.Hour).Format(time.RFC3339), "updatedAt": now.Format(time.RFC3339),
		"role": "user", "banned": false, "banReason": nil, "banExpires": nil,
		"iat": now.Unix(), "exp": now.Add(15 * time.Minute).Unix(), "iss": Issuer, "aud": Issuer,
	}
	for key, v := range claims {
		if v == nil {
			delete(c, key)
			continue
		}
		c[key] = v
	}
	h := map[string]any{"alg": "EdDSA", "kid": kid}
	maps.Copy(h, header)
	input := B64(h) + "." + B64(c)
	k.mu.Lock()
	key, ok := k.keys[kid]
	k.mu.Unlock()
	if !ok {
		_, key, _ = ed25519.GenerateKey(rand.Reader)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, []byte(input)))
}

// User mints a valid token for user id with kid "k1"; extra are claim
// name/value pairs.
func (k *Keys) User(id string, extra ...any) string {
	c := map[string]any{"sub": id, "id": id}
	for i := 0; i+1 < len(extra); i += 2 {
		c[extra[i].(string)] = extra[i+1]
	}
	return k.Token("k1", nil, c)
}
