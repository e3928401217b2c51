package extauthz

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// The lean decoder is held to proto.Unmarshal (what gRPC's standard codec
// runs): for every input, both accept or both reject, and when they
// accept, the request a decision reads is the same: method, path, route,
// request id and every header.

// wireSample is a CheckRequest as Envoy sends it, with the parts a
// decision does not read filled in too (peers, TLS, metadata).
func wireSample() *authv3.CheckRequest {
	meta, err := structpb.NewStruct(map[string]any{"tenant": "acme", "n": 3.0, "nested": map[string]any{"ok": true, "l": []any{"a", 1.0}}})
	if err != nil {
		panic(err)
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: "203.0.113.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51234}}}},
			Principal: "spiffe://cluster.local/ns/default/sa/web", Labels: map[string]string{"app": "web"},
		},
		Destination: &authv3.AttributeContext_Peer{Principal: "spiffe://cluster.local/ns/default/sa/api"},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "7f3c9d1e-1b2a-4c5d-9e8f-0a1b2c3d4e5f", Method: "POST", Path: "/api/orgs/org_acme/leave/l1/approve?notify=1",
			Host: "app.example.test", Scheme: "https", Protocol: "HTTP/2", Size: 42, Body: "{}", RawBody: []byte{0xff, 0xfe},
			Headers: map[string]string{
				":authority": "app.example.test", ":method": "POST", ":path": "/api/orgs/org_acme/leave/l1/approve?notify=1",
				"authorization": "Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2ln", "user-agent": "Mozilla/5.0",
				"accept": "application/json", "content-type": "application/json", "x-request-id": "rid-in-header",
				"x-forwarded-for": "203.0.113.7", "cookie": "theme=dark; better-auth.session_token=abc.def",
				"x-api-key": "key_123", "x-organization-id": "org_acme",
			},
		}},
		ContextExtensions: map[string]string{"route": "approve-leave", "other": "x"},
		MetadataContext:   &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.filters.http.jwt_authn": meta}},
		TlsSession:        &authv3.AttributeContext_TLSSession{Sni: "app.example.test"},
	}}
}

// rawHeaderSample is wireSample as Envoy sends it with encode_raw_headers:
// header_map instead of the headers map, a repeated name, a raw value.
func rawHeaderSample() *authv3.CheckRequest {
	r := wireSample()
	h := r.Attributes.Request.Http
	h.Headers = nil
	h.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "authorization", Value: "Bearer abc"},
		{Key: "accept", Value: "text/html"},
		{Key: "accept", RawValue: []byte("application/json")},
		{Key: "x-api-key", RawValue: []byte{0xff, 'k'}},
		{Key: "cookie", Value: "a=b", RawValue: []byte("ignored when value is set")},
	}}
	return r
}

func mustMarshal(tb testing.TB, m proto.Message) []byte {
	tb.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// probeHeaders are names looked up besides those the input carries.
var probeHeaders = []string{"authorization", "x-api-key", "cookie", "origin", "referer", "x-request-id", "accept", ""}

// compareDecoders decodes b both ways and reports any difference.
func compareDecoders(t *testing.T, s *wireSchema, b []byte) (accepted bool) {
	t.Helper()
	var std authv3.CheckRequest
	stdErr := proto.Unmarshal(b, &std)
	var w wireRequest
	leanErr := s.decode(b, &w)
	if (stdErr == nil) != (leanErr == nil) {
		t.Fatalf("input %x:\nproto.Unmarshal: %v\nlean decoder:    %v", b, stdErr, leanErr)
	}
	if stdErr != nil {
		return false
	}
	h := std.GetAttributes().GetRequest().GetHttp()
	want := struct{ Method, Path, Route, ID string }{h.GetMethod(), h.GetPath(), std.GetAttributes().GetContextExtensions()["route"], requestID(h)}
	got := struct{ Method, Path, Route, ID string }{w.Method, w.Path, w.route, w.requestID}
	if want != got {
		t.Fatalf("input %x:\nproto.Unmarshal %+v\nlean decoder    %+v", b, want, got)
	}
	wantHeaders, gotHeaders := requestHeaders(h), w.request().Headers
	names := slices.Clone(probeHeaders)
	for k := range h.GetHeaders() {
		names = append(names, k)
	}
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		names = append(names, hv.GetKey())
	}
	for _, wh := range w.headers {
		names = append(names, wh.name)
	}
	for _, n := range names {
		if a, b := wantHeaders.Get(n), gotHeaders.Get(n); a != b {
			t.Fatalf("header %q: proto.Unmarshal %q, lean decoder %q", n, a, b)
		}
	}
	return true
}

