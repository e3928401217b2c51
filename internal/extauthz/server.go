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
	s.decide(ctx, &r, &d, requestID(h), start)
	return Response(&d, s.options()), nil
}

// checkWire is Check for a request the lean decoder read. The request and
// its answer live in w, which is on the heap already: a decider and an
// observer behind interfaces would move them there one by one. The answer
// is left as a decision for the lean codec to write straight to wire bytes
// (appendResponse); building the messages first would cost as much again.
func (s *Server) checkWire(ctx context.Context, w *wireRequest) *wireAnswer {
	start := time.Now()
	w.req = w.request()
	s.decide(ctx, &w.req, &w.answer.decision, w.requestID, start)
	w.answer.opts = s.options()
	return &w.answer
}

// decide is Check once the request is read, whichever decoder read it; d
// receives the decision.
func (s *Server) decide(ctx context.Context, r *authz.Request, d *authz.Decision, requestID string, start time.Time) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	*d = s.decider.Decide(ctx, r)
	if s.observer != nil {
		s.observer.Observe(ctx, r, d, requestID, time.Since(start))
	}
}

// options are the Options of every answer s gives.
func (s *Server) options() Options {
	return Options{DecisionIDToClient: s.cfg.DecisionIDResponseHeader}
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

// maxClient is the number of headers an answer may send the client: a
// deny's content type, reason, challenge and decision id (an allow sends at
// most the shadowed deny and the decision id).
const maxClient = 4

// headerAction is how Envoy applies every header of an answer: it replaces
// the request's or the response's copy, so a client's own value never
// travels beside the sidecar's.
const headerAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD

// header is one header of an answer.
type header struct{ key, value string }

// answer is what an answer to Envoy contains, decided in one place
// (decide) and written by two: Response builds the CheckResponse messages
// (the standard codec, the tests), appendResponse writes the same
// CheckResponse's wire bytes (the lean codec). Neither writer decides
// anything, so they cannot drift apart in what they say;
// TestAppendResponseMatchesResponse holds the two writers to each other.
//
// Its lists are arrays so that a writer can keep it on the stack; its
// strings are the decision's, or constants.
type answer struct {
	allow bool
	// rpcCode and rpcMessage are the CheckResponse's status: OK for an
	// allow (a shadowed deny included), else the deny's code; the message
	// is the reason.
	rpcCode    rpccode.Code
	rpcMessage string
	// upstream are the headers an allow sets on the request, in
	// IdentityHeaders order; remove are the other IdentityHeaders, which
	// it strips from the request.
	upstream  [maxUpstream]header
	nUpstream int
	remove    [maxUpstream]string
	nRemove   int
	// client are the headers sent to the client: an allow's
	// response_headers_to_add, a deny's headers.
	client  [maxClient]header
	nClient int
	// httpStatus and body are a deny's.
	httpStatus typev3.StatusCode
	body       string
	// meta are the dynamic metadata's strings by MetadataKeys index (""
	// leaves the key out); metaStatus is MetaStatus's, the one number.
	meta       [len(MetadataKeys)]string
	metaStatus int
}

func (a *answer) upstreamHeaders() []header { return a.upstream[:a.nUpstream] }
func (a *answer) removed() []string         { return a.remove[:a.nRemove] }
func (a *answer) clientHeaders() []header   { return a.client[:a.nClient] }

func (a *answer) addClient(k, v string) {
	a.client[a.nClient] = header{k, v}
	a.nClient++
}

// decide fills a, which must be zero, with the answer to d under o.
// Statuses come from authz (Decision.Status), headers from
// authz.IdentityHeaders and Decision.Identity; nothing is judged here.
//
// Envoy applies an allow's headers before its headers_to_remove, so a
// header both set and removed would not reach the upstream at all: an
// allow sets the headers it has values for (overwriting a client's copy)
// and removes exactly the others.
func (a *answer) decide(d *authz.Decision, o Options) {
	a.rpcMessage = string(d.Reason)
	var j joined
	if d.Allow {
		a.allow = true
		a.rpcCode = rpccode.Code_OK
		d.Identity(func(k, v string) bool {
			a.upstream[a.nUpstream] = header{k, v}
			a.nUpstream++
			switch k {
			case authz.HeaderShadowDeny:
				// The client learns of the shadowed deny too.
				a.addClient(k, v)
			case authz.HeaderDecisionID:
				if o.DecisionIDToClient {
					a.addClient(k, v)
				}
			case authz.HeaderRoles:
				// The metadata reuses the values Identity built: building
				// them again would allocate again.
				j.roles = v
			case authz.HeaderOrgSource:
				j.orgSource = v
			}
			return a.nUpstream < maxUpstream
		})
		for _, name := range upstreamHeaders {
			if !a.sets(name) {
				a.remove[a.nRemove] = name
				a.nRemove++
			}
		}
	} else {
		a.rpcCode = rpcCode(d.Code)
		a.httpStatus = typev3.StatusCode(d.Status())
		d.DenyHeaders(o.DecisionIDToClient, a.addClient)
		a.body = d.DenyBody()
		j = join(d)
	}
	a.decideMetadata(d, j)
}

// sets reports whether a sets the upstream header name.
func (a *answer) sets(name string) bool {
	for _, h := range a.upstreamHeaders() {
		if h.key == name {
			return true
		}
	}
	return false
}

// decideMetadata fills a's dynamic metadata from d.
func (a *answer) decideMetadata(d *authz.Decision, j joined) {
	result, status := "deny", d.Status()
	switch {
	case d.Shadowed:
		result, status = "shadow_deny", d.Code.HTTPStatus()
	case d.Allow:
		result = "allow"
	}
	// In MetadataKeys order; status is the one number (metaStatus).
	a.meta = [len(MetadataKeys)]string{
		d.ID, result, "", string(d.Reason), d.Route, d.UserID, d.OrgID, j.orgSource,
		d.TeamID, j.roles, d.Credential.String(), d.ImpersonatedBy, d.APIKeyID, d.PolicyVersion,
	}
	a.metaStatus = status
}

// Response translates a decision into Envoy's answer as messages; the lean
// codec writes the same answer's bytes instead (appendResponse).
func Response(d *authz.Decision, o Options) *authv3.CheckResponse {
	var a answer
	a.decide(d, o)
	if a.allow {
		return okResponse(&a)
	}
	return deniedResponse(&a)
}

// okAnswer holds every message of an allow, metadata included, so that
// building one costs a single allocation.
type okAnswer struct {
	resp   authv3.CheckResponse
	status rpcstatus.Status
	wrap   authv3.CheckResponse_OkResponse
	ok     authv3.OkHttpResponse
	opts   [maxUpstream + maxClient]corev3.HeaderValueOption
	vals   [maxUpstream + maxClient]corev3.HeaderValue
	ptrs   [maxUpstream + maxClient]*corev3.HeaderValueOption
	remove [maxUpstream]string
	meta   metadata
}

// option returns the i-th header option of m, set to h.
func (m *okAnswer) option(i int, h header) *corev3.HeaderValueOption {
	m.vals[i] = corev3.HeaderValue{Key: h.key, Value: h.value}
	m.opts[i].Header = &m.vals[i]
	m.opts[i].AppendAction = headerAction
	m.ptrs[i] = &m.opts[i]
	return m.ptrs[i]
}

// okResponse builds the messages of the allow a.
func okResponse(a *answer) *authv3.CheckResponse {
	m := new(okAnswer)
	n := 0
	for _, h := range a.upstreamHeaders() {
		m.option(n, h)
		n++
	}
	m.ok.Headers = m.ptrs[:n:n]
	if len(a.clientHeaders()) > 0 {
		first := n
		for _, h := range a.clientHeaders() {
			m.option(n, h)
			n++
		}
		m.ok.ResponseHeadersToAdd = m.ptrs[first:n:n]
	}
	m.remove = a.remove
	m.ok.HeadersToRemove = m.remove[:a.nRemove]
	m.status.Code = int32(a.rpcCode)
	m.status.Message = a.rpcMessage
	m.wrap.OkResponse = &m.ok
	m.resp.Status = &m.status
	m.resp.HttpResponse = &m.wrap
	m.resp.DynamicMetadata = m.meta.set(a)
	return &m.resp
}

// deniedResponse builds the messages of the deny a.
func deniedResponse(a *answer) *authv3.CheckResponse {
	headers := make([]*corev3.HeaderValueOption, 0, a.nClient)
	for _, h := range a.clientHeaders() {
		headers = append(headers, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: h.key, Value: h.value},
			AppendAction: headerAction,
		})
	}
	meta := new(metadata)
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(a.rpcCode), Message: a.rpcMessage},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: a.httpStatus},
			Headers: headers,
			Body:    a.body,
		}},
		DynamicMetadata: meta.set(a),
	}
}

