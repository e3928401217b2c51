package main

import (
	"math"
	"strings"
	"testing"
)

// exposition is Prometheus text as client_golang writes it, plus a
// timestamp and a reordered label set that the parser must also accept.
const exposition = `# HELP authz_check_duration_seconds Time to decide one check, by result.
# TYPE authz_check_duration_seconds histogram
authz_check_duration_seconds_bucket{result="allow",le="5e-05"} 60
authz_check_duration_seconds_bucket{result="allow",le="0.0001"} 90
authz_check_duration_seconds_bucket{result="allow",le="0.00025"} 99
authz_check_duration_seconds_bucket{result="allow",le="+Inf"} 100
authz_check_duration_seconds_sum{result="allow"} 0.005
authz_check_duration_seconds_count{result="allow"} 100
authz_check_duration_seconds_bucket{le="0.0001",result="deny"} 3 1700000000000
authz_check_duration_seconds_bucket{le="5e-05",result="deny"} 1 1700000000000
authz_check_duration_seconds_bucket{le="+Inf",result="deny"} 4 1700000000000
authz_check_duration_seconds_sum{result="deny"} 0.0004 1700000000000
authz_check_duration_seconds_count{result="deny"} 4 1700000000000
authz_check_durations_other_bucket{result="allow",le="+Inf"} 7
authz_decisions_total{result="allow",status="200"} 100
`

func TestParseHistograms(t *testing.T) {
	t.Parallel()
	hs, err := parseHistograms(strings.NewReader(exposition), checkHistogram, "result")
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 2 {
		t.Fatalf("got series %v, want allow and deny", hs)
	}
	allow, deny := hs["allow"], hs["deny"]
	if allow.count != 100 || allow.sum != 0.005 || len(allow.buckets) != 4 {
		t.Errorf("allow = %+v", allow)
	}
	// Buckets come out sorted by bound, +Inf last.
	wantDeny := []bucket{{5e-05, 1}, {0.0001, 3}, {math.Inf(1), 4}}
	if len(deny.buckets) != len(wantDeny) {
		t.Fatalf("deny buckets %+v", deny.buckets)
	}
	for i, b := range wantDeny {
		if deny.buckets[i] != b {
			t.Errorf("deny bucket %d = %+v, want %+v", i, deny.buckets[i], b)
		}
	}
	if deny.count != 4 {
		t.Errorf("deny count %d", deny.count)
	}
}

func TestParseHistogramsRejectsMalformed(t *testing.T) {
	t.Parallel()
	for _, text := range []string{
		`authz_check_duration_seconds_count{result="allow"}`,
		`authz_check_duration_seconds_count{result="allow"} many`,
		`authz_check_duration_seconds_bucket{result="allow",le="soon"} 1`,
	} {
		if _, err := parseHistograms(strings.NewReader(text), checkHistogram, "result"); err == nil {
			t.Errorf("parsed %q without error", text)
		}
	}
}

func TestHistogramQuantileAndMean(t *testing.T) {
	t.Parallel()
	hs, err := parseHistograms(strings.NewReader(exposition), checkHistogram, "result")
	if err != nil {
		t.Fatal(err)
	}
	h := hs["allow"]
	tests := []struct {
		q    float64
		want float64
	}{
		{0.5, 5e-05},
		{0.6, 5e-05},   // the 60th of 100 is in the first bucket
		{0.61, 0.0001}, // the 61st is not
		{0.99, 0.00025},
		{0.999, math.Inf(1)}, // past the last finite bound
	}
	for _, tt := range tests {
		if got := h.quantile(tt.q); got != tt.want {
			t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if got := h.mean(); math.Abs(got-5e-05) > 1e-12 {
		t.Errorf("mean = %v, want 5e-05", got)
	}
	empty := &histogram{}
	if !math.IsNaN(empty.quantile(0.5)) || !math.IsNaN(empty.mean()) {
		t.Error("an empty histogram must have no quantile or mean")
	}
}

func TestHistogramSince(t *testing.T) {
	t.Parallel()
	before := &histogram{buckets: []bucket{{0.001, 10}, {math.Inf(1), 12}}, sum: 0.01, count: 12}
	after := &histogram{buckets: []bucket{{0.001, 40}, {math.Inf(1), 52}}, sum: 0.05, count: 52}
	d := after.since(before)
	if d.count != 40 || d.buckets[0].count != 30 || d.buckets[1].count != 40 || math.Abs(d.sum-0.04) > 1e-12 {
		t.Errorf("since = %+v", d)
	}
	if after.buckets[0].count != 40 {
		t.Error("since modified its receiver")
	}
	// A series that first appeared in the window counts whole.
	if d := after.since(nil); d.count != 52 || d.buckets[0].count != 40 {
		t.Errorf("since(nil) = %+v", d)
	}
}

func TestFmtSeconds(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		s    float64
		want string
	}{
		{5e-05, "50µs"},
		{0.00025, "250µs"},
		{0.0025, "2.50ms"},
		{math.Inf(1), "inf"},
		{math.NaN(), "-"},
	} {
		if got := fmtSeconds(tt.s); got != tt.want {
			t.Errorf("fmtSeconds(%v) = %q, want %q", tt.s, got, tt.want)
		}
	}
}
