package extauthz

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// The lean encoder is held to Response: for every decision, the bytes
// appendResponse writes read back as the messages Response builds (their
// metadata read as Envoy reads it), and they are the very bytes
// proto.Marshal writes for them.

// TestWireFieldNumbers checks every field number the encodings write
// against the generated descriptors, with the field's kind and
// cardinality, and that each tag fits the one byte tagSize counts.
func TestWireFieldNumbers(t *testing.T) {
	t.Parallel()
	check := (&authv3.CheckResponse{}).ProtoReflect().Descriptor()
	status := (&rpcstatus.Status{}).ProtoReflect().Descriptor()
	denied := (&authv3.DeniedHttpResponse{}).ProtoReflect().Descriptor()
	httpStatus := (&typev3.HttpStatus{}).ProtoReflect().Descriptor()
	ok := (&authv3.OkHttpResponse{}).ProtoReflect().Descriptor()
	option := ok.Fields().ByName("headers").Message()
	hv := option.Fields().ByName("header").Message()
	st := (&structpb.Struct{}).ProtoReflect().Descriptor()
	value := (&structpb.Value{}).ProtoReflect().Descriptor()
	tests := []struct {
		msg   protoreflect.MessageDescriptor
		field protoreflect.Name
		num   protowire.Number
		kind  protoreflect.Kind
		card  protoreflect.Cardinality
		oneof protoreflect.Name // the oneof holding the field, if any
	}{
		{check, "status", checkStatus, protoreflect.MessageKind, protoreflect.Optional, ""},
		{check, "denied_response", checkDenied, protoreflect.MessageKind, protoreflect.Optional, "http_response"},
		{check, "ok_response", checkOK, protoreflect.MessageKind, protoreflect.Optional, "http_response"},
		{check, "dynamic_metadata", checkMetadata, protoreflect.MessageKind, protoreflect.Optional, ""},
		{status, "code", rpcStatusCode, protoreflect.Int32Kind, protoreflect.Optional, ""},
		{status, "message", rpcStatusMessage, protoreflect.StringKind, protoreflect.Optional, ""},
		{denied, "status", deniedStatus, protoreflect.MessageKind, protoreflect.Optional, ""},
		{denied, "headers", deniedHeaders, protoreflect.MessageKind, protoreflect.Repeated, ""},
		{denied, "body", deniedBody, protoreflect.StringKind, protoreflect.Optional, ""},
		{httpStatus, "code", httpStatusCode, protoreflect.EnumKind, protoreflect.Optional, ""},
		{ok, "headers", okHeaders, protoreflect.MessageKind, protoreflect.Repeated, ""},
		{ok, "headers_to_remove", okHeadersToRemove, protoreflect.StringKind, protoreflect.Repeated, ""},
		{ok, "response_headers_to_add", okResponseHeadersToAdd, protoreflect.MessageKind, protoreflect.Repeated, ""},
		{option, "header", optionHeader, protoreflect.MessageKind, protoreflect.Optional, ""},
		{option, "append_action", optionAppendAction, protoreflect.EnumKind, protoreflect.Optional, ""},
		{hv, "key", headerKey, protoreflect.StringKind, protoreflect.Optional, ""},
		{hv, "value", headerValue, protoreflect.StringKind, protoreflect.Optional, ""},
		{st, "fields", structFields, protoreflect.MessageKind, protoreflect.Repeated, ""},
		{value, "number_value", valueNumberValue, protoreflect.DoubleKind, protoreflect.Optional, "kind"},
		{value, "string_value", valueStringValue, protoreflect.StringKind, protoreflect.Optional, "kind"},
	}
	for _, tt := range tests {
		name := string(tt.msg.FullName()) + "." + string(tt.field)
		fd := tt.msg.Fields().ByName(tt.field)
		if fd == nil {
			t.Errorf("%s: no such field", name)
			continue
		}
		if fd.Number() != tt.num {
			t.Errorf("%s: number %d, the encoding writes %d", name, fd.Number(), tt.num)
		}
		if fd.Kind() != tt.kind || fd.Cardinality() != tt.card {
			t.Errorf("%s: %v %v, the encoding writes %v %v", name, fd.Cardinality(), fd.Kind(), tt.card, tt.kind)
		}
		var oneof protoreflect.Name
		if o := fd.ContainingOneof(); o != nil && !o.IsSynthetic() {
			oneof = o.Name()
		}
		if oneof != tt.oneof {
			t.Errorf("%s: in oneof %q, want %q", name, oneof, tt.oneof)
		}
		// Implicit presence is what lets the encoding leave zero values
		// out, and UTF-8 validation is what validate mirrors.
		if fd.HasPresence() && fd.Cardinality() != protoreflect.Repeated && fd.Kind() != protoreflect.MessageKind && oneof == "" {
			t.Errorf("%s: has explicit presence; the encoding leaves its zero value out", name)
		}
		if fd.Kind() == protoreflect.StringKind && tt.msg.Syntax() != protoreflect.Proto3 {
			t.Errorf("%s: %v string; validate assumes proto3's UTF-8 check", name, tt.msg.Syntax())
		}
		if protowire.SizeTag(tt.num) != tagSize {
			t.Errorf("%s: tag takes %d bytes, tagSize is %d", name, protowire.SizeTag(tt.num), tagSize)
		}
	}
	fields := st.Fields().ByName("fields")
	if k, v := fields.MapKey().Number(), fields.MapValue().Number(); k != mapEntryKey || v != mapEntryValue {
		t.Errorf("Struct.fields entry: key %d, value %d; the encoding writes %d, %d", k, v, mapEntryKey, mapEntryValue)
	}
}

