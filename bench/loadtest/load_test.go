package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDriveChecksEveryAnswer runs the closed loop against a fake front
// that answers one kind wrongly (an allow under another identity) and one
// kind not at all, and checks that drive counts exactly those.
func TestDriveChecksEveryAnswer(t *testing.T) {
	t.Parallel()
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/ok/"):
			fmt.Fprintf(w, "upstream: %s %s\nx-auth-user-id: u1\nx-auth-org-id: o1\n", r.Method, r.RequestURI)
		case strings.HasPrefix(r.URL.Path, "/impostor/"):
			fmt.Fprintf(w, "upstream: %s %s\nx-auth-user-id: u2\nx-auth-org-id: o1\n", r.Method, r.RequestURI)
		case strings.HasPrefix(r.URL.Path, "/deny/"):
			if r.Header.Get("Authorization") == "" {
				http.Error(w, "no token", http.StatusUnauthorized)
				return
			}
			http.Error(w, "forbidden", http.StatusForbidden)
		default:
			// Hang up without an answer.
			hj, _ := w.(http.Hijacker)
			conn, _, err := hj.Hijack()
			if err == nil {
				conn.Close()
			}
		}
	}))
	t.Cleanup(front.Close)

	// kinds: 0 ok, 1 impostor (wrong), 2 deny 401, 3 deny 403, 4 hang-up
	// (wrong). Each of the 4 workers sends at least one request, so
	// requests 0 to 3, two of them wrong, are sent however few a loaded
	// machine gets through in the window.
	src := func(i uint64) call {
		path := "/x/" + strconv.FormatUint(i, 10)
		c := call{kind: int((i + 1) % 5), method: "GET"}
		switch c.kind {
		case 0:
			path = "/ok" + path
			c.want = expectation{status: 200, upstream: true, userID: "u1", orgID: "o1"}
		case 1:
			path = "/impostor" + path
			c.want = expectation{status: 200, upstream: true, userID: "u1", orgID: "o1"}
		case 2:
			path = "/deny" + path
			c.want = expectation{status: 401}
		case 3:
			path, c.auth = "/deny"+path, "Bearer t"
			c.want = expectation{status: 403}
		case 4:
			path = "/gone" + path
			c.want = expectation{status: 200, upstream: true}
		}
		c.url = front.URL + path
		c.want.request = "GET " + path
		return c
	}
	client := newClient(4)
	client.Timeout = time.Minute // no answer here may count as wrong for being slow
	defer client.CloseIdleConnections()
	o := drive(context.Background(), client, src, 5, 4, 200*time.Millisecond)

	n := uint64(len(o.latencies))
	if n == 0 {
		t.Fatal("no requests")
	}
	var sum, wrong uint64
	for k, tl := range o.perKind {
		sum += tl.count
		wrong += tl.wrong
		wantWrong := uint64(0)
		if k == 1 || k == 4 {
			wantWrong = tl.count
		}
		if tl.wrong != wantWrong {
			t.Errorf("kind %d: %d wrong of %d, want %d", k, tl.wrong, tl.count, wantWrong)
		}
	}
	if sum != n || wrong != o.wrong {
		t.Errorf("per kind %d requests, %d wrong; totals %d, %d", sum, wrong, n, o.wrong)
	}
	var statusSum uint64
	for _, c := range o.statuses {
		statusSum += c
	}
	if statusSum != n || o.statuses[0] != o.perKind[4].count || o.statuses[401] != o.perKind[2].count {
		t.Errorf("statuses %v for per-kind %v", o.statuses, o.perKind)
	}
	if o.wrong == 0 || uint64(len(o.failures)) != min(o.wrong, maxFailures) {
		t.Errorf("%d failures described for %d wrong answers, want one each up to %d", len(o.failures), o.wrong, maxFailures)
	}
	for i := 1; i < len(o.latencies); i++ {
		if o.latencies[i] < o.latencies[i-1] {
			t.Fatal("latencies not sorted")
		}
	}
}

