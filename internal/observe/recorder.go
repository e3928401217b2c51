// Package observe records decisions: Prometheus metrics for every one and a
// structured decision log line for every deny and a sample of allows.
// Labels are bounded: route names come from the policy, reasons from a
// fixed set; user and organization ids go only to the log.
package observe

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// Config tunes the decision log.
type Config struct {
	// AllowSampleRate logs one allow in this many (0 = no allows, 1 = all).
	// Denies are always logged (overloaded refusals at most once a second).
	AllowSampleRate uint64
}

// Recorder implements extauthz.Observer.
type Recorder struct {
	log       *zap.Logger
	cfg       Config
	decisions *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	// byResult holds latency's three series, resolved once: Observe runs
	// on every request.
	byResult map[string]prometheus.Observer
	allows   atomic.Uint64
	// lastShed is when an overloaded refusal was last logged (unix ns);
	// shed counts those not logged since.
	lastShed atomic.Int64
	shed     atomic.Uint64
}

// shedLogEvery spaces the log lines of overloaded refusals: a sidecar
// shedding load must not spend what it sheds on writing a line per refusal
// (authz_decisions_total and authz_checks_overloaded_total count each).
const shedLogEvery = time.Second

// NewRecorder registers the decision metrics on reg and logs on log.
func NewRecorder(log *zap.Logger, reg prometheus.Registerer, cfg Config) (*Recorder, error) {
	r := &Recorder{
		log: log.Named("decision"),
		cfg: cfg,
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_decisions_total",
			Help: "Decisions by result (allow, deny, shadow_deny), HTTP status, reason label and policy route name.",
		}, []string{"result", "status", "reason", "route"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "authz_check_duration_seconds",
			Help: "Time to decide one check, by result.",
			// From 50µs (an L1 hit) to 250ms (past any sane Envoy timeout).
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{r.decisions, r.latency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("observe: register metrics: %w", err)
		}
	}
	r.byResult = map[string]prometheus.Observer{}
	for _, res := range []string{"allow", "deny", "shadow_deny"} {
		r.byResult[res] = r.latency.WithLabelValues(res)
	}
	return r, nil
}

// Observe counts the decision and logs it when due.
func (r *Recorder) Observe(_ context.Context, req *authz.Request, d *authz.Decision, requestID string, elapsed time.Duration) {
	result := "deny"
	switch {
	case d.Shadowed:
		result = "shadow_deny"
	case d.Allow:
		result = "allow"
	}
	status := statusLabel(d.Code)
	r.decisions.WithLabelValues(result, status, string(d.Reason), d.Route).Inc()
	r.byResult[result].Observe(elapsed.Seconds())

	// At debug level every decision is logged with its full trace (what
	// "authz-sidecar explain" prints); at info, denies and sampled allows.
	if ce := r.log.Check(zap.DebugLevel, "decision"); ce != nil {
		ce.Write(append(r.fields(req, d, result, requestID, elapsed),
			zap.String("path", policy.SplitQuery(req.Path)),
			zap.Array("grants", grantsField(d.Grants)),
		)...)
		return
	}
	if d.Allow && !d.Shadowed && !r.sampleAllow() {
		return
	}
	var suppressed uint64
	if d.Reason == authz.ReasonOverloaded {
		var due bool
		if due, suppressed = r.shedLogDue(); !due {
			return
		}
	}
	if ce := r.log.Check(zap.InfoLevel, "decision"); ce != nil {
		fields := r.fields(req, d, result, requestID, elapsed)
		if suppressed > 0 {
			fields = append(fields, zap.Uint64("suppressed", suppressed))
		}
		ce.Write(fields...)
	}
}

// shedLogDue reports whether an overloaded refusal may be logged now, and
// how many were not since the last line.
func (r *Recorder) shedLogDue() (bool, uint64) {
	now := time.Now().UnixNano()
	last := r.lastShed.Load()
	if now-last < int64(shedLogEvery) || !r.lastShed.CompareAndSwap(last, now) {
		r.shed.Add(1)
		return false, 0
	}
	return true, r.shed.Swap(0)
}

// Admission is what the engine tells about its admission limit;
// *authz.Engine satisfies it.
type Admission interface {
	InFlight() int64
	Overloaded() uint64
}

// RegisterAdmission registers the admission metrics of a on reg:
// authz_checks_in_flight and authz_checks_overloaded_total.
func RegisterAdmission(reg prometheus.Registerer, a Admission) error {
	inFlight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "authz_checks_in_flight",
		Help: "Decisions being made now (--max-in-flight bounds them).",
	}, func() float64 { return float64(a.InFlight()) })
	overloaded := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "authz_checks_overloaded_total",
		Help: "Checks refused at once, 503 overloaded, because --max-in-flight decisions were in flight.",
	}, func() float64 { return float64(a.Overloaded()) })
	for _, c := range []prometheus.Collector{inFlight, overloaded} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("observe: register admission metrics: %w", err)
		}
	}
	return nil
}

// fields never include the token or the query string (which may carry one).
func (r *Recorder) fields(req *authz.Request, d *authz.Decision, result, requestID string, elapsed time.Duration) []zap.Field {
	return []zap.Field{
		zap.String("decision_id", d.ID),
		zap.String("request_id", requestID),
		zap.String("method", req.Method),
		zap.String("route", d.Route),
		zap.String("user", d.UserID),
		zap.String("org", d.OrgID),
		zap.Stringer("org_source", d.OrgSource),
		zap.Strings("roles", d.Roles),
		zap.String("team", d.TeamID),
		zap.Stringer("credential", d.Credential),
		zap.String("impersonated_by", d.ImpersonatedBy),
		zap.String("api_key_id", d.APIKeyID),
		zap.String("decision", result),
		zap.Int("status", d.Code.HTTPStatus()),
		zap.String("reason", string(d.Reason)),
		zap.String("detail", d.Detail),
		zap.String("tier", d.Tier.String()),
		zap.Duration("latency", elapsed),
	}
}

func (r *Recorder) sampleAllow() bool {
	n := r.cfg.AllowSampleRate
	if n == 0 {
		return false
	}
	return r.allows.Add(1)%n == 0
}

// statusLabel is the decision's status as a label, from authz's one
// mapping (strconv.Itoa would allocate on every request).
func statusLabel(c authz.Code) string {
	switch s := c.HTTPStatus(); s {
	case 200:
		return "200"
	case 401:
		return "401"
	case 403:
		return "403"
	case 503:
		return "503"
	default:
		return strconv.Itoa(s)
	}
}

// grantsField logs each role's grant as "role: perm, perm".
type grantsField roles.Grants

func (g grantsField) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	for _, gr := range g {
		enc.AppendString(gr.Role + ": " + strings.Join(gr.Perms, ", "))
	}
	return nil
}
