// Package extauthz is Envoy's side of the sidecar: it serves
// envoy.service.auth.v3.Authorization/Check over gRPC, translating a
// CheckRequest into an authz.Request and the authz.Decision back into a
// CheckResponse. It is the only package importing Envoy's auth API.
//
// Check never returns a gRPC error for a decision: Envoy would turn any
// error into its status_on_error (403 by default), losing the reason and the
// 401/503 distinction. Every answer sets its HTTP status explicitly.
//
// Every answer, allow and deny, also carries the decision as dynamic
// metadata (MetadataKeys), which Envoy files under MetadataNamespace for its
// access log, rate limits and later filters.
package extauthz

import (
	"context"
	"math"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
)

// MetadataNamespace is the dynamic metadata namespace Envoy's HTTP ext_authz
// filter files a CheckResponse's dynamic_metadata under, e.g.
// %DYNAMIC_METADATA(envoy.filters.http.ext_authz:user)% in an access log.
const MetadataNamespace = "envoy.filters.http.ext_authz"

// The dynamic metadata keys: the decision log's field names. A key whose
// value would be empty is left out (the access log then prints "-").
const (
	MetaDecisionID     = "decision_id"     // authz.Decision.ID
	MetaDecision       = "decision"        // allow, deny or shadow_deny
	MetaStatus         = "status"          // a number: 200, 401, 403, 503 (shadow_deny: the status enforcement would give)
	MetaReason         = "reason"          // the reason label
	MetaRoute          = "route"           // the policy route name
	MetaUser           = "user"            // the caller's user id
	MetaOrg            = "org"             // the organization id
	MetaOrgSource      = "org_source"      // where the organization came from, e.g. path:org
	MetaTeam           = "team"            // the team id
	MetaRoles          = "roles"           // the caller's roles in the organization, comma-joined
	MetaCredential     = "credential"      // jwt, session or api_key
	MetaImpersonatedBy = "impersonated_by" // the impersonating admin's user id
	MetaAPIKeyID       = "api_key_id"      // the API key's id
	MetaPolicyVersion  = "policy_version"  // the version of the policy that decided
)

// MetadataKeys lists every key an answer's dynamic metadata may hold. It is
// an array so its length is a constant; slice it to use it, never modify it.
var MetadataKeys = [...]string{
	MetaDecisionID, MetaDecision, MetaStatus, MetaReason, MetaRoute, MetaUser, MetaOrg, MetaOrgSource,
	MetaTeam, MetaRoles, MetaCredential, MetaImpersonatedBy, MetaAPIKeyID, MetaPolicyVersion,
}

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
	// DecisionIDResponseHeader also sends authz.HeaderDecisionID to the client,
	// on allows (response_headers_to_add) and denies alike.
	DecisionIDResponseHeader bool
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
	h := req.GetAttributes().GetRequest().GetHttp()
	r := authz.Request{
		Method:    h.GetMethod(),
		Path:      h.GetPath(),
		Headers:   requestHeaders(h),
		RouteName: req.GetAttributes().GetContextExtensions()["route"],
	}
	var d authz.Decision
	return s.decide(ctx, &r, &d, requestID(h), start), nil
}

// checkWire is Check for a request the lean decoder read. The request and
// its decision live in w, which is on the heap already: a decider and an
// observer behind interfaces would move them there one by one.
func (s *Server) checkWire(ctx context.Context, w *wireRequest) *authv3.CheckResponse {
	start := time.Now()
	w.req = w.request()
	return s.decide(ctx, &w.req, &w.decision, w.requestID, start)
}