// answerCase is a decision and the options it is answered with.
type answerCase struct {
	name string
	d    authz.Decision
	o    Options
}

// answerCases are decisions of every shape, each under both options.
func answerCases() []answerCase {
	full := authz.Decision{
		ID: "0123456789abcdef0123456789abcdef", PolicyVersion: "e05c04dd9273ab6a", Allow: true, Code: authz.CodeOK,
		Reason: authz.ReasonGranted, Route: "team-board", UserID: "alice", OrgID: "org_acme",
		OrgSource: policy.Source{Kind: policy.FromPath, Name: "org"}, TeamID: "team_1", Roles: []string{"admin", "member"},
		Credential: policy.CredSession, ImpersonatedBy: "root", APIKeyID: "key_1",
	}
	manyRoles := make([]string, 200)
	for i := range manyRoles {
		manyRoles[i] = fmt.Sprintf("role-%03d", i)
	}
	long := strings.Repeat("ü0123456789", 2000) // 24,000 bytes: three-byte lengths
	with := func(f func(d *authz.Decision)) authz.Decision {
		d := full
		f(&d)
		return d
	}
	deny := func(c authz.Code, r authz.Reason) authz.Decision {
		return with(func(d *authz.Decision) {
			d.Allow, d.Code, d.Reason, d.Detail = false, c, r, "leave:approve"
		})
	}
	base := []answerCase{
		{name: "allow, every field", d: full},
		{name: "allow, one role", d: with(func(d *authz.Decision) { d.Roles = []string{"admin"} })},
		{name: "allow, some empty", d: with(func(d *authz.Decision) {
			d.TeamID, d.ImpersonatedBy, d.APIKeyID, d.Roles, d.PolicyVersion = "", "", "", nil, ""
		})},
		{name: "allow, org without source", d: with(func(d *authz.Decision) { d.OrgSource = policy.Source{} })},
		{name: "allow, source without org", d: with(func(d *authz.Decision) { d.OrgID = "" })},
		{name: "allow, public", d: authz.Decision{ID: "2222", Allow: true, Code: authz.CodeOK, Reason: authz.ReasonPublic, Route: "health"}},
		{name: "allow, nothing at all", d: authz.Decision{Allow: true}},
		{name: "allow, empty id", d: with(func(d *authz.Decision) { d.ID = "" })},
		{name: "allow, credential set", d: with(func(d *authz.Decision) { d.Credential = policy.CredJWT | policy.CredAPIKey })},
		{name: "allow, many roles", d: with(func(d *authz.Decision) { d.Roles = manyRoles })},
		{name: "allow, unicode", d: with(func(d *authz.Decision) {
			d.UserID, d.OrgID, d.TeamID, d.Route, d.Roles = "ユーザー", "组织-ß", "équipe 🚀", "route-ü", []string{"管理者", "membre"}
		})},
		{name: "allow, long values", d: with(func(d *authz.Decision) { d.UserID, d.Route, d.PolicyVersion = long, long, long })},
		{name: "shadow deny", d: with(func(d *authz.Decision) {
			d.Shadowed, d.Code, d.Reason = true, authz.CodeForbidden, authz.ReasonMissingPermission
		})},
		{name: "shadow deny, 401, no id", d: with(func(d *authz.Decision) {
			d.Shadowed, d.Code, d.Reason, d.ID = true, authz.CodeUnauthenticated, authz.ReasonInvalidToken, ""
		})},
		{name: "deny 401", d: deny(authz.CodeUnauthenticated, authz.ReasonNoCredential)},
		{name: "deny 403", d: deny(authz.CodeForbidden, authz.ReasonMissingPermission)},
		{name: "deny 503", d: deny(authz.CodeUnavailable, authz.ReasonSourceUnavailable)},
		{name: "deny claiming OK", d: deny(authz.CodeOK, "bogus")},
		{name: "deny, unknown code", d: deny(authz.Code(9), authz.ReasonOverloaded)},
		{name: "deny, empty reason and id", d: with(func(d *authz.Decision) { *d = authz.Decision{Code: authz.CodeForbidden} })},
		{name: "deny, long and unicode", d: with(func(d *authz.Decision) {
			d.Allow, d.Code, d.Reason, d.Detail, d.Route, d.UserID = false, authz.CodeForbidden, "räson", long, long, "ユーザー"
		})},
		{name: "deny, nothing at all", d: authz.Decision{}},
		{name: "deny, invalid UTF-8 reason", d: deny(authz.CodeForbidden, "bad\xff")},
		{name: "allow, invalid UTF-8 user", d: with(func(d *authz.Decision) { d.UserID = "bad\xc3" })},
		{name: "allow, invalid UTF-8 in metadata only", d: with(func(d *authz.Decision) { d.Route = "bad\xff" })},
	}
	var cases []answerCase
	for _, c := range base {
		for _, on := range []bool{false, true} {
			cases = append(cases, answerCase{name: fmt.Sprintf("%s, id to client %t", c.name, on), d: c.d, o: Options{DecisionIDToClient: on}})
		}
	}
	return cases
}

