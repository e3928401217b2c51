// Package loadgen drives an Envoy ext_authz Check server and summarises
// what it saw: exact latency percentiles, throughput and every answer that
// was not the expected one (an allow, or the deny a Request names). The benchmark driver (bench/authzbench) runs
// the same generator, with the same requests, against the do-nothing server
// and the real sidecar, so their ratio is the sidecar's own cost.
//
// It has two modes. Closed loop (Config.Workers): each worker sends its next
// request when the previous answer arrives, so the load follows the server
// and, with enough workers, saturates the machine; latency is then mostly
// queueing. Fixed rate (Config.Rate): requests leave on a fixed schedule
// whatever the answers, and each latency is counted from the request's
// intended send time, so a stall of the server shows in every request it
// delayed rather than in one (no coordinated omission).
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
)

// Request is one Check call and what its answer must say.
type Request struct {
	// Frame is the CheckRequest already encoded (protobuf wire format),
	// sent as is: encoding is the caller's business, done before the call
	// and, for requests that repeat, once. The generator then spends its
	// CPU (which it shares with the servers) on little but gRPC itself.
	Frame []byte
	// UserID, when set and Config.CheckIdentity is on, is the user the
	// allow must name in x-auth-user-id.
	UserID string
	// WantDeny, when set, is the HTTP status (401, 403, ...) the answer
	// must deny with; zero means the answer must be an allow.
	WantDeny int
}

// Source returns request i of a run (i counts from 0 across all workers),
// or false when it has no more; a run ends early when its source does. It
// must be safe for concurrent use (closed-loop workers call it at once).
type Source func(i uint64) (Request, bool)

// DefaultMaxInFlight is Config.MaxInFlight when unset.
const DefaultMaxInFlight = 256

// MaxLateShare is the share of late requests (Result.Late) above which a
// fixed-rate run fails: past it the server was not offered the asked rate,
// and its latencies are those of an overload.
const MaxLateShare = 0.01

// ErrBehind is wrapped by Run's error when a fixed-rate run had more than
// MaxLateShare of its requests late.
var ErrBehind = errors.New("loadgen: fixed-rate run fell behind its schedule")

// Config describes one run.
type Config struct {
	// Conns are the gRPC connections; worker w uses Conns[w%len].
	Conns []grpc.ClientConnInterface
	// Workers is the number of closed-loop workers: each sends its next
	// request as soon as the previous answer arrives, so it is also the
	// number of requests in flight. Unused when Rate is set.
	Workers int
	// Rate, when above 0, makes the run fixed-rate (open loop): request i
	// is due i/Rate seconds after the start, sent then whatever the answers
	// to earlier ones, and its latency is counted from that due time.
	Rate float64
	// MaxInFlight bounds the requests of a fixed-rate run that are sent
	// and not yet answered (default DefaultMaxInFlight). A request due
	// while all are in flight waits for one to end and is counted in
	// Result.Late; its wait is part of its latency.
	MaxInFlight int
	// Warmup runs before the measured window; its requests are checked
	// but not timed.
	Warmup time.Duration
	// Duration is the measured window. No request starts (closed loop) or
	// is due (fixed rate) after it.
	Duration time.Duration
	// Source makes the requests.
	Source Source
	// CheckIdentity makes an allow without the expected x-auth-user-id a
	// failure (the sidecar sets it; the do-nothing server does not).
	CheckIdentity bool
	// CallTimeout bounds one Check; default 5s.
	CallTimeout time.Duration

	// onFull, when set, runs each time a fixed-rate request finds every
	// slot taken, before it waits for one: tests hold requests in flight
	// until then, so that "the slots were full" does not depend on timing.
	onFull func()
}

