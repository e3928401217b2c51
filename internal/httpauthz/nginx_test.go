package httpauthz_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/httpauthz"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// TestNginxAuthRequest runs a real nginx with the auth_request setup from
// the package doc in front of an upstream that echoes the identity it was
// given, and checks what reaches the upstream and the client.
func TestNginxAuthRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an nginx process; make test runs it, make check (-short) does not")
	}
	bin := nginxBinary(t)

	up := &echoUpstream{}
	upstream := httptest.NewServer(up)
	t.Cleanup(upstream.Close)

	d := &fakeDecider{answer: func(r *authz.Request) authz.Decision {
		switch policy.SplitQuery(r.Path) {
		case "/allowed":
			return authz.Decision{Allow: true, Code: authz.CodeOK, Reason: authz.ReasonGranted, UserID: "u1", OrgID: "o1", Roles: []string{"member"}}
		case "/public":
			return authz.Decision{Allow: true, Code: authz.CodeOK, Reason: authz.ReasonPublic}
		case "/login-required":
			return authz.Decision{Code: authz.CodeUnauthenticated, Reason: authz.ReasonNoToken, Detail: "no bearer token"}
		case "/unavailable":
			return authz.Decision{Code: authz.CodeUnavailable, Reason: authz.ReasonSourceUnavailable, Detail: "permissions unavailable"}
		default:
			return authz.Decision{Code: authz.CodeForbidden, Reason: authz.ReasonNoRoute, Detail: "no route"}
		}
	}}
	authzSrv := newServer(t, d, nil, httpauthz.Config{})
	nginx := startNginx(t, bin, upstream.Listener.Addr().String(), authzSrv.Listener.Addr().String())

	tests := []struct {
		name       string
		method     string
		uri        string
		headers    map[string]string
		wantStatus int
		wantUser   []string // X-Auth-User-Id values the upstream saw; nil = none
		wantOrg    []string
		wantAsked  string // "METHOD path" the decider saw
		wantHit    bool   // the upstream was reached
	}{
		{
			name: "allowed", method: "GET", uri: "/allowed", headers: map[string]string{"Authorization": "Bearer tok"},
			wantStatus: 200, wantUser: []string{"u1"}, wantOrg: []string{"o1"}, wantAsked: "GET /allowed", wantHit: true,
		},
		{
			name: "client identity overwritten", method: "GET", uri: "/allowed?x=1&y=%2F",
			headers:    map[string]string{"X-Auth-User-Id": "evil", "X-Auth-Org-Id": "evil-org"},
			wantStatus: 200, wantUser: []string{"u1"}, wantOrg: []string{"o1"}, wantAsked: "GET /allowed?x=1&y=%2F", wantHit: true,
		},
		{
			name: "original method passed", method: "POST", uri: "/allowed",
			wantStatus: 200, wantUser: []string{"u1"}, wantOrg: []string{"o1"}, wantAsked: "POST /allowed", wantHit: true,
		},
		{
			// An allow without identity must remove a client's copy.
			name: "client identity removed on public allow", method: "GET", uri: "/public",
			headers:    map[string]string{"X-Auth-User-Id": "evil", "X-Auth-Org-Id": "evil-org"},
			wantStatus: 200, wantAsked: "GET /public", wantHit: true,
		},
		{
			name: "forbidden", method: "GET", uri: "/forbidden",
			wantStatus: 403, wantAsked: "GET /forbidden",
		},
		{
			name: "unauthenticated", method: "GET", uri: "/login-required",
			wantStatus: 401, wantAsked: "GET /login-required",
		},
		{
			// nginx turns any status but 2xx/401/403 into 500: still a deny.
			name: "unavailable becomes 500", method: "GET", uri: "/unavailable",
			wantStatus: 500, wantAsked: "GET /unavailable",
		},
		{
			name: "client X-Original-* replaced by nginx", method: "DELETE", uri: "/forbidden",
			headers:    map[string]string{"X-Original-URI": "/allowed", "X-Original-Method": "GET"},
			wantStatus: 403, wantAsked: "DELETE /forbidden",
		},
		{
			name: "client X-Forwarded-* cleared by nginx", method: "GET", uri: "/forbidden",
			headers:    map[string]string{"X-Forwarded-Uri": "/allowed", "X-Forwarded-Method": "GET"},
			wantStatus: 403, wantAsked: "GET /forbidden",
		},
	}
	client := &http.Client{Timeout: 30 * time.Second}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hitsBefore := up.count()
			asksBefore := len(d.requests())
			req, err := http.NewRequest(tc.method, "http://"+nginx+tc.uri, nil)
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
			if err := json.NewDecoder(resp.Body).Decode(&seen); err != nil && tc.wantHit {
				t.Fatalf("upstream answer: %v", err)
			}
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}

			asks := d.requests()[asksBefore:]
			if len(asks) != 1 {
				t.Fatalf("decider asked %d times, want 1", len(asks))
			}
			if got := asks[0].Method + " " + asks[0].Path; got != tc.wantAsked {
				t.Errorf("decider asked about %q, want %q", got, tc.wantAsked)
			}
			if v, ok := tc.headers["Authorization"]; ok && asks[0].Headers.Get("authorization") != v {
				t.Errorf("authorization reaching the engine = %q, want %q", asks[0].Headers.Get("authorization"), v)
			}

			hit := up.count() > hitsBefore
			if hit != tc.wantHit {
				t.Fatalf("upstream reached = %v, want %v", hit, tc.wantHit)
			}
			if !tc.wantHit {
				return
			}
			if !slices.Equal(seen.User, tc.wantUser) || !slices.Equal(seen.Org, tc.wantOrg) {
				t.Errorf("upstream saw user %q org %q, want %q %q", seen.User, seen.Org, tc.wantUser, tc.wantOrg)
			}
			if seen.URI != tc.uri || seen.Method != tc.method {
				t.Errorf("upstream got %s %s, want %s %s", seen.Method, seen.URI, tc.method, tc.uri)
			}
			if resp.Header.Get("X-Auth-User-Id") != "" {
				t.Error("identity header leaked to the client")
			}
		})
	}

	t.Run("401 challenge reaches the client", func(t *testing.T) {
		resp, err := client.Get("http://" + nginx + "/login-required")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
			t.Errorf("WWW-Authenticate = %q", got)
		}
	})
}

