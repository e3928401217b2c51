package authn

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// A known vector, computed independently (Python's hmac and base64):
// base64(HMAC-SHA256("better-auth-secret-0123456789abcdef", token)).
const (
	vecSecret = "better-auth-secret-0123456789abcdef"
	vecToken  = "AbCdEfGhIjKlMnOpQrStUvWxYz012345"
	vecSig    = "2fVd1kFsRmNWmopXkP74VUH+tXspfptriD42qM6IXQY="
)

func vecSecretT(t testing.TB) Secret {
	t.Helper()
	s, err := NewSecret(vecSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSign(t *testing.T) {
	t.Parallel()
	if got := vecSecretT(t).Sign(vecToken); got != vecSig {
		t.Fatalf("Sign = %q, want %q", got, vecSig)
	}
	if _, err := NewSecret(""); err == nil {
		t.Error("an empty secret was accepted")
	}
	s := vecSecretT(t)
	for _, out := range []string{s.String(), s.GoString()} {
		if strings.Contains(out, vecSecret) {
			t.Errorf("the secret leaks through formatting: %s", out)
		}
	}
	if s.IsZero() || !(Secret{}).IsZero() {
		t.Error("IsZero")
	}
}

// TestVerifySigned mirrors better-call's getSignedCookie: split at the last
// ".", signature of exactly 44 characters ending in "=", decoded with atob.
func TestVerifySigned(t *testing.T) {
	t.Parallel()
	s := vecSecretT(t)
	// The last character's unused low bits are ignored by atob: "Y=" and
	// "Z=" decode alike ("Y" = 24, "Z" = 25, the low 2 bits dropped).
	nonCanonical := vecSig[:42] + "Z="
	tests := []struct {
		name  string
		value string
		token string
		ok    bool
	}{
		{"canonical", vecToken + "." + vecSig, vecToken, true},
		{"non-canonical last character", vecToken + "." + nonCanonical, vecToken, true},
		{"token with a dot: split at the last one", "a.b." + s.Sign("a.b"), "a.b", true},
		{"one-character token", "a." + s.Sign("a"), "a", true},
		{"unpadded", vecToken + "." + strings.TrimSuffix(vecSig, "="), "", false},
		{"base64url alphabet", vecToken + "." + strings.NewReplacer("+", "-", "/", "_").Replace(vecSig), "", false},
		{"another token", "other." + vecSig, "", false},
		{"no dot", vecToken, "", false},
		{"leading dot", "." + vecSig, "", false},
		{"empty", "", "", false},
		{"45 characters", vecToken + "." + vecSig + "=", "", false},
		{"44 without padding", vecToken + "." + vecSig[:43] + "A", "", false},
		{"not base64", vecToken + "." + strings.Repeat("!", 43) + "=", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok, err := s.VerifySigned(tt.value)
			if tt.ok != (err == nil) || tok != tt.token {
				t.Fatalf("VerifySigned = %q, %v; want %q ok %v", tok, err, tt.token, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrSessionSignature) && !errors.Is(err, ErrSession) {
				t.Errorf("error %v does not wrap ErrSession", err)
			}
		})
	}
	other, _ := NewSecret("another-secret-another-secret-0000")
	if _, err := other.VerifySigned(vecToken + "." + vecSig); err == nil {
		t.Error("a signature of another secret verified")
	}
	if _, err := (Secret{}).VerifySigned(vecToken + "." + vecSig); err == nil {
		t.Error("the zero secret verified a signature")
	}
}

// TestCookieValue mirrors better-call's cookie parser.
func TestCookieValue(t *testing.T) {
	t.Parallel()
	const name = "better-auth.session_token"
	signed := vecToken + "." + vecSig
	tests := []struct {
		name   string
		header string
		value  string
		ok     bool
	}{
		{"URL-encoded as Better Auth sets it", name + "=" + url.QueryEscape(signed), signed, true},
		{"raw", name + "=" + signed, signed, true},
		{"among others, spaces trimmed", "a=1;  " + name + " =  " + url.QueryEscape(signed) + " ; b=2", signed, true},
		{"first of two wins", name + "=first; " + name + "=second", "first", true},
		{"quoted", name + `="` + signed + `"`, signed, true},
		{"a lone quote", name + `="`, "", true},
		{"malformed escape kept as is", name + "=a%zz", "a%zz", true},
		{"escape decoding to invalid UTF-8 kept as is", name + "=a%ff", "a%ff", true},
		{"absent", "a=1; b=2", "", false},
		{"a longer name is another cookie", name + "x=v", "", false},
		{"__Secure- is another cookie", "__Secure-" + name + "=v", "", false},
		{"no value separator", name, "", false},
		{"empty header", "", "", false},
		{"empty value", name + "=", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, ok := CookieValue(tt.header, name)
			if v != tt.value || ok != tt.ok {
				t.Fatalf("CookieValue = %q, %v; want %q, %v", v, ok, tt.value, tt.ok)
			}
		})
	}
}

// TestSessionBearer mirrors the bearer plugin (plugins/bearer/index.mjs).
func TestSessionBearer(t *testing.T) {
	t.Parallel()
	s := vecSecretT(t)
	signed := vecToken + "." + vecSig
	tests := []struct {
		name     string
		header   string
		allowRaw bool
		token    string
		present  bool
		bad      bool
	}{
		{"signed", "Bearer " + signed, false, vecToken, true, false},
		{"scheme case-insensitive", "bEaReR " + signed, false, vecToken, true, false},
		{"URL-encoded", "Bearer " + url.QueryEscape(signed), false, vecToken, true, false},
		{"extra spaces trimmed", "Bearer    " + signed + "  ", false, vecToken, true, false},
		{"tab after the scheme is not the scheme", "Bearer\t" + signed, false, "", false, false},
		{"raw token allowed", "Bearer " + vecToken, true, vecToken, true, false},
		{"raw token refused (requireSignature)", "Bearer " + vecToken, false, "", false, false},
		{"bad signature", "Bearer " + vecToken + "." + s.Sign("x"), false, "", true, true},
		{"unpadded signature", "Bearer " + strings.TrimSuffix(signed, "="), false, "", true, true},
		{"other scheme", "Basic " + signed, false, "", false, false},
		{"empty token", "Bearer    ", true, "", false, false},
		{"short header", "Bear", true, "", false, false},
		{"empty header", "", true, "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok, present, err := SessionBearer(tt.header, s, tt.allowRaw)
			if tok != tt.token || present != tt.present || (err != nil) != tt.bad {
				t.Fatalf("SessionBearer = %q, %v, %v; want %q, %v, bad %v", tok, present, err, tt.token, tt.present, tt.bad)
			}
		})
	}
}

