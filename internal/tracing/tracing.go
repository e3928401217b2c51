// Package tracing adds OpenTelemetry spans to decisions: one span per
// decision, continuing the W3C trace context of the request the proxy asks
// about, with child spans for the token check and for each cache tier and
// source lookup. It works by decoration: each wrapper has the interface of
// what it wraps (the engine, a verifier, a resolver), so the wiring inserts
// them only when tracing is on and the untraced hot path is untouched.
//
// Spans are exported over OTLP (gRPC) to a configured endpoint. Attributes
// never hold a credential: the route, the reason, the status, the tier, the
// decision id, the credential kind, and the user and organization ids.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/cache"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// Config says where spans go.
type Config struct {
	// Endpoint is the OTLP gRPC receiver, host:port (e.g. an OpenTelemetry
	// Collector on 127.0.0.1:4317).
	Endpoint string
	// Insecure sends without TLS (a collector on loopback or in the pod).
	Insecure bool
	// SampleRatio is the share of traces started here that are sampled;
	// a request whose proxy already decided (a sampled traceparent) follows
	// that decision.
	SampleRatio float64
	// ServiceName names the process in the traces; default authz-sidecar.
	ServiceName string
}

// Tracer makes the spans.
type Tracer struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
}

// New starts an OTLP exporter for cfg. Shutdown flushes and stops it.
func New(ctx context.Context, cfg Config) (*Tracer, error) {
	if cfg.Endpoint == "" {
		return nil, errors.New("tracing: no OTLP endpoint")
	}
	if cfg.SampleRatio < 0 || cfg.SampleRatio > 1 {
		return nil, fmt.Errorf("tracing: sample ratio %v is not in [0, 1]", cfg.SampleRatio)
	}
	if cfg.ServiceName == "" {
		cfg.ServiceName = "authz-sidecar"
	}
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(cfg.Endpoint)}
	if cfg.Insecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res := resource.NewSchemaless(semconv.ServiceName(cfg.ServiceName))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
	)
	return NewWithProvider(tp), nil
}

// NewWithProvider uses an SDK provider made elsewhere (tests).
func NewWithProvider(tp *sdktrace.TracerProvider) *Tracer {
	return &Tracer{provider: tp, tracer: tp.Tracer("github.com/authz-sidecar/authz-sidecar"), prop: propagation.TraceContext{}}
}

// Shutdown flushes the spans not yet exported and stops the exporter.
func (t *Tracer) Shutdown(ctx context.Context) error { return t.provider.Shutdown(ctx) }

// headerCarrier reads the W3C trace context from a request's headers.
type headerCarrier struct{ h authz.Headers }

func (c headerCarrier) Get(key string) string {
	if c.h == nil {
		return ""
	}
	return c.h.Get(key)
}
func (headerCarrier) Set(string, string) {}
func (headerCarrier) Keys() []string     { return nil }

// Decider is what transports call: *authz.Engine and Tracer.Decider.
type Decider interface {
	Decide(ctx context.Context, r *authz.Request) authz.Decision
}

// Decider wraps next: each decision is a span "authz.decide", a child of
// the request's traceparent when it has one.
func (t *Tracer) Decider(next Decider) Decider { return &decider{t: t, next: next} }

type decider struct {
	t    *Tracer
	next Decider
}

func (d *decider) Decide(ctx context.Context, r *authz.Request) authz.Decision {
	ctx = d.t.prop.Extract(ctx, headerCarrier{r.Headers})
	ctx, span := d.t.tracer.Start(ctx, "authz.decide", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method)))
	dec := d.next.Decide(ctx, r)
	span.SetAttributes(
		attribute.String("authz.decision_id", dec.ID),
		attribute.String("authz.route", dec.Route),
		attribute.String("authz.reason", string(dec.Reason)),
		attribute.Int("authz.status", dec.Code.HTTPStatus()),
		attribute.Bool("authz.allow", dec.Allow),
		attribute.String("authz.credential", dec.Credential.String()),
		attribute.String("authz.tier", dec.Tier.String()),
		attribute.String("authz.user_id", dec.UserID),
		attribute.String("authz.org_id", dec.OrgID),
	)
	if dec.Code == authz.CodeUnavailable {
		span.SetStatus(codes.Error, string(dec.Reason))
	}
	span.End()
	return dec
}

// end closes a lookup span with its outcome.
func end(span trace.Span, tier roles.Tier, err error) {
	span.SetAttributes(attribute.String("authz.tier", tier.String()))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "lookup failed")
	}
	span.End()
}

// Verifier wraps a token verifier: the token check is a span "authz.token".
func (t *Tracer) Verifier(next authz.TokenVerifier) authz.TokenVerifier {
	return &verifier{t: t, next: next}
}

type verifier struct {
	t    *Tracer
	next authz.TokenVerifier
}

func (v *verifier) Verify(ctx context.Context, raw string) (*authn.Identity, error) {
	ctx, span := v.t.tracer.Start(ctx, "authz.token")
	id, err := v.next.Verify(ctx, raw)
	if err != nil {
		span.SetAttributes(attribute.String("authz.token_error", authn.Describe(err)))
		span.SetStatus(codes.Error, "token refused")
	}
	span.End()
	return id, err
}

// Lookup wraps one tier of a kind of lookup (cache.Lookup): a span named
// name ("authz.l1", "authz.l2", "authz.source") with the kind and the tier
// that answered. Since each tier calls the next, the spans nest.
func Lookup[Q, V any](t *Tracer, name, kind string, next cache.Lookup[Q, V]) cache.Lookup[Q, V] {
	return &lookup[Q, V]{t: t, name: name, kind: attribute.String("authz.kind", kind), next: next}
}

type lookup[Q, V any] struct {
	t    *Tracer
	name string
	kind attribute.KeyValue
	next cache.Lookup[Q, V]
}

func (l *lookup[Q, V]) Lookup(ctx context.Context, q Q) (V, roles.Tier, error) {
	ctx, span := l.t.tracer.Start(ctx, l.name, trace.WithAttributes(l.kind))
	v, tier, err := l.next.Lookup(ctx, q)
	end(span, tier, err)
	return v, tier, err
}
