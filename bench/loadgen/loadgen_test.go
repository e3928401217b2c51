package loadgen

import (
	"context"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// echoServer allows a request naming user "u<n>" in its path as that
// user, except: path "/deny" is refused (403) and "/slow" is unavailable
// (503).
type echoServer struct {
	authv3.UnimplementedAuthorizationServer
}

func (echoServer) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	path := req.GetAttributes().GetRequest().GetHttp().GetPath()
	deny := func(code rpccode.Code, http typev3.StatusCode) *authv3.CheckResponse {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(code)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: http}}},
		}
	}
	switch path {
	case "/deny":
		return deny(rpccode.Code_PERMISSION_DENIED, typev3.StatusCode_Forbidden), nil
	case "/slow":
		return deny(rpccode.Code_UNAVAILABLE, typev3.StatusCode_ServiceUnavailable), nil
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(rpccode.Code_OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: headerUserID, Value: path[1:]}}},
		}},
	}, nil
}

func frameFor(t *testing.T, path string) []byte {
	t.Helper()
	b, err := proto.Marshal(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: path}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRunCounts drives a real gRPC server on loopback and checks that
// every kind of wrong answer is counted and that the run ends with its
// source.
func TestRunCounts(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, echoServer{})
	go gs.Serve(lis) //nolint:errcheck // ends with Stop
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	allow, deny, slow := frameFor(t, "/u1"), frameFor(t, "/deny"), frameFor(t, "/slow")
	const n = 100
	src := func(i uint64) (Request, bool) {
		switch {
		case i >= n:
			return Request{}, false
		case i%10 == 3:
			return Request{Frame: deny}, true
		case i%10 == 5:
			return Request{Frame: slow}, true
		case i%10 == 7:
			return Request{Frame: allow, UserID: "u2"}, true // allowed as someone else
		}
		return Request{Frame: allow, UserID: "u1"}, true
	}
	res, err := Run(t.Context(), Config{
		Conns: []grpc.ClientConnInterface{conn}, Workers: 4, Duration: time.Minute, Source: src, CheckIdentity: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != n || !res.Exhausted || len(res.Latencies) != n {
		t.Errorf("sent %d, exhausted %v, %d latencies; want %d, true, %d", res.Sent, res.Exhausted, len(res.Latencies), n, n)
	}
	if res.Denied != 20 || res.Unavailable != 10 || res.WrongIdentity != 10 || res.Errors != 0 {
		t.Errorf("denied %d (503 %d), wrong identity %d, errors %d; want 20 (10), 10, 0",
			res.Denied, res.Unavailable, res.WrongIdentity, res.Errors)
	}
	if res.Failures() != 30 || res.FirstFailure == "" {
		t.Errorf("failures %d (first %q), want 30 and a description", res.Failures(), res.FirstFailure)
	}
}
