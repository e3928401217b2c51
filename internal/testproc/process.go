package testproc

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Spec says what to run.
type Spec struct {
	Name string   // names the process in messages and its log file, Name.log
	Dir  string   // working directory; empty for this process's
	Env  []string // added to this process's environment
	Bin  string
	Args []string
}

// Process is a running child in its own process group, with its standard
// output and error in a log file. One goroutine waits for it, so callers
// can both signal it and wait for its exit.
type Process struct {
	name  string
	cmd   *exec.Cmd
	log   string
	done  chan struct{}    // closed when the process has exited
	state *os.ProcessState // set before done is closed
}

// Start runs spec with its output in logDir/Name.log. The caller must Kill
// or Stop it.
func Start(spec Spec, logDir string) (*Process, error) {
	logPath := filepath.Join(logDir, spec.Name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: log file: %w", spec.Name, err)
	}
	cmd := exec.Command(spec.Bin, spec.Args...)
	cmd.Dir = spec.Dir
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = childAttr()
	if err := startOnKeptThread(cmd); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	p := &Process{name: spec.Name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		p.state = cmd.ProcessState
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// The kernel sends a child its Pdeathsig (see childAttr) when the thread
// that forked it exits, not the process; and the Go runtime ends a thread
// whose goroutine locked it and returned (bench/loadgen's fixed-rate
// scheduler does, at the end of every run). A child forked from such a
// thread would be killed mid-run. So every child is forked from one
// thread kept for that, for the life of the process: process-wide state,
// as the thread is.
var (
	startOnce sync.Once
	startReqs chan startReq
)

type startReq struct {
	cmd  *exec.Cmd
	done chan error
}

// startOnKeptThread runs cmd.Start on the kept thread.
func startOnKeptThread(cmd *exec.Cmd) error {
	startOnce.Do(func() {
		startReqs = make(chan startReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for r := range startReqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	startReqs <- startReq{cmd, done}
	return <-done
}

// StartT is Start for a test: the log goes to t.TempDir(), a failure to
// start fails the test, and the process is killed at cleanup (see
// KillAtCleanup).
func StartT(t testing.TB, spec Spec) *Process {
	t.Helper()
	p, err := Start(spec, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p.KillAtCleanup(t)
	return p
}

// KillAtCleanup kills p's process group when t ends. It then fails t if
// the race detector reported a data race in p's log (the sidecar under test
// is race-built), and otherwise shows the log's last lines if t failed.
func (p *Process) KillAtCleanup(t testing.TB) {
	t.Cleanup(func() {
		p.Kill()
		if n := p.DataRaces(); n > 0 {
			t.Errorf("%s: the race detector reported a data race:\n%s", p.name, p.Log())
		} else if t.Failed() {
			t.Logf("--- %s log (last lines) ---\n%s", p.name, p.Tail(40))
		}
	})
}

// Name is the Spec's name.
func (p *Process) Name() string { return p.name }

// LogPath is the file holding the process's output.
func (p *Process) LogPath() string { return p.log }

// Log is the process's output so far, or the error reading it.
func (p *Process) Log() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// Tail is the last n lines of the process's output.
func (p *Process) Tail(n int) string { return Tail(p.log, n) }

// DataRaces counts the race detector's reports in the process's output.
func (p *Process) DataRaces() int { return strings.Count(p.Log(), "WARNING: DATA RACE") }

// Signal sends sig to the process (not its group).
func (p *Process) Signal(sig syscall.Signal) error {
	if err := syscall.Kill(p.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("%s: send %v: %w", p.name, sig, err)
	}
	return nil
}

// Kill SIGKILLs the process group and waits for the process; it is a no-op
// once the process has exited.
func (p *Process) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Stop asks the process to stop (SIGTERM), and kills its group if it has
// not exited within grace; it is a no-op once the process has exited.
func (p *Process) Stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
}

// Wait waits up to timeout for the process to exit and returns its state;
// false if it is still running.
func (p *Process) Wait(timeout time.Duration) (*os.ProcessState, bool) {
	if state, exited := p.exited(); exited {
		return state, true // not left to select's random choice when timeout is 0
	}
	select {
	case <-p.done:
		return p.state, true
	case <-time.After(timeout):
		return nil, false
	}
}

// exited is the process's state if it has exited, without waiting.
func (p *Process) exited() (*os.ProcessState, bool) {
	select {
	case <-p.done:
		return p.state, true
	default:
		return nil, false
	}
}

// Tail is the last n lines of the file at path, or the error reading it.
func Tail(path string, n int) string {
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
