package main

import (
	"context"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/authz-sidecar/authz-sidecar/internal/tracing/tracingtest"
)

// serve --otlp-endpoint exports a span per decision to a real OTLP
// receiver, continuing the request's traceparent, with the token check and
// the tiers the lookup reached as children.
func TestServeExportsTraces(t *testing.T) {
	rec := tracingtest.NewReceiver(t)
	r := startServe(t, "--otlp-endpoint", rec.Addr, "--otlp-insecure")

	const traceID, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	resp, err := r.client.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/api/orgs/acme/leave/1", Headers: map[string]string{
				"authorization": "Bearer " + r.keys.User("bob"),
				"traceparent":   "00-" + traceID + "-" + parent + "-01",
			}}},
	}})
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("check: %v, %v", resp, err)
	}

	inTrace := func(spans []*tracepb.Span, name string) []*tracepb.Span {
		var out []*tracepb.Span
		for _, s := range spans {
			if s.GetName() == name && tracingtest.HexID(s.GetTraceId()) == traceID {
				out = append(out, s)
			}
		}
		return out
	}
	want := []string{"authz.decide", "authz.token", "authz.l1", "authz.source"}
	spans, ok := rec.WaitFor(patience, func(spans []*tracepb.Span) bool {
		for _, name := range want {
			if len(inTrace(spans, name)) == 0 {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("spans of trace %s: want %v, got %v", traceID, want, tracingtest.Names(spans))
	}
	root := inTrace(spans, "authz.decide")[0]
	if got := tracingtest.HexID(root.GetParentSpanId()); got != parent {
		t.Errorf("the decision's parent span is %s, want the request's %s", got, parent)
	}
	if a := tracingtest.Attributes(root); a["authz.route"] != "read-leave" || a["authz.reason"] != "granted" || a["authz.allow"] != "true" {
		t.Errorf("decision span attributes %v", a)
	}
	for _, name := range []string{"authz.token", "authz.l1"} {
		if s := inTrace(spans, name)[0]; string(s.GetParentSpanId()) != string(root.GetSpanId()) {
			t.Errorf("%s is not a child of the decision span", name)
		}
	}
}
