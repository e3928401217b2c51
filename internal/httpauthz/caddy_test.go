package httpauthz_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/httpauthz"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// TestCaddyForwardAuth runs a real Caddy in front of an upstream that
// reports what reached it, twice: with the forward-auth setup of
// docs/proxies.md generated from the sidecar's header list, and with the
// snippet as it is written.
func TestCaddyForwardAuth(t *testing.T) {
	if testing.Short() {
		testproc.RequireOrSkip(t, "runs a Caddy process; make test runs it, make check (-short) does not")
	}
	bin := caddyBinary(t)

	up := &echoUpstream{}
	upstream := httptest.NewServer(up)
	t.Cleanup(upstream.Close)

	d := proxyDecider()
	authzSrv := newServer(t, d, nil, httpauthz.Config{DecisionIDResponseHeader: true})
	upAddr, authzAddr := upstream.Listener.Addr().String(), authzSrv.Listener.Addr().String()

	cases := append(commonCases(503), // Caddy returns the sidecar's deny as it is
		proxyCase{name: "client X-Forwarded-* replaced by Caddy", method: "DELETE", uri: "/forbidden",
			headers:    map[string]string{"X-Forwarded-Uri": "/allowed", "X-Forwarded-Method": "GET"},
			wantStatus: 403, wantAsked: "DELETE /forbidden"},
		proxyCase{name: "client X-Original-* dropped by Caddy", method: "GET", uri: "/allowed",
			headers:    map[string]string{"X-Original-Uri": "/forbidden", "X-Original-Method": "DELETE"},
			wantStatus: 200, wantAsked: "GET /allowed", wantDecision: ptr(proxyDecisions["/allowed"])},
	)
	sites := []struct {
		name string
		site func(addr string) string
	}{
		{"generated", func(addr string) string { return generatedCaddySite(addr, upAddr, authzAddr) }},
		{"docs snippet", func(addr string) string { return docsCaddySite(t, addr, upAddr, authzAddr) }},
	}
	for _, s := range sites {
		t.Run(s.name, func(t *testing.T) {
			caddy := "http://" + startCaddy(t, bin, s.site)
			runProxyCases(t, caddy, d, up, cases)

			t.Run("the sidecar's deny reaches the client", func(t *testing.T) {
				resp, err := http.Get(caddy + "/login-required")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				for name, want := range map[string]string{
					"WWW-Authenticate":     `Bearer error="invalid_token"`,
					"X-Authz-Reason":       "no_credential",
					"Content-Type":         "application/json",
					authz.HeaderDecisionID: proxyDecisions["/login-required"].ID,
				} {
					if got := resp.Header.Get(name); got != want {
						t.Errorf("%s = %q, want %q", name, got, want)
					}
				}
				if !strings.Contains(string(body), `"reason":"no_credential"`) {
					t.Errorf("body %s", body)
				}
			})
		})
	}
}

func ptr[T any](v T) *T { return &v }

// caddyBinary finds Caddy (Debian's caddy package, which make test's setup
// step provides). Without it the test fails under CI=true and is skipped
// elsewhere.
func caddyBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("caddy"); err == nil {
		return p
	}
	if isExecutable("/usr/bin/caddy") {
		return "/usr/bin/caddy"
	}
	testproc.RequireOrSkip(t, "caddy is not on this machine (run make setup first)")
	return ""
}

// caddyfile is a whole Caddy configuration around site: state in dir, no
// admin endpoint, no automatic HTTPS.
func caddyfile(dir, site string) string {
	return fmt.Sprintf("{\n\tadmin off\n\tauto_https off\n\tstorage file_system %s/data\n}\n\n%s\n", dir, site)
}

// generatedCaddySite is the forward-auth setup of docs/proxies.md with its
// header lines generated from sidecarHeaders.
func generatedCaddySite(addr, upstream, authzAddr string) string {
	var matchers, strip, copied strings.Builder
	for _, h := range sidecarHeaders {
		name := http.CanonicalHeaderKey(h)
		fmt.Fprintf(&matchers, "\t@%s not vars {rp.header.%s} \"\" \"<nil>\"\n", caddyMatcher(h), name)
		fmt.Fprintf(&strip, "\t\trequest_header -%s\n", name)
		fmt.Fprintf(&copied, "\t\t\t\trequest_header @%s %s {rp.header.%s}\n", caddyMatcher(h), name, name)
	}
	return fmt.Sprintf(`http://%[1]s {
%[4]s
	route {
%[5]s		reverse_proxy %[3]s {
			method GET
			rewrite /
			header_up X-Forwarded-Method {method}
			header_up X-Forwarded-Uri {uri}
			header_up -X-Original-Method
			header_up -X-Original-Uri
			@allowed status 2xx
			handle_response @allowed {
%[6]s			}
		}
		reverse_proxy %[2]s
	}
}
`, addr, upstream, authzAddr, matchers.String(), strip.String(), copied.String())
}

// docsCaddySite is the Caddy snippet of docs/proxies.md as written, with
// the test's addresses.
func docsCaddySite(t *testing.T, addr, upstream, authzAddr string) string {
	t.Helper()
	return substitute(t, docSnippet(t, "caddy"), map[string]string{
		"example.com {":                  "http://" + addr + " {",
		"reverse_proxy 127.0.0.1:9193 {": "reverse_proxy " + authzAddr + " {",
		"reverse_proxy app:8080":         "reverse_proxy " + upstream,
	})
}

// caddyMatcher names the matcher docs/proxies.md uses for "the sidecar
// sent this header": "x-auth-user-id" -> "auth_user_id".
func caddyMatcher(header string) string {
	return strings.ReplaceAll(strings.TrimPrefix(header, "x-"), "-", "_")
}

// startCaddy runs Caddy in the foreground and returns its listen address
// once it accepts connections.
func startCaddy(t *testing.T, bin string, site func(addr string) string) string {
	t.Helper()
	dir := t.TempDir()
	var lastErr string
	for attempt := 0; attempt < 3; attempt++ {
		addr := freeAddr(t)
		conf := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(conf, []byte(caddyfile(dir, site(addr))), 0o644); err != nil {
			t.Fatal(err)
		}
		p := testproc.StartT(t, testproc.Spec{
			Name: fmt.Sprintf("caddy-%d", attempt), Bin: bin, Dir: dir,
			Args: []string{"run", "--config", conf, "--adapter", "caddyfile"},
			// Caddy's own data and config directories go to the test's.
			Env: []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir},
		})
		// A start-up allowance, not a speed assertion.
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if _, exited := p.Wait(0); exited {
				break
			}
			if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
				c.Close()
				return addr
			}
		}
		p.Kill()
		lastErr = p.Tail(20)
		if !strings.Contains(lastErr, "address already in use") {
			break // not the race for the free port: retrying will not help
		}
	}
	t.Fatalf("caddy did not start:\n%s", lastErr)
	return ""
}
