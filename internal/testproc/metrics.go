package testproc

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// Metrics is one scrape of a Prometheus text page (the sidecar's
// /metrics): every sample with its labels. Tests, the benchmarks and the
// fleet and revocation drivers read counters through it, so the format is
// parsed in one place.
type Metrics []Sample

// Sample is one line of the text format: `name{k="v",...} value`.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// scrapeWithin bounds one scrape: far above what a loaded machine needs.
const scrapeWithin = 30 * time.Second

// ScrapeMetrics GETs http://addr/metrics and parses it.
func ScrapeMetrics(ctx context.Context, addr string) (Metrics, error) {
	ctx, cancel := context.WithTimeout(ctx, scrapeWithin)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", addr, resp.Status)
	}
	return ParseMetrics(resp.Body)
}

// Metrics scrapes the sidecar's ops listener.
func (s *Sidecar) Metrics(ctx context.Context) (Metrics, error) {
	return ScrapeMetrics(ctx, s.HTTP)
}

// GatherMetrics returns what g (a registry) would serve on /metrics,
// parsed: for tests of metrics that are registered without a server.
func GatherMetrics(g prometheus.Gatherer) (Metrics, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return nil, err
		}
	}
	return ParseMetrics(&buf)
}

// ParseMetrics reads the sample lines of the Prometheus text format
// (comments skipped). Label values are taken as printed, with \" and \\
// unescaped; a line it cannot read is an error, not a silent zero.
func ParseMetrics(r io.Reader) (Metrics, error) {
	var m Metrics
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, err
		}
		m = append(m, s)
	}
	return m, sc.Err()
}

func parseSample(line string) (Sample, error) {
	s := Sample{Labels: map[string]string{}}
	end := strings.IndexAny(line, "{ ")
	if end <= 0 {
		return s, fmt.Errorf("metrics: bad sample %q", line)
	}
	s.Name, line = line[:end], line[end:]
	if strings.HasPrefix(line, "{") {
		rest := line[1:]
		for !strings.HasPrefix(rest, "}") {
			k, after, ok := strings.Cut(rest, `="`)
			if !ok {
				return s, fmt.Errorf("metrics: bad labels in %q", line)
			}
			var v strings.Builder
			i := 0
			for ; i < len(after) && after[i] != '"'; i++ {
				if after[i] == '\\' && i+1 < len(after) {
					i++
					if after[i] == 'n' {
						v.WriteByte('\n')
						continue
					}
				}
				v.WriteByte(after[i])
			}
			if i == len(after) {
				return s, fmt.Errorf("metrics: unterminated label in %q", line)
			}
			s.Labels[strings.TrimPrefix(k, ",")] = v.String()
			rest = strings.TrimPrefix(after[i+1:], ",")
		}
		line = rest[1:]
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return s, fmt.Errorf("metrics: no value in %q", line)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return s, fmt.Errorf("metrics: value of %s: %w", s.Name, err)
	}
	s.Value = v
	return s, nil
}

// LabelString is the sample's labels as the text format prints them,
// sorted by name: {k="v",...} (empty without labels).
func (s Sample) LabelString() string {
	if len(s.Labels) == 0 {
		return ""
	}
	keys := slices.Sorted(maps.Keys(s.Labels))
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, s.Labels[k])
	}
	b.WriteByte('}')
	return b.String()
}

// Sum adds the samples named name whose labels include every pair of
// labels, given as "key", "value", "key", "value", ...
func (m Metrics) Sum(name string, labels ...string) float64 {
	if len(labels)%2 != 0 {
		panic(fmt.Sprintf("Metrics.Sum(%q): labels come in key, value pairs: %q", name, labels))
	}
	var t float64
	for _, s := range m {
		if s.Name == name && s.has(labels) {
			t += s.Value
		}
	}
	return t
}

// Has reports whether a sample named name has every pair of labels.
func (m Metrics) Has(name string, labels ...string) bool {
	for _, s := range m {
		if s.Name == name && s.has(labels) {
			return true
		}
	}
	return false
}

func (s Sample) has(pairs []string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		if s.Labels[pairs[i]] != pairs[i+1] {
			return false
		}
	}
	return true
}
