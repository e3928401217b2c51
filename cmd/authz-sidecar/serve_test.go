package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/jwttest"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
)

const basePolicy = `
jwt:
  issuer: https://auth.example.test
  audiences: [https://auth.example.test]
  jwks_url: JWKS
organization:
  from: [path:org]
roles:
  member: { permissions: ["leave:read"] }
routes:
  - { name: health, methods: [GET], path: /healthz, public: true }
  - { name: me, path: /api/me, authenticated: true }
  - { name: read-leave, methods: [GET], path: "/api/orgs/{org}/leave/**", require: [leave:read] }
`

// listenAddrs waits until the serve command running with logs logs that
// it serves, and returns the addresses it bound: gRPC, ops HTTP and, if
// it serves HTTP decisions, that listener's. The tests pass port 0 (a port
// picked free beforehand may be taken by another process before the
// sidecar binds it). It fails t if serve returns first.
func listenAddrs(t *testing.T, logs *lockedBuffer, done chan error) (grpcAddr, httpAddr, authzAddr string) {
	t.Helper()
	eventually(t, "the sidecar to serve", func() bool {
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("serve returned before serving: %v\n%s", err, logs.String())
		default:
		}
		for line := range strings.SplitSeq(logs.String(), "\n") {
			var e struct{ Msg, GRPC, HTTP, Addr string }
			if json.Unmarshal([]byte(line), &e) != nil {
				continue
			}
			switch {
			case e.Msg == "serving":
				grpcAddr, httpAddr = e.GRPC, e.HTTP
			case strings.HasPrefix(e.Msg, "serving HTTP decisions"):
				authzAddr = e.Addr
			}
		}
		return grpcAddr != ""
	})
	return grpcAddr, httpAddr, authzAddr
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// lockedBuffer collects the sidecar's log lines from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type running struct {
	policyPath string
	grpcAddr   string
	httpAddr   string
	authzAddr  string // with --http-authz-addr
	keys       *jwttest.Keys
	client     authv3.AuthorizationClient
	health     healthpb.HealthClient
	cancel     context.CancelFunc
	done       chan error
	logs       *lockedBuffer
}

// startServe runs the real "serve" command in-process, on a database of
// its own where bob is a member of acme.
func startServe(t *testing.T, extraArgs ...string) *running {
	t.Helper()
	dbURL := pgtest.NewDatabase(t)
	seed := pgtest.NewSeeder(t, dbURL)
	seed.User(t, "bob", "bob")
	seed.Org(t, "acme", "acme")
	seed.Member(t, "acme", "bob", "member")
	return startServeOn(t, dbURL, extraArgs...)
}

// startServeOn runs the real "serve" command in-process on dbURL, with
// basePolicy, and waits until it reports SERVING.
func startServeOn(t *testing.T, dbURL string, extraArgs ...string) *running {
	t.Helper()
	r := &running{keys: jwttest.NewKeys(t), logs: &lockedBuffer{}}
	r.policyPath = filepath.Join(t.TempDir(), "policies.yaml")
	r.writePolicy(t, basePolicy)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan error, 1)
	// A check deadline far above a cold check on a loaded machine (pool
	// connect, prepare, query, under the race detector): these tests are
	// not about the deadline, and the 100 ms default turned a slow first
	// check into a 503. extraArgs come last and may override it.
	args := append([]string{"serve", "--policies", r.policyPath, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--database-url", dbURL, "--drain-timeout", "2s", "--check-timeout", patience.String()}, extraArgs...)
	go func() { r.done <- run(ctx, args, func(string) string { return "" }, io.Discard, r.logs) }()
	t.Cleanup(func() {
		cancel()
		err := <-r.done
		if t.Failed() {
			t.Logf("serve returned %v; sidecar log:\n%s", err, r.logs.String())
		}
	})
	r.grpcAddr, r.httpAddr, r.authzAddr = listenAddrs(t, r.logs, r.done)

	conn, err := grpc.NewClient(r.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r.client = authv3.NewAuthorizationClient(conn)
	r.health = healthpb.NewHealthClient(conn)
	eventually(t, "gRPC health SERVING", func() bool {
		resp, err := r.health.Check(context.Background(), &healthpb.HealthCheckRequest{})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
	return r
}

func (r *running) writePolicy(t *testing.T, body string) {
	t.Helper()
	// Write then rename, as editors and ConfigMaps do.
	tmp := r.policyPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Replace(body, "JWKS", r.keys.URL, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, r.policyPath); err != nil {
		t.Fatal(err)
	}
}

func (r *running) status(t *testing.T, method, path, token string) int {
	t.Helper()
	h := map[string]string{}
	if token != "" {
		h["authorization"] = "Bearer " + token
	}
	resp, err := r.client.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Headers: h}},
	}})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if resp.GetOkResponse() != nil {
		return 200
	}
	return int(resp.GetDeniedResponse().GetStatus().GetCode())
}

