package httpauthz_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/extauthz"
	"github.com/authz-sidecar/authz-sidecar/internal/httpauthz"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
)

// fakeDecider records every request it is asked about and answers with
// answer (allow for "u1" when nil).
type fakeDecider struct {
	answer func(r *authz.Request) authz.Decision

	mu        sync.Mutex
	calls     []authz.Request // guarded by mu
	deadlines []time.Time     // guarded by mu; the context's deadline, zero if none
}

func (f *fakeDecider) Decide(ctx context.Context, r *authz.Request) authz.Decision {
	f.mu.Lock()
	f.calls = append(f.calls, *r)
	dl, _ := ctx.Deadline()
	f.deadlines = append(f.deadlines, dl)
	f.mu.Unlock()
	if f.answer != nil {
		return f.answer(r)
	}
	return authz.Decision{Allow: true, Code: authz.CodeOK, Reason: authz.ReasonGranted, UserID: "u1"}
}

func (f *fakeDecider) requests() []authz.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]authz.Request(nil), f.calls...)
}

func answer(d authz.Decision) func(*authz.Request) authz.Decision {
	return func(*authz.Request) authz.Decision { return d }
}

func newServer(t *testing.T, d httpauthz.Decider, obs httpauthz.Observer, cfg httpauthz.Config) *httptest.Server {
	t.Helper()
	h, err := httpauthz.NewHandler(d, obs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

type result struct {
	status int
	header http.Header
	body   string
}

// raw sends one HTTP/1.1 request with exactly this request line and these
// header lines, so targets reach the server byte for byte as a proxy would
// send them.
func raw(t *testing.T, srv *httptest.Server, method, target string, headers ...string) result {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: authz.test\r\nConnection: close\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return result{resp.StatusCode, resp.Header, string(body)}
}

func TestOriginalRequest(t *testing.T) {
	t.Parallel()
	cfg := httpauthz.Config{EnvoyPathPrefix: "/envoy"}
	tests := []struct {
		name       string
		method     string
		target     string
		headers    []string
		wantMethod string
		wantPath   string
	}{
		{
			name: "nginx auth_request", method: "GET", target: "/",
			headers:    []string{"X-Original-Method: DELETE", "X-Original-URI: /api/orgs/o1?force=1&x=%2F"},
			wantMethod: "DELETE", wantPath: "/api/orgs/o1?force=1&x=%2F",
		},
		{
			// nginx's auth subrequest inherits the original method; only the
			// header counts.
			name: "nginx subrequest method ignored", method: "POST", target: "/",
			headers:    []string{"X-Original-Method: GET", "X-Original-URI: /api/me"},
			wantMethod: "GET", wantPath: "/api/me",
		},
		{
			name: "traefik forwardAuth", method: "GET", target: "/",
			headers: []string{
				"X-Forwarded-Method: POST", "X-Forwarded-Uri: /api/orgs/o1/leave?draft=true",
				"X-Forwarded-Host: app.example.test", "X-Forwarded-Proto: https", "X-Forwarded-For: 203.0.113.9",
			},
			wantMethod: "POST", wantPath: "/api/orgs/o1/leave?draft=true",
		},
		{
			name: "caddy forward_auth", method: "GET", target: "/",
			headers: []string{
				"X-Forwarded-Method: PUT", "X-Forwarded-Uri: /api/x",
				"X-Forwarded-Host: app.example.test", "X-Forwarded-Proto: http", "X-Forwarded-For: 127.0.0.1",
			},
			wantMethod: "PUT", wantPath: "/api/x",
		},
		{
			name: "envoy http service", method: "PATCH", target: "/envoy/api/orgs/o1/leave?x=1",
			wantMethod: "PATCH", wantPath: "/api/orgs/o1/leave?x=1",
		},
		{
			// The raw target goes to the engine, which judges encodings itself.
			name: "envoy target kept raw", method: "GET", target: "/envoy/api/a%2Fb",
			wantMethod: "GET", wantPath: "/api/a%2Fb",
		},
		{
			name: "envoy root", method: "GET", target: "/envoy/",
			wantMethod: "GET", wantPath: "/",
		},
		{
			// Envoy's request line is its own; headers a client slipped
			// through allowed_headers change nothing.
			name: "envoy ignores forwarded headers", method: "POST", target: "/envoy/api/admin",
			headers:    []string{"X-Original-Method: GET", "X-Original-URI: /public", "X-Forwarded-Uri: /public"},
			wantMethod: "POST", wantPath: "/api/admin",
		},
		{
			// Not the prefix followed by "/": a header-style request.
			name: "prefix lookalike is not envoy", method: "GET", target: "/envoyx/api",
			headers:    []string{"X-Original-Method: GET", "X-Original-URI: /api/me"},
			wantMethod: "GET", wantPath: "/api/me",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := &fakeDecider{}
			srv := newServer(t, d, nil, cfg)
			res := raw(t, srv, tc.method, tc.target, tc.headers...)
			if res.status != http.StatusOK {
				t.Fatalf("status %d, body %s", res.status, res.body)
			}
			reqs := d.requests()
			if len(reqs) != 1 {
				t.Fatalf("decider asked %d times, want 1", len(reqs))
			}
			if got := reqs[0]; got.Method != tc.wantMethod || got.Path != tc.wantPath {
				t.Errorf("engine got %s %q, want %s %q", got.Method, got.Path, tc.wantMethod, tc.wantPath)
			}
			if reqs[0].RouteName != "" {
				t.Errorf("RouteName = %q, want empty", reqs[0].RouteName)
			}
		})
	}
}

// TestRefusals covers the requests answered 403 without asking the engine.
func TestRefusals(t *testing.T) {
	t.Parallel()
	notLoopback := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	const secret = "s3cr3t-marker"
	tests := []struct {
		name       string
		trusted    []netip.Prefix
		method     string
		target     string
		headers    []string
		wantReason authz.Reason
	}{
		{
			name: "untrusted peer, nginx headers", trusted: notLoopback, method: "GET", target: "/",
			headers:    []string{"X-Original-Method: GET", "X-Original-URI: /public"},
			wantReason: httpauthz.ReasonUntrustedPeer,
		},
		{
			name: "untrusted peer, forwarded headers", trusted: notLoopback, method: "GET", target: "/",
			headers:    []string{"X-Forwarded-Method: GET", "X-Forwarded-Uri: /public"},
			wantReason: httpauthz.ReasonUntrustedPeer,
		},
		{
			name: "untrusted peer, envoy style", trusted: notLoopback, method: "GET", target: "/envoy/public",
			wantReason: httpauthz.ReasonUntrustedPeer,
		},
		{
			name: "nothing names the request", method: "GET", target: "/",
			wantReason: httpauthz.ReasonBadOriginalRequest,
		},
		{
			name: "only X-Forwarded-Host/Proto/For", method: "GET", target: "/",
			headers:    []string{"X-Forwarded-Host: a.test", "X-Forwarded-Proto: https", "X-Forwarded-For: 1.2.3.4"},
			wantReason: httpauthz.ReasonBadOriginalRequest,
		},
		{
			name: "envoy prefix without slash", method: "GET", target: "/envoy",
			wantReason: httpauthz.ReasonBadOriginalRequest,
		},
		{
			// Defaulting to GET could let a DELETE pass as a read.
			name: "uri without method", method: "DELETE", target: "/",
			headers:    []string{"X-Original-URI: /api/x"},
			wantReason: httpauthz.ReasonBadOriginalRequest,
		},
		{
			name: "method without uri", method: "GET", target: "/",
			headers:    []string{"X-Forwarded-Method: GET"},
			wantReason: httpauthz.ReasonBadOriginalRequest,
		},
		{
			// A client behind nginx adding X-Forwarded-Uri, or behind
			// Traefik adding X-Original-URI.
			name: "both families", method: "GET", target: "/",
			headers: []string{
				"X-Original-Method: DELETE", "X-Original-URI: /api/orgs/o1",
				"X-Forwarded-Method: GET", "X-Forwarded-Uri: /public",
			},
			wantReason: httpauthz.ReasonBadOriginalRequest,
		},
		{
			name: "both families, partial", method: "GET", target: "/",
			headers:    []string{"X-Original-Method: GET", "X-Original-URI: /api/me", "X-Forwarded-Uri: /public"},
			wantReason: httpauthz.ReasonBadOriginalRequest,
		},
		{
			name: "uri repeated", method: "GET", target: "/",
			headers:    []string{"X-Original-Method: GET", "X-Original-URI: /public", "X-Original-URI: /api/admin"},
			wantReason: httpauthz.ReasonBadOriginalRequest,
		},
		{
			name: "method repeated", method: "GET", target: "/",
			headers:    []string{"X-Forwarded-Method: GET", "X-Forwarded-Method: DELETE", "X-Forwarded-Uri: /api/x"},
			wantReason: httpauthz.ReasonBadOriginalRequest,
		},
		{
			name: "absolute uri", method: "GET", target: "/",
			headers:    []string{"X-Original-Method: GET", "X-Original-URI: http://evil.test/" + secret},
			wantReason: httpauthz.ReasonBadOriginalRequest,
		},
		{
			name: "asterisk uri", method: "GET", target: "/",
			headers:    []string{"X-Original-Method: OPTIONS", "X-Original-URI: *"},
			wantReason: httpauthz.ReasonBadOriginalRequest,
		},
		{
			name: "uri with space", method: "GET", target: "/",
			headers:    []string{"X-Original-Method: GET", "X-Original-URI: /a " + secret},
			wantReason: httpauthz.ReasonBadOriginalRequest,
		},
		{
			name: "empty uri", method: "GET", target: "/",
			headers:    []string{"X-Original-Method: GET", "X-Original-URI: "},
			wantReason: httpauthz.ReasonBadOriginalRequest,
		},
		{
			name: "method not a token", method: "GET", target: "/",
			headers:    []string{"X-Forwarded-Method: GET /" + secret, "X-Forwarded-Uri: /api/x"},
			wantReason: httpauthz.ReasonBadOriginalRequest,
		},
		{
			name: "empty method", method: "GET", target: "/",
			headers:    []string{"X-Forwarded-Method: ", "X-Forwarded-Uri: /api/x"},
			wantReason: httpauthz.ReasonBadOriginalRequest,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := &fakeDecider{}
			srv := newServer(t, d, nil, httpauthz.Config{TrustedProxies: tc.trusted, EnvoyPathPrefix: "/envoy"})
			res := raw(t, srv, tc.method, tc.target, append(tc.headers, "Authorization: Bearer tok-"+secret)...)
			if res.status != http.StatusForbidden {
				t.Fatalf("status %d, want 403 (body %s)", res.status, res.body)
			}
			if n := len(d.requests()); n != 0 {
				t.Fatalf("decider asked %d times, want 0", n)
			}
			if got := res.header.Get("X-Authz-Reason"); got != string(tc.wantReason) {
				t.Errorf("X-Authz-Reason = %q, want %q", got, tc.wantReason)
			}
			var body struct{ Error, Reason string }
			if err := json.Unmarshal([]byte(res.body), &body); err != nil || body.Error != "forbidden" || body.Reason == "" {
				t.Errorf("body %s (err %v), want forbidden with a reason", res.body, err)
			}
			if strings.Contains(res.body, secret) || strings.Contains(headerText(res.header), secret) {
				t.Errorf("answer echoes client input: %s %v", res.body, res.header)
			}
			assertNoIdentity(t, res.header)
		})
	}
}