// metadata is an answer's dynamic metadata as a message: a
// google.protobuf.Struct whose fields are written straight in their wire
// form (the Struct's unknown fields, which protobuf-go marshals as they
// are and Envoy reads as the Struct's map). A Struct built as a Go map
// cost four allocations to build and two per key to marshal, which tripled
// the cost of an allow; this costs none while the fields fit in buf. In
// Go, read the metadata back through a marshal round trip, as Envoy does;
// GetFields is empty.
type metadata struct {
	st  structpb.Struct
	buf [512]byte
}

// set makes m hold a's metadata.
func (m *metadata) set(a *answer) *structpb.Struct {
	m.st.ProtoReflect().SetUnknown(a.appendMetadata(m.buf[:0]))
	return &m.st
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

// The field numbers of google/protobuf/struct.proto the metadata encoding
// writes (TestWireFieldNumbers checks them).
const (
	structFields     protowire.Number = 1 // Struct.fields, map<string, Value>
	mapEntryKey      protowire.Number = 1
	mapEntryValue    protowire.Number = 2
	valueNumberValue protowire.Number = 2 // Value.number_value, double
	valueStringValue protowire.Number = 3 // Value.string_value
	fixed64Size                       = 8
	// tagSize is the size of every tag the encodings write: their field
	// numbers are all below 16 (TestWireFieldNumbers checks it).
	tagSize = 1
)

// appendMetadata appends the fields of a's metadata Struct, in
// MetadataKeys order.
func (a *answer) appendMetadata(b []byte) []byte {
	for i, key := range MetadataKeys {
		if key == MetaStatus {
			b = appendStructNumber(b, key, float64(a.metaStatus))
		} else if a.meta[i] != "" {
			b = appendStructString(b, key, a.meta[i])
		}
	}
	return b
}

// metadataSize is the size of what appendMetadata appends.
func (a *answer) metadataSize() int {
	n := 0
	for i, key := range MetadataKeys {
		if key == MetaStatus {
			n += sizeLen(structNumberEntrySize(key))
		} else if a.meta[i] != "" {
			n += sizeLen(structStringEntrySize(key, a.meta[i]))
		}
	}
	return n
}

// structStringEntrySize is the size of the map entry of a Struct field
// holding a string value.
func structStringEntrySize(key, s string) int {
	value := tagSize + protowire.SizeBytes(len(s))
	return tagSize + protowire.SizeBytes(len(key)) + tagSize + protowire.SizeBytes(value)
}

// structNumberEntrySize is the size of the map entry of a Struct field
// holding a number value.
func structNumberEntrySize(key string) int {
	value := tagSize + fixed64Size
	return tagSize + protowire.SizeBytes(len(key)) + tagSize + protowire.SizeBytes(value)
}

// appendStructString appends one Struct field holding a string value.
func appendStructString(b []byte, key, s string) []byte {
	b = appendLen(b, structFields, structStringEntrySize(key, s))
	b = appendUvarint(b, protowire.EncodeTag(mapEntryKey, protowire.BytesType))
	b = appendBytes(b, key)
	b = appendLen(b, mapEntryValue, tagSize+protowire.SizeBytes(len(s)))
	b = appendUvarint(b, protowire.EncodeTag(valueStringValue, protowire.BytesType))
	return appendBytes(b, s)
}

// appendStructNumber appends one Struct field holding a number value.
func appendStructNumber(b []byte, key string, f float64) []byte {
	b = appendLen(b, structFields, structNumberEntrySize(key))
	b = appendUvarint(b, protowire.EncodeTag(mapEntryKey, protowire.BytesType))
	b = appendBytes(b, key)
	b = appendLen(b, mapEntryValue, tagSize+fixed64Size)
	b = appendUvarint(b, protowire.EncodeTag(valueNumberValue, protowire.Fixed64Type))
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
