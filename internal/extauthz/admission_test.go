package extauthz_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/extauthz"
	"github.com/authz-sidecar/authz-sidecar/internal/observe"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// gatedResolver is a permission tier that holds every lookup until release
// is closed, telling entered about each: the test decides when the tier
// answers, so "saturated" is a state, not a race against a sleep.
type gatedResolver struct {
	entered chan struct{}
	release chan struct{}
}

func (g *gatedResolver) Resolve(ctx context.Context, q roles.Query) (*roles.Access, roles.Tier, error) {
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, roles.TierSource, ctx.Err()
	}
	m := roles.Membership{UserFound: true, OrgID: "o1", Roles: []string{"member"}}
	return roles.Compute(m, q.Tables), roles.TierSource, nil
}

// TestAdmissionLimit fills the engine's --max-in-flight with checks held
// in the permission tier and asks for more over a real gRPC connection:
// every one past the limit is refused at once, 503 overloaded, never
// allowed (not even on a shadow route, where a deny is let through), and
// counted; once the tier answers, the held checks are allowed and new ones
// admitted again.
func TestAdmissionLimit(t *testing.T) {
	t.Parallel()
	const limit, excess = 3, 20
	signer, pol, verifier := signedPolicy(t, policyYAML)
	gate := &gatedResolver{entered: make(chan struct{}, limit+excess), release: make(chan struct{})}
	engine, err := authz.New(authz.State{Policy: pol, Verifier: verifier}, authz.Deps{Access: gate}, authz.Config{MaxInFlight: limit})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := observe.RegisterAdmission(reg, engine); err != nil {
		t.Fatal(err)
	}
	client := serveGRPC(t, extauthz.New(engine, nil, extauthz.Config{Timeout: checkTimeout}))
	e := &env{client: client}
	hdr := bearer(signer.User("u1"))
	read := checkRequest("GET", "/api/orgs/o1/leave/7", hdr, "read-leave")
	shadow := checkRequest("GET", "/api/orgs/o1/shadow", hdr, "shadow")

	// Fill every slot with a check held in the tier.
	held := make(chan outcome, limit)
	var wg sync.WaitGroup
	for range limit {
		wg.Go(func() { held <- e.check(t, read) })
	}
	for range limit {
		<-gate.entered
	}
	if got := engine.InFlight(); got != limit {
		t.Fatalf("in flight with every slot held: %d, want %d", got, limit)
	}

	// The excess, sequential and concurrent, on an ordinary and a shadow
	// route: refused at once, never reaching the tier.
	overloaded := func(name string, o outcome) {
		t.Helper()
		if o.status != 503 || o.set["x-authz-reason"] != string(authz.ReasonOverloaded) || !strings.Contains(o.body, `"error":"unavailable"`) {
			t.Errorf("%s past the limit: status %d, reason %q, body %s; want 503 overloaded", name, o.status, o.set["x-authz-reason"], o.body)
		}
	}
	overloaded("read", e.check(t, read))
	overloaded("shadow", e.check(t, shadow))
	var refused sync.WaitGroup
	for i := range excess - 2 {
		refused.Go(func() {
			if i%2 == 0 {
				overloaded("concurrent read", e.check(t, read))
			} else {
				overloaded("concurrent shadow", e.check(t, shadow))
			}
		})
	}
	refused.Wait()
	if n := len(gate.entered); n != 0 {
		t.Errorf("%d refused checks reached the permission tier", n)
	}
	if got := engine.Overloaded(); got != excess {
		t.Errorf("Overloaded() = %d, want %d", got, excess)
	}
	if got := metricValue(t, reg, "authz_checks_overloaded_total"); got != excess {
		t.Errorf("authz_checks_overloaded_total = %v, want %d", got, excess)
	}
	if got := metricValue(t, reg, "authz_checks_in_flight"); got != limit {
		t.Errorf("authz_checks_in_flight = %v, want %d", got, limit)
	}

	// The tier answers: the held checks are allowed, the slots free again.
	close(gate.release)
	wg.Wait()
	close(held)
	for o := range held {
		if o.status != 200 {
			t.Errorf("a held check answered %d (%s), want 200", o.status, o.body)
		}
	}
	if got := engine.InFlight(); got != 0 {
		t.Errorf("in flight after every check answered: %d", got)
	}
	if o := e.check(t, read); o.status != 200 {
		t.Errorf("after the load: %d (%s), want 200", o.status, o.body)
	}
	if o := e.check(t, shadow); o.status != 200 || o.set[authz.HeaderShadowDeny] == "" {
		t.Errorf("shadow route after the load: %d %v, want 200 with a shadow deny", o.status, o.set)
	}
	if got := engine.Overloaded(); got != excess {
		t.Errorf("Overloaded() after the load = %d, want %d", got, excess)
	}
}

// metricValue reads the registered gauge or counter named name.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("%s is not registered", name)
	return 0
}
