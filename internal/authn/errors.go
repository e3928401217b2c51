// Package authn authenticates callers from Better Auth JWTs: it extracts the
// Bearer token from an Authorization header, keeps the issuer's JWKS fresh in
// memory, and verifies a token's signature and claims against it.
//
// It owns no policy: it answers "who is this caller, per a token we trust?"
// and nothing about what the caller may do.
package authn

import (
	"errors"
	"strings"
)

// Sentinel errors. Every error returned by BearerToken and Verifier.Verify
// wraps exactly one of these (Verify may instead return a context error when
// the caller's context ends while waiting for a key refresh). Callers branch
// with errors.Is; messages are for logs and never contain the token.
var (
	// ErrNoToken: the request carried no Authorization header.
	ErrNoToken = errors.New("authn: no bearer token")
	// ErrMalformedHeader: an Authorization header that is not exactly
	// "Bearer <token>" (another scheme, an empty token, several values).
	ErrMalformedHeader = errors.New("authn: malformed authorization header")
	// ErrTooLarge: the token exceeds VerifierConfig.MaxTokenBytes; it was
	// not parsed at all.
	ErrTooLarge = errors.New("authn: token too large")
	// ErrMalformed: not a compact JWS, bad base64url or JSON, a missing kid
	// or exp, or a registered claim of the wrong JSON type.
	ErrMalformed = errors.New("authn: malformed token")
	// ErrAlgorithm: the header alg is not in the allowlist, or does not fit
	// the key found for the kid (key type, curve, size or the key's own alg).
	ErrAlgorithm = errors.New("authn: algorithm not allowed")
	// ErrForbiddenHeader: the header carries a parameter we never honour
	// (jku, x5u, jwk, x5c, crit, b64).
	ErrForbiddenHeader = errors.New("authn: forbidden header parameter")
	// ErrUnknownKey: no key with the token's kid, even after a refresh.
	ErrUnknownKey = errors.New("authn: unknown signing key")
	// ErrNoKeys: the key set has never been fetched successfully, so no
	// token can be judged. Not a token problem: callers should answer
	// "unavailable" (503), not 401.
	ErrNoKeys = errors.New("authn: no signing keys available")
	// ErrSignature: the signature does not verify with the key and alg.
	ErrSignature = errors.New("authn: invalid signature")
	// ErrExpired: now is at or past exp (+ leeway).
	ErrExpired = errors.New("authn: token expired")
	// ErrNotYetValid: nbf is after now (+ leeway).
	ErrNotYetValid = errors.New("authn: token not yet valid")
	// ErrIssuedInFuture: iat is after now (+ leeway).
	ErrIssuedInFuture = errors.New("authn: token issued in the future")
	// ErrIssuer: iss is missing or not the configured issuer.
	ErrIssuer = errors.New("authn: wrong issuer")
	// ErrAudience: aud is missing or names none of the configured audiences.
	ErrAudience = errors.New("authn: wrong audience")
	// ErrNoSubject: sub is missing or empty.
	ErrNoSubject = errors.New("authn: no subject")
)

// sentinels are the token errors Describe knows, most specific first.
var sentinels = [...]error{
	ErrNoToken, ErrMalformedHeader, ErrTooLarge, ErrMalformed, ErrAlgorithm,
	ErrForbiddenHeader, ErrUnknownKey, ErrSignature, ErrExpired,
	ErrNotYetValid, ErrIssuedInFuture, ErrIssuer, ErrAudience, ErrNoSubject,
}

// Describe names what is wrong with a token in a fixed phrase ("token
// expired"), taken from the sentinel err wraps: unlike err.Error(), it never
// holds anything from the token (a kid, an issuer), so it may be returned to
// the client. "invalid token" when err wraps none of them.
func Describe(err error) string {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return strings.TrimPrefix(s.Error(), "authn: ")
		}
	}
	return "invalid token"
}
