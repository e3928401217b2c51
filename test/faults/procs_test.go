package faults

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// repoRoot is two levels up from this package.
func repoRoot(t testing.TB) string {
	t.Helper()
	abs, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// requireOrSkip fails under CI (where every dependency must be present)
// and skips on a developer machine that lacks one.
func requireOrSkip(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format+" (set CI=true to fail instead)", args...)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// process is a child started by a test, in its own process group, killed
// with that group at cleanup; its output goes to a log file shown when the
// test fails. One goroutine waits for it, so tests can both signal it and
// wait for its exit.
type process struct {
	name  string
	cmd   *exec.Cmd
	log   string
	done  chan struct{} // closed when the process has exited
	state *os.ProcessState
}

func start(t testing.TB, name, dir string, env []string, bin string, args ...string) *process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		p.state = cmd.ProcessState
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if out := readFile(logPath); strings.Contains(out, "WARNING: DATA RACE") {
			t.Errorf("%s: the race detector reported a data race:\n%s", name, out)
		} else if t.Failed() {
			t.Logf("--- %s log (last lines) ---\n%s", name, tail(logPath, 40))
		}
	})
	return p
}

// signal sends sig to the process (not its group).
func (p *process) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(p.cmd.Process.Pid, sig); err != nil {
		t.Fatalf("%s: send %v: %v", p.name, sig, err)
	}
}

// kill SIGKILLs the process group and waits for the process; it is a no-op
// once the process has exited.
func (p *process) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// wait waits up to timeout for the process to exit and returns its state.
func (p *process) wait(timeout time.Duration) (*os.ProcessState, bool) {
	select {
	case <-p.done:
		return p.state, true
	case <-time.After(timeout):
		return nil, false
	}
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// sidecar is the built authz-sidecar binary, running.
type sidecar struct {
	GRPC, HTTP string
	proc       *process
	client     authv3.AuthorizationClient
	health     healthpb.HealthClient
}

// startSidecar runs the binary with args after the listen addresses, and
// waits until it is live (/healthz); waitServing also waits for gRPC health
// SERVING (signing keys loaded).
func startSidecar(t testing.TB, waitServing bool, args ...string) *sidecar {
	t.Helper()
	s := &sidecar{
		GRPC: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		HTTP: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
	}
	all := append([]string{"serve", "--grpc-addr", s.GRPC, "--http-addr", s.HTTP, "--log-format", "json"}, args...)
	// The race runtime sleeps 1s at exit by default (atexit_sleep_ms), which
	// would count against the drain budget that TestSIGTERMDrainsInFlightCheck
	// measures.
	env := []string{"GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")}
	s.proc = start(t, "sidecar-"+strings.ReplaceAll(s.GRPC, ":", "-"), repoRoot(t), env, sidecarBin, all...)
	conn, err := grpc.NewClient(s.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s.client = authv3.NewAuthorizationClient(conn)
	s.health = healthpb.NewHealthClient(conn)

	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-s.proc.done:
			t.Fatalf("sidecar exited at start (%v):\n%s", s.proc.state, tail(s.proc.log, 20))
		default:
		}
		live := s.httpStatus(t, "/healthz") == http.StatusOK
		if live && (!waitServing || s.healthStatus(t) == healthpb.HealthCheckResponse_SERVING) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("sidecar not live/serving after 20s (live %v, health %v)", live, s.healthStatus(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// healthStatus is the gRPC health of the whole server, or UNKNOWN when the
// health RPC fails.
func (s *sidecar) healthStatus(t testing.TB) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := s.health.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN
	}
	return resp.GetStatus()
}

// httpStatus GETs path on the ops listener; 0 when it does not answer.
func (s *sidecar) httpStatus(t testing.TB, path string) int {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + s.HTTP + path)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// metric sums the samples of the named counter or gauge whose labels
// include every label in want, from /metrics.
func (s *sidecar) metric(t testing.TB, name string, want map[string]string) float64 {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + s.HTTP + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read /metrics: %v", err)
	}
	v, err := sumSamples(string(body), name, want)
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	return v
}

// sumSamples parses Prometheus' text format just enough for counters:
// `name{a="x",b="y"} value` lines, label values without escapes.
func sumSamples(text, name string, want map[string]string) (float64, error) {
	var sum float64
	for line := range strings.SplitSeq(text, "\n") {
		if !strings.HasPrefix(line, name) || strings.HasPrefix(line, "#") {
			continue
		}
		rest := line[len(name):]
		labels := map[string]string{}
		if strings.HasPrefix(rest, "{") {
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				return 0, fmt.Errorf("bad sample %q", line)
			}
			for pair := range strings.SplitSeq(rest[1:end], ",") {
				k, v, ok := strings.Cut(pair, "=")
				if !ok {
					continue
				}
				labels[k] = strings.Trim(v, `"`)
			}
			rest = rest[end+1:]
		} else if !strings.HasPrefix(rest, " ") {
			continue // another metric whose name starts with name
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			return 0, fmt.Errorf("bad value in %q: %w", line, err)
		}
		sum += v
	}
	return sum, nil
}

// answer is what Envoy would do with a CheckResponse: the HTTP status and,
// on a deny, the x-authz-reason header.
type answer struct {
	status int
	reason string
}

func (a answer) String() string { return fmt.Sprintf("%d %s", a.status, a.reason) }

// clientDeadline is the most a test waits for one Check; longer is a hang
// past any sane Envoy ext_authz timeout.
const clientDeadline = 2 * time.Second

// errGRPC marks a Check that returned a gRPC error instead of an answer.
var errGRPC = errors.New("Check returned a gRPC error (it must always answer)")

// tryCheck sends one CheckRequest; safe from any goroutine.
func (s *sidecar) tryCheck(method, path, token string) (answer, error) {
	h := map[string]string{"x-request-id": "faults"}
	if token != "" {
		h["authorization"] = "Bearer " + token
	}
	ctx, cancel := context.WithTimeout(context.Background(), clientDeadline)
	defer cancel()
	resp, err := s.client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Headers: h, Protocol: "HTTP/1.1", Host: "app.example.test",
		}},
	}})
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: %w: %v", method, path, errGRPC, err)
	}
	if resp.GetOkResponse() != nil {
		return answer{status: 200}, nil
	}
	d := resp.GetDeniedResponse()
	if d == nil {
		return answer{}, fmt.Errorf("%s %s: CheckResponse without an http response: %v", method, path, resp)
	}
	a := answer{status: int(d.GetStatus().GetCode())}
	for _, hv := range d.GetHeaders() {
		if hv.GetHeader().GetKey() == "x-authz-reason" {
			a.reason = hv.GetHeader().GetValue()
		}
	}
	return a, nil
}

func (s *sidecar) check(t testing.TB, method, path, token string) answer {
	t.Helper()
	a, err := s.tryCheck(method, path, token)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