// decide is Check once the request is read, whichever decoder read it; d
// receives the decision.
func (s *Server) decide(ctx context.Context, r *authz.Request, d *authz.Decision, requestID string, start time.Time) *authv3.CheckResponse {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	*d = s.decider.Decide(ctx, r)
	opts := Options{DecisionIDToClient: s.cfg.DecisionIDResponseHeader}
	if s.observer != nil {
		s.observer.Observe(ctx, r, d, requestID, time.Since(start))
	}
	return Response(d, opts)
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

// Options are what an answer carries besides the decision.
type Options struct {
	// DecisionIDToClient also sends authz.HeaderDecisionID to the client.
	DecisionIDToClient bool
}

// upstreamHeaders are the headers an allow sets for the upstream. Every one
// it does not set is removed instead, so a client's copy never reaches the
// upstream.
var upstreamHeaders = authz.IdentityHeaders

// maxUpstream is the number of headers an allow may set.
const maxUpstream = len(upstreamHeaders)

// okAnswer holds every message of an allow answer, metadata included, so
// that building one costs a single allocation on the hot path.
type okAnswer struct {
	resp   authv3.CheckResponse
	status rpcstatus.Status
	wrap   authv3.CheckResponse_OkResponse
	ok     authv3.OkHttpResponse
	opts   [maxUpstream]corev3.HeaderValueOption
	vals   [maxUpstream]corev3.HeaderValue
	ptrs   [maxUpstream]*corev3.HeaderValueOption
	set    [maxUpstream]bool // by upstreamHeaders index
	remove [maxUpstream]string
	client [2]*corev3.HeaderValueOption // shadow deny, decision id
	// joined holds the header values the metadata reuses (building them
	// again would allocate again).
	joined     joined
	meta       metadata
	idToClient bool
}

// add sets one upstream header; it is Decision.Identity's yield.
func (a *okAnswer) add(k, v string) bool {
	i := len(a.ok.Headers)
	if i == maxUpstream {
		return false
	}
	a.vals[i] = corev3.HeaderValue{Key: k, Value: v}
	a.opts[i].Header = &a.vals[i]
	a.opts[i].AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	a.ptrs[i] = &a.opts[i]
	a.ok.Headers = a.ptrs[:i+1]
	for j, name := range upstreamHeaders {
		if name == k {
			a.set[j] = true
		}
	}
	switch k {
	case authz.HeaderShadowDeny:
		// The client learns of the shadowed deny too.
		a.ok.ResponseHeadersToAdd = append(a.ok.ResponseHeadersToAdd, a.ptrs[i])
	case authz.HeaderDecisionID:
		if a.idToClient {
			a.ok.ResponseHeadersToAdd = append(a.ok.ResponseHeadersToAdd, a.ptrs[i])
		}
	case authz.HeaderRoles:
		a.joined.roles = v
	case authz.HeaderOrgSource:
		a.joined.orgSource = v
	}
	return true
}

// Response translates a decision into Envoy's answer. Statuses come from
// authz (Decision.Status), headers from authz.IdentityHeaders and
// Decision.Identity; nothing is decided here.
//
// Envoy applies an allow's headers before its headers_to_remove, so a
// header both set and removed would not reach the upstream at all: an
// allow sets the headers it has values for (overwriting a client's copy)
// and removes exactly the others.
func Response(d *authz.Decision, o Options) *authv3.CheckResponse {
	if d.Allow {
		a := &okAnswer{idToClient: o.DecisionIDToClient}
		a.ok.Headers = a.ptrs[:0]
		a.ok.ResponseHeadersToAdd = a.client[:0]
		d.Identity(a.add)
		remove := a.remove[:0]
		for i, name := range upstreamHeaders {
			if !a.set[i] {
				remove = append(remove, name)
			}
		}
		a.ok.HeadersToRemove = remove
		if len(a.ok.ResponseHeadersToAdd) == 0 {
			a.ok.ResponseHeadersToAdd = nil
		}
		a.status.Code = int32(rpccode.Code_OK)
		a.status.Message = string(d.Reason)
		a.wrap.OkResponse = &a.ok
		a.resp.Status = &a.status
		a.resp.HttpResponse = &a.wrap
		a.resp.DynamicMetadata = a.meta.fill(d, a.joined)
		return &a.resp
	}
	headers := []*corev3.HeaderValueOption{
		overwrite("content-type", "application/json"),
		overwrite(authz.HeaderReason, string(d.Reason)),
	}
	if d.Code == authz.CodeUnauthenticated {
		headers = append(headers, overwrite("www-authenticate", authz.Challenge))
	}
	if o.DecisionIDToClient && d.ID != "" {
		headers = append(headers, overwrite(authz.HeaderDecisionID, d.ID))
	}
	var meta metadata
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(rpcCode(d.Code)), Message: string(d.Reason)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.Status())},
			Headers: headers,
			Body:    d.DenyBody(),
		}},
		DynamicMetadata: meta.fill(d, join(d)),
	}
}

