package extauthz_test

import (
	"bytes"
	"context"
	"slices"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/extauthz"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// headerDecider allows a request whose x-allow header is "yes" and names
// the caller after its x-user header; a pure stand-in for the engine.
type headerDecider struct{}

func (headerDecider) Decide(_ context.Context, r *authz.Request) authz.Decision {
	if r.Headers.Get("x-allow") == "yes" {
		return authz.Decision{Allow: true, Code: authz.CodeOK, Reason: authz.ReasonGranted, UserID: r.Headers.Get("x-user"), Route: r.RouteName}
	}
	return authz.Decision{Code: authz.CodeForbidden, Reason: authz.ReasonMissingPermission, Route: r.RouteName}
}

// startCodecServer serves headerDecider with codec, plus health and
// reflection as the sidecar registers them, and returns a connection.
func startCodecServer(t *testing.T, codec string) *grpc.ClientConn {
	t.Helper()
	gs, err := extauthz.NewGRPCServer(extauthz.New(headerDecider{}, nil, extauthz.Config{}), codec)
	if err != nil {
		t.Fatal(err)
	}
	h := health.NewServer()
	h.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, h)
	reflection.Register(gs)
	return testproc.ServeGRPC(t, gs)
}

func TestNewGRPCServerUnknownCodec(t *testing.T) {
	if _, err := extauthz.NewGRPCServer(extauthz.New(headerDecider{}, nil, extauthz.Config{}), "fast"); err == nil {
		t.Fatal("codec \"fast\" accepted")
	}
}

// The lean codec hands every message but Check's to the standard codec:
// health and reflection work as before.
func TestLeanServerServesHealthAndReflection(t *testing.T) {
	conn := startCodecServer(t, extauthz.CodecLean)
	ctx := context.Background()
	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v, %v", hr, err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !slices.Contains(names, "envoy.service.auth.v3.Authorization") {
		t.Fatalf("reflection lists %v, want envoy.service.auth.v3.Authorization", names)
	}
}

// rawCodec sends and receives bytes as they are, to put any input on
// the wire.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// Over real gRPC, both codecs answer every input alike: the same allow or
// deny, or the same error for what the standard codec cannot decode.
func TestCodecsAnswerAlikeOverGRPC(t *testing.T) {
	lean, std := startCodecServer(t, extauthz.CodecLean), startCodecServer(t, extauthz.CodecProto)
	request := func(headers map[string]string) []byte {
		b, err := proto.Marshal(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request:           &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/x", Headers: headers}},
			ContextExtensions: map[string]string{"route": "r1"},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	allow := request(map[string]string{"x-allow": "yes", "x-user": "alice"})
	// proto.Marshal refuses invalid UTF-8: it is put in afterwards.
	badUTF8 := bytes.Replace(allow, []byte("alice"), []byte("\xffxxxx"), 1)
	tests := []struct {
		name     string
		in       []byte
		wantCode codes.Code // of the RPC
		wantOK   bool       // an allow
	}{
		{"allow", allow, codes.OK, true},
		{"deny", request(map[string]string{"x-allow": "no"}), codes.OK, false},
		{"empty request: deny", nil, codes.OK, false},
		{"invalid UTF-8 in a header", badUTF8, codes.Internal, false},
		{"truncated", allow[:len(allow)-3], codes.Internal, false},
		{"trailing garbage", append(slices.Clone(allow), 0xff), codes.Internal, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for name, conn := range map[string]*grpc.ClientConn{"lean": lean, "proto": std} {
				in, out := tt.in, []byte(nil)
				err := conn.Invoke(context.Background(), authv3.Authorization_Check_FullMethodName, &in, &out, grpc.ForceCodecV2(rawCodec{}))
				if got := status.Code(err); got != tt.wantCode {
					t.Fatalf("%s codec: RPC code %v (%v), want %v", name, got, err, tt.wantCode)
				}
				if err != nil {
					continue
				}
				var resp authv3.CheckResponse
				if err := proto.Unmarshal(out, &resp); err != nil {
					t.Fatalf("%s codec: answer does not decode: %v", name, err)
				}
				if got := resp.GetOkResponse() != nil; got != tt.wantOK {
					t.Fatalf("%s codec: allow = %v, want %v: %v", name, got, tt.wantOK, &resp)
				}
			}
		})
	}
}