// TestSecretFromEnv mirrors context/create-context.mjs and secret-utils.mjs.
func TestSecretFromEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want string // the secret that must sign; "" = none
		err  bool
	}{
		{"BETTER_AUTH_SECRET", map[string]string{"BETTER_AUTH_SECRET": "s1"}, "s1", false},
		{"AUTH_SECRET", map[string]string{"AUTH_SECRET": "s2"}, "s2", false},
		{"BETTER_AUTH_SECRET beats AUTH_SECRET", map[string]string{"BETTER_AUTH_SECRET": "s1", "AUTH_SECRET": "s2"}, "s1", false},
		{"the first of BETTER_AUTH_SECRETS is current", map[string]string{"BETTER_AUTH_SECRETS": " 2:new , 1:old", "BETTER_AUTH_SECRET": "legacy"}, "new", false},
		{"a secret holding a colon", map[string]string{"BETTER_AUTH_SECRETS": "3:a:b"}, "a:b", false},
		{"no version", map[string]string{"BETTER_AUTH_SECRETS": "new"}, "", true},
		{"bad version", map[string]string{"BETTER_AUTH_SECRETS": "x:new"}, "", true},
		{"negative version", map[string]string{"BETTER_AUTH_SECRETS": "-1:new"}, "", true},
		{"version zero", map[string]string{"BETTER_AUTH_SECRETS": "0:new"}, "new", false},
		{"empty secret", map[string]string{"BETTER_AUTH_SECRETS": "1: "}, "", true},
		{"blank list falls back", map[string]string{"BETTER_AUTH_SECRETS": "  ", "BETTER_AUTH_SECRET": "s1"}, "s1", false},
		{"none", nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, ok, err := SecretFromEnv(func(k string) string { return tt.env[k] })
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if ok != (tt.want != "") {
				t.Fatalf("ok = %v", ok)
			}
			if tt.want != "" {
				want, _ := NewSecret(tt.want)
				if s.Sign("t") != want.Sign("t") {
					t.Error("a different secret was chosen")
				}
			}
		})
	}
}