// metadata is an answer's dynamic metadata: a google.protobuf.Struct whose
// fields are written straight in their wire form (the Struct's unknown
// fields, which protobuf-go marshals as they are and Envoy reads as the
// Struct's map). A Struct built as a Go map cost four allocations to build
// and two per key to marshal, which tripled the cost of an allow; this
// costs none while the fields fit in buf. In Go, read the metadata back
// through a marshal round trip, as Envoy does; GetFields is empty.
type metadata struct {
	st  structpb.Struct
	buf [512]byte
}

// joined are the decision's values that take building: its roles
// comma-joined and its organization source ("" without an organization).
type joined struct{ roles, orgSource string }

func join(d *authz.Decision) joined {
	j := joined{roles: strings.Join(d.Roles, ",")}
	if d.OrgID != "" {
		j.orgSource = d.OrgSource.String()
	}
	return j
}

// The field numbers of google/protobuf/struct.proto the encoding writes.
const (
	structFields     protowire.Number = 1 // Struct.fields, map<string, Value>
	mapEntryKey      protowire.Number = 1
	mapEntryValue    protowire.Number = 2
	valueNumberValue protowire.Number = 2 // Value.number_value, double
	valueStringValue protowire.Number = 3 // Value.string_value
	fixed64Size                       = 8
	structTagSize                     = 1 // every tag above fits one byte
)

// fill builds the metadata of d.
func (m *metadata) fill(d *authz.Decision, j joined) *structpb.Struct {
	version := d.PolicyVersion
	result, status := "deny", d.Status()
	switch {
	case d.Shadowed:
		result, status = "shadow_deny", d.Code.HTTPStatus()
	case d.Allow:
		result = "allow"
	}
	// In MetadataKeys order; status is the one number.
	strs := [len(MetadataKeys)]string{
		d.ID, result, "", string(d.Reason), d.Route, d.UserID, d.OrgID, j.orgSource,
		d.TeamID, j.roles, d.Credential.String(), d.ImpersonatedBy, d.APIKeyID, version,
	}
	b := m.buf[:0]
	for i, key := range MetadataKeys {
		if key == MetaStatus {
			b = appendNumberField(b, key, float64(status))
		} else if strs[i] != "" {
			b = appendStringField(b, key, strs[i])
		}
	}
	m.st.ProtoReflect().SetUnknown(b)
	return &m.st
}

// appendStringField appends one Struct field holding a string value.
func appendStringField(b []byte, key, s string) []byte {
	value := structTagSize + protowire.SizeBytes(len(s))
	entry := structTagSize + protowire.SizeBytes(len(key)) + structTagSize + protowire.SizeBytes(value)
	b = protowire.AppendTag(b, structFields, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(entry))
	b = protowire.AppendTag(b, mapEntryKey, protowire.BytesType)
	b = protowire.AppendString(b, key)
	b = protowire.AppendTag(b, mapEntryValue, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(value))
	b = protowire.AppendTag(b, valueStringValue, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// appendNumberField appends one Struct field holding a number value.
func appendNumberField(b []byte, key string, f float64) []byte {
	value := structTagSize + fixed64Size
	entry := structTagSize + protowire.SizeBytes(len(key)) + structTagSize + protowire.SizeBytes(value)
	b = protowire.AppendTag(b, structFields, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(entry))
	b = protowire.AppendTag(b, mapEntryKey, protowire.BytesType)
	b = protowire.AppendString(b, key)
	b = protowire.AppendTag(b, mapEntryValue, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(value))
	b = protowire.AppendTag(b, valueNumberValue, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, math.Float64bits(f))
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