// Result is what one run saw.
type Result struct {
	// Latencies of the requests started (closed loop) or due (fixed rate)
	// in the measured window, sorted. At a fixed rate each is counted from
	// the request's due time, not from when it really left.
	Latencies []time.Duration
	// SendLags (fixed rate only) are, for the same requests, how long
	// after its due time each really left, sorted: the generator's own
	// scheduling error (timer wake-up, host stalls), plus any wait for a
	// free slot. It is included in Latencies.
	SendLags []time.Duration
	// Elapsed is the measured window as it really was: from the end of the
	// warm-up until the last request ended.
	Elapsed time.Duration
	// Sent counts every request, warm-up included.
	Sent uint64
	// Late (fixed rate only) counts requests that could not leave at their
	// due time because MaxInFlight requests were in flight then: the one
	// that found no free slot and every one due before a slot came free.
	// Warm-up included.
	Late uint64
	// Denied counts answers that were not OK; Errors gRPC errors;
	// WrongIdentity allows naming another user (or none). All in every
	// phase.
	Denied, Errors, WrongIdentity uint64
	// Unavailable is the part of Denied (or of Mismatched) that said
	// UNAVAILABLE (HTTP 503: the answer was unknown, e.g. a timed-out
	// lookup), rather than no.
	Unavailable uint64
	// DeniedAsWanted counts denies of requests with WantDeny, with that
	// status; Mismatched those requests' other answers (an allow, another
	// status, a gRPC error).
	DeniedAsWanted, Mismatched uint64
	// Exhausted is true when the source ran out before the window ended.
	Exhausted bool
	// FirstFailure describes the first failure, for the report;
	// FirstWrong the first that was not a 503 (UNAVAILABLE) answer.
	FirstFailure, FirstWrong string
}

// Failures is the number of answers that were not the expected allow.
func (r *Result) Failures() uint64 { return r.Denied + r.Errors + r.WrongIdentity + r.Mismatched }

const (
	headerUserID = "x-auth-user-id"
	checkMethod  = "/envoy.service.auth.v3.Authorization/Check"
)

// frame is an encoded request.
type frame []byte

// frameCodec sends frames as they are and reads answers (*answer) lean.
type frameCodec struct{ proto encoding.CodecV2 }

func (c frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(frame); ok {
		return mem.BufferSlice{mem.SliceBuffer(f)}, nil
	}
	return c.proto.Marshal(v)
}

func (c frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	a, ok := v.(*answer)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return a.read(buf.ReadOnlyData())
}

// Name is "proto": the server must see the ordinary content-type.
func (frameCodec) Name() string { return "proto" }

// generator is one run's shared state: the counters every worker adds to.
type generator struct {
	cfg                            Config
	codec                          frameCodec
	next, sent, late               atomic.Uint64
	denied, errs, wrong, exhausted atomic.Uint64
	unavailable                    atomic.Uint64
	deniedAsWanted, mismatched     atomic.Uint64
	first, firstWrong              atomic.Pointer[string]

	start, measureFrom, end time.Time
}

// Run runs cfg until its window ends, its source runs out or ctx ends.
// When a fixed-rate run had more than MaxLateShare of its requests late,
// Run returns its result together with an error wrapping ErrBehind; on
// any other error the result is nil.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if len(cfg.Conns) == 0 || cfg.Source == nil || cfg.Duration <= 0 || cfg.Warmup < 0 {
		return nil, fmt.Errorf("loadgen: incomplete config (conns %d, duration %v, warm-up %v)",
			len(cfg.Conns), cfg.Duration, cfg.Warmup)
	}
	switch {
	case math.IsNaN(cfg.Rate) || math.IsInf(cfg.Rate, 0) || cfg.Rate < 0:
		return nil, fmt.Errorf("loadgen: rate %v: want a finite rate >= 0", cfg.Rate)
	case cfg.Rate == 0 && cfg.Workers <= 0:
		return nil, fmt.Errorf("loadgen: closed loop needs workers, have %d", cfg.Workers)
	case cfg.Rate > 0 && cfg.MaxInFlight < 0:
		return nil, fmt.Errorf("loadgen: max in flight %d: want >= 0", cfg.MaxInFlight)
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 5 * time.Second
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	g := &generator{cfg: cfg, codec: frameCodec{proto: encoding.GetCodecV2("proto")}}
	g.start = time.Now()
	g.measureFrom = g.start.Add(cfg.Warmup)
	g.end = g.measureFrom.Add(cfg.Duration)
	var lats, lags [][]time.Duration
	if cfg.Rate > 0 {
		lats, lags = g.fixedRate(ctx)
	} else {
		lats = g.closedLoop(ctx)
	}
	stopped := time.Now()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("loadgen: run interrupted: %w", err)
	}
	r := &Result{
		Latencies:      merge(lats),
		Elapsed:        max(stopped.Sub(g.measureFrom), 0),
		Sent:           g.sent.Load(),
		Late:           g.late.Load(),
		Denied:         g.denied.Load(),
		Errors:         g.errs.Load(),
		WrongIdentity:  g.wrong.Load(),
		Unavailable:    g.unavailable.Load(),
		DeniedAsWanted: g.deniedAsWanted.Load(),
		Mismatched:     g.mismatched.Load(),
		Exhausted:      g.exhausted.Load() == 1,
	}
	if lags != nil {
		r.SendLags = merge(lags)
	}
	if p := g.first.Load(); p != nil {
		r.FirstFailure = *p
	}
	if p := g.firstWrong.Load(); p != nil {
		r.FirstWrong = *p
	}
	if float64(r.Late) > MaxLateShare*float64(r.Sent) {
		return r, fmt.Errorf("%w: %d of %d requests late at %.0f req/s (all %d slots in flight; at most %.0f%% allowed)",
			ErrBehind, r.Late, r.Sent, cfg.Rate, cfg.MaxInFlight, 100*MaxLateShare)
	}
	return r, nil
}

