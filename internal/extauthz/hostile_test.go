package extauthz_test

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/jwttest"
)

// TestHostileInput throws what the field's bypasses were made of at the
// whole decision path over gRPC; every case must be denied.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seed.User(t, "alice", "alice")
	e.seed.Org(t, "org_acme", "acme")
	e.seed.Member(t, "org_acme", "alice", "owner")
	good := e.signer.User("alice")
	parts := strings.Split(good, ".")
	exp := time.Now().Add(time.Hour).Unix()
	claims := jwttest.B64(map[string]any{"sub": "alice", "iss": issuer, "aud": issuer, "exp": exp})

	// HS256 "signed" with the public key bytes as the HMAC secret: the
	// classic algorithm-confusion attack.
	hsInput := jwttest.B64(map[string]any{"alg": "HS256", "kid": "k1"}) + "." + claims
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	mac := hmac.New(sha256.New, pub)
	mac.Write([]byte(hsInput))
	hs256 := hsInput + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))

	withHeader := func(h map[string]any) string { return e.signer.Token("k1", h, map[string]any{"sub": "alice"}) }
	tokens := map[string]string{
		"alg none":                   jwttest.B64(map[string]any{"alg": "none"}) + "." + claims + ".",
		"alg None":                   jwttest.B64(map[string]any{"alg": "None", "kid": "k1"}) + "." + claims + ".",
		"HS256 with the public key":  hs256,
		"kid with a path":            e.signer.Token("../../../../etc/passwd", nil, map[string]any{"sub": "alice"}),
		"kid with SQL":               e.signer.Token("k1' OR '1'='1", nil, map[string]any{"sub": "alice"}),
		"jku header":                 withHeader(map[string]any{"jku": "http://127.0.0.1:1/jwks"}),
		"x5u header":                 withHeader(map[string]any{"x5u": "http://127.0.0.1:1/cert"}),
		"embedded jwk":               withHeader(map[string]any{"jwk": map[string]any{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}}),
		"crit header":                withHeader(map[string]any{"crit": []string{"exp"}}),
		"tampered payload":           parts[0] + "." + claims + "." + parts[2],
		"another key's signature":    e.signer.Token("unknown-kid", nil, map[string]any{"sub": "alice"}),
		"oversize token":             parts[0] + "." + strings.Repeat("A", 9000) + "." + parts[2],
		"malformed base64":           parts[0] + ".!!!." + parts[2],
		"malformed JSON":             parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":`)) + "." + parts[2],
		"padding added":              good + "=",
		"two segments":               parts[0] + "." + parts[1],
		"four segments":              good + "." + parts[2],
		"signature stripped":         parts[0] + "." + parts[1] + ".",
		"whitespace inside":          parts[0] + ". " + parts[1] + "." + parts[2],
		"sub missing":                e.signer.Token("k1", nil, map[string]any{"sub": nil}),
		"exp missing":                e.signer.Token("k1", nil, map[string]any{"sub": "alice", "exp": nil}),
		"aud as a list of strangers": e.signer.Token("k1", nil, map[string]any{"sub": "alice", "aud": []string{"https://x.test", "https://y.test"}}),
	}
	for name, tok := range tokens {
		t.Run("token/"+name, func(t *testing.T) {
			t.Parallel()
			o := e.check(t, checkRequest("GET", "/api/me", bearer(tok), ""))
			if o.status != 401 {
				t.Errorf("status %d (%s), want 401", o.status, o.body)
			}
			if len(tok) > 20 && strings.Contains(o.body, tok[len(tok)-20:]) {
				t.Error("deny body echoes the token")
			}
		})
	}
	authHeaders := map[string]string{
		"two Authorization headers": "Bearer " + good + ",Bearer " + good,
		"Bearer without token":      "Bearer",
		"Bearer and spaces":         "Bearer    ",
		"token without scheme":      good,
		"Basic":                     "Basic YWxpY2U6cHc=",
		"Bearer with two tokens":    "Bearer " + good + " " + good,
	}
	for name, h := range authHeaders {
		t.Run("header/"+name, func(t *testing.T) {
			t.Parallel()
			if o := e.check(t, checkRequest("GET", "/api/me", map[string]string{"authorization": h}, "")); o.status != 401 {
				t.Errorf("status %d, want 401", o.status)
			}
		})
	}
	// The owner may approve; every ambiguous spelling of that path is denied
	// instead of being guessed at.
	paths := []string{
		"//api/orgs/org_acme/leave/1/approve",
		"/api//orgs/org_acme/leave/1/approve",
		"/api/./orgs/org_acme/leave/1/approve",
		"/api/x/../orgs/org_acme/leave/1/approve",
		"/api/orgs/org_acme%2Fleave/1/approve",
		"/api/orgs/org_acme/leave/1/%2e%2e/1/approve",
		"/api/orgs/org_acme/leave/1/approve%00",
		"/api/orgs/org_acme/leave/1/approve;jsessionid=1",
		"/api/orgs/org_acme/leave/1/approve#frag",
		"/API/orgs/org_acme/leave/1/approve",
		"/api/orgs/org_acme/leave/1/approve/",
		"/api/orgs/org_acme/leave/1/%61pprove",
		"/api/orgs/org_acme/leave/1\\approve",
		"/api/orgs/" + strings.Repeat("a", 5000) + "/leave/1/approve",
		"api/orgs/org_acme/leave/1/approve",
		"",
	}
	for _, p := range paths {
		name := p
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run("path/"+name, func(t *testing.T) {
			t.Parallel()
			if o := e.check(t, checkRequest("POST", p, bearer(good), "")); o.status != 403 {
				t.Errorf("POST %q: status %d, want 403", p, o.status)
			}
		})
	}
	t.Run("path/control: the clean path is allowed", func(t *testing.T) {
		if o := e.check(t, checkRequest("POST", "/api/orgs/org_acme/leave/1/approve?x=..%2F", bearer(good), "")); o.status != 200 {
			t.Errorf("clean path with a query: status %d %s", o.status, o.body)
		}
	})
	t.Run("organization: naming another organization gets nothing", func(t *testing.T) {
		e.seed.Org(t, "org_other", "other")
		for _, p := range []string{"/api/orgs/org_other/leave/1/approve", "/api/orgs/other/leave/1/approve"} {
			h := bearer(good)
			h["x-organization-id"] = "org_acme" // a source later in the order cannot override the path
			if o := e.check(t, checkRequest("POST", p, h, "")); o.status != 403 {
				t.Errorf("%s: status %d, want 403", p, o.status)
			}
		}
	})
}
