package authn

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// This file reads Better Auth 1.7.25 session credentials exactly as Better
// Auth does (docs/better-auth-source-notes.md §1–2):
//
//   - the session cookie "<prefix>.session_token" (better-call
//     getSignedCookie): value "<token>.<signature>", URL-decoded only when it
//     holds "%", split at the LAST ".", the signature exactly 44 characters
//     ending in "=", standard base64 of HMAC-SHA256(key = the secret,
//     message = token); the first cookie of that name wins;
//   - the bearer plugin's "Authorization: Bearer <token>.<signature>" (or
//     the raw token unless requireSignature): the first seven characters
//     lower-cased must be "bearer " (one space, no tab), the rest trimmed.
//
// Only the current secret verifies (the first of BETTER_AUTH_SECRETS, else
// BETTER_AUTH_SECRET): Better Auth uses the rotation list for encryption
// only, and session cookies signed with an older secret stop working.

// Session credential errors. They wrap ErrSession, so callers can tell a bad
// session credential (401) from other failures.
var (
	// ErrSession is wrapped by every error about a session credential.
	ErrSession = errors.New("authn: invalid session credential")
	// ErrSessionSignature: the signature is malformed or does not verify.
	ErrSessionSignature = fmt.Errorf("%w: bad signature", ErrSession)
	// ErrSessionUnknown: no session has the token (signed out, revoked,
	// deleted) or its user is gone.
	ErrSessionUnknown = fmt.Errorf("%w: no such session", ErrSession)
	// ErrSessionExpired: the session's expiresAt has passed.
	ErrSessionExpired = fmt.Errorf("%w: session expired", ErrSession)
)

// Secret is Better Auth's current secret, the HMAC key of session
// signatures. It is never logged: String and GoString hide it. Copies
// share one pool of keyed HMACs.
type Secret struct {
	key []byte
	// macs holds *keyedMAC for key: every request with a session cookie
	// (valid or not) is verified, and a fresh hmac.New per request costs
	// its key schedule and seven allocations.
	macs *sync.Pool
}

// keyedMAC is an HMAC-SHA256 keyed with a Secret's key, and room for a
// message and a sum, so a verification allocates nothing.
type keyedMAC struct {
	h   hash.Hash
	msg []byte
	sum [sha256.Size]byte
}

// NewSecret returns the secret s. It refuses an empty one.
func NewSecret(s string) (Secret, error) {
	if s == "" {
		return Secret{}, errors.New("authn: empty Better Auth secret")
	}
	key := []byte(s)
	return Secret{key: key, macs: &sync.Pool{New: func() any {
		return &keyedMAC{h: hmac.New(sha256.New, key), msg: make([]byte, 0, 64)}
	}}}, nil
}

// mac returns HMAC-SHA256(key, message) into a pooled keyedMAC's sum;
// the caller puts m back when done with the sum.
func (s Secret) mac(message string) *keyedMAC {
	var m *keyedMAC
	if s.macs == nil {
		m = &keyedMAC{h: hmac.New(sha256.New, s.key)} // the zero Secret
	} else {
		m = s.macs.Get().(*keyedMAC)
	}
	m.h.Reset()
	m.msg = append(m.msg[:0], message...)
	m.h.Write(m.msg)
	m.h.Sum(m.sum[:0])
	return m
}

// putMAC returns m to the pool, unless a long message grew its buffer.
func (s Secret) putMAC(m *keyedMAC) {
	if s.macs != nil && cap(m.msg) <= 1024 {
		s.macs.Put(m)
	}
}

// SecretFromEnv picks the secret the way Better Auth 1.7.25 does
// (context/create-context.mjs): the first entry of BETTER_AUTH_SECRETS
// ("<version>:<secret>,..."), else BETTER_AUTH_SECRET, else AUTH_SECRET.
// ok is false when none is set.
func SecretFromEnv(getenv func(string) string) (s Secret, ok bool, err error) {
	if list := getenv("BETTER_AUTH_SECRETS"); strings.TrimSpace(list) != "" {
		first, _, _ := strings.Cut(list, ",")
		version, secret, found := strings.Cut(strings.TrimSpace(first), ":")
		if !found {
			return Secret{}, false, errors.New(`authn: $BETTER_AUTH_SECRETS: want "<version>:<secret>,..."`)
		}
		if n, err := strconv.Atoi(strings.TrimSpace(version)); err != nil || n < 0 {
			return Secret{}, false, errors.New("authn: $BETTER_AUTH_SECRETS: a version is a non-negative whole number")
		}
		s, err := NewSecret(strings.TrimSpace(secret))
		return s, err == nil, err
	}
	for _, name := range []string{"BETTER_AUTH_SECRET", "AUTH_SECRET"} {
		if v := getenv(name); v != "" {
			s, err := NewSecret(v)
			return s, err == nil, err
		}
	}
	return Secret{}, false, nil
}

// String hides the secret.
func (Secret) String() string { return "[secret]" }

// GoString hides the secret.
func (Secret) GoString() string { return "authn.Secret{[secret]}" }

// IsZero reports whether no secret is set.
func (s Secret) IsZero() bool { return len(s.key) == 0 }

