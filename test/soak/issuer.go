package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"
)

// jwksPath is where Better Auth serves its key set (policies.yaml names it).
const jwksPath = "/api/auth/jwks"

// issuer plays Better Auth: one Ed25519 key served as a JWKS, and tokens in
// Better Auth's shape signed with it.
type issuer struct {
	url string
	kid string
	key ed25519.PrivateKey
	srv *httptest.Server
}

func newIssuer() (*issuer, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	is := &issuer{kid: "soak-" + randID(4), key: key}
	body, err := json.Marshal(map[string]any{"keys": []map[string]string{{
		"alg": "EdDSA", "crv": "Ed25519", "kty": "OKP", "kid": is.kid,
		"x": base64.RawURLEncoding.EncodeToString(key.Public().(ed25519.PublicKey)),
	}}})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+jwksPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	is.srv = httptest.NewServer(mux)
	is.url = is.srv.URL
	return is, nil
}

// token mints a token for user id valid for life.
func (is *issuer) token(id string, life time.Duration) (string, error) {
	now := time.Now()
	claims := map[string]any{
		"sub": id, "id": id, "name": id, "email": id + "@example.test", "emailVerified": false,
		"image": nil, "role": "user", "banned": false,
		"iat": now.Unix(), "exp": now.Add(life).Unix(), "iss": is.url, "aud": is.url,
	}
	h, err := json.Marshal(map[string]any{"alg": "EdDSA", "kid": is.kid})
	if err != nil {
		return "", err
	}
	c, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(is.key, []byte(input))), nil
}

func randID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}
