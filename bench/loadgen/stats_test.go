package loadgen

import (
	"testing"
	"time"
)

// ms turns whole milliseconds into sorted latencies.
func ms(vals ...int) []time.Duration {
	out := make([]time.Duration, len(vals))
	for i, v := range vals {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

// seq returns 1ms..n ms.
func seq(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i+1) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{name: "no samples", sorted: nil, q: 0.99, want: 0},
		{name: "one sample", sorted: ms(7), q: 0.5, want: 7 * time.Millisecond},
		{name: "median of four is the second", sorted: ms(1, 2, 3, 4), q: 0.5, want: 2 * time.Millisecond},
		{name: "median of five is the third", sorted: ms(1, 2, 3, 4, 5), q: 0.5, want: 3 * time.Millisecond},
		// 0.99*100 is 99 exactly: rank 99, not 100 from float rounding.
		{name: "p99 of 100 is the 99th", sorted: seq(100), q: 0.99, want: 99 * time.Millisecond},
		{name: "p99 of 101 rounds the rank up", sorted: seq(101), q: 0.99, want: 100 * time.Millisecond},
		{name: "p99.9 of 1000 is the 999th", sorted: seq(1000), q: 0.999, want: 999 * time.Millisecond},
		{name: "p99.9 of 10 is the max", sorted: seq(10), q: 0.999, want: 10 * time.Millisecond},
		{name: "q 1 is the max", sorted: seq(10), q: 1, want: 10 * time.Millisecond},
		{name: "tiny q is the min", sorted: seq(10), q: 0.0001, want: 1 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Percentile(tt.sorted, tt.q); got != tt.want {
				t.Errorf("Percentile(q=%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	s := Summarize(seq(1000), 2*time.Second)
	want := Summary{
		Requests: 1000, Throughput: 500,
		P50: 500 * time.Millisecond, P99: 990 * time.Millisecond,
		P999: 999 * time.Millisecond, Max: 1000 * time.Millisecond,
	}
	if s != want {
		t.Errorf("Summarize = %+v, want %+v", s, want)
	}
	if got := Summarize(nil, 0); got != (Summary{}) {
		t.Errorf("Summarize(nil, 0) = %+v, want zero", got)
	}
}

func TestCompare(t *testing.T) {
	t.Parallel()
	floor := Summary{Throughput: 20000, P99: 2 * time.Millisecond, P999: 4 * time.Millisecond}
	tests := []struct {
		name  string
		s     Summary
		floor Summary
		want  Ratio
	}{
		{
			name:  "slower server",
			s:     Summary{Throughput: 5000, P99: 6 * time.Millisecond, P999: 10 * time.Millisecond},
			floor: floor,
			want:  Ratio{Throughput: 0.25, P99: 3, P999: 2.5},
		},
		{name: "the floor against itself", s: floor, floor: floor, want: Ratio{Throughput: 1, P99: 1, P999: 1}},
		{name: "empty floor is unknown, not infinite", s: floor, floor: Summary{}, want: Ratio{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Compare(tt.s, tt.floor); got != tt.want {
				t.Errorf("Compare = %+v, want %+v", got, tt.want)
			}
		})
	}
}