func newTestSchema(t testing.TB) *wireSchema {
	t.Helper()
	s, err := newWireSchema()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Wire-level builders for inputs the generated marshaller would never
// write.
func field(num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
}

func cat(bs ...[]byte) []byte { return slices.Concat(bs...) }

// httpReq wraps HttpRequest fields into a CheckRequest.
func httpReq(fields ...[]byte) []byte {
	return field(1, field(4, field(2, cat(fields...))))
}

func mapEntry(k, v string) []byte { return cat(field(1, []byte(k)), field(2, []byte(v))) }

func TestWireDecodeMatchesProto(t *testing.T) {
	s := newTestSchema(t)
	sample := mustMarshal(t, wireSample())
	raw := mustMarshal(t, rawHeaderSample())
	both := wireSample()
	both.Attributes.Request.Http.HeaderMap = rawHeaderSample().Attributes.Request.Http.HeaderMap
	noID := wireSample()
	noID.Attributes.Request.Http.Id = ""
	emptyMap := wireSample()
	emptyMap.Attributes.Request.Http.Headers = nil
	emptyMap.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{}

	tests := []struct {
		name   string
		in     []byte
		accept bool
	}{
		{"realistic request", sample, true},
		{"empty message", nil, true},
		{"header_map instead of headers", raw, true},
		{"both headers and header_map: the map wins", mustMarshal(t, both), true},
		{"empty header_map", mustMarshal(t, emptyMap), true},
		{"request id from the x-request-id header", mustMarshal(t, noID), true},
		{"message sent twice merges, the last scalar wins", cat(sample, httpReq(field(2, []byte("DELETE")))), true},
		{"merged maps: the last entry of a name wins", cat(sample, httpReq(field(3, mapEntry("authorization", "Bearer other")))), true},
		{"repeated map entry in one message", httpReq(field(3, mapEntry("a", "1")), field(3, mapEntry("a", "2"))), true},
		{"map entry with key and value twice", httpReq(field(3, cat(mapEntry("a", "1"), mapEntry("b", "2")))), true},
		{"map entry without a value", httpReq(field(3, field(1, []byte("authorization")))), true},
		{"map entry without a key", httpReq(field(3, field(2, []byte("v")))), true},
		{"route set then overridden", cat(field(1, field(10, mapEntry("route", "a"))), field(1, field(10, mapEntry("route", "b")))), true},
		{"unknown fields everywhere", cat(protowire.AppendTag(nil, 99, protowire.VarintType), []byte{1},
			httpReq(protowire.AppendVarint(protowire.AppendTag(nil, 77, protowire.VarintType), 5), field(2, []byte("GET")))), true},
		{"method with a varint wire type is unknown", httpReq(protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), 7)), true},
		{"headers map with a varint wire type is unknown", httpReq(protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 7)), true},
		{"unknown group", cat(protowire.AppendTag(nil, 50, protowire.StartGroupType), protowire.AppendTag(nil, 50, protowire.EndGroupType)), true},
		{"invalid UTF-8 in the method", httpReq(field(2, []byte{0xff})), false},
		{"invalid UTF-8 in a header value", httpReq(field(3, mapEntry("a", "\xff"))), false},
		{"invalid UTF-8 in a field never read (principal)", field(1, field(1, field(3, []byte{0xc0}))), false},
		{"invalid UTF-8 in a metadata key", field(1, field(11, field(1, mapEntry("\xff", "")))), false},
		{"invalid bytes in raw_body are fine", httpReq(field(12, []byte{0xff})), true},
		{"truncated length", []byte{0x0a, 0x05, 0x01}, false},
		{"truncated varint", []byte{0x08, 0x80}, false},
		{"field number 0", []byte{0x02, 0x00}, false},
		{"end group at the top", protowire.AppendTag(nil, 3, protowire.EndGroupType), false},
		{"unterminated group", protowire.AppendTag(nil, 3, protowire.StartGroupType), false},
		{"wire type 6", []byte{0x0e}, false},
		{"field number above the maximum", protowire.AppendVarint(protowire.AppendTag(nil, protowire.MaxValidNumber, protowire.VarintType)[:0],
			uint64(protowire.MaxValidNumber+1)<<3), false},
		{"malformed message never read (destination)", field(1, field(2, []byte{0x0a, 0x09})), false},
		{"malformed map entry", httpReq(field(3, []byte{0x0a})), false},
		{"malformed header_map value", httpReq(field(13, field(1, []byte{0x12, 0x04}))), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := compareDecoders(t, s, tt.in); got != tt.accept {
				t.Errorf("accepted = %v, want %v (both decoders agree, but the case is not what it claims)", got, tt.accept)
			}
		})
	}
}