// closedLoop runs cfg.Workers workers, each sending its next request when
// the previous answer arrives, and returns each worker's latencies.
func (g *generator) closedLoop(ctx context.Context) [][]time.Duration {
	var wg sync.WaitGroup
	perWorker := make([][]time.Duration, g.cfg.Workers)
	for w := range g.cfg.Workers {
		conn := g.cfg.Conns[w%len(g.cfg.Conns)]
		wg.Go(func() {
			lats := make([]time.Duration, 0, 4096)
			for ctx.Err() == nil && time.Now().Before(g.end) {
				i := g.next.Add(1) - 1
				req, ok := g.cfg.Source(i)
				if !ok {
					g.exhausted.Store(1)
					break
				}
				t0 := time.Now()
				done := g.call(ctx, conn, i, req)
				if !t0.Before(g.measureFrom) {
					lats = append(lats, done.Sub(t0))
				}
			}
			perWorker[w] = lats
		})
	}
	wg.Wait()
	return perWorker
}

// job is a request of a fixed-rate run, handed to a worker when due.
type job struct {
	i   uint64
	due time.Time
	req Request
}

// fixedRate sends request i at g.start + i/Rate from one scheduler, on
// cfg.MaxInFlight workers, and returns each worker's latencies and send
// lags.
//
// A slot (a token in slots) is taken before a request leaves and given
// back when its answer arrives, so at most MaxInFlight are in flight
// whatever the goroutine scheduling. When none is free the scheduler waits
// for one; that request, and every later one already due when the wait
// ended, are late.
func (g *generator) fixedRate(ctx context.Context) (lats, lags [][]time.Duration) {
	n := g.cfg.MaxInFlight
	slots := make(chan struct{}, n)
	jobs := make(chan job, n) // never full: a job holds a slot
	lats, lags = make([][]time.Duration, n), make([][]time.Duration, n)
	var wg sync.WaitGroup
	for w := range n {
		conn := g.cfg.Conns[w%len(g.cfg.Conns)]
		wg.Go(func() {
			for j := range jobs {
				t0 := time.Now()
				done := g.call(ctx, conn, j.i, j.req)
				<-slots
				if !j.due.Before(g.measureFrom) {
					lats[w] = append(lats[w], done.Sub(j.due))
					lags[w] = append(lags[w], t0.Sub(j.due))
				}
			}
		})
	}
	// The scheduler runs on its own goroutine: schedule may lock it to an
	// OS thread it alters (see sleeper), which then ends with it.
	wg.Go(func() {
		defer close(jobs)
		g.schedule(ctx, slots, jobs)
	})
	wg.Wait()
	return lats, lags
}

