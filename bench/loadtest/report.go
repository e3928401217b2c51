package main

import (
	"fmt"
	"io"
	"maps"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/authz-sidecar/authz-sidecar/bench/loadgen"
)

// report is everything the run prints.
type report struct {
	cfg      config
	mix      []kind
	world    world
	guarded  phase // through auth_request and the sidecar
	baseline phase // same nginx, same upstream, no auth_request
}

func (r *report) write(out io.Writer) {
	c := r.cfg
	fmt.Fprintf(out, "authz-sidecar load test: nginx auth_request -> sidecar (HTTP mode) -> echo upstream\n")
	fmt.Fprintf(out, "machine: %d CPUs, %s; load generator, nginx, sidecar, Better Auth, PostgreSQL and Redis share them; loopback only\n",
		runtime.NumCPU(), runtime.Version())
	fmt.Fprintf(out, "load: %d closed-loop workers (HTTP/1.1 keep-alive), %v warm-up then %v measured per server;\n"+
		"      every answer checked (status; allows must reach the upstream as the right user, denies must not reach it)\n",
		c.workers, c.warmup, c.duration)
	fmt.Fprintf(out, "mix per %d requests (organization %s, Better Auth JWTs):\n", len(schedule(r.mix)), r.world.orgID)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, k := range r.mix {
		fmt.Fprintf(tw, "  %d\t%s\t%s %s\t-> %d\n", k.weight, k.name, k.what.method(), templatePath(k.what), k.status)
	}
	tw.Flush()

	g, b := loadgen.Summarize(r.guarded.out.latencies, r.guarded.out.elapsed), loadgen.Summarize(r.baseline.out.latencies, r.baseline.out.elapsed)
	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\trequests\treq/s\tp50\tp99\tp99.9\tmax\twrong\t")
	row := func(name string, s loadgen.Summary, p phase) {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%d\t\n", name, s.Requests, s.Throughput,
			loadgen.FormatDuration(s.P50), loadgen.FormatDuration(s.P99), loadgen.FormatDuration(s.P999), loadgen.FormatDuration(s.Max), p.out.wrong+p.warmupWrong)
	}
	row("nginx + sidecar", g, r.guarded)
	row("nginx baseline", b, r.baseline)
	ratio := loadgen.Compare(g, b)
	fmt.Fprintf(tw, "sidecar/baseline\t\t%.2f\t%.2f\t%.2f\t%.2f\t\t\t\n", ratio.Throughput, div(float64(g.P50), float64(b.P50)), ratio.P99, ratio.P999)
	tw.Flush()
	fmt.Fprintf(out, "cost of asking the sidecar through nginx: %+.0f%% throughput, p50 %s, p99 %s per request\n",
		100*(ratio.Throughput-1), signedDur(g.P50-b.P50), signedDur(g.P99-b.P99))

	fmt.Fprintf(out, "\nstatuses  nginx + sidecar: %s\n", statusText(r.guarded.out.statuses))
	fmt.Fprintf(out, "          nginx baseline:  %s\n", statusText(r.baseline.out.statuses))
	fmt.Fprintln(out, "per kind (nginx + sidecar):")
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for i, k := range r.mix {
		t := r.guarded.out.perKind[i]
		fmt.Fprintf(tw, "  %s\t-> %d\t%d\t%.1f%%\t%d wrong\n", k.name, k.status, t.count, 100*share(t.count, uint64(len(r.guarded.out.latencies))), t.wrong)
	}
	tw.Flush()

	if r.guarded.checks != nil {
		fmt.Fprintf(out, "\nsidecar %s over the measured window (its /metrics; bucket upper bounds):\n", checkHistogram)
		tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		for _, result := range slices.Sorted(maps.Keys(r.guarded.checks)) {
			h := r.guarded.checks[result]
			if h.count == 0 {
				continue
			}
			fmt.Fprintf(tw, "  %s\t%d checks\tmean %s\tp50 <= %s\tp99 <= %s\tp99.9 <= %s\n", result, h.count,
				fmtSeconds(h.mean()), fmtSeconds(h.quantile(0.5)), fmtSeconds(h.quantile(0.99)), fmtSeconds(h.quantile(0.999)))
		}
		tw.Flush()
		allow, deny, total := r.checkCounts()
		fmt.Fprintf(out, "  checks counted by the sidecar: %d (allow %d, deny %d); requests through nginx: %d (200: %d, 401+403: %d)\n",
			total, allow, deny, len(r.guarded.out.latencies), r.guarded.out.statuses[200],
			r.guarded.out.statuses[401]+r.guarded.out.statuses[403])
	}

	for _, p := range []struct {
		name string
		ph   phase
	}{{"nginx + sidecar", r.guarded}, {"nginx baseline", r.baseline}} {
		for _, f := range append(slices.Clone(p.ph.warmupFirst), p.ph.out.failures...) {
			fmt.Fprintf(out, "WRONG %s: %s\n", p.name, f)
		}
	}
}

