package extauthz

import (
	"context"
	"fmt"
	"runtime"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// The codecs NewGRPCServer can serve Check with.
const (
	// CodecLean reads a CheckRequest with the lean decoder (wire.go) and
	// writes answers with the lean encoder (encode.go) into pooled
	// buffers.
	CodecLean = "lean"
	// CodecProto is gRPC's standard codec: the whole CheckRequest is
	// decoded into Go messages.
	CodecProto = "proto"
)

// Codecs lists the accepted values of NewGRPCServer's codec.
var Codecs = [...]string{CodecLean, CodecProto}

// NewGRPCServer returns a gRPC server serving s as
// envoy.service.auth.v3.Authorization with the named codec (CodecLean or
// CodecProto), plus opts. Register other services (health, reflection) on
// it as usual: the lean codec hands every message but Check's to the
// standard one.
//
// The two are tied here because the lean service reads requests that only
// the lean codec can decode; registered on a server with the standard
// codec, every Check would fail, and Envoy's failure_mode_allow would turn
// the failures into allows.
func NewGRPCServer(s *Server, codec string, opts ...grpc.ServerOption) (*grpc.Server, error) {
	switch codec {
	case CodecProto:
		gs := grpc.NewServer(opts...)
		authv3.RegisterAuthorizationServer(gs, s)
		return gs, nil
	case CodecLean:
		c, err := newLeanCodec()
		if err != nil {
			return nil, err
		}
		gs := grpc.NewServer(append(opts, grpc.ForceServerCodecV2(c))...)
		gs.RegisterService(&leanServiceDesc, s)
		return gs, nil
	}
	return nil, fmt.Errorf("extauthz: unknown codec %q (want %s or %s)", codec, CodecLean, CodecProto)
}

// StreamWorkers is the server option for n gRPC stream workers:
// goroutines kept to run checks, whose grown stacks serve the next check
// instead of growing anew for each. -1 means 4 per CPU (the sidecar's
// --grpc-workers default, and the do-nothing benchmark server's, so that
// the two compare alike); 0 means none, gRPC's default of a goroutine per
// check.
func StreamWorkers(n int) grpc.ServerOption {
	if n < 0 {
		n = 4 * runtime.GOMAXPROCS(0)
	}
	return grpc.NumStreamWorkers(uint32(n))
}

// leanChecker is what the lean service calls; *Server implements it.
type leanChecker interface {
	checkWire(ctx context.Context, r *wireRequest) *wireAnswer
}

// leanServiceDesc is authv3.Authorization_ServiceDesc with a Check
// handler that asks the codec for a *wireRequest instead of a
// *authv3.CheckRequest, and hands it a *wireAnswer instead of a
// *authv3.CheckResponse.
var leanServiceDesc = grpc.ServiceDesc{
	ServiceName: authv3.Authorization_ServiceDesc.ServiceName,
	HandlerType: (*leanChecker)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Check", Handler: leanCheckHandler}},
	Streams:     []grpc.StreamDesc{},
	Metadata:    authv3.Authorization_ServiceDesc.Metadata,
}

// leanCheckHandler is the lean Check. An interceptor sees a *wireRequest
// and a *wireAnswer, not messages; whatever it returns, gRPC hands to the
// codec, which writes any other message as the standard codec does.
func leanCheckHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	r := new(wireRequest)
	if err := dec(r); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return srv.(leanChecker).checkWire(ctx, r), nil
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: authv3.Authorization_Check_FullMethodName}
	return interceptor(ctx, r, info, func(ctx context.Context, req any) (any, error) {
		return srv.(leanChecker).checkWire(ctx, req.(*wireRequest)), nil
	})
}

// leanCodec decodes *wireRequest with the lean decoder and encodes
// *wireAnswer with the lean encoder into a pooled buffer; every other
// message goes to gRPC's standard codec.
type leanCodec struct {
	schema *wireSchema
	std    encoding.CodecV2
	pool   mem.BufferPool
}

func newLeanCodec() (*leanCodec, error) {
	schema, err := newWireSchema()
	if err != nil {
		return nil, err
	}
	std := encoding.GetCodecV2(proto.Name)
	if std == nil {
		return nil, fmt.Errorf("extauthz: gRPC's %q codec is not registered", proto.Name)
	}
	return &leanCodec{schema: schema, std: std, pool: mem.DefaultBufferPool()}, nil
}

// Name is the content subtype the codec answers with: the standard one,
// as the bytes on the wire are the same.
func (c *leanCodec) Name() string { return proto.Name }

// Marshal writes a *wireAnswer's CheckResponse as appendResponse does,
// sized first so that the pooled buffer is taken once, at its size.
func (c *leanCodec) Marshal(v any) (mem.BufferSlice, error) {
	w, ok := v.(*wireAnswer)
	if !ok {
		return c.std.Marshal(v)
	}
	var a answer
	a.decide(&w.decision, w.opts)
	if err := a.validate(); err != nil {
		return nil, fmt.Errorf("extauthz: marshal CheckResponse: %w", err)
	}
	size := a.wireSize()
	buf := c.pool.Get(size)
	out := a.appendWire((*buf)[:0])
	if len(out) != size || &out[0] != &(*buf)[0] {
		// A size that disagrees with the bytes is a bug here; never send
		// what it wrote.
		c.pool.Put(buf)
		return nil, fmt.Errorf("extauthz: marshal CheckResponse: wrote %d bytes of %d", len(out), size)
	}
	*buf = out
	return mem.BufferSlice{mem.NewBuffer(buf, c.pool)}, nil
}

func (c *leanCodec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*wireRequest)
	if !ok {
		return c.std.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(c.pool)
	defer buf.Free()
	return c.schema.decode(buf.ReadOnlyData(), r)
}
