// Command noop is the benchmark's floor: an Envoy ext_authz v3 gRPC server
// that answers every Check with OK at once, without reading the request.
// Whatever the load generator measures against it is the cost of gRPC,
// loopback and the generator itself on this machine; the sidecar's numbers
// are reported as ratios to it.
//
// It serves gRPC health like the sidecar, prints "listening ADDR" on stdout
// once it accepts connections, and stops on SIGINT or SIGTERM.
//
//	noop [--grpc-addr 127.0.0.1:0] [--grpc-workers -1]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/authz-sidecar/authz-sidecar/internal/extauthz"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "noop:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("noop", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("grpc-addr", "127.0.0.1:0", "listen address (loopback)")
	workers := fs.Int("grpc-workers", -1, "gRPC stream workers, as the sidecar's --grpc-workers (-1: 4 per CPU; 0: a new goroutine per check)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// The same server options as the sidecar (stream workers), so the
	// floor differs from it only by the work the sidecar does.
	gs := grpc.NewServer(extauthz.StreamWorkers(*workers))
	authv3.RegisterAuthorizationServer(gs, allowAll{})
	h := health.NewServer()
	h.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, h)

	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(lis) }()
	fmt.Fprintf(stdout, "listening %s\n", lis.Addr())
	select {
	case <-ctx.Done():
		gs.Stop()
		return nil
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	}
}

// allowAll answers OK without looking at the request.
type allowAll struct {
	authv3.UnimplementedAuthorizationServer
}

// ok is shared by every answer: gRPC only reads it.
var ok = &authv3.CheckResponse{
	Status:       &rpcstatus.Status{Code: int32(rpccode.Code_OK)},
	HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
}

func (allowAll) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return ok, nil
}
