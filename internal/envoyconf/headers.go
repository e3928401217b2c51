package envoyconf

import (
	"slices"

	"github.com/authz-sidecar/authz-sidecar/internal/policy"
)

// RequestHeaders returns the request headers (lower case, sorted) that a
// decision under pol may read, and so that Envoy must forward to the
// sidecar when ext_authz's allowed_headers restricts them: Authorization
// (JWTs and bearer session tokens), the API key header, the cookie header
// with Origin and Referer (a cookie request that changes state must come
// from a trusted origin), and the header: sources of the organization and
// the team. The cookie header carries every cookie, so a custom cookie
// prefix needs no change here.
func RequestHeaders(pol *policy.Policy) []string {
	hs := []string{"authorization"}
	if pol.APIKeys.Enabled {
		hs = append(hs, pol.APIKeys.Header)
	}
	if pol.Session.Enabled && pol.Session.Cookie {
		hs = append(hs, "cookie", "origin", "referer")
	}
	for _, src := range append(slices.Clone(pol.OrgSources), pol.TeamSources...) {
		if src.Kind == policy.FromHeader {
			hs = append(hs, src.Name)
		}
	}
	slices.Sort(hs)
	return slices.Compact(hs)
}
