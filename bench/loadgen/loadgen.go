// Package loadgen drives an Envoy ext_authz Check server with closed-loop
// workers and summarises what it saw: exact latency percentiles, throughput
// and every answer that was not the expected allow. The benchmark driver
// (bench/authzbench) runs the same generator, with the same requests,
// against the do-nothing server and the real sidecar, so their ratio is the
// sidecar's own cost.
package loadgen

import (
	"context"
	"fmt"
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
}

// Source returns request i of a run (i counts from 0 across all workers),
// or false when it has no more; a run ends early when its source does.
type Source func(i uint64) (Request, bool)

// Config describes one run.
type Config struct {
	// Conns are the gRPC connections; worker w uses Conns[w%len].
	Conns []grpc.ClientConnInterface
	// Workers is the number of closed-loop workers: each sends its next
	// request as soon as the previous answer arrives, so it is also the
	// number of requests in flight.
	Workers int
	// Warmup runs before the measured window; its requests are checked
	// but not timed.
	Warmup time.Duration
	// Duration is the measured window. Workers start no request after it.
	Duration time.Duration
	// Source makes the requests.
	Source Source
	// CheckIdentity makes an allow without the expected x-auth-user-id a
	// failure (the sidecar sets it; the do-nothing server does not).
	CheckIdentity bool
	// CallTimeout bounds one Check; default 5s.
	CallTimeout time.Duration
}

// Result is what one run saw.
type Result struct {
	// Latencies of the requests started in the measured window, sorted.
	Latencies []time.Duration
	// Elapsed is the measured window as it really was: from the end of the
	// warm-up until the last worker stopped.
	Elapsed time.Duration
	// Sent counts every request, warm-up included.
	Sent uint64
	// Denied counts answers that were not OK; Errors gRPC errors;
	// WrongIdentity allows naming another user (or none). All in every
	// phase.
	Denied, Errors, WrongIdentity uint64
	// Unavailable is the part of Denied that said UNAVAILABLE (HTTP 503:
	// the answer was unknown, e.g. a timed-out lookup), rather than no.
	Unavailable uint64
	// Exhausted is true when the source ran out before the window ended.
	Exhausted bool
	// FirstFailure describes the first failure, for the report.
	FirstFailure string
}

// Failures is the number of answers that were not the expected allow.
func (r *Result) Failures() uint64 { return r.Denied + r.Errors + r.WrongIdentity }

const (
	headerUserID = "x-auth-user-id"
	checkMethod  = "/envoy.service.auth.v3.Authorization/Check"
)

// frame is an encoded request.
type frame []byte

// frameCodec sends frames as they are and decodes answers as protobuf.
type frameCodec struct{ proto encoding.CodecV2 }

func (c frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(frame); ok {
		return mem.BufferSlice{mem.SliceBuffer(f)}, nil
	}
	return c.proto.Marshal(v)
}

func (c frameCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

// Name is "proto": the server must see the ordinary content-type.
func (frameCodec) Name() string { return "proto" }

// Run runs cfg until its window ends, its source runs out or ctx ends.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if len(cfg.Conns) == 0 || cfg.Workers <= 0 || cfg.Source == nil || cfg.Duration <= 0 {
		return nil, fmt.Errorf("loadgen: incomplete config (conns %d, workers %d, duration %v)",
			len(cfg.Conns), cfg.Workers, cfg.Duration)
	}
	codec := frameCodec{proto: encoding.GetCodecV2("proto")}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 5 * time.Second
	}
	var (
		next, sent                     atomic.Uint64
		denied, errs, wrong, exhausted atomic.Uint64
		unavailable                    atomic.Uint64
		first                          atomic.Pointer[string]
		wg                             sync.WaitGroup
	)
	fail := func(counter *atomic.Uint64, msg string) {
		counter.Add(1)
		first.CompareAndSwap(nil, &msg)
	}
	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	end := measureFrom.Add(cfg.Duration)
	perWorker := make([][]time.Duration, cfg.Workers)
	for w := range cfg.Workers {
		conn := cfg.Conns[w%len(cfg.Conns)]
		wg.Go(func() {
			lats := make([]time.Duration, 0, 4096)
			for ctx.Err() == nil {
				if !time.Now().Before(end) {
					break
				}
				i := next.Add(1) - 1
				req, ok := cfg.Source(i)
				if !ok {
					exhausted.Store(1)
					break
				}
				sent.Add(1)
				cctx, cancel := context.WithTimeout(ctx, cfg.CallTimeout)
				resp := new(authv3.CheckResponse)
				t0 := time.Now()
				err := conn.Invoke(cctx, checkMethod, frame(req.Frame), resp, grpc.ForceCodecV2(codec))
				lat := time.Since(t0)
				cancel()
				if !t0.Before(measureFrom) {
					lats = append(lats, lat)
				}
				switch {
				case err != nil:
					if ctx.Err() != nil {
						break
					}
					fail(&errs, fmt.Sprintf("request %d: gRPC error: %v", i, err))
				case resp.GetStatus().GetCode() != int32(rpccode.Code_OK):
					if resp.GetStatus().GetCode() == int32(rpccode.Code_UNAVAILABLE) {
						unavailable.Add(1)
					}
					fail(&denied, fmt.Sprintf("request %d: %s", i, describeDenial(resp)))
				case cfg.CheckIdentity && req.UserID != "" && okHeader(resp, headerUserID) != req.UserID:
					fail(&wrong, fmt.Sprintf("request %d: allowed with %s %q, want %q",
						i, headerUserID, okHeader(resp, headerUserID), req.UserID))
				}
			}
			perWorker[w] = lats
		})
	}
	wg.Wait()
	stopped := time.Now()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("loadgen: run interrupted: %w", err)
	}
	r := &Result{
		Elapsed:       stopped.Sub(measureFrom),
		Sent:          sent.Load(),
		Denied:        denied.Load(),
		Errors:        errs.Load(),
		WrongIdentity: wrong.Load(),
		Unavailable:   unavailable.Load(),
		Exhausted:     exhausted.Load() == 1,
	}
	n := 0
	for _, l := range perWorker {
		n += len(l)
	}
	r.Latencies = make([]time.Duration, 0, n)
	for _, l := range perWorker {
		r.Latencies = append(r.Latencies, l...)
	}
	slices.Sort(r.Latencies)
	if p := first.Load(); p != nil {
		r.FirstFailure = *p
	}
	if r.Elapsed < 0 {
		r.Elapsed = 0
	}
	return r, nil
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
