package observe

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

func TestRecorder(t *testing.T) {
	const token = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1MSJ9.c2ln"
	req := &authz.Request{Method: "GET", Path: "/api/orgs/o1/leave/1?access_token=" + token,
		Headers: authz.HeaderMap{"authorization": "Bearer " + token}}
	allow := &authz.Decision{Allow: true, Code: authz.CodeOK, Reason: authz.ReasonGranted, Route: "read-leave", UserID: "u1", Grants: roles.Grants{{Role: "member", Perms: []string{"leave:read"}}}}
	deny := &authz.Decision{ID: "0123456789abcdef0123456789abcdef", Code: authz.CodeForbidden, Reason: authz.ReasonMissingPermission, Detail: "missing permission leave:approve", Route: "approve-leave", UserID: "u1"}

	shed := &authz.Decision{ID: "0123456789abcdef0123456789abcdef", Code: authz.CodeUnavailable, Reason: authz.ReasonOverloaded}

	tests := []struct {
		name      string
		level     zapcore.Level
		sample    uint64
		decisions []*authz.Decision
		wantLogs  int
		wantHeld  bool
	}{
		{"denies always, allows not sampled", zap.InfoLevel, 0, []*authz.Decision{allow, deny, allow}, 1, false},
		{"one allow in two", zap.InfoLevel, 2, []*authz.Decision{allow, allow, allow, allow}, 2, false},
		{"debug logs every decision with its trace", zap.DebugLevel, 0, []*authz.Decision{allow, deny}, 2, true},
		// A burst of refusals inside shedLogEvery: one line, every deny still logged.
		{"overloaded refusals once a second", zap.InfoLevel, 0, []*authz.Decision{shed, shed, deny, shed, shed}, 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(tt.level)
			reg := prometheus.NewRegistry()
			r, err := NewRecorder(zap.New(core), reg, Config{AllowSampleRate: tt.sample})
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range tt.decisions {
				r.Observe(context.Background(), req, d, "req-1", time.Millisecond)
			}
			if n := logs.Len(); n != tt.wantLogs {
				t.Errorf("%d log lines, want %d", n, tt.wantLogs)
			}
			for _, e := range logs.All() {
				for k, v := range e.ContextMap() {
					if strings.Contains(strings.ToLower(toString(v)), strings.ToLower(token[:20])) {
						t.Errorf("log field %s carries the token: %v", k, v)
					}
				}
				if f := e.ContextMap(); f["decision"] == "deny" && f["decision_id"] != deny.ID {
					t.Errorf("deny logged with decision_id %v, want %s", f["decision_id"], deny.ID)
				}
				if _, ok := e.ContextMap()["grants"]; ok != tt.wantHeld {
					t.Errorf("held permissions logged = %v, want %v", ok, tt.wantHeld)
				}
			}
			if got := testutil.ToFloat64(r.decisions.WithLabelValues("allow", "200", "granted", "read-leave")); got != float64(countAllows(tt.decisions)) {
				t.Errorf("allow counter = %v", got)
			}
		})
	}
}

func countAllows(ds []*authz.Decision) (n int) {
	for _, d := range ds {
		if d.Allow {
			n++
		}
	}
	return n
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []any:
		var b strings.Builder
		for _, e := range x {
			b.WriteString(toString(e))
		}
		return b.String()
	default:
		return ""
	}
}