func TestSessionCheck(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name string
		s    *Session
		want error
	}{
		{"nil", nil, ErrSessionUnknown},
		{"not found", &Session{}, ErrSessionUnknown},
		{"live", &Session{Found: true, ExpiresAt: now.Add(time.Second)}, nil},
		{"expires now: still valid (expiresAt < now is expired)", &Session{Found: true, ExpiresAt: now}, nil},
		{"expired", &Session{Found: true, ExpiresAt: now.Add(-time.Nanosecond)}, ErrSessionExpired},
	} {
		if err := tt.s.Check(now); !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
			t.Errorf("%s: Check = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestTokenDigest(t *testing.T) {
	t.Parallel()
	d := TokenDigest(vecToken)
	if len(d) != 64 || strings.Contains(d, vecToken) || d != TokenDigest(vecToken) || d == TokenDigest(vecToken+"x") {
		t.Errorf("TokenDigest = %q", d)
	}
	if TokenDigest("") != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("TokenDigest is not hex SHA-256")
	}
	for _, tt := range []struct {
		raw  string
		want bool
	}{{"a.b.c", true}, {"a.b", false}, {"ab", false}, {"a.b.c.d", false}} {
		if LooksLikeJWT(tt.raw) != tt.want {
			t.Errorf("LooksLikeJWT(%q) != %v", tt.raw, tt.want)
		}
	}
}

// TestHashAPIKey: the api-key plugin stores base64url(SHA-256(key)) without
// padding (a vector computed with Python's hashlib).
func TestHashAPIKey(t *testing.T) {
	t.Parallel()
	if got := HashAPIKey("usr_abcdefghijklmnopqrstuvwxyz"); got != "QxWaRaIuRV4pZCY6cah2Dd96vENx7GU635olDmHMOS0" {
		t.Fatalf("HashAPIKey = %q", got)
	}
}

func TestAPIKeyCheck(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name     string
		k        *APIKey
		counting bool
		want     error
	}{
		{"nil", nil, false, ErrAPIKeyUnknown},
		{"not found", &APIKey{}, false, ErrAPIKeyUnknown},
		{"disabled", &APIKey{Found: true}, false, ErrAPIKeyDisabled},
		{"disabled and expired: disabled first", &APIKey{Found: true, ExpiresAt: now.Add(-time.Hour)}, false, ErrAPIKeyDisabled},
		{"expired", &APIKey{Found: true, Enabled: true, ExpiresAt: now.Add(-time.Nanosecond)}, false, ErrAPIKeyExpired},
		{"expires now: still valid (now > expiresAt is expired)", &APIKey{Found: true, Enabled: true, ExpiresAt: now}, false, nil},
		{"no expiry", &APIKey{Found: true, Enabled: true}, false, nil},
		{"counted, refused", &APIKey{Found: true, Enabled: true, Counted: true}, false, ErrAPIKeyCounted},
		{"counted, counting in the app", &APIKey{Found: true, Enabled: true, Counted: true}, true, nil},
		{"expired beats counted", &APIKey{Found: true, Enabled: true, Counted: true, ExpiresAt: now.Add(-time.Hour)}, true, ErrAPIKeyExpired},
	} {
		err := tt.k.Check(now, tt.counting)
		if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
			t.Errorf("%s: Check = %v, want %v", tt.name, err, tt.want)
		}
		if err != nil && !errors.Is(err, ErrAPIKey) {
			t.Errorf("%s: %v does not wrap ErrAPIKey", tt.name, err)
		}
	}
}