// randomDecision is a decision with every field drawn from r: any
// combination, shapes the engine never makes included.
func randomDecision(r *rand.Rand) authz.Decision {
	d := authz.Decision{
		ID: randomString(r), PolicyVersion: randomString(r), Allow: r.IntN(3) > 0, Code: authz.Code(r.IntN(5)),
		Reason: authz.Reason(randomString(r)), Detail: randomString(r), Shadowed: r.IntN(4) == 0, Route: randomString(r),
		UserID: randomString(r), OrgID: randomString(r), TeamID: randomString(r),
		Credential: policy.Credential(r.IntN(8)), ImpersonatedBy: randomString(r), APIKeyID: randomString(r),
	}
	if r.IntN(2) == 0 {
		d.OrgSource = policy.Source{Kind: policy.SourceKind(1 + r.IntN(5)), Name: randomString(r)}
	}
	for range r.IntN(4) * r.IntN(6) {
		d.Roles = append(d.Roles, randomString(r))
	}
	return d
}

// randomString is empty half the time, else a string of ASCII, multi-byte
// runes and, rarely, a byte that is not UTF-8; now and then long enough
// for a two- or three-byte length.
func randomString(r *rand.Rand) string {
	if r.IntN(2) == 0 {
		return ""
	}
	pieces := []string{"a", "Z", "0", "-", "_", ":", ",", " ", "\"", "<", "é", "ß", "日本", "🚀", "\x00"}
	n := 1 + r.IntN(24)
	switch r.IntN(50) {
	case 0:
		n = 100 + r.IntN(200)
	case 1:
		n = 10000 + r.IntN(10000)
	}
	var b strings.Builder
	for range n {
		b.WriteString(pieces[r.IntN(len(pieces))])
	}
	if r.IntN(200) == 0 {
		b.WriteString("\xff")
	}
	return b.String()
}

