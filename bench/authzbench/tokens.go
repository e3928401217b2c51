package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"sync"
	"time"
)

// issuerKey signs tokens the way Better Auth's jwt plugin does (Ed25519,
// header {"alg":"EdDSA","kid":...}) and serves its JWKS on loopback.
type issuerKey struct {
	kid    string
	priv   ed25519.PrivateKey
	header string // base64url of the protected header
	issuer string // also the audience, as Better Auth sets both to baseURL
	srv    *http.Server
}

// startIssuer generates a key and serves {"keys":[...]} at
// <issuer>/api/auth/jwks, where issuer is http://127.0.0.1:<port>.
func startIssuer() (*issuerKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	var kidBytes [24]byte
	if _, err := rand.Read(kidBytes[:]); err != nil {
		return nil, fmt.Errorf("kid: %w", err)
	}
	k := &issuerKey{kid: base64.RawURLEncoding.EncodeToString(kidBytes[:]), priv: priv}
	hdr, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}{"EdDSA", k.kid})
	if err != nil {
		return nil, err
	}
	k.header = base64.RawURLEncoding.EncodeToString(hdr)

	// Exactly Better Auth's JWK members: alg, crv, kty, x, kid.
	jwks := fmt.Sprintf(`{"keys":[{"alg":"EdDSA","crv":"Ed25519","kty":"OKP","x":%q,"kid":%q}]}`,
		base64.RawURLEncoding.EncodeToString(pub), k.kid)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen jwks: %w", err)
	}
	k.issuer = "http://" + lis.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/auth/jwks", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(jwks))
	})
	k.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = k.srv.Serve(lis) }()
	return k, nil
}

func (k *issuerKey) jwksURL() string { return k.issuer + "/api/auth/jwks" }

func (k *issuerKey) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = k.srv.Shutdown(ctx)
}

// claims is Better Auth's jwt payload: the user row, then sub, iat, exp,
// iss, aud, in the order Better Auth writes them.
type claims struct {
	Name          string  `json:"name"`
	Email         string  `json:"email"`
	EmailVerified bool    `json:"emailVerified"`
	Image         *string `json:"image"`
	CreatedAt     string  `json:"createdAt"`
	UpdatedAt     string  `json:"updatedAt"`
	Role          string  `json:"role"`
	Banned        bool    `json:"banned"`
	BanReason     *string `json:"banReason"`
	BanExpires    *string `json:"banExpires"`
	ID            string  `json:"id"`
	Sub           string  `json:"sub"`
	Iat           int64   `json:"iat"`
	Exp           int64   `json:"exp"`
	Iss           string  `json:"iss"`
	Aud           string  `json:"aud"`
}

// tokenLifetime is Better Auth's default jwt expirationTime (15m).
const tokenLifetime = 15 * time.Minute

// sign returns a compact JWS for u issued at iat.
func (k *issuerKey) sign(u *user, iat time.Time) (string, error) {
	created := u.CreatedAt.Format("2006-01-02T15:04:05.000Z")
	payload, err := json.Marshal(claims{
		Name: u.Name, Email: u.Email, EmailVerified: true,
		CreatedAt: created, UpdatedAt: created, Role: "user",
		ID: u.ID, Sub: u.ID,
		Iat: iat.Unix(), Exp: iat.Add(tokenLifetime).Unix(),
		Iss: k.issuer, Aud: k.issuer,
	})
	if err != nil {
		return "", err
	}
	input := k.header + "." + base64.RawURLEncoding.EncodeToString(payload)
	sig := ed25519.Sign(k.priv, []byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// signMany signs n tokens, token j by mint(j), on every CPU: this happens
// before any measurement, so signing never competes with the servers.
func signMany(n int, mint func(j int) (string, error)) ([]string, error) {
	out := make([]string, n)
	err := parallel(n, func(j int) error {
		t, err := mint(j)
		out[j] = t
		return err
	})
	return out, err
}

// parallel runs f(0..n-1) on every CPU and returns the first error of each
// worker.
func parallel(n int, f func(i int) error) error {
	workers := runtime.NumCPU()
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if err := f(i); err != nil {
					errs[w] = fmt.Errorf("item %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// The settings of policies.yaml that name Better Auth's address (jwt and
// session), which the bench points at its own issuer.
var (
	reIssuer    = regexp.MustCompile(`(?m)^(\s+issuer:\s*)\S+`)
	reAudiences = regexp.MustCompile(`(?m)^(\s+audiences:\s*)\[[^\]]*\]`)
	reJWKSURL   = regexp.MustCompile(`(?m)^(\s+jwks_url:\s*)\S+`)
	reBaseURL   = regexp.MustCompile(`(?m)^(\s+base_url:\s*)\S+`)
)

// writePolicy copies the repository's policies.yaml to path with the jwt
// issuer, audiences, jwks_url and session base_url pointed at the bench
// issuer, changing nothing else: the benchmark decides under the real roles and routes.
func writePolicy(src, path string, k *issuerKey) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read policy: %w", err)
	}
	for _, r := range []struct {
		re   *regexp.Regexp
		with string
	}{
		{reIssuer, k.issuer},
		{reAudiences, "[" + k.issuer + "]"},
		{reJWKSURL, k.jwksURL()},
		{reBaseURL, k.issuer},
	} {
		if n := len(r.re.FindAllIndex(b, -1)); n != 1 {
			return fmt.Errorf("policy %s: %d lines match %s, want 1", src, n, r.re)
		}
		b = r.re.ReplaceAll(b, []byte("${1}"+r.with))
	}
	return os.WriteFile(path, b, 0o644)
}
