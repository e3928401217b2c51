package httpauthz_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/httpauthz"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// TestNginxAuthRequest runs a real nginx in front of an upstream that
// reports what reached it, twice: with the auth_request setup generated
// from the sidecar's header list (and the optional add_header line), and
// with the snippet of docs/proxies.md as it is written.
func TestNginxAuthRequest(t *testing.T) {
	if testing.Short() {
		// Skipped by make check (-short) only; under CI=true, which runs
		// make test, a skip here would hide a missing run, so it fails.
		testproc.RequireOrSkip(t, "runs an nginx process; make test runs it, make check (-short) does not")
	}
	bin := nginxBinary(t)

	up := &echoUpstream{}
	upstream := httptest.NewServer(up)
	t.Cleanup(upstream.Close)

	d := proxyDecider()
	authzSrv := newServer(t, d, nil, httpauthz.Config{DecisionIDResponseHeader: true})
	upAddr, authzAddr := upstream.Listener.Addr().String(), authzSrv.Listener.Addr().String()

	cases := append(commonCases(500), // nginx turns any status but 2xx/401/403 into 500: still a deny
		proxyCase{name: "client X-Original-* replaced by nginx", method: "DELETE", uri: "/forbidden",
			headers:    map[string]string{"X-Original-URI": "/allowed", "X-Original-Method": "GET"},
			wantStatus: 403, wantAsked: "DELETE /forbidden"},
		proxyCase{name: "client X-Forwarded-* cleared by nginx", method: "GET", uri: "/forbidden",
			headers:    map[string]string{"X-Forwarded-Uri": "/allowed", "X-Forwarded-Method": "GET"},
			wantStatus: 403, wantAsked: "GET /forbidden"},
	)
	t.Run("generated", func(t *testing.T) {
		nginx := "http://" + startNginx(t, bin, func(addr string) string { return generatedNginxServer(addr, upAddr, authzAddr) })
		runProxyCases(t, nginx, d, up, cases)

		client := &http.Client{Timeout: 30 * time.Second}
		t.Run("401 challenge reaches the client", func(t *testing.T) {
			resp, err := client.Get(nginx + "/login-required")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
				t.Errorf("WWW-Authenticate = %q", got)
			}
		})
		// The snippet's optional add_header line: the decision id for
		// clients, on allows and (the sidecar configured to send it) on
		// denies.
		for _, path := range []string{"/allowed", "/forbidden", "/login-required"} {
			t.Run("decision id to the client "+path, func(t *testing.T) {
				req, _ := http.NewRequest("GET", nginx+path, nil)
				req.Header.Set(authz.HeaderDecisionID, "forged")
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				want := forbidden.ID
				if d, ok := proxyDecisions[path]; ok {
					want = d.ID
				}
				if got := resp.Header.Values(authz.HeaderDecisionID); len(got) != 1 || got[0] != want {
					t.Errorf("%s = %q, want %q", authz.HeaderDecisionID, got, want)
				}
			})
		}
	})
	t.Run("docs snippet", func(t *testing.T) {
		nginx := "http://" + startNginx(t, bin, func(addr string) string { return docsNginxServer(t, addr, upAddr, authzAddr) })
		runProxyCases(t, nginx, d, up, cases)
	})
}

// nginxBinary finds nginx (make test's setup step provides it). Without
// it the test fails under CI=true and is skipped elsewhere.
func nginxBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	// Debian puts it in /usr/sbin, which a non-root PATH lacks.
	if isExecutable("/usr/sbin/nginx") {
		return "/usr/sbin/nginx"
	}
	testproc.RequireOrSkip(t, "nginx is not on this machine (run make setup first)")
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// startNginx runs nginx in the foreground from a temporary prefix (pid,
// logs and temp files inside it, so it needs neither root nor /etc or
// /var) and returns its listen address once it accepts connections.
func startNginx(t *testing.T, bin string, server func(addr string) string) string {
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
		if err := os.WriteFile(conf, []byte(nginxConf(dir, temps.String(), server(addr))), 0o644); err != nil {
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

// nginxConf is a whole nginx configuration around server: pid, logs and
// temporary files in dir.
func nginxConf(dir, temps, server string) string {
	return fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    # Bodies stay in memory: run as root, nginx's workers (nobody) could
    # not write to the test's temporary directory.
    client_body_buffer_size 1m;
    proxy_temp_path %[1]s/proxy;
%[2]s
%[3]s
}
`, dir, temps, server)
}

// generatedNginxServer is the auth_request setup of docs/proxies.md with
// its header lines generated from sidecarHeaders, plus the optional
// add_header line.
func generatedNginxServer(addr, upstream, authzAddr string) string {
	return fmt.Sprintf(`
    server {
        listen %[1]s;

        location / {
            auth_request /_authz;
%[4]s            add_header X-Authz-Decision-Id $authz_decision_id always;
            proxy_pass http://%[2]s;
        }

        location = /_authz {
            internal;
            proxy_pass              http://%[3]s/;
            proxy_pass_request_body off;
            proxy_set_header Content-Length     "";
            proxy_set_header X-Original-URI     $request_uri;
            proxy_set_header X-Original-Method  $request_method;
            proxy_set_header X-Request-Id       $request_id;
            proxy_set_header X-Forwarded-Uri    "";
            proxy_set_header X-Forwarded-Method "";
        }
    }
`, addr, upstream, authzAddr, nginxIdentityLines("            "))
}

// docsNginxServer is the nginx snippet of docs/proxies.md as written, with
// the test's addresses.
func docsNginxServer(t *testing.T, addr, upstream, authzAddr string) string {
	t.Helper()
	return substitute(t, docSnippet(t, "nginx"), map[string]string{
		"listen 80;":             "listen " + addr + ";",
		"server 127.0.0.1:9193;": "server " + authzAddr + ";",
		"proxy_pass http://app;": "proxy_pass http://" + upstream + ";",
	})
}

// nginxVar is the variable docs/proxies.md keeps a sidecar header in:
// "x-auth-user-id" -> "auth_user_id".
func nginxVar(header string) string {
	return strings.ReplaceAll(strings.TrimPrefix(header, "x-"), "-", "_")
}

// nginxIdentityLines copies every sidecar header from the auth answer onto
// the upstream request: auth_request_set, then proxy_set_header, which
// replaces a client's copy (and sends none when the answer had none).
func nginxIdentityLines(indent string) string {
	var b strings.Builder
	for _, h := range sidecarHeaders {
		fmt.Fprintf(&b, "%sauth_request_set $%s $upstream_http_%s;\n", indent, nginxVar(h), strings.ReplaceAll(h, "-", "_"))
	}
	for _, h := range sidecarHeaders {
		fmt.Fprintf(&b, "%sproxy_set_header %s $%s;\n", indent, http.CanonicalHeaderKey(h), nginxVar(h))
	}
	return b.String()
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