func headerText(h http.Header) string {
	var b strings.Builder
	for k, vs := range h {
		b.WriteString(k + ": " + strings.Join(vs, ",") + "\n")
	}
	return b.String()
}

func assertNoIdentity(t *testing.T, h http.Header) {
	t.Helper()
	for _, name := range []string{"X-Auth-User-Id", "X-Auth-Org-Id", "X-Auth-Roles", "X-Authz-Shadow-Deny", "X-Envoy-Auth-Headers-To-Remove"} {
		if v, ok := h[name]; ok {
			t.Errorf("%s = %q on a deny", name, v)
		}
	}
}

// TestTrustedPeers judges peer addresses that cannot be produced over
// loopback, calling the handler in process with RemoteAddr set.
func TestTrustedPeers(t *testing.T) {
	t.Parallel()
	tenNet := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fe80::/10")}
	tests := []struct {
		name    string
		trusted []netip.Prefix
		remote  string
		want    bool
	}{
		{"default v4 loopback", nil, "127.0.0.1:40000", true},
		{"default anywhere in 127/8", nil, "127.8.9.10:1", true},
		{"default v6 loopback", nil, "[::1]:40000", true},
		{"default v4-mapped loopback", nil, "[::ffff:127.0.0.1]:40000", true},
		{"default private address", nil, "10.1.2.3:40000", false},
		{"default public address", nil, "203.0.113.7:40000", false},
		{"default v4-mapped public", nil, "[::ffff:203.0.113.7]:40000", false},
		{"configured network", tenNet, "10.1.2.3:1", true},
		{"configured v4-mapped", tenNet, "[::ffff:10.1.2.3]:1", true},
		{"configured v6 with zone", tenNet, "[fe80::1%eth0]:1", true},
		{"configured list replaces loopback", tenNet, "127.0.0.1:1", false},
		{"outside configured", tenNet, "11.0.0.1:1", false},
		{"unix socket peer", nil, "@", false},
		{"empty peer", nil, "", false},
		{"no port", nil, "127.0.0.1", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := &fakeDecider{}
			h, err := httpauthz.NewHandler(d, nil, httpauthz.Config{TrustedProxies: tc.trusted})
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.remote
			r.Header.Set("X-Original-Method", "GET")
			r.Header.Set("X-Original-URI", "/api/me")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			asked := len(d.requests()) == 1
			if asked != tc.want {
				t.Fatalf("decider asked = %v, want %v (status %d)", asked, tc.want, w.Code)
			}
			if !tc.want && (w.Code != http.StatusForbidden || w.Header().Get("X-Authz-Reason") != string(httpauthz.ReasonUntrustedPeer)) {
				t.Errorf("untrusted answer %d %q, want 403 untrusted_peer", w.Code, w.Header().Get("X-Authz-Reason"))
			}
		})
	}
}

