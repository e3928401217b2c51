package faults

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// sidecar is the built authz-sidecar binary, running, with the clients the
// cases use.
type sidecar struct {
	*testproc.Sidecar
	client authv3.AuthorizationClient
	health healthpb.HealthClient
}

// startSidecar runs the binary with args after the listen addresses and
// JSON logging, and waits until it is live (/healthz); waitServing also
// waits for gRPC health SERVING (signing keys loaded).
func startSidecar(t testing.TB, waitServing bool, args ...string) *sidecar {
	t.Helper()
	s := testproc.StartSidecarT(t, sidecarBin, testproc.RepoRootT(t), append([]string{"--log-format", "json"}, args...)...)
	want := testproc.Live
	if waitServing {
		want = testproc.Serving
	}
	if err := s.WaitReady(want, recoverWithin); err != nil {
		t.Fatal(err)
	}
	return &sidecar{Sidecar: s, client: authv3.NewAuthorizationClient(s.Conn), health: healthpb.NewHealthClient(s.Conn)}
}

// metric sums the samples of the named counter or gauge whose labels
// include every label, value pair, from /metrics.
func (s *sidecar) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	m, err := s.Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return m.Sum(name, labels...)
}

// answer is what Envoy would do with a CheckResponse: the HTTP status and,
// on a deny, the x-authz-reason header.
type answer struct {
	status int
	reason string
}

func (a answer) String() string { return fmt.Sprintf("%d %s", a.status, a.reason) }

// clientDeadline is the most a test waits for one Check: far above the
// sidecar's check deadlines in these tests (30 s at most), so that only a
// check that ignores its deadline, a hang, runs into it.
const clientDeadline = time.Minute

// errGRPC marks a Check that returned a gRPC error instead of an answer.
var errGRPC = errors.New("Check returned a gRPC error (it must always answer)")

// tryCheck sends one CheckRequest; safe from any goroutine.
func (s *sidecar) tryCheck(method, path, token string) (answer, error) {
	h := map[string]string{"x-request-id": "faults"}
	if token != "" {
		h["authorization"] = "Bearer " + token
	}
	ctx, cancel := context.WithTimeout(context.Background(), clientDeadline)
	defer cancel()
	resp, err := s.client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Headers: h, Protocol: "HTTP/1.1", Host: "app.example.test",
		}},
	}})
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: %w: %v", method, path, errGRPC, err)
	}
	if resp.GetOkResponse() != nil {
		return answer{status: 200}, nil
	}
	d := resp.GetDeniedResponse()
	if d == nil {
		return answer{}, fmt.Errorf("%s %s: CheckResponse without an http response: %v", method, path, resp)
	}
	a := answer{status: int(d.GetStatus().GetCode())}
	for _, hv := range d.GetHeaders() {
		if hv.GetHeader().GetKey() == "x-authz-reason" {
			a.reason = hv.GetHeader().GetValue()
		}
	}
	return a, nil
}

func (s *sidecar) check(t testing.TB, method, path, token string) answer {
	t.Helper()
	a, err := s.tryCheck(method, path, token)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
