package authn

import (
	"fmt"
	"strings"
)

// BearerToken returns the token of an RFC 6750 "Bearer" Authorization header
// value. The caller passes "" when the header is absent, which yields
// ErrNoToken. The scheme is matched case-insensitively and must be followed
// by one or more spaces or tabs and a single b64token
// (ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/", then optional "=").
// Anything else is ErrMalformedHeader, in particular a comma: Envoy joins
// repeated headers with ",", and a request with two credentials is refused
// rather than guessed at. The token's length is not limited here;
// Verifier.Verify does that. Errors never contain the header value.
func BearerToken(authorization string) (string, error) {
	if authorization == "" {
		return "", ErrNoToken
	}
	const scheme = "Bearer"
	if len(authorization) < len(scheme) || !strings.EqualFold(authorization[:len(scheme)], scheme) {
		return "", fmt.Errorf("%w: scheme is not Bearer", ErrMalformedHeader)
	}
	rest := authorization[len(scheme):]
	token := strings.TrimLeft(rest, " \t")
	if token == "" {
		// "Bearer" alone, or followed by whitespace only.
		return "", fmt.Errorf("%w: empty bearer token", ErrMalformedHeader)
	}
	if len(token) == len(rest) {
		// "Bearerx": the scheme must be followed by whitespace.
		return "", fmt.Errorf("%w: scheme is not Bearer", ErrMalformedHeader)
	}
	if !isB64Token(token) {
		return "", fmt.Errorf("%w: bearer token has invalid characters", ErrMalformedHeader)
	}
	return token, nil
}

// isB64Token reports whether s matches RFC 6750's b64token:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	i := 0
	for ; i < len(s) && b64TokenChar[s[i]]; i++ {
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// b64TokenChar is the b64token alphabet as a table: this check runs over
// every token on every request.
var b64TokenChar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~+/" {
		t[c] = true
	}
	return t
}()
