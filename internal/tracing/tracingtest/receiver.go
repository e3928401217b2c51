// Package tracingtest is a real OTLP trace receiver for tests: what a
// collector would get from the sidecar, over gRPC on loopback.
package tracingtest

import (
	"context"
	"encoding/hex"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// Receiver collects the spans exported to it.
type Receiver struct {
	collectortrace.UnimplementedTraceServiceServer
	// Addr is host:port, for an OTLP exporter's endpoint (insecure).
	Addr string

	mu    sync.Mutex
	spans []*tracepb.Span
	got   chan struct{} // a token per export, dropped when one is pending
}

// NewReceiver listens on a free loopback port until the test ends.
func NewReceiver(t testing.TB) *Receiver {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Receiver{Addr: lis.Addr().String(), got: make(chan struct{}, 1)}
	s := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(s, r)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return r
}

// Export implements the OTLP trace service.
func (r *Receiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			r.spans = append(r.spans, ss.GetSpans()...)
		}
	}
	r.mu.Unlock()
	select {
	case r.got <- struct{}{}:
	default:
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// Spans returns a copy of the spans received so far.
func (r *Receiver) Spans() []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tracepb.Span(nil), r.spans...)
}

// WaitFor waits, for up to patience, until cond holds of the spans
// received; it returns them either way, and whether cond held. Each export
// wakes it, so it polls nothing.
func (r *Receiver) WaitFor(patience time.Duration, cond func([]*tracepb.Span) bool) ([]*tracepb.Span, bool) {
	deadline := time.NewTimer(patience)
	defer deadline.Stop()
	for {
		spans := r.Spans()
		if cond(spans) {
			return spans, true
		}
		select {
		case <-r.got:
		case <-deadline.C:
			return r.Spans(), false
		}
	}
}

// Names lists the spans' names, for failure messages.
func Names(spans []*tracepb.Span) []string {
	out := make([]string, 0, len(spans))
	for _, s := range spans {
		out = append(out, s.GetName())
	}
	return out
}

// HexID is a trace or span id as traceparent writes it.
func HexID(b []byte) string { return hex.EncodeToString(b) }

// Attributes maps a span's string and bool attributes to their text.
func Attributes(s *tracepb.Span) map[string]string {
	out := map[string]string{}
	for _, kv := range s.GetAttributes() {
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			out[kv.GetKey()] = v.StringValue
		case *commonpb.AnyValue_BoolValue:
			out[kv.GetKey()] = strconv.FormatBool(v.BoolValue)
		}
	}
	return out
}
