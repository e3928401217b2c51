package authn

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Defaults for VerifierConfig's zero values.
const (
	DefaultLeeway        = 30 * time.Second
	DefaultMaxTokenBytes = 8192
)

// DefaultAlgorithms is the allowlist used when VerifierConfig.Algorithms is
// empty: what Better Auth's jwt plugin signs with by default.
var DefaultAlgorithms = []string{"EdDSA"}

// acceptable are the only algorithms a Verifier can ever be configured for:
// asymmetric, with keys we can check. "none" and HMAC are excluded so that a
// public key can never be used as a shared secret.
var acceptable = []string{"EdDSA", "ES256", "ES384", "ES512", "RS256", "PS256"}

// forbiddenHeaders are header parameters we never honour. jku, x5u, jwk and
// x5c would let the token choose its own verification key; crit demands
// extensions we do not implement (RFC 7515 §4.1.11 says reject); b64 would
// change what the signature covers (RFC 7797).
var forbiddenHeaders = [...]string{"jku", "x5u", "jwk", "x5c", "crit", "b64"}

// b64 decodes JWS segments. Strict rejects non-zero trailing bits, so each
// segment has exactly one accepted encoding.
var b64 = base64.RawURLEncoding.Strict()

// maxNumericDate bounds exp/nbf/iat (year 5138) so that conversion to
// int64 nanoseconds cannot overflow.
const maxNumericDate = 1e11

// KeyLookup finds a verification key by kid. *KeySet implements it. It
// returns ErrUnknownKey or ErrNoKeys (or a context error) when it cannot.
type KeyLookup interface {
	Lookup(ctx context.Context, kid string) (jwk.Key, error)
}

// VerifierConfig configures a Verifier. Zero values take defaults.
type VerifierConfig struct {
	// Issuer must equal the token's iss exactly (Better Auth: the baseURL
	// origin, e.g. "https://app.example.com"). Required.
	Issuer string
	// Audiences: the token's aud (string or array) must contain one of
	// them. Required.
	Audiences []string
	// Algorithms allowlist; default DefaultAlgorithms. Only EdDSA, ES256,
	// ES384, ES512, RS256 and PS256 are accepted here; anything else, notably
	// "none" and HS*, makes NewVerifier fail.
	Algorithms []string
	// Leeway for clock skew on exp, nbf and iat. Zero means none (unlike
	// the other fields, zero is a meaningful setting here); policies.yaml
	// defaults it to DefaultLeeway.
	Leeway time.Duration
	// MaxTokenBytes: longer tokens are refused before any parsing; default
	// DefaultMaxTokenBytes.
	MaxTokenBytes int
	// Now returns the current time; default time.Now. For tests.
	Now func() time.Time
	// KeepClaims, when not nil, lists the claims Identity.Claim may be asked
	// for (the policy's claim: organization sources); the others are
	// dropped after validation, so a cached Identity holds only what
	// decisions read. nil keeps every claim.
	KeepClaims []string
}

// algorithm is one allowed signature algorithm.
type algorithm struct {
	name     string
	verifier jws.Verifier // immutable in jwx, safe for concurrent use
	// sigLenOK checks the signature length before any key lookup, so that
	// garbage cannot trigger a key refresh.
	sigLenOK func(n int) bool
	// publicKey extracts the verification key, failing if the JWK's type,
	// curve or size does not fit this algorithm.
	publicKey func(jwk.Key) (any, error)
}

func newAlgorithm(name string) (algorithm, error) {
	v, err := jws.NewVerifier(jwa.SignatureAlgorithm(name))
	if err != nil {
		return algorithm{}, fmt.Errorf("authn: algorithm %s: %w", name, err)
	}
	a := algorithm{name: name, verifier: v}
	switch name {
	case "EdDSA":
		a.sigLenOK = func(n int) bool { return n == 64 }
		a.publicKey = func(k jwk.Key) (any, error) { return ed25519Key(k) }
	case "ES256":
		a.sigLenOK = func(n int) bool { return n == 64 }
		a.publicKey = func(k jwk.Key) (any, error) { return ecdsaKey(k, jwa.P256) }
	case "ES384":
		a.sigLenOK = func(n int) bool { return n == 96 }
		a.publicKey = func(k jwk.Key) (any, error) { return ecdsaKey(k, jwa.P384) }
	case "ES512":
		// P-521: two 66-byte integers (Better Auth's jwt plugin with
		// keyPairConfig alg ES512).
		a.sigLenOK = func(n int) bool { return n == 132 }
		a.publicKey = func(k jwk.Key) (any, error) { return ecdsaKey(k, jwa.P521) }
	case "RS256", "PS256":
		a.sigLenOK = func(n int) bool { return n >= minRSABits/8 && n <= 1024 }
		a.publicKey = func(k jwk.Key) (any, error) { return rsaKey(k) }
	default:
		return algorithm{}, fmt.Errorf("authn: algorithm %q is not accepted", name)
	}
	return a, nil
}

