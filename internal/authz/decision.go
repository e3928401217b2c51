package authz

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// Code is the class of an answer; transports map it to their status codes
// in one table each.
type Code uint8

// The answer classes.
const (
	// CodeOK lets the request through.
	CodeOK Code = iota
	// CodeUnauthenticated: no token or a bad one (HTTP 401).
	CodeUnauthenticated
	// CodeForbidden: a valid caller without the right (HTTP 403), or a
	// request the policy does not cover.
	CodeForbidden
	// CodeUnavailable: the answer cannot be known right now (HTTP 503);
	// the sidecar fails closed.
	CodeUnavailable
)

// HTTPStatus is the status a proxy should answer the client with.
func (c Code) HTTPStatus() int {
	switch c {
	case CodeOK:
		return 200
	case CodeUnauthenticated:
		return 401
	case CodeForbidden:
		return 403
	default:
		return 503
	}
}

// ErrorName is the "error" member of a deny body: unauthenticated,
// forbidden or unavailable (anything unforeseen, CodeOK on a deny included,
// is unavailable: fail closed).
func (c Code) ErrorName() string {
	switch c {
	case CodeUnauthenticated:
		return "unauthenticated"
	case CodeForbidden:
		return "forbidden"
	default:
		return "unavailable"
	}
}

// Reason is a short, stable label for why a decision was made; it is
// bounded (usable as a metric label) and machine-readable.
type Reason string

// The reasons.
const (
	ReasonPublic            Reason = "public"
	ReasonAuthenticated     Reason = "authenticated"
	ReasonGranted           Reason = "granted"
	ReasonNoToken           Reason = "no_token"
	ReasonInvalidToken      Reason = "invalid_token"
	ReasonKeysUnavailable   Reason = "keys_unavailable"
	ReasonNoRoute           Reason = "no_route"
	ReasonUnknownRoute      Reason = "unknown_route"
	ReasonAmbiguousPath     Reason = "ambiguous_path"
	ReasonNoOrganization    Reason = "no_organization"
	ReasonUnknownUser       Reason = "unknown_user"
	ReasonBanned            Reason = "banned"
	ReasonNotMember         Reason = "not_member"
	ReasonMissingPermission Reason = "missing_permission"
	ReasonSourceUnavailable Reason = "source_unavailable"
	ReasonDeadline          Reason = "deadline_exceeded"
	ReasonCanceled          Reason = "canceled"
)

// Decision is the engine's answer with everything the transport, the
// decision log and the metrics need.
type Decision struct {
	// Allow is true when the request may go on (including a shadowed deny).
	Allow bool
	// Code is what the decision would be under enforcement.
	Code   Code
	Reason Reason
	// Detail is a human-readable explanation, safe to return to the client:
	// it never contains a token.
	Detail string
	// Shadowed is true when the route is in shadow mode (enforce: false)
	// and Code is a deny that was let through.
	Shadowed bool

	Route  string
	UserID string
	OrgID  string
	// OrgSource is where the organization came from (zero when none was
	// needed); its String() is the policy's spelling, e.g. "path:org".
	OrgSource policy.OrgSource
	Roles     []string
	// Permissions held in the organization (shared, read-only), when the
	// route needed them.
	Permissions []string
	Tier        roles.Tier

	enforce bool
}

func (d Decision) allow(r Reason) Decision {
	d.Code = CodeOK
	return d.finish(r, "")
}

func (d Decision) deny(r Reason, detail string) Decision {
	d.Code = CodeForbidden
	return d.finish(r, detail)
}

// finish sets the outcome. A route in shadow mode lets a deny through but
// keeps its code and reason so it is logged and counted as what it would
// have been. Routes selected before the route is known (d.enforce false
// because there is no route yet) are always enforced.
func (d Decision) finish(r Reason, detail string) Decision {
	d.Reason = r
	d.Detail = detail
	d.Allow = d.Code == CodeOK
	if !d.Allow && d.Route != "" && !d.enforce {
		d.Allow = true
		d.Shadowed = true
	}
	return d
}

// DenyBody renders the small JSON body every transport sends with a deny,
// e.g. {"error":"forbidden","reason":"missing permission leave:approve"}.
// Detail never contains a token, so neither does the body.
func (d *Decision) DenyBody() string {
	b, err := json.Marshal(struct {
		Error  string `json:"error"`
		Reason string `json:"reason,omitempty"`
	}{d.Code.ErrorName(), d.Detail})
	if err != nil {
		return `{"error":"` + d.Code.ErrorName() + `"}`
	}
	return string(b)
}

func quote(s string) string {
	if len(s) > 128 {
		s = s[:128] + "..."
	}
	return strconv.Quote(s)
}

func joinComma(ss []string) string { return strings.Join(ss, ", ") }
