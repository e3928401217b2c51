package extauthz

import (
	"context"
	"fmt"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
)

// AppendResponse is appendResponse, for the benchmarks.
func AppendResponse(b []byte, d *authz.Decision, o Options) ([]byte, error) {
	return appendResponse(b, d, o)
}

// CodecRunner returns what the gRPC server does for one Check with the
// named codec, network aside: decode the request's bytes, decide, encode
// the answer. The caller frees the answer.
func CodecRunner(s *Server, codec string) (func(ctx context.Context, req mem.BufferSlice) (mem.BufferSlice, error), error) {
	switch codec {
	case CodecLean:
		c, err := newLeanCodec()
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, req mem.BufferSlice) (mem.BufferSlice, error) {
			r := new(wireRequest)
			if err := c.Unmarshal(req, r); err != nil {
				return nil, err
			}
			return c.Marshal(s.checkWire(ctx, r))
		}, nil
	case CodecProto:
		c := encoding.GetCodecV2(proto.Name)
		return func(ctx context.Context, req mem.BufferSlice) (mem.BufferSlice, error) {
			r := new(authv3.CheckRequest)
			if err := c.Unmarshal(req, r); err != nil {
				return nil, err
			}
			resp, err := s.Check(ctx, r)
			if err != nil {
				return nil, err
			}
			return c.Marshal(resp)
		}, nil
	}
	return nil, fmt.Errorf("unknown codec %q", codec)
}