// TestAppendResponseMatchesResponse holds appendResponse to Response over
// the table and a few thousand random decisions (a fixed seed, so a
// failure repeats).
func TestAppendResponseMatchesResponse(t *testing.T) {
	t.Parallel()
	for _, c := range answerCases() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			sameAnswer(t, &c.d, c.o)
		})
	}
	t.Run("random", func(t *testing.T) {
		t.Parallel()
		r := rand.New(rand.NewPCG(20261128, 1))
		seen := map[string]int{}
		for i := range 4000 {
			d := randomDecision(r)
			o := Options{DecisionIDToClient: r.IntN(2) == 0}
			if !sameAnswer(t, &d, o) {
				t.Fatalf("decision %d: %#v, %+v", i, d, o)
			}
			switch _, err := appendResponse(nil, &d, o); {
			case err != nil:
				seen["refused"]++
			case d.Shadowed && d.Allow:
				seen["shadow deny"]++
			case d.Allow:
				seen["allow"]++
			default:
				seen[fmt.Sprintf("deny %d", d.Status())]++
			}
		}
		// The generator must keep reaching every shape.
		for _, shape := range []string{"allow", "shadow deny", "deny 401", "deny 403", "deny 503", "refused"} {
			if seen[shape] < 20 {
				t.Errorf("only %d random decisions of shape %q: %v", seen[shape], shape, seen)
			}
		}
		t.Logf("random decisions by shape: %v", seen)
	})
}

// sameAnswer reports, and fails t, unless appendResponse(d, o) is what
// Response(d, o) says: the same error from proto.Marshal, or bytes that
// unmarshal to messages proto.Equal to Response's, with Response's
// metadata read back as Envoy reads it, and that are the bytes
// proto.Marshal writes for Response's messages.
func sameAnswer(t *testing.T, d *authz.Decision, o Options) bool {
	t.Helper()
	resp := Response(d, o)
	want, wantErr := proto.Marshal(resp)
	got, err := appendResponse([]byte("prefix"), d, o)
	if wantErr != nil || err != nil {
		if !errors.Is(err, errAnswerUTF8) || wantErr == nil {
			t.Errorf("appendResponse error %v, proto.Marshal of Response error %v", err, wantErr)
			return false
		}
		return true
	}
	got, ok := bytes.CutPrefix(got, []byte("prefix"))
	if !ok {
		t.Errorf("appendResponse did not append: % x", got)
		return false
	}
	// The bytes as protobuf-go writes them: fields in number order, oneofs
	// last. (A protobuf-go release that wrote another order would fail
	// here, and only here; proto.Equal below is what Envoy needs.)
	if !bytes.Equal(got, want) {
		t.Errorf("appendResponse wrote\n% x\nproto.Marshal of Response\n% x", got, want)
		return false
	}
	var back authv3.CheckResponse
	if err := proto.Unmarshal(got, &back); err != nil {
		// Only the metadata can hold invalid UTF-8 here, and Response's
		// does not read back either.
		var wantBack authv3.CheckResponse
		if proto.Unmarshal(want, &wantBack) == nil {
			t.Errorf("appendResponse's bytes do not unmarshal, Response's do: %v", err)
			return false
		}
		return true
	}
	// Response holds its metadata as the Struct's unknown fields; read them
	// as Envoy does.
	meta := new(structpb.Struct)
	if err := proto.Unmarshal(resp.GetDynamicMetadata().ProtoReflect().GetUnknown(), meta); err != nil {
		t.Errorf("Response's metadata does not unmarshal, appendResponse's does: %v", err)
		return false
	}
	wantMsg := proto.Clone(resp).(*authv3.CheckResponse)
	wantMsg.DynamicMetadata = meta
	if !proto.Equal(&back, wantMsg) {
		t.Errorf("appendResponse and Response differ (-Response +appendResponse):\n%s", cmp.Diff(wantMsg, &back, protocmp.Transform()))
		return false
	}
	return true
}

