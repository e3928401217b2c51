package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// member is one running sidecar of the fleet.
type member struct {
	sc *testproc.Sidecar
	// mu is read-held by every check sent through the router until its
	// answer; retiring takes it, so no check is cut by the stop.
	mu      sync.RWMutex
	retired bool // guarded by mu
	// last are the counters of its previous scrape (zero for a new
	// process), so a restart does not read as a negative rate.
	last counters
}

// fleet is the running sidecars and a router that spreads checks over
// those in service, as a load balancer in front of the app's pods would.
type fleet struct {
	bin, dir, logDir string
	args             []string

	mu      sync.Mutex
	members []*member // guarded by mu: every process started, in service or not
	// live are the members in service (the router's choice), swapped whole.
	live atomic.Pointer[[]*member]
	next atomic.Uint64
}

// stopGrace is how long a stopped sidecar may drain before it is killed.
const stopGrace = 15 * time.Second

// startAll starts n sidecars at once and puts them in service when every
// one is SERVING.
func (f *fleet) startAll(ctx context.Context, n int) error {
	started := make([]*member, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { started[i], errs[i] = f.start() })
	}
	wg.Wait()
	for _, m := range started {
		if m != nil {
			f.mu.Lock()
			f.members = append(f.members, m)
			f.mu.Unlock()
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	f.setLive(started)
	return ctx.Err()
}

// start starts one sidecar and waits until it is SERVING (signing keys
// loaded, database warmed).
func (f *fleet) start() (*member, error) {
	sc, err := testproc.StartSidecar(f.bin, f.dir, f.logDir, f.args...)
	if err != nil {
		return nil, err
	}
	if err := sc.WaitReady(testproc.Serving, time.Minute); err != nil {
		sc.Stop(stopGrace)
		return nil, err
	}
	return &member{sc: sc}, nil
}

func (f *fleet) setLive(ms []*member) { f.live.Store(&ms) }

func (f *fleet) inService() []*member {
	if p := f.live.Load(); p != nil {
		return *p
	}
	return nil
}

// retire takes m out of service, waits for the checks it is answering and
// stops it (SIGTERM: it drains).
func (f *fleet) retire(m *member) {
	f.setLive(slices.DeleteFunc(slices.Clone(f.inService()), func(x *member) bool { return x == m }))
	m.mu.Lock()
	m.retired = true
	m.mu.Unlock()
	m.sc.Stop(stopGrace)
}

// stopAll takes every sidecar out of service and stops them at once.
func (f *fleet) stopAll() {
	ms := f.inService()
	f.setLive(nil)
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() {
			m.mu.Lock()
			m.retired = true
			m.mu.Unlock()
			m.sc.Stop(stopGrace)
		})
	}
	wg.Wait()
}

// rollingRestart replaces each sidecar in service in turn, one every
// interval at most: out of service, drained, stopped, a new one started
// and put in service once SERVING.
func (f *fleet) rollingRestart(ctx context.Context, interval time.Duration) (int, error) {
	old := f.inService()
	for i, m := range old {
		t0 := time.Now()
		f.retire(m)
		nm, err := f.start()
		if err != nil {
			return i, err
		}
		f.mu.Lock()
		f.members = append(f.members, nm)
		f.mu.Unlock()
		f.setLive(append(slices.Clone(f.inService()), nm))
		select {
		case <-ctx.Done():
			return i + 1, ctx.Err()
		case <-time.After(interval - time.Since(t0)):
		}
	}
	return len(old), nil
}

// kill stops every process the fleet started.
func (f *fleet) kill() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.members {
		m.sc.Conn.Close()
		m.sc.Proc.Kill()
	}
}

// logs says where the sidecars' logs are.
func (f *fleet) logs() string { return filepath.Join(f.logDir, "sidecar-*.log") }

// warnings counts the warn and error lines of every sidecar's log by
// message.
func (f *fleet) warnings() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for _, m := range f.members {
		b, err := os.ReadFile(m.sc.Proc.LogPath())
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			var l struct{ Level, Msg string }
			if json.Unmarshal([]byte(line), &l) == nil && (l.Level == "warn" || l.Level == "error") {
				out[l.Msg]++
			}
		}
	}
	return out
}

// Invoke sends a call to the next sidecar in service (round robin), so
// the fleet is one grpc.ClientConnInterface to the load generator.
func (f *fleet) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	for {
		live := f.inService()
		if len(live) == 0 {
			return status.Error(codes.Unavailable, "fleet: no sidecar in service")
		}
		m := live[f.next.Add(1)%uint64(len(live))]
		m.mu.RLock()
		if m.retired { // taken out of service since the choice: choose again
			m.mu.RUnlock()
			continue
		}
		err := m.sc.Conn.Invoke(ctx, method, args, reply, opts...)
		m.mu.RUnlock()
		return err
	}
}

// NewStream is not used by the load generator.
func (f *fleet) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, fmt.Errorf("fleet: streams are not supported")
}