// Sign returns the signature Better Auth puts after a token: standard
// base64 (padded) of HMAC-SHA256(secret, token). Tests and tools use it;
// the sidecar only verifies.
func (s Secret) Sign(token string) string {
	m := s.mac(token)
	defer s.putMAC(m)
	return base64.StdEncoding.EncodeToString(m.sum[:])
}

// verify checks a signature in Better Auth's cookie form: 44 characters
// ending in "=", decoded like atob (standard alphabet, unused trailing bits
// ignored: Go's non-strict StdEncoding), compared in constant time.
func (s Secret) verify(token, sig string) bool {
	if len(sig) != 44 || sig[43] != '=' || s.IsZero() {
		return false
	}
	var got [33]byte
	n, err := base64.StdEncoding.Decode(got[:], []byte(sig))
	if err != nil || n != sha256.Size {
		return false
	}
	m := s.mac(token)
	defer s.putMAC(m)
	return hmac.Equal(got[:n], m.sum[:])
}

// VerifySigned checks a signed session value "<token>.<signature>" (already
// URL-decoded) and returns the token: the part before the last ".", as
// better-call's getSignedCookie splits it.
func (s Secret) VerifySigned(value string) (string, error) {
	i := strings.LastIndexByte(value, '.')
	if i < 1 {
		return "", ErrSessionSignature
	}
	token, sig := value[:i], value[i+1:]
	if !s.verify(token, sig) {
		return "", ErrSessionSignature
	}
	return token, nil
}

// CookieValue returns the value of the first cookie named name in a Cookie
// header, as better-call's parser reads it: pairs split at ";", name and
// value trimmed, a value starting with a double quote loses its first and
// last character, and the value is URL-decoded only when it holds "%" (kept
// as is when that fails). ok is false when there is no such cookie.
func CookieValue(header, name string) (value string, ok bool) {
	for len(header) > 0 {
		var pair string
		pair, header, _ = strings.Cut(header, ";")
		k, v, found := strings.Cut(pair, "=")
		if !found || strings.TrimSpace(k) != name {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) > 0 && v[0] == '"' {
			if len(v) >= 2 {
				v = v[1 : len(v)-1]
			} else {
				v = ""
			}
		}
		return decodeURIComponent(v), true
	}
	return "", false
}

// decodeURIComponent decodes %XX escapes like JavaScript's function of the
// same name as better-call uses it: only when s holds "%", and s is kept as
// it is when the escapes are malformed or decode to invalid UTF-8 (where
// JavaScript throws).
func decodeURIComponent(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	d, err := url.PathUnescape(s)
	if err != nil || !utf8.ValidString(d) {
		return s
	}
	return d
}

// SessionBearer reads an Authorization header as Better Auth's bearer
// plugin does. It returns the session token after verifying its signature
// with secret; a raw token (no ".") is accepted only when allowRaw (the
// plugin's requireSignature: false). present is false when the header is
// not a session bearer at all (another scheme, a tab after the scheme, an
// empty token, or a raw token while allowRaw is false); err reports a
// session bearer whose signature does not verify.
func SessionBearer(authorization string, secret Secret, allowRaw bool) (token string, present bool, err error) {
	if len(authorization) < 7 || !strings.EqualFold(authorization[:7], "bearer ") {
		return "", false, nil
	}
	raw := strings.TrimSpace(authorization[7:])
	if raw == "" {
		return "", false, nil
	}
	if !strings.Contains(raw, ".") {
		if !allowRaw {
			return "", false, nil
		}
		// The plugin signs a raw token itself, so it always verifies.
		return raw, true, nil
	}
	tok, err := secret.VerifySigned(decodeURIComponent(raw))
	return tok, true, err
}

// LooksLikeJWT reports whether a bearer value has the shape of a compact
// JWS (three dot-separated parts). Better Auth session tokens never do:
// a signed one has a single ".", a raw one none.
func LooksLikeJWT(raw string) bool { return strings.Count(raw, ".") == 2 }

// TokenDigest is the cache key of a session token: hex SHA-256. The token
// itself never becomes a cache key, log field or metric label.
func TokenDigest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hexString(sum[:])
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 2*len(b))
	for i, c := range b {
		out[2*i], out[2*i+1] = digits[c>>4], digits[c&0xf]
	}
	return string(out)
}

// Session is what Better Auth's session table (or secondary storage) says
// about one session. Found is false when there is no such session (or its
// user is gone), which is cached like any other answer. It never holds the
// token.
type Session struct {
	Found                bool      `json:"f"`
	ID                   string    `json:"i,omitempty"`
	UserID               string    `json:"u,omitempty"`
	ExpiresAt            time.Time `json:"e,omitzero"`
	ActiveOrganizationID string    `json:"o,omitempty"`
	ActiveTeamID         string    `json:"tm,omitempty"`
	ImpersonatedBy       string    `json:"im,omitempty"`
	// LoadedAt is when the load that produced this answer started (see
	// roles.Access.LoadedAt).
	LoadedAt time.Time `json:"t,omitzero"`
}

// Check reports whether the session authenticates at now, as Better Auth's
// get-session judges it: it exists and expiresAt is not before now.
func (s *Session) Check(now time.Time) error {
	switch {
	case s == nil || !s.Found:
		return ErrSessionUnknown
	case s.ExpiresAt.Before(now):
		return ErrSessionExpired
	}
	return nil
}