// Verifier checks Better Auth JWTs (compact JWS) against a KeyLookup. It is
// safe for concurrent use.
type Verifier struct {
	issuer        string
	audiences     []string
	algs          []algorithm // a few entries: a scan beats a map
	leeway        time.Duration
	maxTokenBytes int
	now           func() time.Time
	keys          KeyLookup
	keepClaims    []string // nil: keep all
}

// NewVerifier validates cfg and returns a Verifier using keys.
func NewVerifier(cfg VerifierConfig, keys KeyLookup) (*Verifier, error) {
	if keys == nil {
		return nil, errors.New("authn: NewVerifier: nil KeyLookup")
	}
	if cfg.Issuer == "" {
		return nil, errors.New("authn: VerifierConfig.Issuer is required")
	}
	if len(cfg.Audiences) == 0 || slices.Contains(cfg.Audiences, "") {
		return nil, errors.New("authn: VerifierConfig.Audiences must be non-empty strings")
	}
	if cfg.Leeway < 0 || cfg.MaxTokenBytes < 0 {
		return nil, errors.New("authn: VerifierConfig.Leeway and MaxTokenBytes must not be negative")
	}
	names := cfg.Algorithms
	if len(names) == 0 {
		names = DefaultAlgorithms
	}
	v := &Verifier{
		issuer:        cfg.Issuer,
		audiences:     slices.Clone(cfg.Audiences),
		leeway:        cfg.Leeway,
		keepClaims:    cfg.KeepClaims,
		maxTokenBytes: cfg.MaxTokenBytes,
		now:           cfg.Now,
		keys:          keys,
	}
	for _, name := range names {
		if !slices.Contains(acceptable, name) {
			return nil, fmt.Errorf("authn: algorithm %q may not be allowed (accepted: %v)", name, acceptable)
		}
		if v.algorithm(name) != nil {
			continue
		}
		a, err := newAlgorithm(name)
		if err != nil {
			return nil, err
		}
		v.algs = append(v.algs, a)
	}
	if v.maxTokenBytes == 0 {
		v.maxTokenBytes = DefaultMaxTokenBytes
	}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

func (v *Verifier) algorithm(name string) *algorithm {
	for i := range v.algs {
		if v.algs[i].name == name {
			return &v.algs[i]
		}
	}
	return nil
}

// Identity is the authenticated caller, from a verified token.
type Identity struct {
	// Subject is sub: the Better Auth user id.
	Subject string
	// Expiry is exp.
	Expiry time.Time
	// IssuedAt is iat, or the zero time if absent.
	IssuedAt time.Time
	// claims are the verified payload's top-level members, decoded on
	// demand by Claim: most are never asked for, and decoding them all
	// would cost the hot path a string per claim. Never mutated.
	claims map[string]json.RawMessage
}

// NewIdentity builds an identity that no token vouched for. It exists for
// tools that explain decisions offline ("authz-sidecar explain --user"),
// never for the request path, which only gets identities from Verify.
func NewIdentity(subject string, expiry time.Time, claims map[string]string) *Identity {
	id := &Identity{Subject: subject, Expiry: expiry, claims: make(map[string]json.RawMessage, len(claims))}
	for k, v := range claims {
		b, _ := json.Marshal(v) // a string always marshals
		id.claims[k] = b
	}
	return id
}

// Claim returns a top-level claim whose value is a JSON string, e.g. "email"
// or "activeOrganizationId" (only present if the app's definePayload adds
// it). ok is false if the claim is absent, null or not a string.
func (i *Identity) Claim(name string) (string, bool) {
	return jsonString(i.claims[name])
}

// Verify checks raw (a compact JWS, without "Bearer ") and returns the
// caller's identity. Checks run cheapest and most decisive first: size,
// syntax, header (alg allowlist, forbidden parameters, kid), key lookup, key
// fit, signature, then claims (exp required, nbf, iat, iss, aud, sub). Nothing
// in the payload is read before the signature verifies.
//
// Errors wrap one of the package's sentinels (see IsUnauthenticated):
// ErrNoKeys means the key set was never loaded; a context error means ctx
// ended while waiting for a key refresh. Messages never contain the token.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Identity, error) {
	// Before anything else, so that huge inputs cost nothing.
	if len(raw) > v.maxTokenBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(raw), v.maxTokenBytes)
	}
	hdrB64, payloadB64, sigB64, ok := splitCompact(raw)
	if !ok {
		return nil, fmt.Errorf("%w: not a compact JWS (three base64url segments)", ErrMalformed)
	}
	hdrJSON, err := b64.DecodeString(hdrB64)
	if err != nil {
		return nil, fmt.Errorf("%w: header is not base64url", ErrMalformed)
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(hdrJSON, &hdr); err != nil {
		return nil, fmt.Errorf("%w: header is not a JSON object", ErrMalformed)
	}

	// The token names its algorithm, but only the allowlist decides: this
	// is what refuses "none" and HS256-with-the-public-key.
	algName, _ := jsonString(hdr["alg"])
	alg := v.algorithm(algName)
	if alg == nil {
		return nil, fmt.Errorf("%w: alg %s", ErrAlgorithm, quoteShort(algName))
	}
	for _, name := range forbiddenHeaders {
		if _, present := hdr[name]; present {
			return nil, fmt.Errorf("%w: %s", ErrForbiddenHeader, name)
		}
	}
	// No kid: refuse rather than try every key (Better Auth always sets
	// one), and never trigger a refresh for it.
	kid, ok := jsonString(hdr["kid"])
	if !ok || kid == "" {
		return nil, fmt.Errorf("%w: header has no kid", ErrMalformed)
	}

	sig, err := b64.DecodeString(sigB64)
	if err != nil {
		return nil, fmt.Errorf("%w: signature is not base64url", ErrMalformed)
	}
	if !alg.sigLenOK(len(sig)) {
		return nil, fmt.Errorf("%w: signature length %d does not fit %s", ErrSignature, len(sig), alg.name)
	}
	payload, err := b64.DecodeString(payloadB64)
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64url", ErrMalformed)
	}

	key, err := v.keys.Lookup(ctx, kid)
	if err != nil {
		return nil, fmt.Errorf("%w: kid %s", err, quoteShort(kid))
	}
	// The key, not the token, decides what it may verify: its own alg if
	// set, and its type/curve/size.
	if ka := key.Algorithm().String(); ka != "" && ka != alg.name {
		return nil, fmt.Errorf("%w: token alg %s, key %s has alg %s", ErrAlgorithm, alg.name, quoteShort(kid), quoteShort(ka))
	}
	pub, err := alg.publicKey(key)
	if err != nil {
		return nil, fmt.Errorf("%w: key %s cannot verify %s: %v", ErrAlgorithm, quoteShort(kid), alg.name, err)
	}
	// Verify over the exact bytes received, with exactly this key and alg.
	signingInput := []byte(raw[:len(hdrB64)+1+len(payloadB64)])
	if err := alg.verifier.Verify(signingInput, sig, pub); err != nil {
		return nil, fmt.Errorf("%w: %s with key %s", ErrSignature, alg.name, quoteShort(kid))
	}

	return v.checkClaims(payload)
}

