package testproc

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// alive reports whether pid names a live process: a zombie waiting for
// its (new) parent to reap it counts as dead.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		if _, noProc := os.Stat("/proc/self"); noProc != nil {
			return syscall.Kill(pid, 0) == nil // no procfs (macOS)
		}
		return false
	}
	// pid (comm) state ...; comm may hold spaces and parentheses.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// patience bounds waits for conditions and answers in these tests: a
// failure bound far above what anything takes on a loaded machine, never
// what a test asserts.
const patience = 30 * time.Second

// eventually polls cond for up to patience.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(patience); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, patience)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestKillTakesTheProcessGroup(t *testing.T) {
	dir := t.TempDir()
	p := StartT(t, Spec{Name: "sh", Dir: dir, Env: []string{"TESTPROC_X=42"}, Bin: "sh",
		Args: []string{"-c", `sleep 60 & echo $! > child.pid; echo "x=$TESTPROC_X"; wait`}})
	var child int
	eventually(t, "child.pid written", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "child.pid"))
		child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && child > 0
	})
	eventually(t, "output logged", func() bool { return strings.Contains(p.Log(), "x=42") })

	p.Kill()
	if _, exited := p.Wait(0); !exited {
		t.Fatal("Kill returned before the process exited")
	}
	// The grandchild was in the group: gone too (reaped by init).
	eventually(t, "grandchild gone", func() bool { return !alive(child) })
	p.Kill() // a no-op once exited
}

func TestStopKillsAfterGrace(t *testing.T) {
	p := StartT(t, Spec{Name: "stubborn", Bin: "sh", Args: []string{"-c", `trap "" TERM; echo ready; sleep 60`}})
	eventually(t, "trap installed", func() bool { return strings.Contains(p.Log(), "ready") })
	start := time.Now()
	p.Stop(100 * time.Millisecond)
	state, exited := p.Wait(0)
	if !exited {
		t.Fatal("Stop returned before the process exited")
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Errorf("state %v, want killed by SIGKILL after ignoring SIGTERM", state)
	}
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Errorf("killed after %v, before the grace", took)
	}
}

func TestSignalAfterExitFails(t *testing.T) {
	p := StartT(t, Spec{Name: "true", Bin: "true"})
	if _, exited := p.Wait(patience); !exited {
		t.Fatal("true did not exit")
	}
	if err := p.Signal(syscall.SIGCONT); err == nil {
		t.Error("Signal to an exited process: no error")
	}
}

func TestStartFailsForMissingBinary(t *testing.T) {
	if _, err := Start(Spec{Name: "nope", Bin: "/nonexistent/testproc-nope"}, t.TempDir()); err == nil {
		t.Error("Start of a missing binary: no error")
	}
}

func TestTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("a\nb\nc\nd\ne\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		n    int
		want string
	}{{2, "d\ne"}, {5, "a\nb\nc\nd\ne"}, {9, "a\nb\nc\nd\ne"}} {
		if got := Tail(path, tt.n); got != tt.want {
			t.Errorf("Tail(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

// fakeTB records how RequireOrSkip stopped a test; both stops end the
// goroutine, as testing's do.
type fakeTB struct {
	testing.TB
	failed, skipped bool
}

func (f *fakeTB) Helper()               {}
func (f *fakeTB) Fatalf(string, ...any) { f.failed = true; runtime.Goexit() }
func (f *fakeTB) Skipf(string, ...any)  { f.skipped = true; runtime.Goexit() }

func TestRequireOrSkip(t *testing.T) {
	for _, tt := range []struct {
		ci         string
		fail, skip bool
	}{{"true", true, false}, {"", false, true}, {"1", false, true}} {
		t.Run("CI="+tt.ci, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			f := &fakeTB{}
			done := make(chan struct{})
			go func() {
				defer close(done)
				RequireOrSkip(f, "no %s", "thing")
			}()
			<-done
			if f.failed != tt.fail || f.skipped != tt.skip {
				t.Errorf("failed %v skipped %v, want %v %v", f.failed, f.skipped, tt.fail, tt.skip)
			}
		})
	}
}

func TestWaitHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ok" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	if err := WaitHTTP(srv.URL+"/ok", patience); err != nil {
		t.Errorf("200 endpoint: %v", err)
	}
	if err := WaitHTTP(srv.URL+"/down", 200*time.Millisecond); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("503 endpoint: got %v, want an error naming the status", err)
	}
}

// echoServer echoes every connection back, until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return lis.Addr().String()
}

