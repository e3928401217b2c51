package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

const (
	repoRoot      = ".."
	composePath   = "../docker-compose.yml"
	checkScript   = "../scripts/compose-check.sh"
	repoPolicies  = "../policies.yaml"
	sidecarImage  = "../Dockerfile"
	betterAuthImg = "betterauth.Dockerfile"
	initSQL       = "postgres-init.sql"

	sidecarService    = "authz-sidecar"
	betterAuthService = "betterauth"
	envoyService      = "envoy"
	benchProfile      = "bench"

	policiesTarget = "/etc/authz-sidecar/policies.yaml"
	envoyTarget    = "/etc/envoy/envoy.yaml"
	// envoyConfig is the file envoy/envoy_test.go validates for compose.
	envoyConfig = "envoy/envoy-compose.yaml"
	// readerRole is the SELECT-only role postgres-init.sql creates.
	readerRole = "authz_reader"
)

// composeFile is the part of docker-compose.yml the checks read. The
// schema itself is the Compose parser's job (scripts/compose-check.sh).
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	User        string            `yaml:"user"`
	ReadOnly    bool              `yaml:"read_only"`
	CapDrop     []string          `yaml:"cap_drop"`
	SecurityOpt []string          `yaml:"security_opt"`
	Ports       []string          `yaml:"ports"`
	Profiles    []string          `yaml:"profiles"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test        []string `yaml:"test"`
		Interval    string   `yaml:"interval"`
		Timeout     string   `yaml:"timeout"`
		StartPeriod string   `yaml:"start_period"`
		Retries     int      `yaml:"retries"`
		Disable     bool     `yaml:"disable"`
	} `yaml:"healthcheck"`
}

// mount is one short-syntax bind mount, "./src:/target[:ro]".
type mount struct{ src, target, mode string }

func (s composeService) mounts() []mount {
	var out []mount
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		m := mount{src: parts[0]}
		if len(parts) > 1 {
			m.target = parts[1]
		}
		if len(parts) > 2 {
			m.mode = parts[2]
		}
		out = append(out, m)
	}
	return out
}

func (s composeService) mountAt(target string) (mount, bool) {
	i := slices.IndexFunc(s.mounts(), func(m mount) bool { return m.target == target })
	if i < 0 {
		return mount{}, false
	}
	return s.mounts()[i], true
}

func parseCompose(data []byte) (*composeFile, error) {
	var c composeFile
	if err := yaml.Unmarshal(data, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func isRootUser(user string) bool {
	uid, _, _ := strings.Cut(user, ":")
	return uid == "" || uid == "0" || uid == "root"
}

// checkCompose returns every way c breaks the stack's rules, joined.
// Relative paths are resolved against root.
func checkCompose(c *composeFile, root string) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	for _, name := range []string{"postgres", "redis", betterAuthService, sidecarService, "upstream", envoyService} {
		if _, ok := c.Services[name]; !ok {
			bad("no service %q", name)
		}
	}
	for name, s := range c.Services {
		bench := slices.Contains(s.Profiles, benchProfile)
		// Healthchecks, so depends_on can wait for "healthy" and not just
		// "started". The load generator is a one-shot job.
		if h := s.Healthcheck; !bench {
			if h == nil || h.Disable || len(h.Test) < 2 || (h.Test[0] != "CMD" && h.Test[0] != "CMD-SHELL") {
				bad("service %s: no healthcheck with a CMD test", name)
			} else {
				for _, d := range []string{h.Interval, h.Timeout, h.StartPeriod} {
					if _, err := time.ParseDuration(d); d != "" && err != nil {
						bad("service %s: healthcheck duration %q: %v", name, d, err)
					}
				}
				if h.Retries <= 0 {
					bad("service %s: healthcheck retries %d", name, h.Retries)
				}
			}
		}
		for dep, cond := range s.DependsOn {
			d, ok := c.Services[dep]
			switch {
			case !ok:
				bad("service %s depends on unknown service %s", name, dep)
			case cond.Condition != "service_healthy":
				bad("service %s: depends_on %s condition %q, want service_healthy", name, dep, cond.Condition)
			case d.Healthcheck == nil:
				bad("service %s waits for %s to be healthy, which has no healthcheck", name, dep)
			}
		}
		// Pinned images: "latest" or no tag changes under you.
		if s.Image != "" {
			_, tag, ok := strings.Cut(s.Image, ":")
			if !ok || tag == "" || tag == "latest" {
				bad("service %s: image %q is not pinned to a tag", name, s.Image)
			}
		} else if s.Build == nil {
			bad("service %s has neither image nor build", name)
		}
		// Nothing published beyond this machine.
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				bad("service %s: port %q is not bound to 127.0.0.1", name, p)
			}
		}
		// Bind mounts exist in the repository and are read-only.
		for _, m := range s.mounts() {
			if !strings.HasPrefix(m.src, "./") {
				continue // a named volume
			}
			if _, err := os.Stat(filepath.Join(root, m.src)); err != nil {
				bad("service %s: mounted file: %v", name, err)
			}
			if m.mode != "ro" {
				bad("service %s: %s is mounted writable", name, m.src)
			}
		}
	}

	if s, ok := c.Services[sidecarService]; ok {
		if isRootUser(s.User) {
			bad("service %s runs as root (user %q)", sidecarService, s.User)
		}
		if !s.ReadOnly {
			bad("service %s: read_only is not true", sidecarService)
		}
		if !slices.Equal(s.CapDrop, []string{"ALL"}) {
			bad("service %s: cap_drop %v, want [ALL]", sidecarService, s.CapDrop)
		}
		if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			bad("service %s: no no-new-privileges", sidecarService)
		}
		if u, err := url.Parse(s.Environment["DATABASE_URL"]); err != nil || u.User.Username() != readerRole {
			bad("service %s: DATABASE_URL must connect as %s, the SELECT-only role of %s", sidecarService, readerRole, initSQL)
		}
		if err := checkComposePolicy(c, s, root); err != nil {
			errs = append(errs, err)
		}
	}
	if s, ok := c.Services[envoyService]; ok {
		m, ok := s.mountAt(envoyTarget)
		if !ok || filepath.Clean(m.src) != envoyConfig {
			bad("service %s must mount ./%s at %s, got %+v", envoyService, envoyConfig, envoyTarget, m)
		}
	}
	return errors.Join(errs...)
}

// checkComposePolicy checks the policy the sidecar service mounts: it must
// validate, trust exactly the tokens the compose Better Auth issues, and
// otherwise say what the repository's policies.yaml says.
func checkComposePolicy(c *composeFile, sidecar composeService, root string) error {
	m, ok := sidecar.mountAt(policiesTarget)
	if !ok {
		return fmt.Errorf("service %s mounts nothing at %s", sidecarService, policiesTarget)
	}
	pol, err := policy.Load(filepath.Join(root, m.src))
	if err != nil {
		return fmt.Errorf("service %s policy: %w", sidecarService, err)
	}
	repo, err := policy.Load(filepath.Join(root, "policies.yaml"))
	if err != nil {
		return err
	}
	base := c.Services[betterAuthService].Environment["BETTER_AUTH_URL"]
	var errs []error
	if pol.JWT.Issuer != base || !slices.Equal(pol.JWT.Audiences, []string{base}) || pol.JWT.JWKSURL != base+"/api/auth/jwks" {
		errs = append(errs, fmt.Errorf("%s: jwt issuer %q audiences %v jwks_url %q, want Better Auth's BETTER_AUTH_URL %q (and %s/api/auth/jwks)",
			m.src, pol.JWT.Issuer, pol.JWT.Audiences, pol.JWT.JWKSURL, base, base))
	}
	repoSrc, err := os.ReadFile(filepath.Join(root, "policies.yaml"))
	if err != nil {
		return err
	}
	composeSrc, err := os.ReadFile(filepath.Join(root, m.src))
	if err != nil {
		return err
	}
	if err := samePolicy(repoSrc, composeSrc, base); err != nil {
		errs = append(errs, fmt.Errorf("%s differs from policies.yaml beyond Better Auth's URL: %w", m.src, err))
	}
	_ = repo
	return errors.Join(errs...)
}

// samePolicy reports whether compose is policies.yaml (repo) with Better
// Auth's URL http://127.0.0.1:3000 replaced by base, ignoring the comment
// block at the top of each file: a copy that can only differ where the
// compose stack must.
func samePolicy(repo, compose []byte, base string) error {
	want := body(strings.ReplaceAll(string(repo), "http://127.0.0.1:3000", base))
	got := body(string(compose))
	if got == want {
		return nil
	}
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range max(len(wl), len(gl)) {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return fmt.Errorf("first difference at body line %d: %q, want %q", i+1, g, w)
		}
	}
	return errors.New("the files differ")
}

// body drops a file's leading comment block.
func body(s string) string {
	for strings.HasPrefix(s, "#") {
		_, s, _ = strings.Cut(s, "\n")
	}
	return s
}

func loadCompose(t *testing.T) *composeFile {
	t.Helper()
	c, err := parseCompose(readFile(t, composePath))
	if err != nil {
		t.Fatalf("%s: %v", composePath, err)
	}
	return c
}

func TestCompose(t *testing.T) {
	t.Parallel()
	if err := checkCompose(loadCompose(t), repoRoot); err != nil {
		t.Error(err)
	}
}

// TestComposeCatchesRegressions proves each check can fail.
func TestComposeCatchesRegressions(t *testing.T) {
	t.Parallel()
	src := string(readFile(t, composePath))
	tests := []struct {
		name, old, new string
		want           string
	}{
		{"no healthcheck", "      test: [\"CMD\", \"redis-cli\", \"ping\"]", "      disable: true", "service redis: no healthcheck"},
		{"bad duration", "      start_period: 5s", "      start_period: soon", "duration"},
		{"started, not healthy", "      upstream:\n        condition: service_healthy", "      upstream:\n        condition: service_started", "service_healthy"},
		{"unknown dependency", "      upstream:\n        condition: service_healthy", "      upstreams:\n        condition: service_healthy", "unknown service"},
		{"sidecar as root", `user: "65532:65532"`, `user: "0:0"`, "runs as root"},
		{"sidecar without user", `    user: "65532:65532"` + "\n", "", "runs as root"},
		{"sidecar writable", "    read_only: true", "    read_only: false", "read_only"},
		{"capabilities kept", "    cap_drop: [ALL]", "    cap_drop: [NET_RAW]", "cap_drop"},
		{"superuser database role", "postgres://authz_reader:authz_reader@", "postgres://postgres:postgres@", readerRole},
		{"published everywhere", `"127.0.0.1:8080:8080"`, `"8080:8080"`, "not bound to 127.0.0.1"},
		{"unpinned image", "image: redis:7", "image: redis", "not pinned"},
		{"latest image", "image: postgres:15", "image: postgres:latest", "not pinned"},
		{"missing mounted file", "./deploy/upstream.nginx.conf:", "./deploy/upstream.conf:", "mounted file"},
		{"writable mount", "./deploy/policies.compose.yaml:/etc/authz-sidecar/policies.yaml:ro", "./deploy/policies.compose.yaml:/etc/authz-sidecar/policies.yaml", "writable"},
		{"repository policy in compose", "./deploy/policies.compose.yaml:", "./policies.yaml:", "BETTER_AUTH_URL"},
		{"policy that does not validate", "./deploy/policies.compose.yaml:", "./docker-compose.yml:", "policy"},
		{"issuer differs", "BETTER_AUTH_URL: http://betterauth:3000", "BETTER_AUTH_URL: http://auth:3000", "want Better Auth's BETTER_AUTH_URL"},
		{"envoy without the checked config", "./envoy/envoy-compose.yaml:", "./envoy/envoy.yaml:", envoyConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if n := strings.Count(src, tt.old); n != 1 {
				t.Fatalf("%q occurs %d times, want 1", tt.old, n)
			}
			c, err := parseCompose([]byte(strings.Replace(src, tt.old, tt.new, 1)))
			if err != nil {
				t.Fatal(err)
			}
			err = checkCompose(c, repoRoot)
			if err == nil {
				t.Fatal("compose check passed")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error does not mention %q:\n%v", tt.want, err)
			}
		})
	}
}

// TestComposePolicyDiffers proves samePolicy sees a change beyond the URLs.
func TestComposePolicyDiffers(t *testing.T) {
	t.Parallel()
	repo := readFile(t, "../policies.yaml")
	src := string(readFile(t, "policies.compose.yaml"))
	if err := samePolicy(repo, []byte(src), "http://betterauth:3000"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ old, new string }{
		{"require: [leave:approve]", "require: [leave:read]"},
		{"leeway: 30s", "leeway: 60s"},
		{"http://betterauth:3000/api/auth/jwks", "http://evil:3000/api/auth/jwks"},
	} {
		if strings.Count(src, tt.old) != 1 {
			t.Fatalf("%q does not occur exactly once", tt.old)
		}
		if samePolicy(repo, []byte(strings.Replace(src, tt.old, tt.new, 1)), "http://betterauth:3000") == nil {
			t.Errorf("%q -> %q: samePolicy saw no difference", tt.old, tt.new)
		}
	}
}

// runCheckScript runs scripts/compose-check.sh on file; status 2 means no
// Compose parser is on this machine (make test's setup step provides one).
func runCheckScript(t *testing.T, file string) (status int, out string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", checkScript, file)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, buf.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), buf.String()
	default:
		t.Fatalf("run %s: %v\n%s", checkScript, err, buf.String())
		return -1, ""
	}
}

// TestComposeConfig validates docker-compose.yml with a real Compose parser
// (scripts/compose-check.sh; make test's setup step provides one), and proves the
// parser refuses a broken copy.
func TestComposeConfig(t *testing.T) {
	status, out := runCheckScript(t, composePath)
	switch status {
	case 0:
	case 2:
		testproc.RequireOrSkip(t, "no Compose parser on this machine (run make setup first):\n%s", out)
	default:
		t.Fatalf("docker-compose.yml is not valid:\n%s", out)
	}
	t.Log(strings.TrimSpace(out))

	broken := filepath.Join(t.TempDir(), "docker-compose.yml")
	src := strings.Replace(string(readFile(t, composePath)), "    read_only: true", "    read_onyl: true", 1)
	if err := os.WriteFile(broken, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if status, out := runCheckScript(t, broken); status != 1 || !strings.Contains(out, "read_onyl") {
		t.Errorf("a misspelt key: status %d, want 1 naming it:\n%s", status, out)
	}
}