// checkClaims parses a verified payload and validates the registered claims.
// A JSON null counts as absent.
func (v *Verifier) checkClaims(payload []byte) (*Identity, error) {
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, fmt.Errorf("%w: payload is not a JSON object", ErrMalformed)
	}
	get := func(name string) (json.RawMessage, bool) {
		raw, ok := claims[name]
		if !ok || string(raw) == "null" {
			return nil, false
		}
		return raw, true
	}
	now := v.now()
	id := &Identity{claims: claims}

	// A token without exp would never expire: refuse it.
	raw, ok := get("exp")
	if !ok {
		return nil, fmt.Errorf("%w: no exp claim", ErrMalformed)
	}
	exp, err := numericDate(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: exp: %v", ErrMalformed, err)
	}
	if !now.Before(exp.Add(v.leeway)) {
		return nil, fmt.Errorf("%w: at %s", ErrExpired, exp.UTC().Format(time.RFC3339))
	}
	id.Expiry = exp
	if raw, ok := get("nbf"); ok {
		nbf, err := numericDate(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: nbf: %v", ErrMalformed, err)
		}
		if nbf.After(now.Add(v.leeway)) {
			return nil, fmt.Errorf("%w: nbf %s", ErrNotYetValid, nbf.UTC().Format(time.RFC3339))
		}
	}
	if raw, ok := get("iat"); ok {
		iat, err := numericDate(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: iat: %v", ErrMalformed, err)
		}
		if iat.After(now.Add(v.leeway)) {
			return nil, fmt.Errorf("%w: iat %s", ErrIssuedInFuture, iat.UTC().Format(time.RFC3339))
		}
		id.IssuedAt = iat
	}

	raw, ok = get("iss")
	if !ok {
		return nil, fmt.Errorf("%w: no iss claim", ErrIssuer)
	}
	iss, ok := jsonString(raw)
	if !ok {
		return nil, fmt.Errorf("%w: iss is not a string", ErrMalformed)
	}
	if iss != v.issuer {
		return nil, fmt.Errorf("%w: %s", ErrIssuer, quoteShort(iss))
	}

	raw, ok = get("aud")
	if !ok {
		return nil, fmt.Errorf("%w: no aud claim", ErrAudience)
	}
	if err := v.checkAudience(raw); err != nil {
		return nil, err
	}

	raw, ok = get("sub")
	if !ok {
		return nil, fmt.Errorf("%w: no sub claim", ErrNoSubject)
	}
	if id.Subject, ok = jsonString(raw); !ok {
		return nil, fmt.Errorf("%w: sub is not a string", ErrMalformed)
	}
	if id.Subject == "" {
		return nil, fmt.Errorf("%w: empty sub", ErrNoSubject)
	}
	if v.keepClaims != nil {
		kept := make(map[string]json.RawMessage, len(v.keepClaims))
		for _, name := range v.keepClaims {
			if raw, ok := claims[name]; ok {
				// Copied so the whole payload is not kept alive by a slice of it.
				kept[name] = append(json.RawMessage(nil), raw...)
			}
		}
		id.claims = kept
	}
	return id, nil
}

