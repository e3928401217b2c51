package testproc

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Redis is a redis-server child on a loopback port reserved for it, so that
// it can be killed and restarted where its clients expect it. It keeps no
// data across a restart (no persistence).
type Redis struct {
	port  int
	bin   string
	dir   string     // working directory; the log's too unless a test owns it
	owner testing.TB // nil unless made by NewRedisT
	proc  *Process   // nil while not running
}

// NewRedis reserves a port for a redis-server that will run in dir,
// without starting it. The error wraps exec.ErrNotFound when redis-server
// is not installed.
func NewRedis(dir string) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not installed (run scripts/services.sh): %w", err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	return &Redis{port: port, bin: bin, dir: dir}, nil
}

// NewRedisT is NewRedis for a test: a missing redis-server fails the test
// under CI and skips it otherwise (RequireOrSkip), and every run Start
// makes is killed at cleanup with its log in its own t.TempDir() (see
// KillAtCleanup).
func NewRedisT(t testing.TB) *Redis {
	t.Helper()
	r, err := NewRedis(t.TempDir())
	if errors.Is(err, exec.ErrNotFound) {
		RequireOrSkip(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	r.owner = t
	return r
}

// URL is a client's redis:// URL for the server.
func (r *Redis) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

// Addr is the server's host:port.
func (r *Redis) Addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

// Start runs redis-server in the foreground, empty, and waits until it
// answers PING.
func (r *Redis) Start() error {
	logDir := r.dir
	if r.owner != nil {
		logDir = r.owner.TempDir()
	}
	p, err := Start(Spec{
		Name: fmt.Sprintf("redis-%d", r.port),
		Dir:  r.dir,
		Bin:  r.bin,
		Args: []string{"--port", fmt.Sprint(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--daemonize", "no", "--dir", r.dir},
	}, logDir)
	if err != nil {
		return err
	}
	if r.owner != nil {
		p.KillAtCleanup(r.owner)
	}
	r.proc = p
	deadline := time.Now().Add(30 * time.Second)
	for !r.ping(200 * time.Millisecond) {
		if _, exited := p.exited(); exited {
			return fmt.Errorf("redis-server exited at start:\n%s", p.Tail(20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s does not answer PING after 30s", r.Addr())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// Kill SIGKILLs the server, if running: connections reset, data gone.
func (r *Redis) Kill() {
	if r.proc != nil {
		r.proc.Kill()
		r.proc = nil
	}
}

// Pause SIGSTOPs the server: connections stay open and the kernel still
// accepts new ones, but nothing answers.
func (r *Redis) Pause() error { return r.signal(syscall.SIGSTOP) }

// Resume SIGCONTs a paused server.
func (r *Redis) Resume() error { return r.signal(syscall.SIGCONT) }

func (r *Redis) signal(sig syscall.Signal) error {
	if r.proc == nil {
		return fmt.Errorf("redis-server on %s: not running", r.Addr())
	}
	return r.proc.Signal(sig)
}

// ping reports whether the server answers PING within wait.
func (r *Redis) ping(wait time.Duration) bool {
	c, err := net.DialTimeout("tcp", r.Addr(), wait)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}