// schedule hands each request to the workers at its due time.
func (g *generator) schedule(ctx context.Context, slots chan struct{}, jobs chan<- job) {
	sleep := newSleeper()
	interval := float64(time.Second) / g.cfg.Rate
	var behindUntil time.Time // requests due before it waited for a slot
	for i := uint64(0); ctx.Err() == nil; i++ {
		due := g.start.Add(time.Duration(float64(i) * interval))
		if !due.Before(g.end) {
			return
		}
		// Made before its due time, so making it delays nothing.
		req, ok := g.cfg.Source(i)
		if !ok {
			g.exhausted.Store(1)
			return
		}
		if !sleep(ctx, due) {
			return
		}
		late := due.Before(behindUntil)
		select {
		case slots <- struct{}{}:
		default:
			late = true
			if g.cfg.onFull != nil {
				g.cfg.onFull()
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			behindUntil = time.Now()
		}
		if late {
			g.late.Add(1)
		}
		jobs <- job{i: i, due: due, req: req}
	}
}

// call sends request i on conn, counts what its answer says, and returns
// when the answer arrived.
func (g *generator) call(ctx context.Context, conn grpc.ClientConnInterface, i uint64, req Request) time.Time {
	g.sent.Add(1)
	cctx, cancel := context.WithTimeout(ctx, g.cfg.CallTimeout)
	defer cancel()
	var a answer
	err := conn.Invoke(cctx, checkMethod, frame(req.Frame), &a, grpc.ForceCodecV2(g.codec))
	done := time.Now()
	if req.WantDeny != 0 {
		g.checkDeny(ctx, i, req.WantDeny, &a, err)
		return done
	}
	switch {
	case err != nil:
		if ctx.Err() == nil {
			g.fail(&g.errs, fmt.Sprintf("request %d: gRPC error: %v", i, err))
		}
	case a.code == int32(rpccode.Code_UNAVAILABLE):
		g.failUnavailable(&g.denied, fmt.Sprintf("request %d: %s", i, describeDenial(a.full)))
	case a.code != int32(rpccode.Code_OK):
		g.fail(&g.denied, fmt.Sprintf("request %d: %s", i, describeDenial(a.full)))
	case g.cfg.CheckIdentity && req.UserID != "" && a.userID != req.UserID:
		g.fail(&g.wrong, fmt.Sprintf("request %d: allowed with %s %q, want %q",
			i, headerUserID, a.userID, req.UserID))
	}
	return done
}

// checkDeny counts the answer to request i, which must deny with status
// want.
func (g *generator) checkDeny(ctx context.Context, i uint64, want int, a *answer, err error) {
	resp := a.full // a deny is decoded whole
	switch {
	case err != nil:
		if ctx.Err() == nil {
			g.fail(&g.mismatched, fmt.Sprintf("request %d: gRPC error: %v, want HTTP %d", i, err, want))
		}
	case a.code == int32(rpccode.Code_OK):
		g.fail(&g.mismatched, fmt.Sprintf("request %d: allowed, want HTTP %d", i, want))
	case int(resp.GetDeniedResponse().GetStatus().GetCode()) == want:
		g.deniedAsWanted.Add(1)
	case resp.GetStatus().GetCode() == int32(rpccode.Code_UNAVAILABLE):
		g.failUnavailable(&g.mismatched, fmt.Sprintf("request %d: %s, want HTTP %d", i, describeDenial(resp), want))
	default:
		g.fail(&g.mismatched, fmt.Sprintf("request %d: %s, want HTTP %d", i, describeDenial(resp), want))
	}
}

func (g *generator) fail(counter *atomic.Uint64, msg string) {
	counter.Add(1)
	g.first.CompareAndSwap(nil, &msg)
	g.firstWrong.CompareAndSwap(nil, &msg)
}

// failUnavailable is fail for a 503 answer, which is not a wrong one.
func (g *generator) failUnavailable(counter *atomic.Uint64, msg string) {
	counter.Add(1)
	g.unavailable.Add(1)
	g.first.CompareAndSwap(nil, &msg)
}

// merge concatenates and sorts per-worker samples.
func merge(parts [][]time.Duration) []time.Duration {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]time.Duration, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	slices.Sort(out)
	return out
}

func describeDenial(resp *authv3.CheckResponse) string {
	code := resp.GetStatus().GetCode()
	d := resp.GetDeniedResponse()
	if d == nil {
		return fmt.Sprintf("status %d (%s)", code, resp.GetStatus().GetMessage())
	}
	reason := ""
	for _, h := range d.GetHeaders() {
		if h.GetHeader().GetKey() == "x-authz-reason" {
			reason = h.GetHeader().GetValue()
		}
	}
	return fmt.Sprintf("denied: status %d, HTTP %d, reason %q", code, d.GetStatus().GetCode(), reason)
}

func okHeader(resp *authv3.CheckResponse, name string) string {
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}