// TestAppendResponseAllocates nothing for a decision whose strings are
// all built already (no organization source, at most one role).
func TestAppendResponseAllocatesNothing(t *testing.T) {
	d := authz.Decision{ID: "0123456789abcdef0123456789abcdef", Allow: true, Code: authz.CodeOK, Reason: authz.ReasonGranted,
		Route: "approve-leave", UserID: "alice", Roles: []string{"admin"}, Credential: policy.CredJWT, PolicyVersion: "v1"}
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := appendResponse(buf[:0], &d, Options{DecisionIDToClient: true}); err != nil {
			t.Fatal(err)
		}
	}); n >= 1 {
		// Below one: AllocsPerRun counts the process's allocations, and
		// another test's background goroutine may allocate meanwhile.
		t.Errorf("appendResponse: %v allocations per call, want 0", n)
	}
}

// TestLeanCodecMarshal: the codec writes a *wireAnswer as appendResponse
// does, refuses what proto.Marshal refuses, and writes any other message
// as the standard codec.
func TestLeanCodecMarshal(t *testing.T) {
	t.Parallel()
	c, err := newLeanCodec()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range answerCases() {
		want, wantErr := appendResponse(nil, &tc.d, tc.o)
		out, err := c.Marshal(&wireAnswer{decision: tc.d, opts: tc.o})
		if wantErr != nil {
			if !errors.Is(err, errAnswerUTF8) {
				t.Errorf("%s: Marshal error %v, want %v", tc.name, err, errAnswerUTF8)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := out.Materialize(); !bytes.Equal(got, want) {
			t.Errorf("%s: Marshal wrote\n% x\nappendResponse\n% x", tc.name, got, want)
		}
		out.Free()
	}
	msg := Response(&authz.Decision{ID: "1", Allow: true, UserID: "u"}, Options{})
	out, err := c.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Free()
	if want, _ := proto.Marshal(msg); !bytes.Equal(out.Materialize(), want) {
		t.Errorf("a CheckResponse is not written as proto.Marshal writes it")
	}
}

// fixedDecider decides d, whatever the request.
type fixedDecider struct{ d authz.Decision }

func (f fixedDecider) Decide(context.Context, *authz.Request) authz.Decision { return f.d }

// TestLeanInterceptor: over real gRPC, a unary interceptor on the lean
// server sees the lean types and passes the answer through to the codec,
// and one that answers with a CheckResponse of its own is sent that.
func TestLeanInterceptor(t *testing.T) {
	t.Parallel()
	d := authz.Decision{ID: "0123456789abcdef0123456789abcdef", Allow: true, Code: authz.CodeOK, Reason: authz.ReasonGranted,
		Route: "r", UserID: "alice", OrgID: "org_acme", OrgSource: policy.Source{Kind: policy.FromPath, Name: "org"},
		Roles: []string{"admin", "member"}, Credential: policy.CredJWT}
	own := Response(&authz.Decision{Code: authz.CodeUnavailable, Reason: authz.ReasonOverloaded}, Options{})
	tests := []struct {
		name    string
		replace bool
		want    *authv3.CheckResponse
	}{
		{"pass through", false, Response(&d, Options{DecisionIDToClient: true})},
		{"own answer", true, own},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			saw := make(chan string, 1)
			intercept := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
				resp, err := handler(ctx, req)
				saw <- fmt.Sprintf("%s %T %T", info.FullMethod, req, resp)
				if tt.replace {
					return own, err
				}
				return resp, err
			}
			s := New(fixedDecider{d}, nil, Config{DecisionIDResponseHeader: true})
			gs, err := NewGRPCServer(s, CodecLean, grpc.UnaryInterceptor(intercept))
			if err != nil {
				t.Fatal(err)
			}
			conn := testproc.ServeGRPC(t, gs)
			got, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), &authv3.CheckRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if want, saw := authv3.Authorization_Check_FullMethodName+" *extauthz.wireRequest *extauthz.wireAnswer", <-saw; saw != want {
				t.Errorf("interceptor saw %q, want %q", saw, want)
			}
			want := proto.Clone(tt.want).(*authv3.CheckResponse)
			meta := new(structpb.Struct)
			if err := proto.Unmarshal(want.GetDynamicMetadata().ProtoReflect().GetUnknown(), meta); err != nil {
				t.Fatal(err)
			}
			want.DynamicMetadata = meta
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("answer differs (-want +got):\n%s", diff)
			}
		})
	}
}