// checkAudience accepts aud as a string or an array of strings (RFC 7519
// §4.1.3) containing one of the configured audiences.
func (v *Verifier) checkAudience(raw json.RawMessage) error {
	if s, ok := jsonString(raw); ok {
		if slices.Contains(v.audiences, s) {
			return nil
		}
		return fmt.Errorf("%w: %s", ErrAudience, quoteShort(s))
	}
	var list []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &list) != nil {
		return fmt.Errorf("%w: aud is neither a string nor an array", ErrMalformed)
	}
	found := false
	for _, item := range list {
		s, ok := jsonString(item)
		if !ok {
			return fmt.Errorf("%w: aud array holds a non-string", ErrMalformed)
		}
		found = found || slices.Contains(v.audiences, s)
	}
	if !found {
		return fmt.Errorf("%w: none of %d audiences accepted", ErrAudience, len(list))
	}
	return nil
}

// splitCompact splits a compact JWS into its three segments. It refuses any
// byte outside the base64url alphabet (so no padding, whitespace or line
// breaks, which the base64 decoder would otherwise skip) and any count of
// segments other than three.
func splitCompact(s string) (hdr, payload, sig string, ok bool) {
	var dots [2]int
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') || c == '-' || c == '_' {
			continue
		}
		if c != '.' || n == len(dots) {
			return "", "", "", false
		}
		dots[n] = i
		n++
	}
	if n != len(dots) {
		return "", "", "", false
	}
	return s[:dots[0]], s[dots[0]+1 : dots[1]], s[dots[1]+1:], true
}

// jsonString decodes raw if it is a JSON string. The common case (printable
// ASCII, no escapes) is sliced directly; anything else goes through
// encoding/json so escapes and invalid UTF-8 are handled the standard way.
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	simple := true
	for _, c := range inner {
		if c < 0x20 || c > 0x7e || c == '\\' || c == '"' {
			simple = false
			break
		}
	}
	if simple && raw[len(raw)-1] == '"' {
		return string(inner), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// numericDate parses a JSON number of seconds since the epoch (RFC 7519
// NumericDate; fractions allowed) within [0, maxNumericDate].
func numericDate(raw json.RawMessage) (time.Time, error) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return time.Time{}, errors.New("not a number")
	}
	// raw is valid JSON (it came out of json.Unmarshal), so a leading digit
	// or '-' means a JSON number, which ParseFloat reads exactly.
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f < 0 || f > maxNumericDate || math.IsNaN(f) {
		return time.Time{}, errors.New("out of range")
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}

// quoteShort quotes an attacker-controlled header or claim value for an
// error message: escaped (no log injection) and truncated.
func quoteShort(s string) string {
	const limit = 32
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + "..."
	}
	return strconv.Quote(s)
}