// upstreamView is what the echo upstream reports about a request.
type upstreamView struct {
	Method string   `json:"method"`
	URI    string   `json:"uri"`
	User   []string `json:"user"`
	Org    []string `json:"org"`
}

type echoUpstream struct {
	mu   sync.Mutex
	hits int // guarded by mu
}

func (u *echoUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.hits++
	u.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(upstreamView{
		Method: r.Method, URI: r.RequestURI,
		User: r.Header.Values("X-Auth-User-Id"), Org: r.Header.Values("X-Auth-Org-Id"),
	})
}

func (u *echoUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.hits
}

// nginxBinary finds nginx (scripts/setup.sh installs it before make test;
// tests install nothing). Without it the test fails under CI=true and is
// skipped elsewhere.
func nginxBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	// Debian installs it in /usr/sbin, which a non-root PATH lacks.
	if isExecutable("/usr/sbin/nginx") {
		return "/usr/sbin/nginx"
	}
	testproc.RequireOrSkip(t, "nginx is not installed (scripts/setup.sh installs it)")
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// startNginx runs nginx in the foreground from a temporary prefix (pid,
// logs and temp files inside it, so it needs neither root nor /etc or
// /var) and returns its listen address once it accepts connections.
func startNginx(t *testing.T, bin, upstream, authzAddr string) string {
	t.Helper()
	dir := t.TempDir()
	// Temp path directives exist only for the modules compiled in.
	version, _ := exec.Command(bin, "-V").CombinedOutput()
	var temps strings.Builder
	for _, m := range []string{"fastcgi", "uwsgi", "scgi"} {
		if !bytes.Contains(version, []byte("--without-http_"+m+"_module")) {
			fmt.Fprintf(&temps, "    %s_temp_path %s;\n", m, filepath.Join(dir, m))
		}
	}

	var lastErr string
	for attempt := 0; attempt < 3; attempt++ {
		addr := freeAddr(t)
		conf := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(conf, []byte(nginxConf(dir, addr, upstream, authzAddr, temps.String())), 0o644); err != nil {
			t.Fatal(err)
		}
		var stderr lockedBuffer
		cmd := exec.Command(bin, "-e", "stderr", "-p", dir, "-c", conf, "-g", "daemon off;")
		cmd.Stdout = &stderr
		cmd.Stderr = &stderr
		// Its own process group, so cleanup can reach the workers too.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start nginx: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()

		if err := waitListening(addr, exited); err != nil {
			stopNginx(cmd, exited)
			lastErr = fmt.Sprintf("%v\n%s", err, stderr.String())
			if strings.Contains(stderr.String(), "Address already in use") {
				continue // the free port was taken meanwhile
			}
			t.Fatalf("nginx did not start: %s", lastErr)
		}
		t.Cleanup(func() {
			stopNginx(cmd, exited)
			if t.Failed() {
				t.Logf("nginx output:\n%s", stderr.String())
			}
		})
		return addr
	}
	t.Fatalf("nginx did not start: %s", lastErr)
	return ""
}

func nginxConf(dir, addr, upstream, authzAddr, temps string) string {
	return fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
%[5]s
    server {
        listen %[2]s;

        location / {
            auth_request     /_authz;
            auth_request_set $authz_user   $upstream_http_x_auth_user_id;
            auth_request_set $authz_org    $upstream_http_x_auth_org_id;
            auth_request_set $authz_roles  $upstream_http_x_auth_roles;
            auth_request_set $authz_shadow $upstream_http_x_authz_shadow_deny;
            proxy_set_header X-Auth-User-Id      $authz_user;
            proxy_set_header X-Auth-Org-Id       $authz_org;
            proxy_set_header X-Auth-Roles        $authz_roles;
            proxy_set_header X-Authz-Shadow-Deny $authz_shadow;
            proxy_pass http://%[3]s;
        }

        location = /_authz {
            internal;
            proxy_pass              http://%[4]s/;
            proxy_pass_request_body off;
            proxy_set_header Content-Length     "";
            proxy_set_header X-Original-URI     $request_uri;
            proxy_set_header X-Original-Method  $request_method;
            proxy_set_header X-Request-Id       $request_id;
            proxy_set_header X-Forwarded-Uri    "";
            proxy_set_header X-Forwarded-Method "";
        }
    }
}
`, dir, addr, upstream, authzAddr, temps)
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// waitListening waits for nginx to accept connections. The bound is a
// start-up allowance, not a speed assertion.
func waitListening(addr string, exited <-chan error) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("nginx exited: %v", err)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("nginx is not listening after 30s")
}

// stopNginx asks nginx for a fast shutdown (SIGTERM reaches its workers
// through the master), then kills its process group if it lingers.
func stopNginx(cmd *exec.Cmd, exited <-chan error) {
	pid := cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
	}
	// Workers are in the group too; none should remain.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

// lockedBuffer collects nginx's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
