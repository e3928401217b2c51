package authn

import (
	"context"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
)

// verifierFixture is a JWKS server with one key per accepted algorithm,
// Ed25519 exactly as Better Auth serves it, and a KeySet loaded from it.
type verifierFixture struct {
	ed, es256, es384, es512, rs256, ps256 testKey
	srv                                   *jwksServer
	keys                                  *KeySet
}

func newVerifierFixture(t *testing.T) *verifierFixture {
	t.Helper()
	f := &verifierFixture{
		ed:    newEd25519Key(t, "3NxW8bJxqYHZ0ePa1oSLXrcUlG5f2kTd"),
		es256: newECKey(t, "es256-key", jwa.ES256, elliptic.P256()),
		es384: newECKey(t, "es384-key", jwa.ES384, elliptic.P384()),
		es512: newECKey(t, "es512-key", jwa.ES512, elliptic.P521()),
		rs256: newRSAKey(t, "rs256-key", jwa.RS256),
		ps256: newRSAKey(t, "ps256-key", jwa.PS256),
	}
	f.srv = newJWKSServer(t, jwksBody(t,
		betterAuthJWK(t, f.ed),
		f.es256.jwkJSON(t), f.es384.jwkJSON(t), f.es512.jwkJSON(t), f.rs256.jwkJSON(t), f.ps256.jwkJSON(t)))
	f.keys = loadedKeySet(t, f.srv, KeySetConfig{MinRefreshInterval: time.Hour})
	return f
}