// roundTrip writes msg on c and reads it back within wait.
func roundTrip(c net.Conn, msg string, wait time.Duration) (string, error) {
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	return string(buf), err
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, patience)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestPGProxyStallResume(t *testing.T) {
	p := NewPGProxyT(t, echoServer(t))
	c := dial(t, p.Addr())
	if got, err := roundTrip(c, "a", patience); err != nil || got != "a" {
		t.Fatalf("passing: %q %v", got, err)
	}
	p.Stall()
	// Nothing can pass a stalled proxy: any wait ends in a timeout.
	if got, err := roundTrip(c, "b", 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled: got %q %v, want a read timeout", got, err)
	}
	eventually(t, "the chunk counted as held", func() bool { return p.Held() == 1 })
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	// The held byte arrives now.
	_ = c.SetReadDeadline(time.Now().Add(patience))
	buf := make([]byte, 1)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "b" {
		t.Fatalf("resumed: %q %v", buf, err)
	}
}

func TestPGProxyCutResumeClose(t *testing.T) {
	p := NewPGProxyT(t, echoServer(t))
	c := dial(t, p.Addr())
	if _, err := roundTrip(c, "a", patience); err != nil {
		t.Fatal(err)
	}
	p.Cut()
	if _, err := roundTrip(c, "b", patience); !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
		t.Errorf("cut connection: %v, want reset", err)
	}
	if c, err := net.DialTimeout("tcp", p.Addr(), patience); err == nil {
		c.Close()
		t.Error("cut: new connection accepted")
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(dial(t, p.Addr()), "c", patience); err != nil || got != "c" {
		t.Fatalf("resumed on the same address: %q %v", got, err)
	}
	p.Close()
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", p.Addr(), patience); err == nil {
		c.Close()
		t.Error("closed: Resume listened again")
	}
}

func TestRedisLifecycle(t *testing.T) {
	r := NewRedisT(t)
	// Nothing listens, or the process is stopped: no wait gets a PONG, so a
	// short one proves it; an answer is waited for patiently.
	if r.ping(200 * time.Millisecond) {
		t.Fatal("answers PING before Start")
	}
	if err := r.Pause(); err == nil {
		t.Error("Pause before Start: no error")
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.URL(), "redis://"+r.Addr()) {
		t.Errorf("URL %s does not name %s", r.URL(), r.Addr())
	}
	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
	if r.ping(200 * time.Millisecond) {
		t.Error("answers PING while paused")
	}
	if err := r.Resume(); err != nil {
		t.Fatal(err)
	}
	if !r.ping(patience) {
		t.Error("no PING answer after Resume")
	}
	r.Kill()
	if r.ping(200 * time.Millisecond) {
		t.Error("answers PING after Kill")
	}
	if err := r.Start(); err != nil { // same port again
		t.Fatal(err)
	}
}

func TestRepoRoot(t *testing.T) {
	root := RepoRootT(t)
	if _, err := os.Stat(filepath.Join(root, "internal", "testproc", "doc.go")); err != nil {
		t.Errorf("RepoRoot %s: %v", root, err)
	}
}

// TestStartSidecarRefusesHiddenServingLine: arguments that would hide the
// line StartSidecar reads its addresses from are refused at once, naming
// the flag, instead of a minute's wait on an empty log.
func TestStartSidecarRefusesHiddenServingLine(t *testing.T) {
	for _, args := range [][]string{
		{"--log-level", "warn"},
		{"--log-level=error"},
		{"--log-format", "console"},
	} {
		_, err := StartSidecar("/nonexistent/authz-sidecar", t.TempDir(), t.TempDir(), args...)
		if err == nil || !strings.Contains(err.Error(), args[0][:11]) {
			t.Errorf("%v: err = %v, want a refusal naming the flag", args, err)
		}
	}
	for _, args := range [][]string{{"--log-level", "debug"}, {"--log-level=info", "--log-format", "json"}} {
		if err := logsServing(args); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
}

// A child outlives the thread that forked it: the kernel's Pdeathsig
// follows the forking thread, and the runtime ends a thread whose
// goroutine locked it and returned (as bench/loadgen's scheduler does),
// whichever goroutine had forked a child on it before.
func TestChildOutlivesForkingThread(t *testing.T) {
	t.Parallel()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		RequireOrSkip(t, "no sleep binary: %v", err)
	}
	// Each child is started from a goroutine that locks its thread and
	// returns, so the runtime ends that thread right after the start:
	// without forking from a kept thread, Pdeathsig kills the child then.
	var ps []*Process
	for i := range 8 {
		started := make(chan error, 1)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			p, err := Start(Spec{Name: fmt.Sprintf("sleeper-%d", i), Bin: sleep, Args: []string{"60"}}, t.TempDir())
			if err == nil {
				ps = append(ps, p)
			}
			started <- err
		}()
		if err := <-started; err != nil {
			t.Fatal(err)
		}
		ps[len(ps)-1].KillAtCleanup(t)
	}
	for _, p := range ps {
		if state, exited := p.Wait(50 * time.Millisecond); exited {
			t.Fatalf("%s died with the thread that forked it: %v", p.Name(), state)
		}
	}
}
