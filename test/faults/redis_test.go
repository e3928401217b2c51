package faults

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// redisServer is a redis-server child process on a fixed loopback port, so
// that it can be killed and restarted where the sidecar expects it.
type redisServer struct {
	port int
	dir  string
	bin  string
	proc *process // nil while not running
}

// newRedis reserves a port for a Redis server without starting it.
func newRedis(t testing.TB) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		requireOrSkip(t, "redis-server not installed (run scripts/services.sh): %v", err)
	}
	return &redisServer{port: freePort(t), dir: t.TempDir(), bin: bin}
}

// URL is what the sidecar's --redis-url points at.
func (r *redisServer) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

func (r *redisServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

// start runs redis-server in the foreground (no persistence, so a restart
// comes back empty) and waits until it answers PING.
func (r *redisServer) start(t testing.TB) {
	t.Helper()
	r.proc = start(t, fmt.Sprintf("redis-%d", r.port), r.dir, nil, r.bin,
		"--port", fmt.Sprint(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--dir", r.dir)
	deadline := time.Now().Add(10 * time.Second)
	for !r.ping() {
		select {
		case <-r.proc.done:
			t.Fatalf("redis-server exited at start:\n%s", tail(r.proc.log, 20))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s does not answer PING after 10s", r.addr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill SIGKILLs the server: connections reset, data gone.
func (r *redisServer) kill(t testing.TB) {
	t.Helper()
	r.proc.kill()
	r.proc = nil
}

// pause SIGSTOPs the server: connections stay open and the kernel still
// accepts new ones, but nothing answers.
func (r *redisServer) pause(t testing.TB) { t.Helper(); r.proc.signal(t, syscall.SIGSTOP) }

// resume SIGCONTs a paused server.
func (r *redisServer) resume(t testing.TB) { t.Helper(); r.proc.signal(t, syscall.SIGCONT) }

func (r *redisServer) ping() bool {
	c, err := net.DialTimeout("tcp", r.addr(), 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}