func (r *running) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + r.httpAddr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// patience bounds every wait for a condition or an event in these tests: a
// failure bound far above what anything takes on a loaded machine, never
// what a test asserts.
const patience = 30 * time.Second

// eventually polls cond, for conditions no event announces (a reload
// picked up, a listener up).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", patience, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServePolicyReload(t *testing.T) {
	r := startServe(t)
	bob := r.keys.User("bob")
	if got := r.status(t, "GET", "/api/orgs/acme/leave/1", bob); got != 200 {
		t.Fatalf("before reload: %d", got)
	}
	if got := r.status(t, "GET", "/api/new", ""); got != 403 {
		t.Fatalf("unknown route before reload: %d", got)
	}

	// A valid change swaps in: a new public route, and member loses leave:read.
	changed := strings.Replace(basePolicy, `member: { permissions: ["leave:read"] }`, `member: { permissions: ["leave:request"] }
  reader: { permissions: ["leave:read"] }`, 1) + "  - { name: new, methods: [GET], path: /api/new, public: true }\n"
	r.writePolicy(t, changed)
	eventually(t, "the new route", func() bool { return r.status(t, "GET", "/api/new", "") == 200 })
	// Cached permission sets are keyed by policy version: no stale grant.
	if got := r.status(t, "GET", "/api/orgs/acme/leave/1", bob); got != 403 {
		t.Errorf("member kept leave:read after the role changed: %d", got)
	}

	// An invalid file is rejected whole; the last good policy keeps serving.
	r.writePolicy(t, changed+"  - { name: broken, path: /x, require: [nope:nope] }\n")
	eventually(t, "readyz to show the failed reload", func() bool {
		_, body := r.get(t, "/readyz")
		return strings.Contains(body, "last policy reload failed") && strings.Contains(body, "policies.yaml:")
	})
	if code, _ := r.get(t, "/readyz"); code != 200 {
		t.Errorf("readyz = %d after a rejected reload; the old policy still serves", code)
	}
	if got := r.status(t, "GET", "/api/new", ""); got != 200 {
		t.Errorf("old policy not serving after a rejected reload: %d", got)
	}
	_, metrics := r.get(t, "/metrics")
	if !strings.Contains(metrics, `authz_policy_reloads_total{result="failure"}`) {
		t.Error("no failure counted in authz_policy_reloads_total")
	}
	if !strings.Contains(metrics, `authz_pg_pool_connections{state="in_use"}`) {
		t.Error("no authz_pg_pool_connections in /metrics")
	}

	// SIGHUP reloads too: with the file unchanged since the last good load
	// it counts as "unchanged"; fix the file first.
	r.writePolicy(t, changed)
	eventually(t, "the fixed file to load", func() bool {
		_, body := r.get(t, "/readyz")
		return !strings.Contains(body, "failed")
	})
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "SIGHUP reload", func() bool {
		_, m := r.get(t, "/metrics")
		return strings.Contains(m, `authz_policy_reloads_total{result="unchanged"}`)
	})
}

