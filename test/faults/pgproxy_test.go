package faults

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pgProxy is a TCP proxy between the sidecar and PostgreSQL that can make
// the network misbehave:
//
//   - pass: forward bytes both ways;
//   - stall: keep every connection (and accept new ones) but forward
//     nothing, as a partition or a frozen server looks to a client;
//   - cut: reset every connection and refuse new ones (listener closed);
//   - resume: back to pass, listening again on the same address.
type pgProxy struct {
	target string
	addr   string // fixed for the proxy's life

	mu      sync.Mutex
	lis     net.Listener           // guarded by mu; nil while cut
	gen     int                    // guarded by mu; bumped by every cut
	gate    chan struct{}          // guarded by mu; closed while passing, open while stalled
	pairs   map[*pipePair]struct{} // guarded by mu
	stopped bool                   // guarded by mu; set at cleanup
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

func newPGProxy(t testing.TB, target string) *pgProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	close(gate)
	p := &pgProxy{target: target, addr: lis.Addr().String(), gate: gate, pairs: map[*pipePair]struct{}{}}
	p.serve(lis)
	t.Cleanup(func() {
		p.mu.Lock()
		p.stopped = true
		p.mu.Unlock()
		p.cut(t)
	})
	return p
}

// serve installs lis and accepts on it; the caller must not hold mu.
func (p *pgProxy) serve(lis net.Listener) {
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

func (p *pgProxy) handle(c net.Conn, gen int) {
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
func (p *pgProxy) pipe(pp *pipePair, dst, src net.Conn) {
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

// stall stops forwarding; connections stay open.
func (p *pgProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
		p.gate = make(chan struct{})
	default: // already stalled
	}
}

// cut resets every connection and closes the listener: new connections are
// refused until resume.
func (p *pgProxy) cut(t testing.TB) {
	t.Helper()
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

// resume forwards again, listening again on the same address after a cut.
func (p *pgProxy) resume(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
	relisten := p.lis == nil && !p.stopped
	p.mu.Unlock()
	if !relisten {
		return
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
		t.Fatalf("pg proxy: listen again on %s: %v", p.addr, err)
	}
	p.serve(lis)
}
