package authz

import (
	"encoding/json"
	"strings"

	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// Code is the class of an answer. HTTPStatus is the one mapping from
// classes to statuses; every transport, the metrics and the decision log use
// it.
type Code uint8

// The answer classes.
const (
	// CodeOK lets the request through.
	CodeOK Code = iota
	// CodeUnauthenticated: no credential or a bad one (HTTP 401).
	CodeUnauthenticated
	// CodeForbidden: a valid caller without the right (HTTP 403), or a
	// request the policy does not cover.
	CodeForbidden
	// CodeUnavailable: the answer cannot be known right now (HTTP 503);
	// the sidecar fails closed.
	CodeUnavailable
)

// HTTPStatus is the status a proxy should answer the client with. Anything
// unforeseen is 503: a deny must never become a 2xx.
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

// Status is the HTTP status of the answer to send: 200 for an allow (a
// shadowed deny included), else the deny's status, where a deny carrying
// CodeOK (a bug) fails closed with 503 rather than becoming a 2xx.
func (d *Decision) Status() int {
	if d.Allow {
		return 200
	}
	if d.Code == CodeOK {
		return 503
	}
	return d.Code.HTTPStatus()
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

// Challenge is the WWW-Authenticate value sent with a 401 (RFC 9110 requires
// one); Better Auth's bearer tokens and JWTs are both Bearer credentials.
const Challenge = `Bearer error="invalid_token"`

// Reason is a short, stable label for why a decision was made; it is
// bounded (usable as a metric label) and machine-readable.
type Reason string

// The reasons. Each has a fixed, input-free message in reasonMessages.
const (
	ReasonPublic        Reason = "public"
	ReasonAuthenticated Reason = "authenticated"
	ReasonGranted       Reason = "granted"

	// 401: the credential.
	ReasonNoCredential           Reason = "no_credential"
	ReasonInvalidToken           Reason = "invalid_token"
	ReasonInvalidSession         Reason = "invalid_session"
	ReasonInvalidAPIKey          Reason = "invalid_api_key"
	ReasonAPIKeyCounted          Reason = "api_key_counted"
	ReasonConflictingCredentials Reason = "conflicting_credentials"

	// 403: the request or the policy.
	ReasonNoRoute              Reason = "no_route"
	ReasonUnknownRoute         Reason = "unknown_route"
	ReasonAmbiguousPath        Reason = "ambiguous_path"
	ReasonPathMismatch         Reason = "path_mismatch"
	ReasonCredentialNotAllowed Reason = "credential_not_allowed"
	ReasonUntrustedOrigin      Reason = "untrusted_origin"
	ReasonInvalidIdentifier    Reason = "invalid_identifier"
	ReasonNoOrganization       Reason = "no_organization"
	ReasonNoTeam               Reason = "no_team"

	// 403: the caller.
	ReasonUnknownUser         Reason = "unknown_user"
	ReasonBanned              Reason = "banned"
	ReasonEmailNotVerified    Reason = "email_not_verified"
	ReasonAnonymousUser       Reason = "anonymous_user"
	ReasonTwoFactorRequired   Reason = "two_factor_required"
	ReasonImpersonationDenied Reason = "impersonation_denied"
	ReasonMissingPlatformRole Reason = "missing_platform_role"
	ReasonNotMember           Reason = "not_member"
	ReasonWrongOrganization   Reason = "wrong_organization"
	ReasonInvalidOrgRoles     Reason = "invalid_org_roles"
	ReasonMissingPermission   Reason = "missing_permission"
	ReasonNotTeamMember       Reason = "not_team_member"

	// 503: what cannot be known now.
	ReasonKeysUnavailable   Reason = "keys_unavailable"
	ReasonSourceUnavailable Reason = "source_unavailable"
	ReasonDeadline          Reason = "deadline_exceeded"
	ReasonCanceled          Reason = "canceled"
	// ReasonOverloaded: more decisions were in flight than the engine's
	// MaxInFlight (--max-in-flight); refused before any work.
	ReasonOverloaded Reason = "overloaded"
)

// reasonMessages are the deny messages. They never contain request input
// (a client must not be able to make the sidecar echo what it sent); the
// detail (which permission, which source) is in Decision.Detail, built from
// the policy only.
var reasonMessages = map[Reason]string{
	ReasonNoCredential:           "no credential",
	ReasonInvalidToken:           "invalid token",
	ReasonInvalidSession:         "invalid or expired session",
	ReasonInvalidAPIKey:          "invalid, disabled or expired API key",
	ReasonAPIKeyCounted:          "this API key has usage or rate limits that only Better Auth can count",
	ReasonConflictingCredentials: "credentials name different callers",
	ReasonNoRoute:                "no route matches the request",
	ReasonUnknownRoute:           "the proxy named an unknown route",
	ReasonAmbiguousPath:          "ambiguous path",
	ReasonPathMismatch:           "the path does not fit the named route's template",
	ReasonCredentialNotAllowed:   "this kind of credential is not accepted here",
	ReasonUntrustedOrigin:        "cookie request from an untrusted origin",
	ReasonInvalidIdentifier:      "invalid identifier",
	ReasonNoOrganization:         "the request names no organization",
	ReasonNoTeam:                 "the request names no team",
	ReasonUnknownUser:            "user no longer exists",
	ReasonBanned:                 "user is banned",
	ReasonEmailNotVerified:       "email address not verified",
	ReasonAnonymousUser:          "anonymous users are not allowed",
	ReasonTwoFactorRequired:      "two-factor authentication required",
	ReasonImpersonationDenied:    "impersonated sessions are not allowed",
	ReasonMissingPlatformRole:    "missing platform role or permission",
	ReasonNotMember:              "not a member of the organization",
	ReasonWrongOrganization:      "the API key belongs to another organization",
	ReasonInvalidOrgRoles:        "the organization's roles cannot be read",
	ReasonMissingPermission:      "missing permission",
	ReasonNotTeamMember:          "not a member of the team",
	ReasonKeysUnavailable:        "signing keys are not available yet",
	ReasonSourceUnavailable:      "permissions unavailable",
	ReasonDeadline:               "timed out",
	ReasonCanceled:               "request canceled",
	ReasonOverloaded:             "too many checks in flight",
}

// Message is the reason's fixed message ("" for allow reasons).
func (r Reason) Message() string { return reasonMessages[r] }

// The identity headers: set for the upstream on an allow, and removed from
// every request that reaches it so a client can never pose as someone else
// (both transports, and the shipped proxy snippets, use this one list).
const (
	HeaderUserID = "x-auth-user-id"
	HeaderOrgID  = "x-auth-org-id"
	// HeaderRoles are the caller's roles in the organization, comma-joined.
	HeaderRoles = "x-auth-roles"
	// HeaderOrgSource says which organization source of the policy
	// ("path:org", "header:x-organization-id", ...) named the organization.
	HeaderOrgSource = "x-auth-org-source"
	HeaderTeamID    = "x-auth-team-id"
	// HeaderCredential is the kind of credential: jwt, session or api_key.
	HeaderCredential = "x-auth-credential"
	// HeaderImpersonatedBy is the admin impersonating the user, if any.
	HeaderImpersonatedBy = "x-auth-impersonated-by"
	// HeaderAPIKeyID is the API key's id, for API-key requests.
	HeaderAPIKeyID = "x-auth-api-key-id"
	// HeaderShadowDeny tells the operator that a deny was let through by a
	// route in shadow mode; its value is the reason.
	HeaderShadowDeny = "x-authz-shadow-deny"
	// HeaderDecisionID names the decision (Decision.ID), so one request can
	// be followed across the proxy, the decision log and the application.
	HeaderDecisionID = "x-authz-decision-id"
	// HeaderReason carries the deny reason label to the client.
	HeaderReason = "x-authz-reason"
)

// IdentityHeaders lists every header the sidecar sets for the upstream, in
// a fixed order; a client's copy of any of them is removed. It is an array
// so that its length is a constant (transports size fixed buffers by it);
// slice it to use it, never modify it.
var IdentityHeaders = [...]string{
	HeaderUserID, HeaderOrgID, HeaderRoles, HeaderOrgSource, HeaderTeamID,
	HeaderCredential, HeaderImpersonatedBy, HeaderAPIKeyID, HeaderShadowDeny, HeaderDecisionID,
}

// IsIdentityHeader reports whether a lower-case header name is one of
// IdentityHeaders.
func IsIdentityHeader(lower string) bool {
	if !strings.HasPrefix(lower, "x-auth") { // x-auth-* and x-authz-*
		return false
	}
	for _, h := range IdentityHeaders {
		if h == lower {
			return true
		}
	}
	return false
}

// Decision is the engine's answer with everything the transport, the
// decision log and the metrics need.
type Decision struct {
	// ID names this decision (32 hex digits), so one request can be
	// followed across the proxy's access log, the decision log and the
	// application.
	ID string
	// PolicyVersion is the version of the policy that decided.
	PolicyVersion string
	// Allow is true when the request may go on (including a shadowed deny).
	Allow bool
	// Code is what the decision would be under enforcement.
	Code   Code
	Reason Reason
	// Detail explains the reason with what the policy says (a permission,
	// a source); it never contains a credential or request input, so it is
	// safe to return to the client.
	Detail string
	// Shadowed is true when the route is in shadow mode (enforce: false)
	// and Code is a deny that was let through.
	Shadowed bool

	Route  string
	UserID string
	OrgID  string
	// OrgSource is where the organization came from (zero when none was
	// needed); its String() is the policy's spelling, e.g. "path:org".
	OrgSource policy.Source
	TeamID    string
	Roles     []string
	// Grants are the grants of the caller's roles in the organization
	// (shared, read-only), when the route needed them.
	Grants roles.Grants
	// Credential is the kind of credential that authenticated the caller.
	Credential     policy.Credential
	ImpersonatedBy string
	APIKeyID       string
	Tier           roles.Tier

	enforce bool
}

// Identity returns the identity headers of an allow with their values, in
// IdentityHeaders order, skipping empty ones. Both transports write these.
func (d *Decision) Identity(yield func(name, value string) bool) {
	if !d.Allow {
		return
	}
	pairs := [...]struct{ k, v string }{
		{HeaderUserID, d.UserID},
		{HeaderOrgID, d.OrgID},
		{HeaderRoles, joinRoles(d.Roles)},
		{HeaderOrgSource, d.orgSource()},
		{HeaderTeamID, d.TeamID},
		{HeaderCredential, d.Credential.String()},
		{HeaderImpersonatedBy, d.ImpersonatedBy},
		{HeaderAPIKeyID, d.APIKeyID},
		{HeaderShadowDeny, d.shadowReason()},
		{HeaderDecisionID, d.ID},
	}
	for _, p := range pairs {
		if p.v != "" && !yield(p.k, p.v) {
			return
		}
	}
}

func (d *Decision) orgSource() string {
	if d.OrgID == "" {
		return ""
	}
	return d.OrgSource.String()
}

func (d *Decision) shadowReason() string {
	if !d.Shadowed {
		return ""
	}
	return string(d.Reason)
}

func joinRoles(roles []string) string {
	if len(roles) == 1 {
		return roles[0]
	}
	return strings.Join(roles, ",")
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
// have been. Decisions made before the route is known (d.enforce false
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

// DenyHeaders calls add with each header a deny carries to the client,
// the same for both transports: the body's type, the reason, the bearer
// challenge of a 401, and the decision id when withID
// (--decision-id-to-client). Names are lower-case; HTTP canonicalises them.
func (d *Decision) DenyHeaders(withID bool, add func(name, value string)) {
	if d.Allow {
		return
	}
	add("content-type", "application/json")
	add(HeaderReason, string(d.Reason))
	if d.Code == CodeUnauthenticated {
		add("www-authenticate", Challenge)
	}
	if withID && d.ID != "" {
		add(HeaderDecisionID, d.ID)
	}
}

// DenyBody renders the small JSON body every transport sends with a deny,
// e.g. {"error":"forbidden","reason":"missing_permission","message":"missing
// permission","detail":"leave:approve","route":"approve-leave"}. Nothing in
// it comes from the request.
func (d *Decision) DenyBody() string {
	// Marshalling a struct of strings cannot fail (invalid UTF-8 is
	// replaced, not refused), so there is no error path to take.
	b, _ := json.Marshal(struct {
		Error   string `json:"error"`
		Reason  string `json:"reason"`
		Message string `json:"message,omitempty"`
		Detail  string `json:"detail,omitempty"`
		Route   string `json:"route,omitempty"`
	}{d.Code.ErrorName(), string(d.Reason), d.Reason.Message(), d.Detail, d.Route})
	return string(b)
}

// HeaderMap is the one Headers implementation both transports and the
// tools use: lower-case names to values, repeated headers joined with ","
// (Envoy's form).
type HeaderMap map[string]string

// Get returns the header named name (lower case).
func (m HeaderMap) Get(name string) string { return m[name] }
