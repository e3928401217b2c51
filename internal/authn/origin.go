package authn

import (
	"net"
	"net/url"
	"strings"
)

// OriginTrusted judges a cookie-authenticated request with an unsafe method
// as Better Auth 1.7.25's origin check does (api/middlewares/origin-check.mjs
// validateOrigin, auth/trusted-origins.mjs matchesOriginPattern): the
// Origin header, or the Referer when Origin is absent or empty, must match
// baseURL or one of the trusted patterns. A missing or "null" origin is
// refused. The Sec-Fetch-Site: same-origin exception for "null" is not
// honoured: the sidecar cannot know the request's own origin the way
// Better Auth infers it, and refusing is the safe side.
//
// Patterns: without "*" or "?", the request's origin must equal the
// pattern exactly (case-sensitive, no trailing "/"); with a wildcard and no
// "://", the pattern matches the request's host (with any non-default
// port), any scheme; with a wildcard and "://", the whole origin. "*"
// matches any run of characters (dots included), "?" one character.
func OriginTrusted(origin, referer, baseURL string, patterns []string) bool {
	candidate := origin
	if candidate == "" {
		candidate = referer
	}
	if candidate == "" || candidate == "null" {
		return false
	}
	if baseURL != "" && matchesOrigin(candidate, baseURL) {
		return true
	}
	for _, p := range patterns {
		if matchesOrigin(candidate, p) {
			return true
		}
	}
	return false
}

// matchesOrigin is Better Auth's matchesOriginPattern for http(s) URLs.
func matchesOrigin(raw, pattern string) bool {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return false
	}
	origin := u.Scheme + "://" + webHost(u)
	if !strings.ContainsAny(pattern, "*?") {
		return pattern == origin
	}
	if !strings.Contains(pattern, "://") {
		return glob(pattern, webHost(u))
	}
	return glob(pattern, origin)
}

// webHost is the WHATWG URL host: lower-case hostname, with the port
// unless it is the scheme's default.
func webHost(u *url.URL) string {
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port == "" {
		return host
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), port)
}

// glob matches s against a pattern where "*" is any run of characters and
// "?" exactly one, anchored at both ends, case-sensitive (Better Auth's
// utils/wildcard.mjs without a separator).
func glob(pattern, s string) bool {
	// Iterative matching with backtracking on the last "*": linear in
	// practice, no regexp compilation per request.
	p, i := 0, 0
	star, mark := -1, 0
	// An if chain rather than a tagless switch: Go's coverage profile has
	// no block for case conditions, so mutation testing could not see them
	// run.
	for i < len(s) {
		if p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]) {
			p++
			i++
		} else if p < len(pattern) && pattern[p] == '*' {
			star, mark = p, i
			p++
		} else if star >= 0 {
			p = star + 1
			mark++
			i = mark
		} else {
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
