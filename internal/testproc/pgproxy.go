package testproc

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// PGProxy is a TCP proxy between a client (the sidecar) and PostgreSQL
// that can make the network misbehave:
//
//   - pass: forward bytes both ways;
//   - Stall: keep every connection (and accept new ones) but forward
//     nothing, as a partition or a frozen server looks to a client;
//   - Cut: reset every connection and refuse new ones (listener closed);
//   - Resume: back to pass, listening again on the same address.
//
// Nothing in it is specific to PostgreSQL's protocol.
type PGProxy struct {
	target string
	addr   string // fixed for the proxy's life

	mu      sync.Mutex
	lis     net.Listener           // guarded by mu; nil while cut
	gen     int                    // guarded by mu; bumped by every cut
	gate    chan struct{}          // guarded by mu; closed while passing, open while stalled
	pairs   map[*pipePair]struct{} // guarded by mu
	stopped bool                   // guarded by mu; set by Close

	held atomic.Int64 // chunks from clients that found the proxy stalled
}

// pipePair is one client connection and its upstream connection.
type pipePair struct {
	client, server net.Conn
	once           sync.Once
	done           chan struct{}
}

func (pp *pipePair) close(reset bool) {
	pp.once.Do(func() {
		for _, c := range []net.Conn{pp.client, pp.server} {
			if tc, ok := c.(*net.TCPConn); ok && reset {
				_ = tc.SetLinger(0) // RST, not FIN: "connection reset by peer"
			}
			_ = c.Close()
		}
		close(pp.done)
	})
}

// NewPGProxy listens on a free loopback port and forwards every connection
// to target (host:port). The caller must Close it.
func NewPGProxy(target string) (*PGProxy, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("pg proxy: %w", err)
	}
	gate := make(chan struct{})
	close(gate)
	p := &PGProxy{target: target, addr: lis.Addr().String(), gate: gate, pairs: map[*pipePair]struct{}{}}
	p.serve(lis)
	return p, nil
}

// NewPGProxyT is NewPGProxy for a test: closed at cleanup.
func NewPGProxyT(t testing.TB, target string) *PGProxy {
	t.Helper()
	p, err := NewPGProxy(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port, the same for its whole life.
func (p *PGProxy) Addr() string { return p.addr }

// serve installs lis and accepts on it; the caller must not hold mu.
func (p *PGProxy) serve(lis net.Listener) {
	p.mu.Lock()
	p.lis = lis
	gen := p.gen
	p.mu.Unlock()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go p.handle(c, gen)
		}
	}()
}

func (p *PGProxy) handle(c net.Conn, gen int) {
	s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	pp := &pipePair{client: c, server: s, done: make(chan struct{})}
	p.mu.Lock()
	if p.gen != gen || p.lis == nil {
		// Accepted just before a cut: refuse it like the rest.
		p.mu.Unlock()
		pp.close(true)
		return
	}
	p.pairs[pp] = struct{}{}
	p.mu.Unlock()
	go p.pipe(pp, s, c)
	go p.pipe(pp, c, s)
}

// pipe copies src to dst, holding each chunk while the proxy is stalled.
func (p *PGProxy) pipe(pp *pipePair, dst, src net.Conn) {
	defer func() {
		pp.close(false)
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
			default:
				if src == pp.client {
					p.held.Add(1)
				}
				select {
				case <-gate:
				case <-pp.done:
					return
				}
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

// Held counts the chunks clients sent that found the proxy stalled (each
// once, when it arrived): a client is waiting on the server. Tests wait on
// it to know a request is in flight.
func (p *PGProxy) Held() int64 { return p.held.Load() }

// Stall stops forwarding; connections stay open.
func (p *PGProxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
		p.gate = make(chan struct{})
	default: // already stalled
	}
}

// Cut resets every connection and closes the listener: new connections
// are refused until Resume.
func (p *PGProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lis != nil {
		p.lis.Close()
		p.lis = nil
	}
	p.gen++
	for pp := range p.pairs {
		pp.close(true)
		delete(p.pairs, pp)
	}
}

// Resume forwards again, listening again on the same address after a Cut.
// It fails if another process took the address meanwhile.
func (p *PGProxy) Resume() error {
	p.mu.Lock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
	relisten := p.lis == nil && !p.stopped
	p.mu.Unlock()
	if !relisten {
		return nil
	}
	var lis net.Listener
	var err error
	for range 50 {
		if lis, err = net.Listen("tcp", p.addr); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("pg proxy: listen again on %s: %w", p.addr, err)
	}
	p.serve(lis)
	return nil
}

// Close resets every connection and stops listening for good.
func (p *PGProxy) Close() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.Cut()
}
