package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
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
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// The helpers below are copies of test/faults' (test files cannot be
// imported across packages), reporting errors instead of failing a test.

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// process is a child in its own process group, with its output in a log
// file.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when it has exited
}

func start(name, dir, logDir string, env []string, bin string, args ...string) (*process, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// kill SIGKILLs the process group and waits.
func (p *process) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// stop asks the process to stop (SIGTERM), then kills it after grace.
func (p *process) stop(grace time.Duration) {
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.kill()
	}
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

// redisServer is a redis-server child on a fixed port, so that it can be
// killed and restarted where the sidecar expects it.
type redisServer struct {
	port   int
	dir    string
	logDir string
	proc   *process // nil while not running
}

func (r *redisServer) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

func (r *redisServer) start() error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("redis-server not installed (run scripts/services.sh): %w", err)
	}
	r.proc, err = start(fmt.Sprintf("redis-%d", r.port), r.dir, r.logDir, nil, bin,
		"--port", fmt.Sprint(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--dir", r.dir)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for !r.ping() {
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on port %d does not answer PING after 10s", r.port)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func (r *redisServer) kill() {
	if r.proc != nil {
		r.proc.kill()
		r.proc = nil
	}
}

func (r *redisServer) ping() bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", r.port), 200*time.Millisecond)
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

// pgProxy forwards TCP to Postgres and can stall (hold every byte, keep
// connections) and resume.
type pgProxy struct {
	target string
	lis    net.Listener

	mu    sync.Mutex
	gate  chan struct{}          // guarded by mu; closed while passing
	pairs map[*pipePair]struct{} // guarded by mu
}

type pipePair struct {
	client, server net.Conn
	once           sync.Once
	done           chan struct{}
}

func (pp *pipePair) close() {
	pp.once.Do(func() {
		pp.client.Close()
		pp.server.Close()
		close(pp.done)
	})
}

func newPGProxy(target string) (*pgProxy, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	gate := make(chan struct{})
	close(gate)
	p := &pgProxy{target: target, lis: lis, gate: gate, pairs: map[*pipePair]struct{}{}}
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go p.handle(c)
		}
	}()
	return p, nil
}

func (p *pgProxy) addr() string { return p.lis.Addr().String() }

func (p *pgProxy) handle(c net.Conn) {
	s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	pp := &pipePair{client: c, server: s, done: make(chan struct{})}
	p.mu.Lock()
	p.pairs[pp] = struct{}{}
	p.mu.Unlock()
	go p.pipe(pp, s, c)
	go p.pipe(pp, c, s)
}

func (p *pgProxy) pipe(pp *pipePair, dst, src net.Conn) {
	defer func() {
		pp.close()
		p.mu.Lock()
		delete(p.pairs, pp)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			gate := p.gate
			p.mu.Unlock()
			select {
			case <-gate:
			case <-pp.done:
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *pgProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
		p.gate = make(chan struct{})
	default:
	}
}

func (p *pgProxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
}

func (p *pgProxy) close() {
	p.lis.Close()
	p.resume()
	p.mu.Lock()
	defer p.mu.Unlock()
	for pp := range p.pairs {
		pp.close()
	}
}

// jwksPath is where Better Auth serves its key set (policies.yaml names it).
const jwksPath = "/api/auth/jwks"

// issuer plays Better Auth: one Ed25519 key served as a JWKS, and tokens in
// Better Auth's shape signed with it.
type issuer struct {
	url string
	kid string
	key ed25519.PrivateKey
	srv *httptest.Server
}

func newIssuer() (*issuer, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	is := &issuer{kid: "soak-" + randID(4), key: key}
	body, err := json.Marshal(map[string]any{"keys": []map[string]string{{
		"alg": "EdDSA", "crv": "Ed25519", "kty": "OKP", "kid": is.kid,
		"x": base64.RawURLEncoding.EncodeToString(key.Public().(ed25519.PublicKey)),
	}}})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+jwksPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	is.srv = httptest.NewServer(mux)
	is.url = is.srv.URL
	return is, nil
}

// token mints a token for user id valid for life.
func (is *issuer) token(id string, life time.Duration) (string, error) {
	now := time.Now()
	claims := map[string]any{
		"sub": id, "id": id, "name": id, "email": id + "@example.test", "emailVerified": false,
		"image": nil, "role": "user", "banned": false,
		"iat": now.Unix(), "exp": now.Add(life).Unix(), "iss": is.url, "aud": is.url,
	}
	h, err := json.Marshal(map[string]any{"alg": "EdDSA", "kid": is.kid})
	if err != nil {
		return "", err
	}
	c, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(is.key, []byte(input))), nil
}

func randID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// sidecar is the running binary and a gRPC connection to it.
type sidecar struct {
	grpcAddr, httpAddr string
	proc               *process
	conn               *grpc.ClientConn
}

func startSidecar(bin, dir, logDir string, args ...string) (*sidecar, error) {
	gp, err := freePort()
	if err != nil {
		return nil, err
	}
	hp, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &sidecar{grpcAddr: fmt.Sprintf("127.0.0.1:%d", gp), httpAddr: fmt.Sprintf("127.0.0.1:%d", hp)}
	all := append([]string{"serve", "--grpc-addr", s.grpcAddr, "--http-addr", s.httpAddr, "--log-format", "json"}, args...)
	s.proc, err = start("sidecar", dir, logDir, []string{"GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")}, bin, all...)
	if err != nil {
		return nil, err
	}
	s.conn, err = grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		s.proc.kill()
		return nil, err
	}
	hc := healthpb.NewHealthClient(s.conn)
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-s.proc.done:
			return nil, fmt.Errorf("sidecar exited at start:\n%s", tail(s.proc.log, 20))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.close()
			return nil, errors.New("sidecar not SERVING after 20s:\n" + tail(s.proc.log, 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *sidecar) close() {
	s.conn.Close()
	s.proc.stop(15 * time.Second)
}
