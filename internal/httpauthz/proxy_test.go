package httpauthz_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
)

// What the real-proxy tests (nginx, Caddy) share: the decisions the
// sidecar gives, an upstream that reports what reached it, and the cases.

// sidecarHeaders are the headers only the sidecar may set on the upstream
// request: the identity headers and the decision id, lower case.
var sidecarHeaders = authz.IdentityHeaders[:]

// proxyDecisions are the sidecar's answers in the proxy tests, by path.
var proxyDecisions = map[string]authz.Decision{
	// Every identity header has a value.
	"/allowed": {ID: "0000000000000000000000000000a11d", Allow: true, Code: authz.CodeOK, Reason: authz.ReasonGranted,
		Route: "team-board", UserID: "u1", OrgID: "o1", OrgSource: policy.Source{Kind: policy.FromPath, Name: "org"},
		TeamID: "t1", Roles: []string{"admin", "member"}, Credential: policy.CredAPIKey, ImpersonatedBy: "root", APIKeyID: "k1"},
	"/shadow": {ID: "0000000000000000000000000000005d", Allow: true, Shadowed: true, Code: authz.CodeForbidden,
		Reason: authz.ReasonMissingPermission, Route: "shadow", UserID: "u2", Credential: policy.CredJWT},
	// Nothing but the decision id.
	"/public":         {ID: "000000000000000000000000000000b1", Allow: true, Code: authz.CodeOK, Reason: authz.ReasonPublic, Route: "health"},
	"/login-required": {ID: "00000000000000000000000000000401", Code: authz.CodeUnauthenticated, Reason: authz.ReasonNoCredential},
	"/unavailable":    {ID: "00000000000000000000000000000503", Code: authz.CodeUnavailable, Reason: authz.ReasonSourceUnavailable},
}

// forbidden is the answer for any other path.
var forbidden = authz.Decision{ID: "00000000000000000000000000000403", Code: authz.CodeForbidden, Reason: authz.ReasonNoRoute}

func proxyDecider() *fakeDecider {
	return &fakeDecider{answer: func(r *authz.Request) authz.Decision {
		if d, ok := proxyDecisions[policy.SplitQuery(r.Path)]; ok {
			return d
		}
		return forbidden
	}}
}

// upstreamWants is what the upstream must see of sidecarHeaders for an
// allow: the sidecar's value of each header it sets, nothing else.
func upstreamWants(d authz.Decision) map[string]string {
	want := map[string]string{}
	for k, v := range d.Identity {
		want[k] = v
	}
	if d.ID != "" {
		want[strings.ToLower(authz.HeaderDecisionID)] = d.ID
	}
	return want
}

// upstreamView is what the echo upstream reports about a request.
type upstreamView struct {
	Method  string              `json:"method"`
	URI     string              `json:"uri"`
	Headers map[string][]string `json:"headers"` // sidecarHeaders present, lower case
	Body    string              `json:"body"`
}

type echoUpstream struct {
	mu   sync.Mutex
	hits int // guarded by mu
}