func TestVerifyValid(t *testing.T) {
	t.Parallel()
	f := newVerifierFixture(t)
	withOrg := with(baClaims(), map[string]any{"activeOrganizationId": "org_123", "sid": "sess_1"})
	tests := []struct {
		name  string
		algs  []string
		token string
	}{
		{name: "EdDSA as Better Auth signs it", token: signJWX(t, f.ed, baClaims())},
		{name: "EdDSA with definePayload org", token: signToken(t, f.ed, nil, withOrg)},
		{name: "ES256 when allowed", algs: []string{"EdDSA", "ES256"}, token: signToken(t, f.es256, nil, baClaims())},
		{name: "ES384 when allowed", algs: []string{"ES384"}, token: signToken(t, f.es384, nil, baClaims())},
		{name: "ES512 (P-521) when allowed", algs: []string{"ES512"}, token: signToken(t, f.es512, nil, baClaims())},
		{name: "RS256 when allowed", algs: []string{"RS256"}, token: signJWX(t, f.rs256, baClaims())},
		{name: "PS256 when allowed", algs: []string{"PS256"}, token: signToken(t, f.ps256, nil, baClaims())},
		{name: "aud array containing ours", token: signToken(t, f.ed, nil,
			with(baClaims(), map[string]any{"aud": []string{"other", testAudience}}))},
		{name: "typ JWT header is fine", token: signToken(t, f.ed, map[string]any{"typ": "JWT"}, baClaims())},
		{name: "expired within leeway", token: signToken(t, f.ed, nil,
			with(baClaims(), map[string]any{"exp": testNow.Add(-10 * time.Second).Unix()}))},
		{name: "fractional exp", token: signToken(t, f.ed, nil,
			with(baClaims(), map[string]any{"exp": float64(testNow.Unix()) + 60.5}))},
		{name: "nbf in the past", token: signToken(t, f.ed, nil,
			with(baClaims(), map[string]any{"nbf": testNow.Add(-time.Minute).Unix()}))},
		{name: "null nbf counts as absent", token: signToken(t, f.ed, nil,
			with(baClaims(), map[string]any{"nbf": json.RawMessage("null")}))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := newTestVerifier(t, f.keys, tt.algs...)
			id, err := v.Verify(context.Background(), tt.token)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.Subject != "AQLt9kXfQz3mVw7Yp2bN" {
				t.Errorf("Subject = %q", id.Subject)
			}
			if email, ok := id.Claim("email"); !ok || email != "bob@example.com" {
				t.Errorf(`Claim("email") = %q, %v`, email, ok)
			}
			for _, name := range []string{"emailVerified", "image", "exp", "nope"} {
				if got, ok := id.Claim(name); ok {
					t.Errorf("Claim(%q) = %q, want absent (not a string)", name, got)
				}
			}
			if id.Expiry.IsZero() || id.IssuedAt.Unix() != 1795728037 {
				t.Errorf("Expiry = %v, IssuedAt = %v", id.Expiry, id.IssuedAt)
			}
		})
	}

	t.Run("claims of a Better Auth token", func(t *testing.T) {
		t.Parallel()
		v := newTestVerifier(t, f.keys)
		id, err := v.Verify(context.Background(), signToken(t, f.ed, nil, withOrg))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"activeOrganizationId": "org_123", "sid": "sess_1", "role": "user", "name": "Bob",
			"iss": testIssuer, "aud": testAudience, "sub": "AQLt9kXfQz3mVw7Yp2bN",
		}
		for name, w := range want {
			if got, ok := id.Claim(name); !ok || got != w {
				t.Errorf("Claim(%q) = %q, %v; want %q", name, got, ok, w)
			}
		}
		if got := id.Expiry.Unix(); got != 1795728037+900 {
			t.Errorf("Expiry = %d", got)
		}
	})

	t.Run("jwx header has only alg and kid", func(t *testing.T) {
		t.Parallel()
		tok := signJWX(t, f.ed, baClaims())
		hdr, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"alg":"EdDSA","kid":"` + f.ed.kid + `"}`; string(hdr) != want {
			t.Fatalf("header = %s, want %s", hdr, want)
		}
	})

	t.Run("escaped string claim", func(t *testing.T) {
		t.Parallel()
		v := newTestVerifier(t, f.keys)
		id, err := v.Verify(context.Background(), signToken(t, f.ed, nil,
			with(baClaims(), map[string]any{"name": "Zoë \"Z\" <z>\u2028"})))
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := id.Claim("name"); got != "Zoë \"Z\" <z>\u2028" {
			t.Fatalf("name = %q", got)
		}
	})
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	f := newVerifierFixture(t)
	ba := baClaims()
	valid := signToken(t, f.ed, nil, ba)
	parts := strings.Split(valid, ".")
	edPub := f.ed.public().(ed25519.PublicKey)

	// An attacker's key that reuses our kid.
	attacker := newEd25519Key(t, f.ed.kid)
	attackerJWK := map[string]any{}
	if err := json.Unmarshal(attacker.jwkJSON(t), &attackerJWK); err != nil {
		t.Fatal(err)
	}
	// A Better Auth jwks.publicKey: no alg, kid = jwks.id.
	noAlgJWK := json.RawMessage(`{"crv":"Ed25519","kty":"OKP","x":"` +
		base64.RawURLEncoding.EncodeToString(edPub) + `","kid":"` + f.ed.kid + `"}`)

	hdr := func(m map[string]any) string { return b64url(mustJSON(t, m)) }
	claims := func(changes map[string]any) map[string]any { return with(ba, changes) }
	edKid := map[string]any{"alg": "EdDSA", "kid": f.ed.kid}

	tests := []struct {
		name  string
		algs  []string
		keys  KeyLookup // default: the fixture's KeySet
		token string
		want  error
	}{
		// claims
		{name: "expired", token: signToken(t, f.ed, nil, claims(map[string]any{
			"iat": testNow.Add(-2 * time.Hour).Unix(), "exp": testNow.Add(-time.Hour).Unix()})), want: ErrExpired},
		{name: "expired at leeway boundary", token: signToken(t, f.ed, nil, claims(map[string]any{
			"exp": testNow.Add(-DefaultLeeway).Unix()})), want: ErrExpired},
		{name: "nbf in the future", token: signToken(t, f.ed, nil, claims(map[string]any{
			"nbf": testNow.Add(time.Hour).Unix()})), want: ErrNotYetValid},
		{name: "iat in the future", token: signToken(t, f.ed, nil, claims(map[string]any{
			"iat": testNow.Add(time.Hour).Unix(), "exp": testNow.Add(2 * time.Hour).Unix()})), want: ErrIssuedInFuture},
		{name: "wrong issuer", token: signToken(t, f.ed, nil, claims(map[string]any{"iss": "https://evil.example"})), want: ErrIssuer},
		{name: "issuer with trailing slash", token: signToken(t, f.ed, nil, claims(map[string]any{"iss": testIssuer + "/"})), want: ErrIssuer},
		{name: "missing issuer", token: signToken(t, f.ed, nil, claims(map[string]any{"iss": nil})), want: ErrIssuer},
		{name: "wrong audience", token: signToken(t, f.ed, nil, claims(map[string]any{"aud": "https://other.example"})), want: ErrAudience},
		{name: "audience array without ours", token: signToken(t, f.ed, nil, claims(map[string]any{"aud": []string{"a", "b"}})), want: ErrAudience},
		{name: "empty audience array", token: signToken(t, f.ed, nil, claims(map[string]any{"aud": []string{}})), want: ErrAudience},
		{name: "missing audience", token: signToken(t, f.ed, nil, claims(map[string]any{"aud": nil})), want: ErrAudience},
		{name: "audience number", token: signToken(t, f.ed, nil, claims(map[string]any{"aud": 7})), want: ErrMalformed},
		{name: "missing exp", token: signToken(t, f.ed, nil, claims(map[string]any{"exp": nil})), want: ErrMalformed},
		{name: "null exp", token: signToken(t, f.ed, nil, claims(map[string]any{"exp": json.RawMessage("null")})), want: ErrMalformed},
		{name: "exp as string", token: signToken(t, f.ed, nil, claims(map[string]any{"exp": "1795728937"})), want: ErrMalformed},
		{name: "exp absurdly large", token: signToken(t, f.ed, nil, claims(map[string]any{"exp": 1e300})), want: ErrMalformed},
		{name: "missing sub", token: signToken(t, f.ed, nil, claims(map[string]any{"sub": nil})), want: ErrNoSubject},
		{name: "empty sub", token: signToken(t, f.ed, nil, claims(map[string]any{"sub": ""})), want: ErrNoSubject},
		{name: "sub not a string", token: signToken(t, f.ed, nil, claims(map[string]any{"sub": 42})), want: ErrMalformed},
		{name: "payload not an object", token: signCompact(t, jwa.EdDSA, f.ed.priv, mustJSON(t, edKid), []byte(`[1,2]`)), want: ErrMalformed},
		{name: "payload null", token: signCompact(t, jwa.EdDSA, f.ed.priv, mustJSON(t, edKid), []byte(`null`)), want: ErrMalformed},
		{name: "payload malformed JSON", token: signCompact(t, jwa.EdDSA, f.ed.priv, mustJSON(t, edKid), []byte(`{"sub":"x"`)), want: ErrMalformed},

		// signature
		{name: "another key with the same kid", token: signToken(t, attacker, nil, ba), want: ErrSignature},
		{name: "tampered payload", token: parts[0] + "." + b64url(mustJSON(t, claims(map[string]any{"sub": "admin"}))) + "." + parts[2], want: ErrSignature},
		{name: "tampered header", token: hdr(map[string]any{"alg": "EdDSA", "kid": f.ed.kid, "typ": "JWT"}) + "." + parts[1] + "." + parts[2], want: ErrSignature},
		{name: "signature of another token", token: parts[0] + "." + parts[1] + "." + strings.Split(signToken(t, f.ed, nil, claims(map[string]any{"name": "x"})), ".")[2], want: ErrSignature},
		{name: "truncated signature", token: parts[0] + "." + parts[1] + "." + parts[2][:40], want: ErrSignature},
		{name: "empty signature", token: parts[0] + "." + parts[1] + ".", want: ErrSignature},

		// algorithm
		{name: "alg none", token: hdr(map[string]any{"alg": "none", "kid": f.ed.kid}) + "." + parts[1] + ".", want: ErrAlgorithm},
		{name: "alg none with a signature", token: hdr(map[string]any{"alg": "none", "kid": f.ed.kid}) + "." + parts[1] + "." + parts[2], want: ErrAlgorithm},
		{name: "alg NONE", token: hdr(map[string]any{"alg": "NONE", "kid": f.ed.kid}) + "." + parts[1] + ".", want: ErrAlgorithm},
		{name: "alg missing", token: hdr(map[string]any{"kid": f.ed.kid}) + "." + parts[1] + "." + parts[2], want: ErrAlgorithm},
		{name: "alg not a string", token: hdr(map[string]any{"alg": 1, "kid": f.ed.kid}) + "." + parts[1] + "." + parts[2], want: ErrAlgorithm},
		{name: "alg lower case eddsa", token: hdr(map[string]any{"alg": "eddsa", "kid": f.ed.kid}) + "." + parts[1] + "." + parts[2], want: ErrAlgorithm},
		{name: "header null", token: b64url([]byte("null")) + "." + parts[1] + "." + parts[2], want: ErrAlgorithm},
		{name: "HS256 signed with the public key bytes", token: signCompact(t, jwa.HS256, []byte(edPub),
			mustJSON(t, map[string]any{"alg": "HS256", "kid": f.ed.kid}), mustJSON(t, ba)), want: ErrAlgorithm},
		{name: "HS256 signed with the JWK JSON", token: signCompact(t, jwa.HS256, []byte(betterAuthJWK(t, f.ed)),
			mustJSON(t, map[string]any{"alg": "HS256", "kid": f.ed.kid}), mustJSON(t, ba)), want: ErrAlgorithm},
		{name: "RS256 while only EdDSA allowed", token: signToken(t, f.rs256, nil, ba), want: ErrAlgorithm},
		{name: "ES256 while only EdDSA allowed", token: signToken(t, f.es256, nil, ba), want: ErrAlgorithm},
		{name: "ES256 header on an EdDSA key (key alg)", algs: []string{"EdDSA", "ES256"},
			token: signToken(t, f.es256, map[string]any{"kid": f.ed.kid}, ba), want: ErrAlgorithm},
		{name: "ES256 header on an Ed25519 key without alg", algs: []string{"EdDSA", "ES256"},
			keys:  staticKeys{f.ed.kid: parseJWK(t, noAlgJWK)},
			token: signToken(t, f.es256, map[string]any{"kid": f.ed.kid}, ba), want: ErrAlgorithm},
		{name: "PS256 header on an RS256 key", algs: []string{"RS256", "PS256"},
			token: signToken(t, f.ps256, map[string]any{"kid": f.rs256.kid}, ba), want: ErrAlgorithm},
		{name: "ES384 header on a P-256 key", algs: []string{"ES256", "ES384"},
			keys:  staticKeys{"k": parseJWK(t, json.RawMessage(strings.Replace(string(f.es256.jwkJSON(t)), `"alg":"ES256",`, "", 1)))},
			token: signToken(t, f.es384, map[string]any{"kid": "k"}, ba), want: ErrAlgorithm},

		// forbidden headers: validly signed, still refused
		{name: "jku header", token: signToken(t, f.ed, map[string]any{"jku": "https://evil.example/jwks"}, ba), want: ErrForbiddenHeader},
		{name: "x5u header", token: signToken(t, f.ed, map[string]any{"x5u": "https://evil.example/cert"}, ba), want: ErrForbiddenHeader},
		{name: "embedded jwk of the signer", token: signToken(t, attacker, map[string]any{"jwk": attackerJWK}, ba), want: ErrForbiddenHeader},
		{name: "x5c header", token: signToken(t, f.ed, map[string]any{"x5c": []string{"MIIB"}}, ba), want: ErrForbiddenHeader},
		{name: "crit header", token: signToken(t, f.ed, map[string]any{"crit": []string{"exp"}, "exp": 1}, ba), want: ErrForbiddenHeader},
		{name: "b64 header", token: signToken(t, f.ed, map[string]any{"b64": false}, ba), want: ErrForbiddenHeader},

		// kid
		{name: "kid path traversal", token: signToken(t, f.ed, map[string]any{"kid": "../../etc/passwd"}, ba), want: ErrUnknownKey},
		{name: "kid SQL injection", token: signToken(t, f.ed, map[string]any{"kid": "' OR 1=1--"}, ba), want: ErrUnknownKey},
		{name: "kid missing", token: signToken(t, f.ed, map[string]any{"kid": nil}, ba), want: ErrMalformed},
		{name: "kid empty", token: signToken(t, f.ed, map[string]any{"kid": ""}, ba), want: ErrMalformed},
		{name: "kid not a string", token: signToken(t, f.ed, map[string]any{"kid": 7}, ba), want: ErrMalformed},

		// syntax
		{name: "oversize", token: strings.Repeat("a", DefaultMaxTokenBytes+1), want: ErrTooLarge},
		{name: "the largest size is parsed", token: strings.Repeat("a", DefaultMaxTokenBytes), want: ErrMalformed},
		{name: "oversize valid-looking", token: signToken(t, f.ed, nil, claims(map[string]any{"pad": strings.Repeat("x", DefaultMaxTokenBytes)})), want: ErrTooLarge},
		{name: "empty", token: "", want: ErrMalformed},
		{name: "two parts", token: parts[0] + "." + parts[1], want: ErrMalformed},
		{name: "four parts", token: valid + "." + parts[2], want: ErrMalformed},
		{name: "one part", token: parts[0], want: ErrMalformed},
		{name: "bad base64 character", token: "!!" + valid, want: ErrMalformed},
		{name: "standard base64 alphabet", token: strings.Replace(valid, parts[1][:4], "+/+/", 1), want: ErrMalformed},
		{name: "base64 padding", token: parts[0] + "==." + parts[1] + "." + parts[2], want: ErrMalformed},
		{name: "impossible base64 length", token: "A." + parts[1] + "." + parts[2], want: ErrMalformed},
		{name: "non-canonical base64 trailing bits", token: flipLowBit(t, parts[0]) + "." + parts[1] + "." + parts[2], want: ErrMalformed},
		{name: "whitespace inside", token: parts[0] + "." + parts[1] + " ." + parts[2], want: ErrMalformed},
		{name: "newline inside", token: parts[0] + "." + parts[1][:10] + "\n" + parts[1][10:] + "." + parts[2], want: ErrMalformed},
		{name: "header malformed JSON", token: b64url([]byte(`{"alg":"EdDSA",`)) + "." + parts[1] + "." + parts[2], want: ErrMalformed},
		{name: "header not JSON", token: b64url([]byte(`EdDSA`)) + "." + parts[1] + "." + parts[2], want: ErrMalformed},
		{name: "payload bad base64", token: parts[0] + ".A." + parts[2], want: ErrMalformed},
		{name: "JSON serialization", token: `{"payload":"` + parts[1] + `","signatures":[]}`, want: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			keys := tt.keys
			if keys == nil {
				keys = f.keys
			}
			v := newTestVerifier(t, keys, tt.algs...)
			id, err := v.Verify(context.Background(), tt.token)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			}
			if id != nil {
				t.Fatalf("Verify returned an identity with error %v", err)
			}
			if !isTokenError(err) {
				t.Fatalf("isTokenError(%v) = false", err)
			}
			assertNoTokenInError(t, err, tt.token)
			t.Log(err)
		})
	}
}