// TestOriginTrusted mirrors api/middlewares/origin-check.mjs and
// auth/trusted-origins.mjs (matchesOriginPattern).
func TestOriginTrusted(t *testing.T) {
	t.Parallel()
	const base = "https://app.example"
	patterns := []string{"https://admin.example", "http://localhost:3000", "*.acme.example", "https://*.acme.dev", "app?.test"}
	tests := []struct {
		name, origin, referer string
		want                  bool
	}{
		{"the base URL", "https://app.example", "", true},
		{"a listed origin", "https://admin.example", "", true},
		{"a listed origin with its port", "http://localhost:3000", "", true},
		{"the same host on another port", "http://localhost:3001", "", false},
		{"default port dropped", "https://admin.example:443", "", true},
		{"host compared lower-case", "https://ADMIN.example", "", true},
		{"scheme differs", "http://admin.example", "", false},
		{"a path is ignored", "https://admin.example/x", "", true},
		{"host wildcard, any scheme", "http://a.acme.example", "", true},
		{"host wildcard crosses dots", "https://a.b.acme.example", "", true},
		{"host wildcard needs a subdomain", "https://acme.example", "", false},
		{"host wildcard and a non-default port", "https://a.acme.example:8443", "", false},
		{"origin wildcard", "https://x.acme.dev", "", true},
		{"origin wildcard checks the scheme", "http://x.acme.dev", "", false},
		{"question mark is one character", "https://app1.test", "", true},
		{"question mark is exactly one", "https://app12.test", "", false},
		{"another site", "https://evil.example", "", false},
		{"suffix attack", "https://app.example.evil.example", "", false},
		{"referer when origin is absent", "", "https://admin.example/page?x=1", true},
		{"referer of another site", "", "https://evil.example/", false},
		{"origin beats referer", "https://evil.example", "https://app.example/", false},
		{"null origin", "null", "", false},
		{"nothing", "", "", false},
		{"not a URL", "::", "", false},
		{"no host", "https://", "", false},
		{"other scheme", "ftp://admin.example", "", false},
		{"IPv6", "http://[::1]:3000", "", false},
		{"https on port 80 is another origin", "https://admin.example:80", "", false},
		{"http on port 443 is another origin", "http://localhost:443", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := OriginTrusted(tt.origin, tt.referer, base, patterns); got != tt.want {
				t.Fatalf("OriginTrusted(%q, %q) = %v, want %v", tt.origin, tt.referer, got, tt.want)
			}
		})
	}
	if OriginTrusted("https://app.example", "", "", nil) {
		t.Error("trusted with no base URL and no patterns")
	}
	if !OriginTrusted("http://[::1]:3000", "", "", []string{"http://[::1]:3000"}) {
		t.Error("IPv6 origin not matched exactly")
	}
	if !OriginTrusted("http://app.local:80", "", "http://app.local", nil) {
		t.Error("http's default port not dropped")
	}
}

func TestGlob(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		p, s string
		want bool
	}{
		{"*", "", true}, {"*", "abc", true}, {"a*", "a", true}, {"a*c", "abbbc", true},
		{"a*c", "abcd", false}, {"*.x", ".x", true}, {"?", "", false}, {"?", "a", true},
		{"a?c", "abc", true}, {"**b", "ab", true}, {"a*b*c", "axxbyyc", true}, {"a*b*c", "axxbyy", false},
		{"abc", "abc", true}, {"abc", "abd", false}, {"", "", true}, {"", "a", false},
		// No "*": nothing to backtrack to, whatever the mismatch.
		{"ab", "ax", false}, {"?b", "xc", false}, {"a", "b", false},
	} {
		if got := glob(tt.p, tt.s); got != tt.want {
			t.Errorf("glob(%q, %q) = %v, want %v", tt.p, tt.s, got, tt.want)
		}
	}
}

