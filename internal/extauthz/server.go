// Package extauthz is Envoy's side of the sidecar: it serves
// envoy.service.auth.v3.Authorization/Check over gRPC, translating a
// CheckRequest into an authz.Request and the authz.Decision back into a
// CheckResponse. It is the only package importing Envoy's auth API.
//
// Check never returns a gRPC error for a decision: Envoy would turn any
// error into its status_on_error (403 by default), losing the reason and the
// 401/503 distinction. Every answer sets its HTTP status explicitly.
package extauthz

import (
	"context"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
)

// The identity headers set for the upstream on allow. A client-sent copy is
// removed on every answer so a client can never pose as someone else.
const (
	HeaderUserID = "x-auth-user-id"
	HeaderOrgID  = "x-auth-org-id"
	HeaderRoles  = "x-auth-roles"
	// HeaderOrgSource says which organization source of the policy
	// ("path:org", "header:x-organization-id", ...) named the organization.
	HeaderOrgSource = "x-auth-org-source"
	// HeaderShadowDeny tells the operator that a deny was let through by a
	// route in shadow mode; its value is the reason.
	HeaderShadowDeny = "x-authz-shadow-deny"
	// HeaderReason carries the deny reason label to the client.
	HeaderReason = "x-authz-reason"
)

// identityHeaders is shared, read-only, by every response.
var identityHeaders = []string{HeaderUserID, HeaderOrgID, HeaderRoles, HeaderOrgSource, HeaderShadowDeny}

// Decider makes decisions; *authz.Engine satisfies it.
type Decider interface {
	Decide(ctx context.Context, r *authz.Request) authz.Decision
}

// Observer sees every decision after it is made (metrics, decision log).
type Observer interface {
	Observe(ctx context.Context, r *authz.Request, d *authz.Decision, requestID string, elapsed time.Duration)
}

// Config tunes the server.
type Config struct {
	// Timeout bounds one Check; keep it below Envoy's ext_authz timeout so
	// the sidecar answers 503 itself instead of Envoy timing out.
	Timeout time.Duration
}

// Server implements authv3.AuthorizationServer.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	decider  Decider
	observer Observer
	cfg      Config
}

// New returns a Check server. observer may be nil.
func New(decider Decider, observer Observer, cfg Config) *Server {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 100 * time.Millisecond
	}
	return &Server{decider: decider, observer: observer, cfg: cfg}
}

// Check answers Envoy.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()

	h := req.GetAttributes().GetRequest().GetHttp()
	r := authz.Request{
		Method:    h.GetMethod(),
		Path:      h.GetPath(),
		Headers:   requestHeaders(h),
		RouteName: req.GetAttributes().GetContextExtensions()["route"],
	}
	d := s.decider.Decide(ctx, &r)
	if s.observer != nil {
		s.observer.Observe(ctx, &r, &d, requestID(h), time.Since(start))
	}
	return Response(&d), nil
}

func requestID(h *authv3.AttributeContext_HttpRequest) string {
	if id := h.GetId(); id != "" {
		return id
	}
	return h.GetHeaders()["x-request-id"]
}

// mapHeaders adapts Envoy's lower-cased header map.
type mapHeaders map[string]string

func (m mapHeaders) Get(name string) string { return m[name] }

// requestHeaders returns the request's headers whichever way Envoy sent
// them: the string map, or header_map when encode_raw_headers is on. Raw
// values of a repeated header are joined with "," as Envoy does for the
// map, so both forms are judged alike.
func requestHeaders(h *authv3.AttributeContext_HttpRequest) authz.Headers {
	if m := h.GetHeaders(); len(m) > 0 || h.GetHeaderMap() == nil {
		return mapHeaders(m)
	}
	m := make(mapHeaders, len(h.GetHeaderMap().GetHeaders()))
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		v := hv.GetValue()
		if v == "" {
			v = string(hv.GetRawValue())
		}
		if prev, ok := m[hv.GetKey()]; ok {
			v = prev + "," + v
		}
		m[hv.GetKey()] = v
	}
	return m
}

// okAnswer holds every message of an allow answer so that building one
// costs a single allocation on the hot path.
type okAnswer struct {
	resp   authv3.CheckResponse
	status rpcstatus.Status
	wrap   authv3.CheckResponse_OkResponse
	ok     authv3.OkHttpResponse
	opts   [5]corev3.HeaderValueOption
	vals   [5]corev3.HeaderValue
	ptrs   [5]*corev3.HeaderValueOption
	shadow [1]*corev3.HeaderValueOption
}

func (a *okAnswer) set(k, v string) {
	i := len(a.ok.Headers)
	a.vals[i] = corev3.HeaderValue{Key: k, Value: v}
	a.opts[i].Header = &a.vals[i]
	a.opts[i].AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	a.ptrs[i] = &a.opts[i]
	a.ok.Headers = a.ptrs[:i+1]
}

// Response maps a decision to Envoy's answer. It is the one table from
// decision codes to statuses.
func Response(d *authz.Decision) *authv3.CheckResponse {
	if d.Allow {
		a := &okAnswer{}
		a.ok.HeadersToRemove = identityHeaders
		a.ok.Headers = a.ptrs[:0]
		if d.UserID != "" {
			a.set(HeaderUserID, d.UserID)
		}
		if d.OrgID != "" {
			a.set(HeaderOrgID, d.OrgID)
			a.set(HeaderOrgSource, d.OrgSource.String())
		}
		if len(d.Roles) > 0 {
			a.set(HeaderRoles, joinRoles(d.Roles))
		}
		if d.Shadowed {
			a.set(HeaderShadowDeny, string(d.Reason))
			a.shadow[0] = a.ptrs[len(a.ok.Headers)-1]
			a.ok.ResponseHeadersToAdd = a.shadow[:]
		}
		a.status.Code = int32(rpccode.Code_OK)
		a.status.Message = string(d.Reason)
		a.wrap.OkResponse = &a.ok
		a.resp.Status = &a.status
		a.resp.HttpResponse = &a.wrap
		return &a.resp
	}
	status, rpc := denyCodes(d.Code)
	headers := []*corev3.HeaderValueOption{
		overwrite("content-type", "application/json"),
		overwrite(HeaderReason, string(d.Reason)),
	}
	if d.Code == authz.CodeUnauthenticated {
		headers = append(headers, overwrite("www-authenticate", `Bearer error="invalid_token"`))
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(rpc), Message: string(d.Reason)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: status},
			Headers: headers,
			Body:    d.DenyBody(),
		}},
	}
}

// denyCodes is the mapping table for denies.
func denyCodes(c authz.Code) (typev3.StatusCode, rpccode.Code) {
	switch c {
	case authz.CodeUnauthenticated:
		return typev3.StatusCode_Unauthorized, rpccode.Code_UNAUTHENTICATED
	case authz.CodeForbidden:
		return typev3.StatusCode_Forbidden, rpccode.Code_PERMISSION_DENIED
	default:
		// Unavailable, and anything unforeseen: fail closed with 503.
		return typev3.StatusCode_ServiceUnavailable, rpccode.Code_UNAVAILABLE
	}
}

func overwrite(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