// flipLowBit flips the lowest bit of seg's last base64url character. When
// the segment's length is not a multiple of 4 that bit is unused padding, so
// a lenient decoder would return the same bytes.
func flipLowBit(t *testing.T, seg string) string {
	t.Helper()
	if len(seg)%4 == 0 {
		t.Fatalf("segment of length %d has no unused bits", len(seg))
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, seg[len(seg)-1])
	flipped := seg[:len(seg)-1] + string(alphabet[i^1])
	a, errA := base64.RawURLEncoding.DecodeString(seg)
	b, errB := base64.RawURLEncoding.DecodeString(flipped)
	if errA != nil || errB != nil || string(a) != string(b) {
		t.Fatalf("flipLowBit changed the decoded bytes")
	}
	return flipped
}

func TestNewVerifierConfig(t *testing.T) {
	t.Parallel()
	keys := staticKeys{}
	valid := VerifierConfig{Issuer: testIssuer, Audiences: []string{testAudience}}
	tests := []struct {
		name    string
		mutate  func(*VerifierConfig)
		keys    KeyLookup
		wantErr bool
	}{
		{name: "defaults", mutate: func(*VerifierConfig) {}},
		{name: "all accepted algorithms", mutate: func(c *VerifierConfig) {
			c.Algorithms = []string{"EdDSA", "ES256", "ES384", "RS256", "PS256", "EdDSA"}
		}},
		{name: "none", mutate: func(c *VerifierConfig) { c.Algorithms = []string{"EdDSA", "none"} }, wantErr: true},
		{name: "HS256", mutate: func(c *VerifierConfig) { c.Algorithms = []string{"HS256"} }, wantErr: true},
		{name: "HS512", mutate: func(c *VerifierConfig) { c.Algorithms = []string{"HS512"} }, wantErr: true},
		{name: "ES256K", mutate: func(c *VerifierConfig) { c.Algorithms = []string{"ES256K"} }, wantErr: true},
		{name: "RS384", mutate: func(c *VerifierConfig) { c.Algorithms = []string{"RS384"} }, wantErr: true},
		{name: "lower case", mutate: func(c *VerifierConfig) { c.Algorithms = []string{"eddsa"} }, wantErr: true},
		{name: "no issuer", mutate: func(c *VerifierConfig) { c.Issuer = "" }, wantErr: true},
		{name: "no audience", mutate: func(c *VerifierConfig) { c.Audiences = nil }, wantErr: true},
		{name: "empty audience", mutate: func(c *VerifierConfig) { c.Audiences = []string{testAudience, ""} }, wantErr: true},
		{name: "negative leeway", mutate: func(c *VerifierConfig) { c.Leeway = -time.Second }, wantErr: true},
		{name: "negative size", mutate: func(c *VerifierConfig) { c.MaxTokenBytes = -1 }, wantErr: true},
		{name: "nil keys", mutate: func(*VerifierConfig) {}, keys: KeyLookup(nil), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := valid
			tt.mutate(&cfg)
			k := KeyLookup(keys)
			if tt.name == "nil keys" {
				k = nil
			}
			_, err := NewVerifier(cfg, k)
			if (err != nil) != tt.wantErr {
				t.Fatalf("NewVerifier error = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

func TestVerifyNoKeysIsNotUnauthenticated(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, nil)
	srv.Close() // never reachable
	ks := newTestKeySet(t, srv.URL, KeySetConfig{})
	v := newTestVerifier(t, ks)
	tok := signToken(t, newEd25519Key(t, "k1"), nil, baClaims())
	_, err := v.Verify(context.Background(), tok)
	if !errors.Is(err, ErrNoKeys) {
		t.Fatalf("Verify error = %v, want ErrNoKeys", err)
	}
	if isTokenError(err) {
		t.Fatal("ErrNoKeys counted as a token error; want 503, not 401")
	}
	if ks.Ready() {
		t.Fatal("Ready() = true without a successful fetch")
	}
	assertNoTokenInError(t, err, tok)
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	for _, err := range sentinels {
		wrapped := fmt.Errorf("%w: kid \"<script>\"", err)
		got := Describe(wrapped)
		if got == "invalid token" || strings.Contains(got, "script") || strings.HasPrefix(got, "authn:") {
			t.Errorf("Describe(%v) = %q", wrapped, got)
		}
	}
	for _, err := range []error{nil, ErrNoKeys, context.Canceled, errors.New("other")} {
		if got := Describe(err); got != "invalid token" {
			t.Errorf("Describe(%v) = %q, want the generic phrase", err, got)
		}
	}
	if got := Describe(fmt.Errorf("x: %w", ErrExpired)); got != "token expired" {
		t.Errorf("Describe = %q", got)
	}
}

// isTokenError reports whether err is one of the token sentinels (a 401).
func isTokenError(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func TestNewIdentity(t *testing.T) {
	id := NewIdentity("u1", time.Unix(10, 0), map[string]string{"activeOrganizationId": "org\"1"})
	if v, ok := id.Claim("activeOrganizationId"); !ok || v != "org\"1" || id.Subject != "u1" {
		t.Errorf("Claim = %q, %v; subject %q", v, ok, id.Subject)
	}
	if _, ok := id.Claim("missing"); ok {
		t.Error("missing claim found")
	}
}

func TestKeepClaims(t *testing.T) {
	k := newEd25519Key(t, "k1")
	keys := staticKeys{"k1": parseJWK(t, k.jwkJSON(t))}
	v, err := NewVerifier(VerifierConfig{Issuer: testIssuer, Audiences: []string{testAudience}, Now: fixedNow,
		KeepClaims: []string{"activeOrganizationId"}}, keys)
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(context.Background(), signToken(t, k, nil, with(baClaims(), map[string]any{"activeOrganizationId": "org_1"})))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := id.Claim("activeOrganizationId"); !ok || got != "org_1" {
		t.Errorf("kept claim = %q, %v", got, ok)
	}
	if _, ok := id.Claim("email"); ok {
		t.Error("a claim not asked for was kept")
	}
	if id.Subject == "" || id.Expiry.IsZero() {
		t.Errorf("registered claims lost: %+v", id)
	}
}

// TestSplitCompact: exactly three segments of the base64url alphabet; the
// ends of each range are in it, their neighbours are not.
func TestSplitCompact(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name              string
		in                string
		hdr, payload, sig string
		ok                bool
	}{
		{name: "three segments", in: "aa.bb.cc", hdr: "aa", payload: "bb", sig: "cc", ok: true},
		{name: "the alphabet's ends", in: "az.AZ.09-_", hdr: "az", payload: "AZ", sig: "09-_", ok: true},
		{name: "empty segments", in: "..", ok: true},
		{name: "empty header", in: ".b.c", payload: "b", sig: "c", ok: true},
		{name: "empty signature", in: "a.b.", hdr: "a", payload: "b", ok: true},
		{name: "two segments", in: "a.b"},
		{name: "four segments", in: "a.b.c.d"},
		{name: "no dot", in: "abc"},
		{name: "empty", in: ""},
		{name: "padding", in: "a.b.c="},
		{name: "base64 std alphabet", in: "a.b+.c"},
		{name: "slash", in: "a.b/.c"},
		{name: "before a", in: "`.b.c"},
		{name: "after z", in: "{.b.c"},
		{name: "before A", in: "@.b.c"},
		{name: "after Z", in: "[.b.c"},
		{name: "before 0", in: "/.b.c"},
		{name: "after 9", in: ":.b.c"},
		{name: "space", in: "a.b .c"},
		{name: "line break", in: "a.b\n.c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hdr, payload, sig, ok := splitCompact(tt.in)
			if ok != tt.ok || hdr != tt.hdr || payload != tt.payload || sig != tt.sig {
				t.Errorf("splitCompact(%q) = %q, %q, %q, %v; want %q, %q, %q, %v", tt.in, hdr, payload, sig, ok, tt.hdr, tt.payload, tt.sig, tt.ok)
			}
		})
	}
}

// TestJSONString: the fast path (printable ASCII) and encoding/json agree;
// anything but a JSON string is refused.
func TestJSONString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
		want string
		ok   bool
	}{
		{"empty string", `""`, "", true},
		{"one character", `"a"`, "a", true},
		{"printable ASCII ends", `" ~"`, " ~", true},
		{"escaped quote", `"a\"b"`, `a"b`, true},
		{"only an escaped backslash", `"\\"`, `\`, true},
		{"unicode escape", `"\u00e9"`, "é", true},
		{"UTF-8", `"é"`, "é", true},
		{"DEL", "\"\x7f\"", "\x7f", true},
		{"invalid UTF-8 is replaced", "\"\xff\"", "\ufffd", true},
		{"control character", "\"\x01\"", "", false},
		{"a lone quote", `"`, "", false},
		{"unterminated", `"ab`, "", false},
		{"a number", `12`, "", false},
		{"null", `null`, "", false},
		{"empty", ``, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := jsonString(json.RawMessage(tt.raw))
			if ok != tt.ok || got != tt.want {
				t.Errorf("jsonString(%q) = %q, %v; want %q, %v", tt.raw, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestNumericDate: a JSON number of seconds within [0, maxNumericDate],
// fractions kept; anything else is refused, saying which.
func TestNumericDate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
		want time.Time
		err  string
	}{
		{name: "zero", raw: "0", want: time.Unix(0, 0)},
		{name: "leading nine", raw: "9", want: time.Unix(9, 0)},
		{name: "a fraction", raw: "1.5", want: time.Unix(1, 500_000_000)},
		{name: "the largest", raw: "1e11", want: time.Unix(1e11, 0)},
		{name: "past the largest", raw: "100000000001", err: "out of range"},
		{name: "negative", raw: "-1", err: "out of range"},
		{name: "a string", raw: `"1"`, err: "not a number"},
		{name: "a boolean", raw: "true", err: "not a number"},
		{name: "empty", raw: "", err: "not a number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := numericDate(json.RawMessage(tt.raw))
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("numericDate(%s) = %v, %v; want error %q", tt.raw, got, err, tt.err)
				}
				return
			}
			if err != nil || !got.Equal(tt.want) {
				t.Fatalf("numericDate(%s) = %v, %v; want %v", tt.raw, got, err, tt.want)
			}
		})
	}
}

// TestSignatureLengths: each algorithm's signature length is checked before
// any key lookup; RSA accepts 2048- to 8192-bit keys' signatures.
func TestSignatureLengths(t *testing.T) {
	t.Parallel()
	tests := []struct {
		alg string
		n   int
		ok  bool
	}{
		{"EdDSA", 64, true}, {"EdDSA", 63, false}, {"EdDSA", 65, false},
		{"ES256", 64, true}, {"ES256", 65, false},
		{"ES384", 96, true}, {"ES384", 95, false},
		{"ES512", 132, true}, {"ES512", 131, false},
		{"RS256", minRSABits / 8, true}, {"RS256", minRSABits/8 - 1, false},
		{"RS256", 1024, true}, {"RS256", 1025, false},
		{"PS256", minRSABits / 8, true}, {"PS256", 1024, true}, {"PS256", 1025, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.alg, "/", tt.n), func(t *testing.T) {
			t.Parallel()
			a, err := newAlgorithm(tt.alg)
			if err != nil {
				t.Fatal(err)
			}
			if got := a.sigLenOK(tt.n); got != tt.ok {
				t.Errorf("sigLenOK(%d) = %v, want %v", tt.n, got, tt.ok)
			}
		})
	}
}

// TestQuoteShort: an attacker's value is quoted (no log injection) and cut
// at 32 bytes.
func TestQuoteShort(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"short", "abc", `"abc"`},
		{"control characters escaped", "a\nb", `"a\nb"`},
		{"exactly the limit", strings.Repeat("x", 32), `"` + strings.Repeat("x", 32) + `"`},
		{"one past the limit", strings.Repeat("x", 33), `"` + strings.Repeat("x", 32) + `"...`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := quoteShort(tt.in); got != tt.want {
				t.Errorf("quoteShort(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}
