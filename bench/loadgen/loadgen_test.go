package loadgen

import (
	"context"
	"errors"
	"math"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// echoServer allows a request naming user "u<n>" in its path as that
// user, except: path "/deny" is refused (403), "/slow" is unavailable
// (503) and "/wait" is allowed as "wait" after waitFor.
type echoServer struct {
	authv3.UnimplementedAuthorizationServer
}

// waitFor is how long echoServer takes to answer "/wait".
const waitFor = 10 * time.Millisecond

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
	case "/wait":
		time.Sleep(waitFor)
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(rpccode.Code_OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: headerUserID, Value: path[1:]}}},
		}},
	}, nil
}

// callTimeout bounds each Check in these tests: far above an answer on a
// loaded machine, because no test here is about it (the 5 s default made
// slow answers errors).
const callTimeout = time.Minute

// heldServer is echoServer, except that it holds each "/wait" request
// until the generator finds every slot taken (a token on release, sent
// by Config.onFull) or the run's last request has arrived, and only then
// waits waitFor. A request that finds the slots full therefore always
// finds them full, however the goroutines are scheduled.
type heldServer struct {
	echoServer
	n       int64 // requests in the run
	arrived atomic.Int64
	release chan struct{}
	last    chan struct{} // closed when request n arrives
}

func newHeldServer(n int) *heldServer {
	return &heldServer{n: int64(n), release: make(chan struct{}, n), last: make(chan struct{})}
}

// onFull is the run's Config.onFull.
func (h *heldServer) onFull() { h.release <- struct{}{} }

