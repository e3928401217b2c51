package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// checkHistogram is the sidecar's decision-time histogram (internal/observe).
const checkHistogram = "authz_check_duration_seconds"

// histogram is one Prometheus histogram series: cumulative buckets sorted
// by upper bound (the last one +Inf), as the text format has them.
type histogram struct {
	buckets []bucket
	sum     float64
	count   uint64
}

// bucket counts the observations at or below le.
type bucket struct {
	le    float64
	count uint64
}

// parseHistograms reads the series of histogram name from Prometheus text
// exposition, keyed by the value of label (e.g. result="allow" -> "allow").
// Buckets come out sorted by bound.
func parseHistograms(r io.Reader, name, label string) (map[string]*histogram, error) {
	out := make(map[string]*histogram)
	get := func(key string) *histogram {
		h, ok := out[key]
		if !ok {
			h = &histogram{}
			out[key] = h
		}
		return h
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name+"_")
		if !ok {
			continue
		}
		suffix, rest, ok := strings.Cut(rest, "{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			return nil, fmt.Errorf("metrics: malformed line %q", line)
		}
		if i := strings.IndexByte(value, ' '); i >= 0 {
			value = value[:i] // a timestamp
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: line %q: %w", line, err)
		}
		lv := labelValues(labels)
		h := get(lv[label])
		switch suffix {
		case "bucket":
			le, err := strconv.ParseFloat(lv["le"], 64) // ParseFloat reads "+Inf"
			if err != nil {
				return nil, fmt.Errorf("metrics: line %q: le: %w", line, err)
			}
			h.buckets = append(h.buckets, bucket{le: le, count: uint64(v)})
		case "sum":
			h.sum = v
		case "count":
			h.count = uint64(v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	for _, h := range out {
		slices.SortFunc(h.buckets, func(a, b bucket) int { return cmp.Compare(a.le, b.le) })
	}
	return out, nil
}

// labelValues splits `a="x",b="y"`. The label values it is used on (result
// names and bucket bounds) hold no quotes or commas.
func labelValues(s string) map[string]string {
	out := make(map[string]string, 2)
	for part := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		if ok {
			out[k] = strings.Trim(v, `"`)
		}
	}
	return out
}

// since returns what h counted after prev (same buckets): the
// observations of one window. A nil prev is an empty histogram.
func (h *histogram) since(prev *histogram) *histogram {
	d := &histogram{buckets: slices.Clone(h.buckets), sum: h.sum, count: h.count}
	if prev == nil {
		return d
	}
	for i := range d.buckets {
		if i < len(prev.buckets) {
			d.buckets[i].count -= prev.buckets[i].count
		}
	}
	d.sum -= prev.sum
	d.count -= prev.count
	return d
}

// quantile returns the upper bound of the bucket holding the q-quantile: the
// true value is at most that. +Inf when it lies past the last finite bound;
// NaN when the histogram is empty.
func (h *histogram) quantile(q float64) float64 {
	if h.count == 0 {
		return math.NaN()
	}
	rank := uint64(math.Ceil(q*float64(h.count) - 1e-9))
	rank = max(rank, 1)
	for _, b := range h.buckets {
		if b.count >= rank {
			return b.le
		}
	}
	return math.Inf(1)
}

// mean is the average observation in seconds (NaN when empty).
func (h *histogram) mean() float64 {
	if h.count == 0 {
		return math.NaN()
	}
	return h.sum / float64(h.count)
}

// scrapeChecks fetches the sidecar's decision-time histograms by result.
func scrapeChecks(ctx context.Context, client *http.Client, url string) (map[string]*histogram, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: HTTP %d", url, resp.StatusCode)
	}
	return parseHistograms(resp.Body, checkHistogram, "result")
}
