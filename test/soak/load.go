package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// phase is a window of the run between fault events.
type phase struct {
	name     string
	from, to time.Duration
}

// tally counts one phase's outcomes.
type tally struct {
	n          int
	byStatus   map[int]int
	wrong      int // an allow where a deny was expected, or the reverse
	mismatched int // a deny with another status than expected (401 vs 403)
	timeouts   int // no answer within the client deadline (Envoy would time out)
	grpcErrors int // Check returned any other gRPC error
	latencies  []time.Duration
	examples   []string // the first few wrong answers
}

// stats collects outcomes per phase; safe for concurrent use.
type stats struct {
	mu     sync.Mutex
	phases []phase
	tally  []*tally // guarded by mu; parallel to phases
}

func newStats(phases []phase) *stats {
	s := &stats{phases: phases}
	for range phases {
		s.tally = append(s.tally, &tally{byStatus: map[int]int{}})
	}
	return s
}

func (s *stats) record(at time.Duration, req request, code int, err error, took time.Duration) {
	i := len(s.phases) - 1
	for j, p := range s.phases {
		if at >= p.from && at < p.to {
			i = j
			break
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tally[i]
	t.n++
	if status.Code(err) == codes.DeadlineExceeded {
		t.timeouts++
		return
	}
	if err != nil {
		t.grpcErrors++
		if len(t.examples) < 5 {
			t.examples = append(t.examples, fmt.Sprintf("%s %s: %v", req.method, req.path, err))
		}
		return
	}
	t.latencies = append(t.latencies, took)
	t.byStatus[code]++
	switch {
	case code == 503:
		// Fail-closed: unknown, not wrong.
	case (code == 200) != (req.want == 200):
		t.wrong++
		if len(t.examples) < 5 {
			t.examples = append(t.examples, fmt.Sprintf("%s %s: got %d, want %d", req.method, req.path, code, req.want))
		}
	case code != req.want:
		t.mismatched++
	}
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// print writes the table and returns the totals of wrong decisions,
// timeouts and other gRPC errors.
func (s *stats) print(out io.Writer) (wrong, timeouts, grpcErrors int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(out, "%-22s %6s %6s %6s %6s %6s %6s %7s %7s %7s %9s %9s %9s\n",
		"phase", "checks", "200", "401", "403", "503", "wrong", "401≠403", "timeout", "grpcerr", "p50", "p99", "max")
	for i, p := range s.phases {
		t := s.tally[i]
		slices.Sort(t.latencies)
		var maxLat time.Duration
		if len(t.latencies) > 0 {
			maxLat = t.latencies[len(t.latencies)-1]
		}
		name := fmt.Sprintf("%s [%v–%v)", p.name, p.from.Round(time.Second), p.to.Round(time.Second))
		fmt.Fprintf(out, "%-22s %6d %6d %6d %6d %6d %6d %7d %7d %7d %9s %9s %9s\n",
			name, t.n, t.byStatus[200], t.byStatus[401], t.byStatus[403], t.byStatus[503], t.wrong, t.mismatched, t.timeouts, t.grpcErrors,
			ms(quantile(t.latencies, .50)), ms(quantile(t.latencies, .99)), ms(maxLat))
		wrong += t.wrong
		timeouts += t.timeouts
		grpcErrors += t.grpcErrors
		for _, ex := range t.examples {
			fmt.Fprintf(out, "    ! %s\n", ex)
		}
	}
	return wrong, timeouts, grpcErrors
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }

// check sends one request as Envoy would, with Envoy's own deadline.
func check(ctx context.Context, c authv3.AuthorizationClient, req request, deadline time.Duration) (int, error) {
	h := map[string]string{"x-request-id": "soak"}
	if req.token != "" {
		h["authorization"] = "Bearer " + req.token
	}
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	resp, err := c.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: req.method, Path: req.path, Headers: h, Protocol: "HTTP/1.1", Host: "app.example.test",
		}},
	}})
	if err != nil {
		return 0, err
	}
	if resp.GetOkResponse() != nil {
		return 200, nil
	}
	if d := resp.GetDeniedResponse(); d != nil {
		return int(d.GetStatus().GetCode()), nil
	}
	return 0, fmt.Errorf("CheckResponse without an http response: %v", resp)
}

// runLoad sends rate checks per second for duration from start, open loop (each at
// its scheduled time, whatever the previous ones are doing), at most
// maxInFlight at once.
func runLoad(ctx context.Context, c authv3.AuthorizationClient, w *world, st *stats, start time.Time, rate int, duration, deadline time.Duration, seed uint64) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	interval := time.Second / time.Duration(rate)
	total := int(duration / interval)
	const maxInFlight = 2000
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	for i := range total {
		at := time.Duration(i) * interval
		if d := time.Until(start.Add(at)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		req := w.next(r)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			t0 := time.Now()
			code, err := check(ctx, c, req, deadline)
			st.record(t0.Sub(start), req, code, err, time.Since(t0))
		})
	}
	wg.Wait()
}