func FuzzCookieValue(f *testing.F) {
	s, _ := NewSecret(vecSecret)
	for _, seed := range []string{
		"better-auth.session_token=" + url.QueryEscape(vecToken+"."+vecSig),
		"better-auth.session_token=\"" + vecToken + "." + vecSig + "\"",
		"a=1; better-auth.session_token=%zz%; better-auth.session_token=x",
		"better-auth.session_token=" + vecToken + "." + vecSig + "=",
		"better-auth.session_token=.;=;;==",
		"better-auth.session_token=%E2%82%AC.%ff",
		"\x00better-auth.session_token=\x00",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		v, ok := CookieValue(header, "better-auth.session_token")
		if !ok && v != "" {
			t.Fatalf("absent cookie with value %q", v)
		}
		tok, err := s.VerifySigned(v)
		if err != nil {
			return
		}
		// Anything that verifies is a token signed by the secret.
		if tok+"." != v[:len(tok)+1] || s.Sign(tok)[:43] != v[len(tok)+1:][:43] {
			t.Fatalf("verified %q from %q", tok, v)
		}
	})
}

func FuzzSessionBearer(f *testing.F) {
	s, _ := NewSecret(vecSecret)
	for _, seed := range []string{
		"Bearer " + vecToken + "." + vecSig,
		"bearer " + url.QueryEscape(vecToken+"."+vecSig),
		"Bearer\t" + vecToken,
		"Bearer " + vecToken,
		"BEARER  a.b.c",
		"Bearer %",
	} {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	f.Fuzz(func(t *testing.T, header string, allowRaw bool) {
		tok, present, err := SessionBearer(header, s, allowRaw)
		if !present && (tok != "" || err != nil) {
			t.Fatalf("not present but %q, %v", tok, err)
		}
		if present && err == nil && strings.Contains(header, ".") && s.Sign(tok)[:43] == "" {
			t.Fatal("unreachable")
		}
		if present && err == nil && !allowRaw && !strings.Contains(header, ".") {
			t.Fatalf("raw token %q accepted while signatures are required", tok)
		}
	})
}

// TestSecretConcurrent: copies of one Secret share keyed HMACs; used at
// once from many goroutines, every signature is still the reference
// HMAC-SHA256 of its own token, and every altered one is refused.
func TestSecretConcurrent(t *testing.T) {
	t.Parallel()
	s := vecSecretT(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			c := s // a copy, as the engine's Config holds one
			for i := range 200 {
				token := fmt.Sprintf("%032d", g*1000+i)
				m := hmac.New(sha256.New, []byte(vecSecret))
				m.Write([]byte(token))
				want := base64.StdEncoding.EncodeToString(m.Sum(nil))
				if got := c.Sign(token); got != want {
					t.Errorf("Sign(%q) = %q, want %q", token, got, want)
					return
				}
				if got, err := c.VerifySigned(token + "." + want); err != nil || got != token {
					t.Errorf("VerifySigned(own signature) = %q, %v", got, err)
					return
				}
				other := fmt.Sprintf("%032d", g*1000+i+1)
				if _, err := c.VerifySigned(other + "." + want); !errors.Is(err, ErrSessionSignature) {
					t.Errorf("VerifySigned(another token's signature) = %v, want ErrSessionSignature", err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkVerifySigned is the check every request with a session cookie
// or bearer session token pays (a cookie that does not verify included).
func BenchmarkVerifySigned(b *testing.B) {
	s := vecSecretT(b)
	v := vecToken + "." + vecSig
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.VerifySigned(v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHashAPIKey is the hash every request with an API key pays
// before its lookup.
func BenchmarkHashAPIKey(b *testing.B) {
	const key = "bench_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijkl"
	b.ReportAllocs()
	for b.Loop() {
		if len(HashAPIKey(key)) != 43 {
			b.Fatal("short hash")
		}
	}
}