func TestServeGracefulShutdown(t *testing.T) {
	r := startServe(t)
	if got := r.status(t, "GET", "/healthz", ""); got != 200 {
		t.Fatalf("public route: %d", got)
	}
	r.cancel() // what SIGTERM does through signal.NotifyContext
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("serve returned %v, want nil (exit 0)", err)
		}
		r.done <- nil // for the cleanup
	case <-time.After(patience):
		t.Fatal("serve did not stop after its context ended")
	}
	if !strings.Contains(r.logs.String(), "draining") {
		t.Error("no drain logged")
	}
}

func TestServeNotReadyWithoutKeys(t *testing.T) {
	// A JWKS URL where nothing listens: fail closed, not ready.
	dead := "http://" + freeAddr(t) + "/jwks"
	dbURL := pgtest.NewDatabase(t)
	p := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(p, []byte(strings.Replace(basePolicy, "JWKS", dead, 1)), 0o600)
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--policies", p, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--database-url", dbURL},
			func(string) string { return "" }, io.Discard, logs)
	}()
	defer func() { cancel(); <-done }()
	grpcAddr, httpAddr, _ := listenAddrs(t, logs, done)
	eventually(t, "http listener", func() bool {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	conn, _ := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health = %v, %v; want NOT_SERVING", resp, err)
	}
	keys := jwttest.NewKeys(t)
	cr, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/api/me", Headers: map[string]string{"authorization": "Bearer " + keys.User("bob")}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := cr.GetDeniedResponse().GetStatus().GetCode(); got != 503 {
		t.Errorf("check without keys: status %v, want 503 (%v)", got, cr)
	}
}

func TestValidateCommand(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte(strings.Replace(basePolicy, "JWKS", "http://127.0.0.1:3000/api/auth/jwks", 1)), 0o600)
	os.WriteFile(bad, []byte(strings.Replace(strings.Replace(basePolicy, "JWKS", "http://127.0.0.1:3000/api/auth/jwks", 1),
		"require: [leave:read]", "require: [leave:raed]", 1)), 0o600)
	// A route that path matching never selects is valid but must be told.
	shadowed := filepath.Join(dir, "shadowed.yaml")
	os.WriteFile(shadowed, []byte(strings.Replace(basePolicy, "JWKS", "http://127.0.0.1:3000/api/auth/jwks", 1)+
		"  - { name: me-again, path: /api/me, authenticated: true }\n"), 0o600)
	tests := []struct {
		name    string
		args    []string
		wantErr bool
		out     string
	}{
		{"valid file", []string{"validate", good}, false, "ok (version"},
		{"broken file names the line", []string{"validate", bad}, true, "bad.yaml:13:"},
		{"warnings are printed", []string{"validate", shadowed}, false, "shadowed.yaml:14:5: warning: route \"me-again\" is never selected by path matching"},
		{"missing file", []string{"validate", filepath.Join(dir, "nope.yaml")}, true, ""},
		{"two files", []string{"validate", good, bad}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), tt.args, func(string) string { return "" }, &out, &errOut)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !strings.Contains(out.String(), tt.out) {
				t.Errorf("output %q does not contain %q", out.String(), tt.out)
			}
		})
	}
}

