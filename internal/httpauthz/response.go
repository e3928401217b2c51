package httpauthz

import (
	"io"
	"net/http"
	"strings"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
)

// The answer headers. The names match internal/extauthz's (which Envoy
// lower-cases); a test keeps them in step.
const (
	// Identity headers, set on allow for the proxy to copy upstream.
	HeaderUserID = "X-Auth-User-Id"
	HeaderOrgID  = "X-Auth-Org-Id"
	HeaderRoles  = "X-Auth-Roles"
	// HeaderShadowDeny marks a deny let through by a route in shadow mode;
	// its value is the reason.
	HeaderShadowDeny = "X-Authz-Shadow-Deny"
	// HeaderReason carries the deny reason label.
	HeaderReason = "X-Authz-Reason"
	// headerEnvoyRemove asks Envoy's HTTP ext_authz client to remove these
	// headers from the upstream request.
	headerEnvoyRemove = "X-Envoy-Auth-Headers-To-Remove"
)

func isIdentityHeader(lower string) bool {
	switch lower {
	case "x-auth-user-id", "x-auth-org-id", "x-auth-roles", "x-authz-shadow-deny":
		return true
	}
	return false
}

// writeAnswer is the one table from decisions to HTTP answers. Only an
// allow is ever 200; identity headers are only ever written on one.
func writeAnswer(w http.ResponseWriter, d *authz.Decision, envoy bool) {
	h := w.Header()
	// An auth answer belongs to one request; no proxy may reuse it.
	h.Set("Cache-Control", "no-store")
	if d.Allow {
		var unset []string
		set := func(name, value string) {
			if value == "" {
				unset = append(unset, strings.ToLower(name))
				return
			}
			h.Set(name, value)
		}
		set(HeaderUserID, d.UserID)
		set(HeaderOrgID, d.OrgID)
		set(HeaderRoles, strings.Join(d.Roles, ","))
		shadow := ""
		if d.Shadowed {
			shadow = string(d.Reason)
		}
		set(HeaderShadowDeny, shadow)
		if envoy && len(unset) > 0 {
			// Envoy's allowed_upstream_headers only overwrites what we
			// send; a client's copy of a header we do not send would reach
			// the upstream unless removed.
			h.Set(headerEnvoyRemove, strings.Join(unset, ","))
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	status := denyStatus(d.Code)
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(HeaderReason, string(d.Reason))
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	w.WriteHeader(status)
	// The body is best effort: the status already carries the decision.
	_, _ = io.WriteString(w, d.DenyBody())
}

// denyStatus maps a deny's code to its status, as internal/extauthz does.
// Anything unforeseen, CodeOK on a deny included, is 503: a deny must never
// become a 2xx.
func denyStatus(c authz.Code) int {
	switch c {
	case authz.CodeUnauthenticated:
		return http.StatusUnauthorized
	case authz.CodeForbidden:
		return http.StatusForbidden
	default:
		return http.StatusServiceUnavailable
	}
}