// checkCounts is what the sidecar counted in the guarded window.
func (r *report) checkCounts() (allow, deny, total uint64) {
	for result, h := range r.guarded.checks {
		switch result {
		case "allow":
			allow += h.count
		case "deny":
			deny += h.count
		}
		total += h.count
	}
	return allow, deny, total
}

// verdict fails the run on any wrong answer, and when the sidecar's count
// of checks does not match what went through nginx: every request through
// the guarded server must have been decided by the sidecar, once, and nginx
// must have answered as it decided.
func (r *report) verdict() error {
	var problems []string
	for _, p := range []struct {
		name string
		ph   phase
	}{{"nginx + sidecar", r.guarded}, {"nginx baseline", r.baseline}} {
		if n := p.ph.out.wrong + p.ph.warmupWrong; n > 0 {
			problems = append(problems, fmt.Sprintf("%s: %d wrong answers", p.name, n))
		}
		if len(p.ph.out.latencies) == 0 {
			problems = append(problems, p.name+": no requests")
		}
	}
	if r.guarded.checks != nil {
		allow, deny, total := r.checkCounts()
		st := r.guarded.out.statuses
		if total != uint64(len(r.guarded.out.latencies)) || allow != st[200] || deny != st[401]+st[403] {
			problems = append(problems, fmt.Sprintf(
				"the sidecar counted %d checks (allow %d, deny %d) for %d requests through nginx (200: %d, 401+403: %d)",
				total, allow, deny, len(r.guarded.out.latencies), st[200], st[401]+st[403]))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("FAIL: %s", strings.Join(problems, "; "))
	}
	return nil
}

// templatePath is the route template an action's requests match.
func templatePath(a action) string {
	if a == approveLeave {
		return "/api/orgs/{org}/leave/{id}/approve"
	}
	return "/api/orgs/{org}/leave/{id}"
}

func statusText(m map[int]uint64) string {
	var parts []string
	for _, s := range slices.Sorted(maps.Keys(m)) {
		name := strconv.Itoa(s)
		if s == 0 {
			name = "no answer"
		}
		parts = append(parts, fmt.Sprintf("%s: %d", name, m[s]))
	}
	return strings.Join(parts, "  ")
}

func share(n, total uint64) float64 {
	if total == 0 {
		return 0
	}
	return float64(n) / float64(total)
}

func div(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func signedDur(d time.Duration) string {
	if d < 0 {
		return "-" + loadgen.FormatDuration(-d)
	}
	return "+" + loadgen.FormatDuration(d)
}

// fmtSeconds prints a histogram value in seconds.
func fmtSeconds(s float64) string {
	switch {
	case math.IsNaN(s):
		return "-"
	case math.IsInf(s, 1):
		return "inf"
	}
	return loadgen.FormatDuration(time.Duration(s * float64(time.Second)))
}
