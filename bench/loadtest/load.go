package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// maxFailures is how many wrong answers a phase describes in its report;
// the rest are only counted.
const maxFailures = 5

// maxBody bounds what is read of one answer; the echo is ~200 bytes.
const maxBody = 64 << 10

// outcome is what one phase saw.
type outcome struct {
	// latencies of every request of the phase, sorted.
	latencies []time.Duration
	// elapsed is from the first request until the last worker stopped.
	elapsed time.Duration
	// statuses counts answers by HTTP status; 0 counts transport errors.
	statuses map[int]uint64
	// perKind counts requests and wrong answers by mix index.
	perKind []tally
	// wrong counts answers that were not the expected one, transport
	// errors included.
	wrong uint64
	// failures describes the first few wrong answers.
	failures []string
}

type tally struct{ count, wrong uint64 }

// drive runs workers closed-loop workers for d: each sends its next request
// (src(i), i counting from 0 across all workers) as soon as the previous
// answer is in, so workers is also the number of requests in flight. Every
// answer is checked against the call's expectation. No request starts after
// d but each worker's first; drive returns when the last one has finished.
func drive(ctx context.Context, client *http.Client, src func(uint64) call, kinds, workers int, d time.Duration) outcome {
	var (
		next     atomic.Uint64
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string // guarded by mu
	)
	per := make([]outcome, workers)
	start := time.Now()
	end := start.Add(d)
	for w := range workers {
		wg.Go(func() {
			o := outcome{
				latencies: make([]time.Duration, 0, 1<<14),
				statuses:  make(map[int]uint64, 4),
				perKind:   make([]tally, kinds),
			}
			var buf bytes.Buffer
			// Each worker sends at least one request, so that a run
			// measures something however late a busy machine starts it.
			for first := true; ctx.Err() == nil && (first || time.Now().Before(end)); first = false {
				i := next.Add(1) - 1
				c := src(i)
				t0 := time.Now()
				status, err := send(ctx, client, c, &buf)
				o.latencies = append(o.latencies, time.Since(t0))
				o.statuses[status]++
				o.perKind[c.kind].count++
				if err == nil {
					err = c.want.check(status, buf.Bytes())
				}
				if err != nil {
					o.wrong++
					o.perKind[c.kind].wrong++
					mu.Lock()
					if len(failures) < maxFailures {
						failures = append(failures, fmt.Sprintf("%s (want %d): %v", c.want.request, c.want.status, err))
					}
					mu.Unlock()
				}
			}
			per[w] = o
		})
	}
	wg.Wait()
	return merge(per, kinds, time.Since(start), failures)
}

// merge adds up the workers' outcomes.
func merge(per []outcome, kinds int, elapsed time.Duration, failures []string) outcome {
	out := outcome{elapsed: elapsed, statuses: make(map[int]uint64), perKind: make([]tally, kinds), failures: failures}
	n := 0
	for _, o := range per {
		n += len(o.latencies)
	}
	out.latencies = make([]time.Duration, 0, n)
	for _, o := range per {
		out.latencies = append(out.latencies, o.latencies...)
		for s, c := range o.statuses {
			out.statuses[s] += c
		}
		for k, t := range o.perKind {
			out.perKind[k].count += t.count
			out.perKind[k].wrong += t.wrong
		}
		out.wrong += o.wrong
	}
	slices.Sort(out.latencies)
	return out
}

// send makes one request and reads its answer into buf. Status 0 means no
// answer.
func send(ctx context.Context, client *http.Client, c call, buf *bytes.Buffer) (int, error) {
	req, err := http.NewRequestWithContext(ctx, c.method, c.url, nil)
	if err != nil {
		return 0, err
	}
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	buf.Reset()
	// Read to the end so the connection goes back to the pool.
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, maxBody)); err != nil {
		return 0, fmt.Errorf("read answer: %w", err)
	}
	return resp.StatusCode, nil
}

// newClient returns a keep-alive client holding up to workers connections
// to each server, never through an HTTP proxy from the environment.
func newClient(workers int) *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConns:        4 * workers,
			MaxIdleConnsPerHost: workers,
			MaxConnsPerHost:     workers,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
		// A redirect is an answer to check, not to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
