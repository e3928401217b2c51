package tracing_test

import (
	"context"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/cache"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
	"github.com/authz-sidecar/authz-sidecar/internal/tracing"
	"github.com/authz-sidecar/authz-sidecar/internal/tracing/tracingtest"
)

type verifier struct{}

func (verifier) Verify(_ context.Context, raw string) (*authn.Identity, error) {
	if raw != "h.bob.s" {
		return nil, authn.ErrSignature
	}
	return authn.NewIdentity("bob", time.Now().Add(time.Hour), nil), nil
}

type source struct{}

func (source) Resolve(_ context.Context, q roles.Query) (*roles.Access, roles.Tier, error) {
	return roles.Compute(roles.Membership{UserFound: true, OrgID: q.OrgRef, Roles: []string{"member"}}, q.Tables), roles.TierSource, nil
}

const doc = `jwt: { issuer: a, audiences: [a], jwks_url: http://a/jwks }
organization: { from: [path:org] }
roles: { member: { permissions: [leave:read] } }
routes:
  - { name: read, path: "/orgs/{org}/leave", require: [leave:read] }
`

func TestSpansReachAnOTLPReceiver(t *testing.T) {
	t.Parallel()
	rec := tracingtest.NewReceiver(t)
	ctx := context.Background()
	tr, err := tracing.New(ctx, tracing.Config{Endpoint: rec.Addr, Insecure: true, SampleRatio: 1})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse("t.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var src cache.Lookup[roles.Query, *roles.Access] = cache.LookupFunc[roles.Query, *roles.Access](source{}.Resolve)
	access := cache.AccessResolver{Lookup: tracing.Lookup(tr, "authz.l1", "access", tracing.Lookup(tr, "authz.postgres", "access", src))}
	engine, err := authz.New(authz.State{Policy: pol, Verifier: tr.Verifier(verifier{})}, authz.Deps{Access: access}, authz.Config{})
	if err != nil {
		t.Fatal(err)
	}
	d := tr.Decider(engine)
	const traceID, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	dec := d.Decide(ctx, &authz.Request{Method: "GET", Path: "/orgs/o1/leave", Headers: authz.HeaderMap{
		"authorization": "Bearer h.bob.s", "traceparent": "00-" + traceID + "-" + parent + "-01",
	}})
	if !dec.Allow {
		t.Fatalf("decision %+v", dec)
	}
	refused := d.Decide(ctx, &authz.Request{Method: "GET", Path: "/orgs/o1/leave", Headers: authz.HeaderMap{"authorization": "Bearer h.eve.s"}})
	if refused.Allow {
		t.Fatal("a bad token was allowed")
	}
	if err := tr.Shutdown(ctx); err != nil { // flushes to the receiver
		t.Fatal(err)
	}
	spans := rec.Spans()
	byName := map[string][]*tracepb.Span{}
	for _, s := range spans {
		byName[s.GetName()] = append(byName[s.GetName()], s)
	}
	for _, name := range []string{"authz.decide", "authz.token", "authz.l1", "authz.postgres"} {
		if len(byName[name]) == 0 {
			t.Fatalf("no %s span; got %v", name, tracingtest.Names(spans))
		}
	}
	var root *tracepb.Span
	for _, s := range byName["authz.decide"] {
		if tracingtest.HexID(s.GetTraceId()) == traceID {
			root = s
		}
	}
	if root == nil || tracingtest.HexID(root.GetParentSpanId()) != parent {
		t.Fatalf("the decision span does not continue the request's trace context: %v", root)
	}
	attrs := tracingtest.Attributes(root)
	if attrs["authz.route"] != "read" || attrs["authz.reason"] != "granted" || attrs["authz.decision_id"] != dec.ID || attrs["authz.credential"] != "jwt" {
		t.Errorf("attributes %v", attrs)
	}
	// The lookups are children of the decision, in the same trace.
	for _, name := range []string{"authz.token", "authz.l1"} {
		found := false
		for _, s := range byName[name] {
			if tracingtest.HexID(s.GetTraceId()) == traceID && string(s.GetParentSpanId()) == string(root.GetSpanId()) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s is not a child of the decision span", name)
		}
	}
	for _, s := range spans {
		for _, kv := range s.GetAttributes() {
			if strings.Contains(kv.GetValue().GetStringValue(), "h.bob.s") {
				t.Errorf("span %s carries the token", s.GetName())
			}
		}
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	if _, err := tracing.New(context.Background(), tracing.Config{}); err == nil {
		t.Error("no endpoint accepted")
	}
	if _, err := tracing.New(context.Background(), tracing.Config{Endpoint: "x:1", SampleRatio: 2}); err == nil {
		t.Error("a ratio above 1 accepted")
	}
}