func TestServeConfigErrors(t *testing.T) {
	env := map[string]string{"AUTHZ_CHECK_TIMEOUT": "soon"}
	_, err := parseServeConfig([]string{"--database-url", "postgres://x"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "AUTHZ_CHECK_TIMEOUT") {
		t.Errorf("bad env duration: err = %v", err)
	}
	if _, err := parseServeConfig(nil, func(string) string { return "" }, io.Discard, io.Discard); err == nil {
		t.Error("missing database URL accepted")
	}
	c, err := parseServeConfig([]string{"--grpc-addr", "127.0.0.1:1"}, func(k string) string {
		return map[string]string{"DATABASE_URL": "postgres://db", "AUTHZ_GRPC_ADDR": "127.0.0.1:2", "AUTHZ_L1_TTL": "3s"}[k]
	}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.GRPCAddr != "127.0.0.1:1" || c.DatabaseURL != "postgres://db" || c.L1TTL != 3*time.Second {
		t.Errorf("flag must beat env, env beat default: %+v", c)
	}
}

func TestPolicyTestCommand(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"test", "../../policies_test.yaml"}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatalf("shipped policy tests: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), " passed, 0 failed") {
		t.Errorf("no summary line: %s", out.String())
	}
	// A failing case makes the command fail.
	dir := t.TempDir()
	pol, _ := os.ReadFile("../../policies.yaml")
	os.WriteFile(filepath.Join(dir, "policies.yaml"), pol, 0o600)
	os.WriteFile(filepath.Join(dir, "t.yaml"), []byte(`policy: policies.yaml
cases:
  - name: members cannot approve
    request: { method: POST, path: /api/orgs/acme/leave/1/approve }
    user: { id: u1, roles: [member] }
    expect: { decision: allow }
`), 0o600)
	out.Reset()
	err := run(context.Background(), []string{"test", filepath.Join(dir, "t.yaml")}, func(string) string { return "" }, &out, io.Discard)
	if err == nil || !strings.Contains(out.String(), "0 passed, 1 failed") || !strings.Contains(out.String(), "requires leave:approve from one role") {
		t.Errorf("err %v, output:\n%s", err, out.String())
	}
}

func TestExplainCommand(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"offline deny", []string{"--method", "POST", "--path", "/api/orgs/acme/leave/1/approve", "--user", "u1", "--roles", "member"},
			[]string{"route:       approve-leave", "org:         acme (from path:org)", "roles:       [member] (from the command line)", "member:    [ac:read, leave:read, leave:request]", "decision:    DENY 403", "missing_permission: missing permission (requires leave:approve from one role)"}},
		// Any fact about the user keeps explain offline, not only --roles
		// (the usage's own example has no --roles and no database).
		{"offline platform role", []string{"--method", "POST", "--path", "/api/admin/users/ban", "--user", "u9", "--platform-role", "admin"},
			[]string{"route:       ban-user (POST /api/admin/users/ban, line", "decision:    ALLOW"}},
		{"offline banned user", []string{"--path", "/api/me", "--user", "u9", "--banned"},
			[]string{"route:       me (/api/me, line", "decision:    DENY 403", "reason:      banned"}},
		{"offline custom role allows", []string{"--method", "POST", "--path", "/api/orgs/acme/leave/1/approve", "--user", "u1", "--roles", "member,approver", "--custom-role", "approver=leave:approve"},
			[]string{"decision:    ALLOW", "reason:      granted"}},
		{"org from header", []string{"--method", "GET", "--path", "/api/me", "--user", "u1", "--roles", "member", "-H", "X-Organization-Id: acme"},
			[]string{"route:       me", "decision:    ALLOW"}},
		{"no route", []string{"--path", "/nope", "--user", "u1", "--roles", "owner"},
			[]string{"route:       (none)", "DENY 403", "no_route"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			args := append([]string{"explain", "--policies", "../../policies.yaml"}, tt.args...)
			if err := run(context.Background(), args, func(string) string { return "" }, &out, io.Discard); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

// A route chosen by name still needs the path Envoy would send: the engine
// checks it and reads {params} from it, so without one explain could only
// show an ambiguous_path deny.
func TestExplainNeedsAPath(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"explain", "--policies", "../../policies.yaml", "--route", "me", "--user", "u1", "--roles", "member"},
		func(string) string { return "" }, &out, io.Discard)
	if err == nil {
		t.Errorf("explain --route without --path explained:\n%s", out.String())
	}
}

func TestExplainWithTokenAndDatabase(t *testing.T) {
	keys := jwttest.NewKeys(t)
	dbURL := pgtest.NewDatabase(t)
	seed := pgtest.NewSeeder(t, dbURL)
	seed.User(t, "bob", "bob")
	seed.Org(t, "acme", "acme")
	seed.Member(t, "acme", "bob", "admin,member")
	p := filepath.Join(t.TempDir(), "p.yaml")
	pol, _ := os.ReadFile("../../policies.yaml")
	os.WriteFile(p, []byte(strings.ReplaceAll(strings.ReplaceAll(string(pol), "http://127.0.0.1:3000/api/auth/jwks", keys.URL), "http://127.0.0.1:3000", jwttest.Issuer)), 0o600)
	var out bytes.Buffer
	err := run(context.Background(), []string{"explain", "--policies", p, "--method", "POST", "--path", "/api/orgs/acme/leave/1/approve",
		"--token", keys.User("bob"), "--database-url", dbURL}, func(string) string { return "" }, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"user:        bob", "roles:       [admin, member] (from postgres)", "decision:    ALLOW"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
	out.Reset()
	run(context.Background(), []string{"explain", "--policies", p, "--path", "/api/me", "--token", keys.Token("other", nil, map[string]any{"sub": "bob"}),
		"--database-url", dbURL}, func(string) string { return "" }, &out, io.Discard)
	if !strings.Contains(out.String(), "DENY 401") {
		t.Errorf("forged token explained as:\n%s", out.String())
	}
}

// explain --cookie takes the cookie's value as a browser stores and sends
// it (percent-encoded, as Better Auth sets it) or decoded, and explains the
// same decision for both.
func TestExplainCookie(t *testing.T) {
	const secretValue = "explain-cookie-secret-0123456789abcdef0123"
	dbURL := pgtest.NewDatabase(t)
	seed := pgtest.NewSeeder(t, dbURL)
	seed.User(t, "bob", "bob")
	seed.Org(t, "acme", "acme")
	seed.Member(t, "acme", "bob", "member")
	const token = "explainCookieToken0123456789abcd"
	seed.Session(t, pgtest.Session{ID: "s1", Token: token, UserID: "bob", ExpiresAt: time.Now().Add(time.Hour)})
	secret, err := authn.NewSecret(secretValue)
	if err != nil {
		t.Fatal(err)
	}
	signed := token + "." + secret.Sign(token)
	if !strings.ContainsAny(signed, "/+=") {
		t.Fatalf("signature %q has no character a browser stores encoded; the test would prove nothing", signed)
	}
	// A cookie needs no signing keys: the policy's JWKS is where nothing
	// listens, and explain must not try it.
	dead := "http://" + freeAddr(t) + "/jwks"
	p := filepath.Join(t.TempDir(), "p.yaml")
	pol, err := os.ReadFile("../../policies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(pol), "http://127.0.0.1:3000/api/auth/jwks", dead)), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string {
		if k == "BETTER_AUTH_SECRET" {
			return secretValue
		}
		return ""
	}
	for name, value := range map[string]string{"as stored (percent-encoded)": url.QueryEscape(signed), "decoded": signed} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), []string{"explain", "--policies", p, "--path", "/api/orgs/acme/leave/1",
				"--cookie", value, "--database-url", dbURL}, getenv, &out, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range []string{"credential:  session", "user:        bob", "decision:    ALLOW"} {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestServeHTTPAuthz(t *testing.T) {
	r := startServe(t, "--http-authz-addr", "127.0.0.1:0")
	addr := r.authzAddr
	if addr == "" {
		t.Fatal("no HTTP decisions listener logged")
	}
	ask := func(uri, token string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.Header.Set("X-Original-Method", "GET")
		req.Header.Set("X-Original-URI", uri)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Auth-User-Id")
	}
	if code, user := ask("/api/orgs/acme/leave/1?x=1", r.keys.User("bob")); code != 200 || user != "bob" {
		t.Errorf("member over HTTP: %d %q", code, user)
	}
	if code, _ := ask("/api/orgs/acme/leave/1", ""); code != 401 {
		t.Errorf("no token over HTTP: %d", code)
	}
	if code, _ := ask("/api/orgs/other/leave/1", r.keys.User("bob")); code != 403 {
		t.Errorf("non-member over HTTP: %d", code)
	}
}