func (u *echoUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.hits++
	u.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	v := upstreamView{Method: r.Method, URI: r.RequestURI, Headers: map[string][]string{}, Body: string(body)}
	for _, h := range sidecarHeaders {
		if vs, ok := r.Header[http.CanonicalHeaderKey(h)]; ok {
			v.Headers[h] = vs
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (u *echoUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.hits
}

// forgedHeaders are a client's copies of every sidecar header.
func forgedHeaders() map[string]string {
	h := map[string]string{}
	for _, name := range sidecarHeaders {
		h[http.CanonicalHeaderKey(name)] = "forged"
	}
	return h
}

// proxyCase is one request through a real proxy.
type proxyCase struct {
	name       string
	method     string
	uri        string
	headers    map[string]string
	body       string // sent, and expected at the upstream
	wantStatus int
	wantAsked  string // "METHOD uri" the decider saw
	// wantDecision, for a request the upstream gets, is the decision whose
	// headers (and only those) must reach it; nil: the upstream is not hit.
	wantDecision *authz.Decision
}

// commonCases are what every proxy must get right; unavailable is the
// status the proxy answers for the sidecar's 503.
func commonCases(unavailable int) []proxyCase {
	allowed, shadow, public := proxyDecisions["/allowed"], proxyDecisions["/shadow"], proxyDecisions["/public"]
	return []proxyCase{
		{name: "allowed", method: "GET", uri: "/allowed", headers: map[string]string{"Authorization": "Bearer tok"},
			wantStatus: 200, wantAsked: "GET /allowed", wantDecision: &allowed},
		{name: "allowed, every sidecar header forged", method: "GET", uri: "/allowed?x=1&y=%2F", headers: forgedHeaders(),
			wantStatus: 200, wantAsked: "GET /allowed?x=1&y=%2F", wantDecision: &allowed},
		{name: "original method passed", method: "POST", uri: "/allowed", wantStatus: 200, wantAsked: "POST /allowed", wantDecision: &allowed},
		{name: "the body reaches the upstream whole", method: "PUT", uri: "/allowed", body: strings.Repeat("0123456789", 10000),
			wantStatus: 200, wantAsked: "PUT /allowed", wantDecision: &allowed},
		{name: "shadowed deny, forged", method: "GET", uri: "/shadow", headers: forgedHeaders(),
			wantStatus: 200, wantAsked: "GET /shadow", wantDecision: &shadow},
		{name: "public: every forged copy removed", method: "GET", uri: "/public", headers: forgedHeaders(),
			wantStatus: 200, wantAsked: "GET /public", wantDecision: &public},
		{name: "forbidden", method: "GET", uri: "/forbidden", headers: forgedHeaders(), wantStatus: 403, wantAsked: "GET /forbidden"},
		{name: "unauthenticated", method: "GET", uri: "/login-required", wantStatus: 401, wantAsked: "GET /login-required"},
		{name: "unavailable", method: "GET", uri: "/unavailable", wantStatus: unavailable, wantAsked: "GET /unavailable"},
	}
}

// runProxyCases sends each case to the proxy at base and checks the
// status, what the sidecar was asked and what reached the upstream.
func runProxyCases(t *testing.T, base string, d *fakeDecider, up *echoUpstream, cases []proxyCase) {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hitsBefore := up.count()
			asksBefore := len(d.requests())
			req, err := http.NewRequest(tc.method, base+tc.uri, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var seen upstreamView
			if err := json.NewDecoder(resp.Body).Decode(&seen); err != nil && tc.wantDecision != nil {
				t.Fatalf("upstream answer: %v", err)
			}
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			asks := d.requests()[asksBefore:]
			if len(asks) != 1 {
				t.Fatalf("sidecar asked %d times, want 1", len(asks))
			}
			if got := asks[0].Method + " " + asks[0].Path; got != tc.wantAsked {
				t.Errorf("sidecar asked about %q, want %q", got, tc.wantAsked)
			}
			if v, ok := tc.headers["Authorization"]; ok && asks[0].Headers.Get("authorization") != v {
				t.Errorf("authorization reaching the engine = %q, want %q", asks[0].Headers.Get("authorization"), v)
			}
			hit := up.count() > hitsBefore
			if hit != (tc.wantDecision != nil) {
				t.Fatalf("upstream reached = %v, want %v", hit, tc.wantDecision != nil)
			}
			if !hit {
				return
			}
			if seen.URI != tc.uri || seen.Method != tc.method {
				t.Errorf("upstream got %s %s, want %s %s", seen.Method, seen.URI, tc.method, tc.uri)
			}
			if seen.Body != tc.body {
				t.Errorf("upstream got a body of %d bytes, want %d", len(seen.Body), len(tc.body))
			}
			want := upstreamWants(*tc.wantDecision)
			for _, h := range sidecarHeaders {
				// An empty value is as good as none: nothing forged got through.
				got := slices.DeleteFunc(slices.Clone(seen.Headers[h]), func(v string) bool { return v == "" })
				switch w, ok := want[h]; {
				case ok && (len(got) != 1 || got[0] != w):
					t.Errorf("upstream %s = %q, want %q", h, got, w)
				case !ok && len(got) > 0:
					t.Errorf("upstream %s = %q, want none", h, got)
				}
			}
			for _, h := range authz.IdentityHeaders {
				// The decision id is the one identity header a client may
				// see (the proxy is configured to send it back).
				if h != authz.HeaderDecisionID && resp.Header.Get(h) != "" {
					t.Errorf("identity header %s leaked to the client", h)
				}
			}
		})
	}
}

// docSnippet returns the code block that follows "<!-- snippet: name -->"
// in docs/proxies.md: the one copy of each proxy snippet.
func docSnippet(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile("../../docs/proxies.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "<!-- snippet: "+name+" -->\n```")
	if !ok {
		t.Fatalf("docs/proxies.md has no %s snippet", name)
	}
	_, rest, _ = strings.Cut(rest, "\n") // the fence's info string
	block, _, ok := strings.Cut(rest, "\n```")
	if !ok {
		t.Fatalf("docs/proxies.md: the %s snippet is not closed", name)
	}
	return block
}

// substitute replaces each key of repl in snippet by its value, failing
// the test when a key does not occur exactly once (the snippet changed).
func substitute(t *testing.T, snippet string, repl map[string]string) string {
	t.Helper()
	for old, new := range repl {
		if n := strings.Count(snippet, old); n != 1 {
			t.Fatalf("%q occurs %d times in the snippet, want 1", old, n)
		}
		snippet = strings.Replace(snippet, old, new, 1)
	}
	return snippet
}
