package faults

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// jwksPath is where Better Auth serves its key set (policies.yaml names it).
const jwksPath = "/api/auth/jwks"

// issuer plays Better Auth: an httptest server with one Ed25519 key served
// as a JWKS, and tokens signed with it in Better Auth's shape. Its listener
// exists from the start, so its URL can be written into the policy even
// while it is "unreachable" (every connection reset) or closed.
type issuer struct {
	URL string // base URL: iss, aud, and the JWKS at URL+jwksPath
	kid string
	key ed25519.PrivateKey
	lis *switchListener
	srv *httptest.Server
}

// newIssuer starts the JWKS server, reachable or not.
func newIssuer(t testing.TB, mode reach) *issuer {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	is := &issuer{kid: "k-" + randID(4), key: key, lis: newSwitchListener(inner, mode)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+jwksPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{
			"alg": "EdDSA", "crv": "Ed25519", "kty": "OKP", "kid": is.kid,
			"x": base64.RawURLEncoding.EncodeToString(key.Public().(ed25519.PublicKey)),
		}}})
	})
	is.srv = httptest.NewUnstartedServer(mux)
	is.srv.Listener = is.lis
	is.srv.Start()
	t.Cleanup(is.srv.Close)
	is.URL = is.srv.URL
	return is
}

// token mints a Better Auth-shaped JWT for user id, valid for 15 minutes.
func (is *issuer) token(id string) string { return is.tokenWithKid(id, is.kid) }

// tokenWithKid mints a token naming kid; for a kid the JWKS does not hold
// it is signed with a throwaway key.
func (is *issuer) tokenWithKid(id, kid string) string {
	now := time.Now()
	claims := map[string]any{
		"sub": id, "id": id, "name": id, "email": id + "@example.test", "emailVerified": false,
		"image": nil, "role": "user", "banned": false,
		"createdAt": now.Add(-time.Hour).Format(time.RFC3339), "updatedAt": now.Format(time.RFC3339),
		"iat": now.Unix(), "exp": now.Add(15 * time.Minute).Unix(), "iss": is.URL, "aud": is.URL,
	}
	key := is.key
	if kid != is.kid {
		_, key, _ = ed25519.GenerateKey(rand.Reader)
	}
	input := b64json(map[string]any{"alg": "EdDSA", "kid": kid}) + "." + b64json(claims)
	return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, []byte(input)))
}

// up makes an unreachable issuer reachable.
func (is *issuer) up() { is.lis.up() }

// close shuts the endpoint for good: connections are refused.
func (is *issuer) close() { is.srv.Close() }

func b64json(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only maps of plain values are passed
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func randID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// reach is how the JWKS endpoint answers connections.
type reach int

const (
	reachable reach = iota
	resetting       // every connection reset: a refused/crashed endpoint
	hanging         // connections accepted, never answered: a black hole
)

// switchListener sits between the JWKS port and the HTTP server. While
// resetting it resets every connection, so a client sees a network failure
// (not an HTTP error) on a port that is already allocated; while hanging
// it holds connections unanswered, and hands them to the server once
// reachable, as a network that starts delivering would.
type switchListener struct {
	inner net.Listener
	conns chan net.Conn // to the HTTP server; closed when inner is

	mu   sync.Mutex
	mode reach      // guarded by mu
	held []net.Conn // guarded by mu
}

func newSwitchListener(inner net.Listener, mode reach) *switchListener {
	l := &switchListener{inner: inner, conns: make(chan net.Conn), mode: mode}
	go func() {
		defer close(l.conns)
		for {
			c, err := inner.Accept()
			if err != nil {
				return
			}
			l.mu.Lock()
			mode := l.mode
			if mode == hanging {
				l.held = append(l.held, c)
			}
			l.mu.Unlock()
			switch mode {
			case reachable:
				l.conns <- c
			case resetting:
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0)
				}
				c.Close()
			}
		}
	}()
	return l
}

// up makes the endpoint reachable, delivering held connections.
func (l *switchListener) up() {
	l.mu.Lock()
	l.mode = reachable
	held := l.held
	l.held = nil
	l.mu.Unlock()
	go func() {
		for _, c := range held {
			l.conns <- c
		}
	}()
}

func (l *switchListener) Accept() (net.Conn, error) {
	c, ok := <-l.conns
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}

func (l *switchListener) Close() error {
	err := l.inner.Close()
	l.mu.Lock()
	for _, c := range l.held {
		c.Close()
	}
	l.held = nil
	l.mu.Unlock()
	return err
}

func (l *switchListener) Addr() net.Addr { return l.inner.Addr() }
