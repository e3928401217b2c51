package httpauthz

import (
	"io"
	"net/http"
	"strings"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
)

// headerEnvoyRemove asks Envoy's HTTP ext_authz client to remove these
// headers from the upstream request.
const headerEnvoyRemove = "X-Envoy-Auth-Headers-To-Remove"

// answerOptions say how to write an answer besides the decision.
type answerOptions struct {
	// envoy: the asker is Envoy's HTTP ext_authz client.
	envoy bool
	// idOnDeny: send the decision id with denies too.
	idOnDeny bool
}

// writeAnswer translates a decision into the HTTP answer: the status from
// authz's one mapping (Code.HTTPStatus), the identity headers from
// Decision.Identity. Only an allow is ever 200; identity headers are only
// ever written on one.
func writeAnswer(w http.ResponseWriter, d *authz.Decision, o answerOptions) {
	h := w.Header()
	// An auth answer belongs to one request; no proxy may reuse it.
	h.Set("Cache-Control", "no-store")
	if d.Allow {
		var set [len(authz.IdentityHeaders)]bool
		for name, value := range d.Identity {
			h.Set(name, value)
			for i, id := range authz.IdentityHeaders {
				if id == name {
					set[i] = true
				}
			}
		}
		if o.envoy {
			// Envoy's allowed_upstream_headers only overwrites what we
			// send; a client's copy of a header we do not send would reach
			// the upstream unless removed.
			var unset []string
			for i, id := range authz.IdentityHeaders {
				if !set[i] {
					unset = append(unset, id)
				}
			}
			if len(unset) > 0 {
				h.Set(headerEnvoyRemove, strings.Join(unset, ","))
			}
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	d.DenyHeaders(o.idOnDeny, h.Set)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(d.Status())
	// The body is best effort: the status already carries the decision.
	_, _ = io.WriteString(w, d.DenyBody())
}