// TestAnswers is the status mapping table, checked against extauthz's
// answer for the same decision so both transports stay alike.
func TestAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		decision   authz.Decision
		wantStatus int
		wantHeader map[string]string // "" = must be absent
		wantBody   string            // exact; "" = empty
	}{
		{
			name:       "allow with identity",
			decision:   authz.Decision{Allow: true, Code: authz.CodeOK, Reason: authz.ReasonGranted, UserID: "u1", OrgID: "o1", Roles: []string{"admin", "member"}},
			wantStatus: 200,
			wantHeader: map[string]string{"X-Auth-User-Id": "u1", "X-Auth-Org-Id": "o1", "X-Auth-Roles": "admin,member", "X-Authz-Shadow-Deny": "", "X-Authz-Reason": "", "Www-Authenticate": ""},
		},
		{
			name:       "allow authenticated, no organization",
			decision:   authz.Decision{Allow: true, Code: authz.CodeOK, Reason: authz.ReasonAuthenticated, UserID: "u1"},
			wantStatus: 200,
			wantHeader: map[string]string{"X-Auth-User-Id": "u1", "X-Auth-Org-Id": "", "X-Auth-Roles": ""},
		},
		{
			name:       "allow public",
			decision:   authz.Decision{Allow: true, Code: authz.CodeOK, Reason: authz.ReasonPublic, Route: "health"},
			wantStatus: 200,
			wantHeader: map[string]string{"X-Auth-User-Id": "", "X-Auth-Org-Id": "", "X-Auth-Roles": "", "X-Authz-Shadow-Deny": ""},
		},
		{
			name: "shadow deny",
			decision: authz.Decision{ID: "id-2", Allow: true, Shadowed: true, Code: authz.CodeForbidden, Reason: authz.ReasonMissingPermission,
				Detail: "missing permission x:y", UserID: "u1", OrgID: "o1", Roles: []string{"member"}},
			wantStatus: 200,
			wantHeader: map[string]string{"X-Authz-Shadow-Deny": "missing_permission", "X-Auth-User-Id": "u1", "X-Auth-Roles": "member", "X-Authz-Reason": ""},
		},
		{
			name:       "unauthenticated",
			decision:   authz.Decision{Code: authz.CodeUnauthenticated, Reason: authz.ReasonNoCredential},
			wantStatus: 401,
			wantHeader: map[string]string{"Www-Authenticate": `Bearer error="invalid_token"`, "X-Authz-Reason": "no_credential", "Content-Type": "application/json"},
			wantBody:   `{"error":"unauthenticated","reason":"no_credential","message":"no credential"}`,
		},
		{
			// The engine fills identity fields before some denies; they
			// must not reach the proxy.
			name: "forbidden with identity known",
			decision: authz.Decision{Code: authz.CodeForbidden, Reason: authz.ReasonMissingPermission, Detail: "requires leave:approve",
				UserID: "u1", OrgID: "o1", Roles: []string{"member"}, Route: "approve"},
			wantStatus: 403,
			wantHeader: map[string]string{"X-Authz-Reason": "missing_permission", "Www-Authenticate": "", "Content-Type": "application/json"},
			wantBody:   `{"error":"forbidden","reason":"missing_permission","message":"missing permission","detail":"requires leave:approve","route":"approve"}`,
		},
		{
			name:       "unavailable",
			decision:   authz.Decision{Code: authz.CodeUnavailable, Reason: authz.ReasonSourceUnavailable, UserID: "u1"},
			wantStatus: 503,
			wantHeader: map[string]string{"X-Authz-Reason": "source_unavailable", "Www-Authenticate": ""},
			wantBody:   `{"error":"unavailable","reason":"source_unavailable","message":"permissions unavailable"}`,
		},
		{
			name:       "deadline",
			decision:   authz.Decision{Code: authz.CodeUnavailable, Reason: authz.ReasonDeadline},
			wantStatus: 503,
			wantHeader: map[string]string{"X-Authz-Reason": "deadline_exceeded"},
			wantBody:   `{"error":"unavailable","reason":"deadline_exceeded","message":"timed out"}`,
		},
		{
			// A deny that claims CodeOK is a bug upstream; it must still
			// not become a 2xx.
			name:       "deny with code OK fails closed",
			decision:   authz.Decision{Code: authz.CodeOK, Reason: "bogus", UserID: "u1"},
			wantStatus: 503,
			wantBody:   `{"error":"unavailable","reason":"bogus"}`,
		},
		{
			name:       "unknown code fails closed",
			decision:   authz.Decision{Code: authz.Code(99), Reason: "bogus"},
			wantStatus: 503,
			wantBody:   `{"error":"unavailable","reason":"bogus"}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, &fakeDecider{answer: answer(tc.decision)}, nil, httpauthz.Config{})
			res := raw(t, srv, "GET", "/", "X-Original-Method: GET", "X-Original-URI: /x")
			if res.status != tc.wantStatus {
				t.Fatalf("status %d, want %d", res.status, tc.wantStatus)
			}
			for name, want := range tc.wantHeader {
				got, present := res.header[name]
				switch {
				case want == "" && present:
					t.Errorf("%s = %q, want absent", name, got)
				case want != "" && (len(got) != 1 || got[0] != want):
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			if got := res.header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q", got)
			}
			if res.body != tc.wantBody {
				t.Errorf("body %q, want %q", res.body, tc.wantBody)
			}
			if !tc.decision.Allow {
				assertNoIdentity(t, res.header)
				// Same body and reason as the gRPC server.
				grpc := extauthz.Response(&tc.decision, extauthz.Options{}).GetDeniedResponse()
				if grpc.GetBody() != res.body {
					t.Errorf("body %q differs from extauthz's %q", res.body, grpc.GetBody())
				}
				if int(grpc.GetStatus().GetCode()) != res.status {
					t.Errorf("status %d differs from extauthz's %d", res.status, grpc.GetStatus().GetCode())
				}
			}
		})
	}
}

func TestHeadersToEngine(t *testing.T) {
	t.Parallel()
	d := &fakeDecider{}
	srv := newServer(t, d, nil, httpauthz.Config{})
	res := raw(t, srv, "GET", "/",
		"X-Original-Method: GET", "X-Original-URI: /api/me",
		"Authorization: Bearer abc.def.ghi",
		"X-Organization-Id: org-1",
		"X-Multi: a", "X-Multi: b",
		"X-Auth-User-Id: evil", "X-Auth-Org-Id: evil-org", "X-Auth-Roles: owner", "X-Authz-Shadow-Deny: x",
		"X-Authz-Decision-Id: forged",
	)
	if res.status != 200 {
		t.Fatalf("status %d", res.status)
	}
	h := d.requests()[0].Headers
	for name, want := range map[string]string{
		"authorization":       "Bearer abc.def.ghi",
		"x-organization-id":   "org-1",
		"x-multi":             "a,b",
		"x-original-uri":      "/api/me",
		"Authorization":       "", // names are lower case only
		"x-auth-user-id":      "", // forged identity never reaches the engine
		"x-auth-org-id":       "",
		"x-auth-roles":        "",
		"x-authz-shadow-deny": "",
		"x-authz-decision-id": "",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("Get(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestClientIdentityHeaders: identity headers a client sends never decide
// anything and are never echoed; the answer's come from the decision only.
func TestClientIdentityHeaders(t *testing.T) {
	t.Parallel()
	var forged []string
	for _, h := range authz.IdentityHeaders[:] {
		forged = append(forged, h+": evil")
	}
	tests := []struct {
		name     string
		decision authz.Decision
		target   string
		wantUser []string
	}{
		{"allow u1", authz.Decision{Allow: true, Code: authz.CodeOK, Reason: authz.ReasonGranted, UserID: "u1"}, "/", []string{"u1"}},
		{"allow public", authz.Decision{Allow: true, Code: authz.CodeOK, Reason: authz.ReasonPublic}, "/", nil},
		{"deny", authz.Decision{Code: authz.CodeForbidden, Reason: authz.ReasonNotMember, UserID: "u1"}, "/", nil},
		{"envoy allow public", authz.Decision{Allow: true, Code: authz.CodeOK, Reason: authz.ReasonPublic}, "/envoy/x", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The decider sees only what the engine would: if a forged
			// header leaked into its view it would allow as "evil".
			d := &fakeDecider{answer: func(r *authz.Request) authz.Decision {
				if r.Headers.Get("x-auth-user-id") != "" {
					return authz.Decision{Allow: true, Code: authz.CodeOK, UserID: "evil"}
				}
				return tc.decision
			}}
			srv := newServer(t, d, nil, httpauthz.Config{EnvoyPathPrefix: "/envoy"})
			res := raw(t, srv, "GET", tc.target, append([]string{"X-Original-Method: GET", "X-Original-URI: /x"}, forged...)...)
			if got := res.header.Values("X-Auth-User-Id"); strings.Join(got, "|") != strings.Join(tc.wantUser, "|") {
				t.Errorf("X-Auth-User-Id = %q, want %q", got, tc.wantUser)
			}
			if strings.Contains(headerText(res.header), "evil") || strings.Contains(res.body, "evil") {
				t.Errorf("forged value echoed: %v %s", res.header, res.body)
			}
		})
	}
}

// TestEnvoyHeadersToRemove: in Envoy mode an allow names the identity
// headers it does not set, so Envoy strips a client's copies of them.
func TestEnvoyHeadersToRemove(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		decision authz.Decision
		target   string
		want     string // "" = absent
	}{
		{
			name:     "user only",
			decision: authz.Decision{ID: "id-1", Allow: true, Code: authz.CodeOK, UserID: "u1"},
			target:   "/envoy/api/me",
			want:     "x-auth-org-id,x-auth-roles,x-auth-org-source,x-auth-team-id,x-auth-credential,x-auth-impersonated-by,x-auth-api-key-id,x-authz-shadow-deny",
		},
		{
			// Without a decision id, a client's copy of that goes too.
			name:     "public, no decision id",
			decision: authz.Decision{Allow: true, Code: authz.CodeOK, Reason: authz.ReasonPublic},
			target:   "/envoy/healthz",
			want:     strings.Join(authz.IdentityHeaders[:], ","),
		},
		{
			name: "all set",
			decision: authz.Decision{ID: "id-2", Allow: true, Shadowed: true, Code: authz.CodeForbidden, Reason: authz.ReasonMissingPermission,
				UserID: "u1", OrgID: "o1", Roles: []string{"member"}, OrgSource: policy.Source{Kind: policy.FromPath, Name: "org"},
				TeamID: "t", Credential: policy.CredSession, ImpersonatedBy: "a", APIKeyID: "k"},
			target: "/envoy/api/x",
			want:   "",
		},
		{
			name:     "not envoy mode",
			decision: authz.Decision{Allow: true, Code: authz.CodeOK, UserID: "u1"},
			target:   "/",
			want:     "",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, &fakeDecider{answer: answer(tc.decision)}, nil, httpauthz.Config{EnvoyPathPrefix: "/envoy"})
			res := raw(t, srv, "GET", tc.target, "X-Original-Method: GET", "X-Original-URI: /x")
			if res.status != 200 {
				t.Fatalf("status %d", res.status)
			}
			got, present := res.header["X-Envoy-Auth-Headers-To-Remove"]
			if tc.want == "" && present || tc.want != "" && strings.Join(got, ",") != tc.want {
				t.Errorf("X-Envoy-Auth-Headers-To-Remove = %q, want %q", got, tc.want)
			}
		})
	}
}

type observation struct {
	method, path, requestID string
	decision                authz.Decision
}

type fakeObserver struct {
	mu  sync.Mutex
	obs []observation // guarded by mu
}

func (f *fakeObserver) Observe(_ context.Context, r *authz.Request, d *authz.Decision, requestID string, _ time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.obs = append(f.obs, observation{r.Method, r.Path, requestID, *d})
}

func TestObserver(t *testing.T) {
	t.Parallel()
	obs := &fakeObserver{}
	d := &fakeDecider{answer: answer(authz.Decision{Code: authz.CodeForbidden, Reason: authz.ReasonNoRoute, Route: ""})}
	srv := newServer(t, d, obs, httpauthz.Config{})
	raw(t, srv, "GET", "/", "X-Original-Method: POST", "X-Original-URI: /api/x?y=1", "X-Request-Id: req-1")
	raw(t, srv, "GET", "/", "X-Request-Id: req-2") // refused here: names no request

	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.obs) != 2 {
		t.Fatalf("%d observations, want 2", len(obs.obs))
	}
	if o := obs.obs[0]; o.method != "POST" || o.path != "/api/x?y=1" || o.requestID != "req-1" || o.decision.Reason != authz.ReasonNoRoute {
		t.Errorf("first observation %+v", o)
	}
	if o := obs.obs[1]; o.requestID != "req-2" || o.decision.Allow || o.decision.Reason != httpauthz.ReasonBadOriginalRequest {
		t.Errorf("refusal observation %+v", o)
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  time.Duration
		want time.Duration
	}{
		{"default", 0, 100 * time.Millisecond},
		{"configured", 30 * time.Millisecond, 30 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := &fakeDecider{}
			srv := newServer(t, d, nil, httpauthz.Config{Timeout: tc.cfg})
			// The handler sets the deadline to timeout after some moment
			// between these two, however long the request took.
			before := time.Now()
			raw(t, srv, "GET", "/", "X-Original-Method: GET", "X-Original-URI: /x")
			after := time.Now()
			d.mu.Lock()
			dl := d.deadlines[0]
			d.mu.Unlock()
			if dl.IsZero() || dl.Before(before.Add(tc.want)) || dl.After(after.Add(tc.want)) {
				t.Errorf("decider's deadline %v after the request started, want %v after a moment during it (request took %v)",
					dl.Sub(before), tc.want, after.Sub(before))
			}
		})
	}
}

func TestNewHandlerConfig(t *testing.T) {
	t.Parallel()
	d := &fakeDecider{}
	tests := []struct {
		name    string
		decider httpauthz.Decider
		cfg     httpauthz.Config
		wantErr bool
	}{
		{"zero config", d, httpauthz.Config{}, false},
		{"nil decider", nil, httpauthz.Config{}, true},
		{"envoy prefix", d, httpauthz.Config{EnvoyPathPrefix: "/envoy"}, false},
		{"envoy nested prefix", d, httpauthz.Config{EnvoyPathPrefix: "/ext-authz/v1"}, false},
		{"prefix without slash", d, httpauthz.Config{EnvoyPathPrefix: "envoy"}, true},
		{"prefix with trailing slash", d, httpauthz.Config{EnvoyPathPrefix: "/envoy/"}, true},
		{"prefix root", d, httpauthz.Config{EnvoyPathPrefix: "/"}, true},
		{"prefix with query", d, httpauthz.Config{EnvoyPathPrefix: "/envoy?x"}, true},
		{"prefix with escape", d, httpauthz.Config{EnvoyPathPrefix: "/en%20voy"}, true},
		{"invalid trusted prefix", d, httpauthz.Config{TrustedProxies: []netip.Prefix{{}}}, true},
		{"v4-mapped trusted prefix", d, httpauthz.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")}}, true},
		{"unmasked trusted prefix", d, httpauthz.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.1.2.3/8")}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, err := httpauthz.NewHandler(tc.decider, nil, tc.cfg)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && h == nil {
				t.Fatal("nil handler without error")
			}
		})
	}
}

// TestDecisionID: every allow carries the decision id for the upstream;
// denies carry it only when configured, for the client.
func TestDecisionID(t *testing.T) {
	t.Parallel()
	allow := authz.Decision{ID: "0123456789abcdef0123456789abcdef", Allow: true, Code: authz.CodeOK, Reason: authz.ReasonGranted, UserID: "u1"}
	deny := authz.Decision{ID: "fedcba9876543210fedcba9876543210", Code: authz.CodeUnauthenticated, Reason: authz.ReasonNoCredential}
	tests := []struct {
		name string
		d    authz.Decision
		on   bool
		want string // "" = absent
	}{
		{"allow", allow, false, allow.ID},
		{"allow, configured", allow, true, allow.ID},
		{"allow without an id", authz.Decision{Allow: true, Code: authz.CodeOK, Reason: authz.ReasonPublic}, true, ""},
		{"deny", deny, false, ""},
		{"deny, configured", deny, true, deny.ID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, &fakeDecider{answer: answer(tc.d)}, nil, httpauthz.Config{DecisionIDResponseHeader: tc.on})
			res := raw(t, srv, "GET", "/", "X-Original-Method: GET", "X-Original-URI: /x", "X-Authz-Decision-Id: forged")
			if got := strings.Join(res.header.Values(authz.HeaderDecisionID), "|"); got != tc.want {
				t.Errorf("%s = %q, want %q", authz.HeaderDecisionID, got, tc.want)
			}
		})
	}
}

// TestDecisionIDHeaderAgrees: both transports name the header alike.
func TestDecisionIDHeaderAgrees(t *testing.T) {
	t.Parallel()
	if !strings.EqualFold(authz.HeaderDecisionID, authz.HeaderDecisionID) {
		t.Errorf("httpauthz %q, extauthz %q", authz.HeaderDecisionID, authz.HeaderDecisionID)
	}
}