func TestVerdict(t *testing.T) {
	t.Parallel()
	good := func() *report {
		return &report{
			guarded: phase{
				out: outcome{latencies: durations(10), statuses: map[int]uint64{200: 8, 401: 1, 403: 1}},
				checks: map[string]*histogram{
					"allow": {count: 8},
					"deny":  {count: 2},
				},
			},
			baseline: phase{out: outcome{latencies: durations(10), statuses: map[int]uint64{200: 10}}},
		}
	}
	tests := []struct {
		name    string
		mutate  func(r *report)
		wantErr string
	}{
		{name: "all right", mutate: func(*report) {}},
		{name: "no metrics scraped", mutate: func(r *report) { r.guarded.checks = nil }},
		{name: "wrong answer", mutate: func(r *report) { r.guarded.out.wrong = 1 }, wantErr: "nginx + sidecar: 1 wrong"},
		{name: "wrong answer in the warm-up", mutate: func(r *report) { r.baseline.warmupWrong = 2 }, wantErr: "nginx baseline: 2 wrong"},
		{name: "empty phase", mutate: func(r *report) { r.baseline.out.latencies = nil }, wantErr: "no requests"},
		{
			// A request nginx let through without asking the sidecar.
			name: "fewer checks than requests", mutate: func(r *report) { r.guarded.checks["allow"].count = 7 },
			wantErr: "counted 9 checks",
		},
		{
			// nginx answered 200 where the sidecar said deny.
			name: "allow and deny counts swapped", mutate: func(r *report) {
				r.guarded.checks["allow"].count, r.guarded.checks["deny"].count = 7, 3
			},
			wantErr: "allow 7, deny 3",
		},
		{
			name: "a shadow deny is not an allow", mutate: func(r *report) {
				r.guarded.checks["allow"].count = 7
				r.guarded.checks["shadow_deny"] = &histogram{count: 1}
			},
			wantErr: "allow 7",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := good()
			tt.mutate(r)
			err := r.verdict()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("verdict: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("verdict passed, want an error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("verdict: %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func durations(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i+1) * time.Millisecond
	}
	return out
}

func TestParseConfig(t *testing.T) {
	t.Parallel()
	required := []string{"-better-auth", "http://ba", "-proxy", "http://front", "-baseline", "http://base"}
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    config
		wantErr string
	}{
		{
			name: "defaults", args: required,
			want: config{betterAuth: "http://ba", proxy: "http://front", baseline: "http://base", workers: 32, warmup: 2 * time.Second, duration: 10 * time.Second},
		},
		{
			name: "environment", args: required, env: map[string]string{"LOADTEST_DURATION": "3s", "LOADTEST_WARMUP": "0s", "LOADTEST_WORKERS": "8"},
			want: config{betterAuth: "http://ba", proxy: "http://front", baseline: "http://base", workers: 8, duration: 3 * time.Second},
		},
		{
			name: "flag beats environment", args: append([]string{"-duration", "1s"}, required...), env: map[string]string{"LOADTEST_DURATION": "3s"},
			want: config{betterAuth: "http://ba", proxy: "http://front", baseline: "http://base", workers: 32, warmup: 2 * time.Second, duration: time.Second},
		},
		{name: "free ports needs nothing else", args: []string{"-free-ports", "3"}, want: config{freePorts: 3, workers: 32, warmup: 2 * time.Second, duration: 10 * time.Second}},
		{name: "missing proxy", args: []string{"-better-auth", "http://ba", "-baseline", "http://base"}, wantErr: "required"},
		{name: "bad duration env", args: required, env: map[string]string{"LOADTEST_DURATION": "ten"}, wantErr: "LOADTEST_DURATION"},
		{name: "unbounded duration", args: append([]string{"-duration", "1h"}, required...), wantErr: "duration"},
		{name: "no workers", args: append([]string{"-workers", "0"}, required...), wantErr: "workers"},
		{name: "stray argument", args: append(required, "extra"), wantErr: "unexpected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseConfig(tt.args, env(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("config = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestFreePorts(t *testing.T) {
	t.Parallel()
	ports, err := freePorts(7)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p < portLow || p > portHigh || seen[p] {
			t.Errorf("port %d repeated or outside %d-%d (all: %v)", p, portLow, portHigh, ports)
		}
		seen[p] = true
	}
	if len(ports) != 7 {
		t.Fatalf("got %d ports", len(ports))
	}
	// Still bindable (unless something else took it meanwhile, which
	// would be a flake of the environment, not of freePorts).
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])))
	if err != nil {
		t.Fatalf("port %d: %v", ports[0], err)
	}
	l.Close()
}
