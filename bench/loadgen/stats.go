package loadgen

import (
	"fmt"
	"math"
	"time"
)

// Summary is the headline of one run.
type Summary struct {
	Requests   int           `json:"requests"`
	Throughput float64       `json:"throughput_rps"`
	P50        time.Duration `json:"p50_ns"`
	P99        time.Duration `json:"p99_ns"`
	P999       time.Duration `json:"p999_ns"`
	Max        time.Duration `json:"max_ns"`
}

// Summarize computes a Summary from sorted latencies measured over elapsed.
func Summarize(sorted []time.Duration, elapsed time.Duration) Summary {
	s := Summary{
		Requests: len(sorted),
		P50:      Percentile(sorted, 0.50),
		P99:      Percentile(sorted, 0.99),
		P999:     Percentile(sorted, 0.999),
	}
	if len(sorted) > 0 {
		s.Max = sorted[len(sorted)-1]
	}
	if elapsed > 0 {
		s.Throughput = float64(len(sorted)) / elapsed.Seconds()
	}
	return s
}

// Percentile returns the q-quantile (0 < q <= 1) of sorted by the
// nearest-rank method: the smallest sample with at least q of all samples
// at or below it. Exact, no interpolation: every reported value is a
// latency that was really observed. It returns 0 for no samples.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// The epsilon keeps q*n that is an integer in exact arithmetic (0.99*100)
	// from rounding up past it in floating point.
	rank := int(math.Ceil(q*float64(n) - 1e-9))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// Ratio compares a server with the floor (the do-nothing server) under the
// same load: Throughput is server/floor (1 = as fast as doing nothing,
// below 1 = slower), P99 and P999 are server/floor (above 1 = slower).
type Ratio struct {
	Throughput float64 `json:"throughput"`
	P99        float64 `json:"p99"`
	P999       float64 `json:"p999"`
}

// Compare returns s relative to floor. A ratio whose floor value is zero is
// reported as 0 (unknown) rather than as an infinity.
func Compare(s, floor Summary) Ratio {
	div := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	return Ratio{
		Throughput: div(s.Throughput, floor.Throughput),
		P99:        div(float64(s.P99), float64(floor.P99)),
		P999:       div(float64(s.P999), float64(floor.P999)),
	}
}

// FormatDuration prints a latency with three significant digits; both load
// benchmarks print their tables with it.
func FormatDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.0fms", float64(d)/1e6)
	}
}