func (h *heldServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	if h.arrived.Add(1) == h.n {
		close(h.last)
	}
	if req.GetAttributes().GetRequest().GetHttp().GetPath() == "/wait" {
		select {
		case <-h.release:
		case <-h.last:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return h.echoServer.Check(ctx, req)
}

// startEcho serves echoServer on loopback for the test and returns a
// connection to it.
func startEcho(t *testing.T) grpc.ClientConnInterface {
	t.Helper()
	return startServer(t, echoServer{})
}

// startServer serves srv on loopback for the test and returns a
// connection to it.
func startServer(t *testing.T, srv authv3.AuthorizationServer) grpc.ClientConnInterface {
	t.Helper()
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, srv)
	return testproc.ServeGRPC(t, gs)
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

// TestRunCounts drives a real gRPC server on loopback, closed-loop and at
// a fixed rate, and checks that every kind of wrong answer is counted and
// that the run ends with its source.
func TestRunCounts(t *testing.T) {
	t.Parallel()
	conn := startEcho(t)
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
	tests := []struct {
		name string
		cfg  Config
	}{
		{name: "closed loop", cfg: Config{Workers: 4}},
		// Fewer requests than slots: none can be late.
		{name: "fixed rate", cfg: Config{Rate: 2000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg
			cfg.Conns, cfg.Duration, cfg.Source, cfg.CheckIdentity = []grpc.ClientConnInterface{conn}, time.Minute, src, true
			cfg.CallTimeout = callTimeout
			res, err := Run(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Sent != n || !res.Exhausted || len(res.Latencies) != n || res.Late != 0 {
				t.Errorf("sent %d, exhausted %v, %d latencies, %d late; want %d, true, %d, 0",
					res.Sent, res.Exhausted, len(res.Latencies), res.Late, n, n)
			}
			if res.Denied != 20 || res.Unavailable != 10 || res.WrongIdentity != 10 || res.Errors != 0 {
				t.Errorf("denied %d (503 %d), wrong identity %d, errors %d; want 20 (10), 10, 0",
					res.Denied, res.Unavailable, res.WrongIdentity, res.Errors)
			}
			if res.Failures() != 30 || res.FirstFailure == "" {
				t.Errorf("failures %d (first %q), want 30 and a description", res.Failures(), res.FirstFailure)
			}
		})
	}
}

// TestFixedRateSchedule: a fixed-rate run sends exactly the requests its
// schedule has, times those due in the measured window, and counts each
// latency from the due time, so it is never below the send lag.
func TestFixedRateSchedule(t *testing.T) {
	t.Parallel()
	conn := startEcho(t)
	allow := frameFor(t, "/u1")
	// 1000 req/s: request i is due at i ms; the first 50 are warm-up. 200
	// requests in all, fewer than the slots, so none can be late.
	res, err := Run(t.Context(), Config{
		Conns: []grpc.ClientConnInterface{conn}, Rate: 1000,
		Warmup: 50 * time.Millisecond, Duration: 150 * time.Millisecond,
		Source:        func(uint64) (Request, bool) { return Request{Frame: allow, UserID: "u1"}, true },
		CheckIdentity: true, CallTimeout: callTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 200 || len(res.Latencies) != 150 || len(res.SendLags) != 150 || res.Late != 0 || res.Exhausted {
		t.Errorf("sent %d, %d latencies, %d send lags, %d late, exhausted %v; want 200, 150, 150, 0, false",
			res.Sent, len(res.Latencies), len(res.SendLags), res.Late, res.Exhausted)
	}
	if res.Failures() != 0 {
		t.Errorf("%d failures, first %q", res.Failures(), res.FirstFailure)
	}
	// Each latency is at least its request's send lag, so the k-th
	// smallest latency is at least the k-th smallest lag.
	for k := range min(len(res.Latencies), len(res.SendLags)) {
		if res.Latencies[k] < res.SendLags[k] {
			t.Fatalf("latency #%d %v is below send lag #%d %v", k, res.Latencies[k], k, res.SendLags[k])
		}
	}
}

// TestFixedRateNoCoordinatedOmission: with one slot and a server that takes
// at least waitFor per answer, a 1000 req/s schedule falls further behind
// with each request. A closed-loop measurement would see waitFor each time;
// counted from the due times, request k waited at least waitFor*(k+1) - k
// ms. Every request but the first found the slot taken (the server holds
// each answer until the next request has found it so), so the run fails as
// behind.
func TestFixedRateNoCoordinatedOmission(t *testing.T) {
	t.Parallel()
	const n = 20 // due at 0..19 ms
	srv := newHeldServer(n)
	conn := startServer(t, srv)
	wait := frameFor(t, "/wait")
	res, err := Run(t.Context(), Config{
		Conns: []grpc.ClientConnInterface{conn}, Rate: 1000, MaxInFlight: 1, Duration: n * time.Millisecond,
		Source: func(uint64) (Request, bool) { return Request{Frame: wait, UserID: "wait"}, true }, CheckIdentity: true,
		CallTimeout: callTimeout, onFull: srv.onFull,
	})
	if !errors.Is(err, ErrBehind) {
		t.Fatalf("err = %v, want ErrBehind", err)
	}
	if res == nil {
		t.Fatal("no result with ErrBehind")
	}
	if res.Sent != n || res.Late != n-1 || len(res.Latencies) != n || res.Failures() != 0 {
		t.Fatalf("sent %d, late %d, %d latencies, %d failures (%q); want %d, %d, %d, 0",
			res.Sent, res.Late, len(res.Latencies), res.Failures(), res.FirstFailure, n, n-1, n)
	}
	last := n - 1
	wantLat := waitFor*time.Duration(last+1) - time.Duration(last)*time.Millisecond
	if got := res.Latencies[n-1]; got < wantLat {
		t.Errorf("worst latency %v, want at least %v: latency not counted from the due time", got, wantLat)
	}
	if got, want := res.SendLags[n-1], wantLat-waitFor; got < want {
		t.Errorf("worst send lag %v, want at least %v", got, want)
	}
}

// TestRunConfig: configurations that cannot run are refused before
// anything is sent.
func TestRunConfig(t *testing.T) {
	t.Parallel()
	conns := []grpc.ClientConnInterface{startEcho(t)}
	src := func(uint64) (Request, bool) { return Request{}, false }
	tests := []struct {
		name string
		cfg  Config
	}{
		{name: "no connections", cfg: Config{Workers: 1, Duration: time.Second, Source: src}},
		{name: "no source", cfg: Config{Conns: conns, Workers: 1, Duration: time.Second}},
		{name: "no duration", cfg: Config{Conns: conns, Workers: 1, Source: src}},
		{name: "closed loop without workers", cfg: Config{Conns: conns, Duration: time.Second, Source: src}},
		{name: "negative rate", cfg: Config{Conns: conns, Rate: -1, Duration: time.Second, Source: src}},
		{name: "NaN rate", cfg: Config{Conns: conns, Rate: math.NaN(), Duration: time.Second, Source: src}},
		{name: "infinite rate", cfg: Config{Conns: conns, Rate: math.Inf(1), Duration: time.Second, Source: src}},
		{name: "negative max in flight", cfg: Config{Conns: conns, Rate: 10, MaxInFlight: -1, Duration: time.Second, Source: src}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if res, err := Run(t.Context(), tt.cfg); err == nil || res != nil {
				t.Errorf("Run = %v, %v; want no result and an error", res, err)
			}
		})
	}
}

// TestFixedRateLate: with two slots, two slow requests (due at 0 and 1 ms,
// held until request 2 finds both slots taken, then answered after
// waitFor) and fast ones, request 2 waits for a slot until one of them is
// answered, at least 2 + waitFor ms after the start, and every request due
// before then (all the others) left late too, though a slot may have been
// free when its turn came. Requests 0 and 1 found free slots.
func TestFixedRateLate(t *testing.T) {
	t.Parallel()
	const n = 12 // due at 0..11 ms
	srv := newHeldServer(n)
	conn := startServer(t, srv)
	wait, allow := frameFor(t, "/wait"), frameFor(t, "/u1")
	res, err := Run(t.Context(), Config{
		Conns: []grpc.ClientConnInterface{conn}, Rate: 1000, MaxInFlight: 2, Duration: n * time.Millisecond,
		Source: func(i uint64) (Request, bool) {
			if i < 2 {
				return Request{Frame: wait, UserID: "wait"}, true
			}
			return Request{Frame: allow, UserID: "u1"}, true
		},
		CheckIdentity: true, CallTimeout: callTimeout, onFull: srv.onFull,
	})
	if !errors.Is(err, ErrBehind) || res == nil {
		t.Fatalf("Run = %v, %v; want a result and ErrBehind", res, err)
	}
	if res.Sent != n || res.Late != n-2 || res.Failures() != 0 {
		t.Errorf("sent %d, late %d, %d failures (%q); want %d, %d, 0",
			res.Sent, res.Late, res.Failures(), res.FirstFailure, n, n-2)
	}
}

// Requests that must be denied count as failures when allowed or denied
// with another status, and as DeniedAsWanted otherwise.
func TestRunWantDeny(t *testing.T) {
	t.Parallel()
	conn := startEcho(t)
	allow, deny, slow := frameFor(t, "/u1"), frameFor(t, "/deny"), frameFor(t, "/slow")
	wantAllow := func(f []byte) Request { return Request{Frame: f} }
	wantDeny := func(f []byte, status int) Request { return Request{Frame: f, WantDeny: status} }
	tests := []struct {
		name                            string
		req                             Request
		asWanted, mismatched, denied, u uint64
	}{
		{"denied as wanted", wantDeny(deny, 403), 1, 0, 0, 0},
		{"allowed, deny wanted", wantDeny(allow, 403), 0, 1, 0, 0},
		{"denied with another status", wantDeny(deny, 401), 0, 1, 0, 0},
		{"unavailable, deny wanted", wantDeny(slow, 403), 0, 1, 0, 1},
		{"denied, allow wanted", wantAllow(deny), 0, 0, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := func(i uint64) (Request, bool) { return tt.req, i == 0 }
			res, err := Run(t.Context(), Config{Conns: []grpc.ClientConnInterface{conn}, Workers: 1, Duration: time.Minute,
				Source: src, CallTimeout: callTimeout})
			if err != nil {
				t.Fatal(err)
			}
			if res.DeniedAsWanted != tt.asWanted || res.Mismatched != tt.mismatched || res.Denied != tt.denied || res.Unavailable != tt.u {
				t.Errorf("denied as wanted %d, mismatched %d, denied %d, unavailable %d; want %d, %d, %d, %d",
					res.DeniedAsWanted, res.Mismatched, res.Denied, res.Unavailable, tt.asWanted, tt.mismatched, tt.denied, tt.u)
			}
			if res.Failures() != tt.mismatched+tt.denied {
				t.Errorf("failures %d, want %d", res.Failures(), tt.mismatched+tt.denied)
			}
		})
	}
}

func TestHTTPFrame(t *testing.T) {
	t.Parallel()
	b, err := HTTPFrame("POST", "/api/x", map[string]string{"authorization": "Bearer t"})
	if err != nil {
		t.Fatal(err)
	}
	var req authv3.CheckRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		t.Fatal(err)
	}
	h := req.GetAttributes().GetRequest().GetHttp()
	if h.GetMethod() != "POST" || h.GetPath() != "/api/x" || h.GetHeaders()["authorization"] != "Bearer t" {
		t.Errorf("decoded %v", h)
	}
}
