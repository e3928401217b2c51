package authn

import (
	"context"
	"strings"
	"testing"
)

// FuzzVerify: with a fixed key set and clock, no input may panic, and none
// may be accepted except the seeded valid token itself (Ed25519 signatures
// are not malleable and each segment has one accepted encoding).
func FuzzVerify(f *testing.F) {
	key := newEd25519Key(f, "fuzz-key")
	keys := staticKeys{key.kid: parseJWK(f, betterAuthJWK(f, key))}
	v := newTestVerifier(f, keys, "EdDSA", "ES256", "RS256")
	valid := signToken(f, key, nil, baClaims())
	parts := strings.Split(valid, ".")

	for _, seed := range []string{
		valid,
		parts[0] + "." + parts[1],
		valid + "." + parts[2],
		parts[0] + "." + parts[1] + ".",
		b64url([]byte(`{"alg":"none","kid":"fuzz-key"}`)) + "." + parts[1] + ".",
		b64url([]byte(`{"alg":"HS256","kid":"fuzz-key"}`)) + "." + parts[1] + "." + parts[2],
		b64url([]byte(`{"alg":"EdDSA","kid":"fuzz-key","jku":"x"}`)) + "." + parts[1] + "." + parts[2],
		b64url([]byte(`{"alg":"ES256","kid":"fuzz-key"}`)) + "." + parts[1] + "." + parts[2],
		b64url([]byte(`{"alg":"RS256","kid":"fuzz-key"}`)) + "." + parts[1] + "." + strings.Repeat("A", 342),
		b64url([]byte(`{"alg":"EdDSA","kid":"fuzz-key"}`)) + "." + b64url([]byte(`{"exp":1e400}`)) + "." + parts[2],
		"", ".", "..", "...", "a.b.c", "e30.e30.e30", strings.Repeat("A", 9000),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		id, err := v.Verify(context.Background(), raw)
		if err == nil {
			if raw != valid {
				t.Fatalf("accepted a token that is not the seeded one: %q", raw)
			}
			if id == nil || id.Subject == "" {
				t.Fatal("nil or empty identity without error")
			}
			return
		}
		if id != nil {
			t.Fatal("identity returned with an error")
		}
		if !isTokenError(err) {
			t.Fatalf("error not classified as unauthenticated: %v", err)
		}
		if len(raw) >= 40 && strings.Contains(err.Error(), raw) {
			t.Fatalf("error message contains the input: %v", err)
		}
	})
}

// FuzzBearerToken: never panics, and a returned token is non-empty, free of
// whitespace and commas, and exactly the end of the header value.
func FuzzBearerToken(f *testing.F) {
	for _, seed := range []string{
		"Bearer x", "bearer x", "BEARER x", "Bearer", "Bearer ", "Basic x",
		"Bearer a b", "Bearer a,Bearer b", "", "Bearer\t\tx==", "Bearer eyJ.eyJ.sig",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		tok, err := BearerToken(header)
		if err != nil {
			if tok != "" {
				t.Fatal("token returned with an error")
			}
			if !isTokenError(err) {
				t.Fatalf("error not classified as unauthenticated: %v", err)
			}
			return
		}
		if tok == "" || strings.ContainsAny(tok, " \t\r\n,") || !strings.HasSuffix(header, tok) {
			t.Fatalf("BearerToken(%q) = %q", header, tok)
		}
		if !strings.EqualFold(header[:6], "bearer") {
			t.Fatalf("accepted scheme of %q", header)
		}
	})
}
