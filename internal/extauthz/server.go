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

// requestHeaders returns the request's headers whichever way Envoy sent
// them: the string map, or header_map when encode_raw_headers is on. Raw
// values of a repeated header are joined with "," as Envoy does for the
// map, so both forms are judged alike.
func requestHeaders(h *authv3.AttributeContext_HttpRequest) authz.Headers {
	if m := h.GetHeaders(); len(m) > 0 || h.GetHeaderMap() == nil {
		return authz.HeaderMap(m)
	}
	m := make(authz.HeaderMap, len(h.GetHeaderMap().GetHeaders()))
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
	opts   [maxIdentity]corev3.HeaderValueOption
	vals   [maxIdentity]corev3.HeaderValue
	ptrs   [maxIdentity]*corev3.HeaderValueOption
	shadow [1]*corev3.HeaderValueOption
}

// maxIdentity is the number of identity headers.
const maxIdentity = len(authz.IdentityHeaders)

func (a *okAnswer) set(k, v string) bool {
	i := len(a.ok.Headers)
	if i == maxIdentity {
		return false
	}
	a.vals[i] = corev3.HeaderValue{Key: k, Value: v}
	a.opts[i].Header = &a.vals[i]
	a.opts[i].AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	a.ptrs[i] = &a.opts[i]
	a.ok.Headers = a.ptrs[:i+1]
	if k == authz.HeaderShadowDeny {
		// The client learns of the shadowed deny too.
		a.shadow[0] = a.ptrs[i]
		a.ok.ResponseHeadersToAdd = a.shadow[:]
	}
	return true
}

// Response translates a decision into Envoy's answer. Statuses come from
// authz (Code.HTTPStatus), headers from authz.IdentityHeaders and
// Decision.Identity; nothing is decided here.
func Response(d *authz.Decision) *authv3.CheckResponse {
	if d.Allow {
		a := &okAnswer{}
		a.ok.HeadersToRemove = authz.IdentityHeaders[:]
		a.ok.Headers = a.ptrs[:0]
		d.Identity(a.set)
		a.status.Code = int32(rpccode.Code_OK)
		a.status.Message = string(d.Reason)
		a.wrap.OkResponse = &a.ok
		a.resp.Status = &a.status
		a.resp.HttpResponse = &a.wrap
		return &a.resp
	}
	headers := []*corev3.HeaderValueOption{
		overwrite("content-type", "application/json"),
		overwrite(authz.HeaderReason, string(d.Reason)),
	}
	if d.Code == authz.CodeUnauthenticated {
		headers = append(headers, overwrite("www-authenticate", authz.Challenge))
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(rpcCode(d.Code)), Message: string(d.Reason)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.Status())},
			Headers: headers,
			Body:    d.DenyBody(),
		}},
	}
}

// rpcCode is the gRPC status code of a deny, for Envoy's logs (Envoy acts on
// the HTTP status).
func rpcCode(c authz.Code) rpccode.Code {
	switch c {
	case authz.CodeUnauthenticated:
		return rpccode.Code_UNAUTHENTICATED
	case authz.CodeForbidden:
		return rpccode.Code_PERMISSION_DENIED
	default:
		return rpccode.Code_UNAVAILABLE
	}
}

func overwrite(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
