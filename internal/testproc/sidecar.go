package testproc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// BuildSidecar builds ./cmd/authz-sidecar of the repository at repo into
// dir/authz-sidecar, with the race detector when race is set, writing the
// compiler's output to out, and returns the binary's path.
func BuildSidecar(ctx context.Context, repo, dir string, race bool, out io.Writer) (string, error) {
	bin := filepath.Join(dir, "authz-sidecar")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	build := exec.CommandContext(ctx, "go", append(args, "./cmd/authz-sidecar")...)
	build.Dir, build.Stdout, build.Stderr = repo, out, out
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("build authz-sidecar: %w", err)
	}
	return bin, nil
}

// RunWithSidecar is a TestMain body: it builds the race-enabled sidecar
// once for the test binary, sets *bin to its path, runs the tests, removes
// the binary and returns the exit code for os.Exit.
func RunWithSidecar(m *testing.M, bin *string) int {
	repo, err := RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "authz-sidecar-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if *bin, err = BuildSidecar(context.Background(), repo, dir, true, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// Sidecar is a running authz-sidecar binary and a gRPC connection to it.
type Sidecar struct {
	GRPC string // the gRPC listener (ext_authz, health)
	HTTP string // the ops listener (/healthz, /readyz, /metrics)
	Proc *Process
	Conn *grpc.ClientConn
}

// startWithin bounds a sidecar's start, up to its listeners: far above
// what it takes on a loaded machine.
const startWithin = time.Minute

// StartSidecar runs `bin serve args...` in dir, its log in logDir, on
// loopback ports it picks itself, waits until it has bound them (reading
// the addresses from its log, which must be JSON, the default) and
// connects to it; it does not wait for it to be ready (see WaitReady). The
// caller must Stop it. (Ports picked free beforehand could be taken by
// another process before the sidecar binds them.)
func StartSidecar(bin, dir, logDir string, args ...string) (*Sidecar, error) {
	if err := logsServing(args); err != nil {
		return nil, err
	}
	id := make([]byte, 4)
	rand.Read(id)
	s := &Sidecar{}
	var err error
	s.Proc, err = Start(Spec{
		Name: "sidecar-" + hex.EncodeToString(id),
		Dir:  dir,
		// The race runtime sleeps 1s at exit by default (atexit_sleep_ms),
		// which would count against a measured drain and slow every stop.
		Env:  []string{"GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")},
		Bin:  bin,
		Args: append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, args...),
	}, logDir)
	if err != nil {
		return nil, err
	}
	if s.GRPC, s.HTTP, err = s.listening(); err != nil {
		s.Proc.Kill()
		return nil, err
	}
	s.Conn, err = grpc.NewClient(s.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		s.Proc.Kill()
		return nil, fmt.Errorf("sidecar: grpc client: %w", err)
	}
	return s, nil
}

// logsServing refuses arguments that would hide the "serving" line
// StartSidecar reads the addresses from (an info line in JSON): without
// it, a start would wait a minute and fail with an empty log.
func logsServing(args []string) error {
	for i, a := range args {
		v, ok := strings.CutPrefix(a, "--log-level=")
		if !ok && a == "--log-level" && i+1 < len(args) {
			v, ok = args[i+1], true
		}
		if ok && v != "info" && v != "debug" {
			return fmt.Errorf("StartSidecar: --log-level %s hides the \"serving\" info line it reads the addresses from", v)
		}
		f, ok := strings.CutPrefix(a, "--log-format=")
		if !ok && a == "--log-format" && i+1 < len(args) {
			f, ok = args[i+1], true
		}
		if ok && f != "json" {
			return fmt.Errorf("StartSidecar: --log-format %s: it reads the addresses from the JSON log", f)
		}
	}
	return nil
}

// listening waits for the sidecar's "serving" log line and returns the
// gRPC and ops addresses it names.
func (s *Sidecar) listening() (grpcAddr, httpAddr string, err error) {
	deadline := time.Now().Add(startWithin)
	for {
		for line := range strings.SplitSeq(s.Proc.Log(), "\n") {
			var e struct{ Msg, GRPC, HTTP string }
			if json.Unmarshal([]byte(line), &e) == nil && e.Msg == "serving" && e.GRPC != "" {
				return e.GRPC, e.HTTP, nil
			}
		}
		if state, exited := s.Proc.exited(); exited {
			return "", "", fmt.Errorf("sidecar exited at start (%v):\n%s", state, s.Proc.Tail(20))
		}
		if time.Now().After(deadline) {
			return "", "", fmt.Errorf("sidecar not serving after %v:\n%s", startWithin, s.Proc.Tail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// StartSidecarT is StartSidecar for a test: logs in t.TempDir(), and at
// cleanup the connection is closed and the process killed (see
// KillAtCleanup).
func StartSidecarT(t testing.TB, bin, dir string, args ...string) *Sidecar {
	t.Helper()
	s, err := StartSidecar(bin, dir, t.TempDir(), args...)
	if err != nil {
		t.Fatal(err)
	}
	s.Proc.KillAtCleanup(t)
	t.Cleanup(func() { s.Conn.Close() })
	return s
}

// Readiness is what WaitReady waits for.
type Readiness int

const (
	// Live: /healthz answers 200 (the process serves, perhaps without
	// signing keys yet).
	Live Readiness = iota
	// Serving: live, and gRPC health is SERVING (signing keys loaded).
	Serving
)

// WaitReady polls the sidecar until it is as ready as want, for up to
// timeout; it returns an error at once if the process exits.
func (s *Sidecar) WaitReady(want Readiness, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if state, exited := s.Proc.exited(); exited {
			return fmt.Errorf("sidecar exited at start (%v):\n%s", state, s.Proc.Tail(20))
		}
		live := s.HTTPStatus("/healthz") == http.StatusOK
		if live && (want == Live || s.Health() == healthpb.HealthCheckResponse_SERVING) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sidecar not live/serving after %v (live %v, health %v):\n%s",
				timeout, live, s.Health(), s.Proc.Tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// answerWithin bounds one health or ops request: tests assert what these
// say, so a slow answer on a loaded machine must not read as a failure.
const answerWithin = 30 * time.Second

// Health is the gRPC health of the whole server, or UNKNOWN when the
// health RPC fails.
func (s *Sidecar) Health() healthpb.HealthCheckResponse_ServingStatus {
	ctx, cancel := context.WithTimeout(context.Background(), answerWithin)
	defer cancel()
	resp, err := healthpb.NewHealthClient(s.Conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN
	}
	return resp.GetStatus()
}

// HTTPStatus GETs path on the ops listener; 0 when it does not answer.
func (s *Sidecar) HTTPStatus(path string) int {
	c := http.Client{Timeout: answerWithin}
	resp, err := c.Get("http://" + s.HTTP + path)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// Stop closes the connection and stops the process: SIGTERM (the sidecar
// drains), then SIGKILL to its group after grace.
func (s *Sidecar) Stop(grace time.Duration) {
	s.Conn.Close()
	s.Proc.Stop(grace)
}