// nestedStruct is a CheckRequest whose metadata nests depth Structs, to
// reach the recursion limit. With keyOnly, the innermost Struct holds a
// map entry with a key and no value, so the deepest level is a map entry
// rather than a message.
func nestedStruct(depth int, keyOnly bool) []byte {
	var v []byte // a Struct, innermost first
	if keyOnly {
		v = field(1, field(1, []byte("k")))
	}
	for range depth {
		// Struct{fields: {"k": Value{struct_value: v}}}
		v = field(1, cat(field(1, []byte("k")), field(2, field(5, v))))
	}
	// CheckRequest.attributes.metadata_context.filter_metadata["f"] = v
	return field(1, field(11, field(1, cat(field(1, []byte("f")), field(2, v)))))
}

func TestWireDecodeRecursionLimit(t *testing.T) {
	s := newTestSchema(t)
	// Each Struct level takes three (Struct, map entry, Value): the limit
	// falls near 10000/3.
	var accepted, rejected int
	for depth := 3320; depth <= 3340; depth++ {
		for _, keyOnly := range []bool{false, true} {
			if compareDecoders(t, s, nestedStruct(depth, keyOnly)) {
				accepted++
			} else {
				rejected++
			}
		}
	}
	if accepted == 0 || rejected == 0 {
		t.Fatalf("depths 3320-3340: %d accepted, %d rejected; the range must straddle the limit", accepted, rejected)
	}
}

// TestWireDecodeMutations compares the decoders on many corrupted copies of
// real requests: flipped bits, cut, inserted and duplicated bytes. The
// seed is fixed, so a failure reproduces.
func TestWireDecodeMutations(t *testing.T) {
	s := newTestSchema(t)
	seeds := [][]byte{mustMarshal(t, wireSample()), mustMarshal(t, rawHeaderSample()), nestedStruct(3, false), nestedStruct(3, true)}
	rng := rand.New(rand.NewPCG(1, 2))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	var accepted int
	for i := range n {
		b := slices.Clone(seeds[i%len(seeds)])
		for range 1 + rng.IntN(3) {
			if len(b) == 0 {
				break
			}
			p := rng.IntN(len(b))
			switch rng.IntN(5) {
			case 0:
				b[p] ^= 1 << rng.IntN(8)
			case 1:
				b = b[:p]
			case 2:
				b = slices.Insert(b, p, byte(rng.IntN(256)))
			case 3:
				b = slices.Delete(b, p, min(len(b), p+1+rng.IntN(4)))
			case 4:
				b[p] = byte(rng.IntN(256))
			}
		}
		if compareDecoders(t, s, b) {
			accepted++
		}
	}
	// Both outcomes must have been exercised for the test to mean much.
	if accepted == 0 || accepted == n {
		t.Fatalf("%d of %d mutations accepted; want some of each", accepted, n)
	}
	t.Logf("%d of %d mutated inputs accepted by both decoders", accepted, n)
}

// FuzzWireDecode holds the lean decoder to proto.Unmarshal on any input:
// `make fuzz` runs it; make test runs its seeds.
func FuzzWireDecode(f *testing.F) {
	s := newTestSchema(f)
	for _, m := range []*authv3.CheckRequest{wireSample(), rawHeaderSample(), {}} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(nestedStruct(5, true))
	f.Add(httpReq(field(3, mapEntry("a", "1")), field(3, mapEntry("a", "2"))))
	f.Fuzz(func(t *testing.T, b []byte) {
		compareDecoders(t, s, b)
	})
}

func BenchmarkDecode(b *testing.B) {
	in := mustMarshal(b, wireSample())
	b.Run(fmt.Sprintf("proto/%dB", len(in)), func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r authv3.CheckRequest
			if err := proto.Unmarshal(in, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	s := newTestSchema(b)
	b.Run(fmt.Sprintf("lean/%dB", len(in)), func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r := new(wireRequest)
			if err := s.decode(in, r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
