package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/authz-sidecar/authz-sidecar/bench/loadgen"
)

// report is everything a run found; it is printed and saved as JSON.
type report struct {
	Start        time.Time    `json:"start"`
	Commit       string       `json:"commit"`
	GoVersion    string       `json:"go_version"`
	CPUs         int          `json:"cpus"`
	CPUModel     string       `json:"cpu_model"`
	PGVersion    string       `json:"postgres_version"`
	RedisVersion string       `json:"redis_version"`
	Config       reportConfig `json:"config"`
	Runs         []runRow     `json:"runs"`
	Memory       []memoryRow  `json:"memory"`
	Fill         *fillRow     `json:"l1_fill,omitempty"`
	Notes        []string     `json:"notes,omitempty"`
}

type reportConfig struct {
	Warmup      string `json:"warmup"`
	Duration    string `json:"duration"`
	Conns       int    `json:"grpc_connections"`
	Concurrency []int  `json:"concurrency"`
	// Rates, RateDuration and MaxInFlight describe the fixed-rate runs.
	Rates        []int  `json:"rates_rps,omitempty"`
	RateDuration string `json:"rate_duration,omitempty"`
	MaxInFlight  int    `json:"rate_max_in_flight,omitempty"`
	FreshTokens  int    `json:"fresh_tokens"`
	Fill         int    `json:"l1_fill"`
}

// load is what a run offers a server: Conc closed-loop workers, or, when
// Rate is set, Rate requests per second on a fixed schedule.
type load struct{ Conc, Rate int }

// String is the table's conc column: "16", or "@2000/s" for a fixed rate.
func (l load) String() string {
	if l.Rate > 0 {
		return fmt.Sprintf("@%d/s", l.Rate)
	}
	return strconv.Itoa(l.Conc)
}

// runRow is one (scenario, server, load).
type runRow struct {
	Scenario string `json:"scenario"`
	Name     string `json:"name"`
	Server   string `json:"server"`
	// Concurrency is the number of closed-loop workers (closed-loop rows
	// only; fixed-rate rows have FixedRate instead).
	Concurrency int             `json:"concurrency,omitempty"`
	FixedRate   *fixedRateRow   `json:"fixed_rate,omitempty"`
	Summary     loadgen.Summary `json:"summary"`
	// Ratio is to the noop server's run of the same scenario and load
	// (sidecar rows only).
	Ratio *loadgen.Ratio `json:"ratio_to_noop,omitempty"`
	// CPUPerRequest is the server process's user+system CPU per request
	// (warm-up included), from /proc/PID/stat.
	CPUPerRequest time.Duration `json:"server_cpu_per_request_ns"`
	// PGCPUPerRequest is the CPU per request of the PostgreSQL backends
	// connected to the bench database (the sidecar's pool), from
	// /proc/PID/stat; -1 when unknown (noop rows, a remote PostgreSQL).
	PGCPUPerRequest time.Duration `json:"pg_cpu_per_request_ns"`
	Sent            uint64        `json:"sent"`
	Failures        uint64        `json:"failures"`
	// Unavailable counts 503 answers (timeouts), part of Failures.
	Unavailable uint64 `json:"unavailable"`
	// DriverStall is the worst lateness of a 5ms ticker in the load
	// generator's process during the run.
	DriverStall time.Duration `json:"driver_stall_ns"`
	// TokenHits is the share of verified-token cache hits, -1 without one
	// (sidecar rows only).
	TokenHits *float64 `json:"token_cache_hits,omitempty"`
	Exhausted bool     `json:"source_exhausted,omitempty"`
	// Tiers counts which cache tier answered (sidecar rows only).
	Tiers *tiers `json:"tiers,omitempty"`
}

// fixedRateRow is what a fixed-rate run adds to its row.
type fixedRateRow struct {
	Rate        int `json:"rate_rps"`
	MaxInFlight int `json:"max_in_flight"`
	// Late counts requests that could not leave on time because
	// MaxInFlight were in flight (warm-up included); over 1% of them
	// fails the run.
	Late uint64 `json:"late"`
	// SendLag* summarise how long after its due time each measured
	// request really left: the generator's own scheduling error, which
	// the latencies include.
	SendLagP50 time.Duration `json:"send_lag_p50_ns"`
	SendLagP99 time.Duration `json:"send_lag_p99_ns"`
	SendLagMax time.Duration `json:"send_lag_max_ns"`
}

func (r *runRow) load() load {
	if r.FixedRate != nil {
		return load{Rate: r.FixedRate.Rate}
	}
	return load{Conc: r.Concurrency}
}

func (r *runRow) tierText() string {
	if r.Tiers == nil {
		return ""
	}
	l1, l2, pg := r.Tiers.shares()
	return fmt.Sprintf("%3.0f/%3.0f/%3.0f", 100*l1, 100*l2, 100*pg)
}

func (r *runRow) tokenText() string {
	if r.TokenHits == nil || *r.TokenHits < 0 {
		return ""
	}
	return fmt.Sprintf("%.0f", 100**r.TokenHits)
}

type memoryRow struct {
	Instance  string  `json:"instance"`
	Memory    memory  `json:"memory"`
	HeapInuse float64 `json:"heap_inuse_bytes"`
	Note      string  `json:"note"`
}

type fillRow struct {
	Requested         int     `json:"requested"`
	Took              string  `json:"took"`
	Throughput        float64 `json:"throughput_rps"`
	Before            memory  `json:"before"`
	After             memory  `json:"after"`
	HeapBefore        float64 `json:"heap_inuse_before_bytes"`
	HeapAfter         float64 `json:"heap_inuse_after_bytes"`
	LiveBefore        float64 `json:"live_heap_before_bytes"`
	LiveAfter         float64 `json:"live_heap_after_bytes"`
	Sample            int     `json:"sample"`
	SampleHits        int     `json:"sample_l1_hits"`
	CachedEstimate    int     `json:"cached_estimate"`
	Evictions         float64 `json:"evictions"`
	BytesPerEntry     float64 `json:"rss_bytes_per_entry"`
	LiveBytesPerEntry float64 `json:"live_heap_bytes_per_entry"`
}

func (r *report) find(scenario, server string, l load) *runRow {
	for i := range r.Runs {
		x := &r.Runs[i]
		if x.Scenario == scenario && x.Server == server && x.load() == l {
			return x
		}
	}
	return nil
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

func mibBytes(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// text renders the report as the table make bench prints.
func (b *bench) text() string {
	r := &b.report
	var s strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&s, format+"\n", args...) }
	p("authz-sidecar load benchmark  %s  commit %s", r.Start.Format(time.RFC3339), r.Commit)
	p("machine: %d CPUs (%s), %s, PostgreSQL %s, Redis %s; everything on loopback",
		r.CPUs, r.CPUModel, r.GoVersion, r.PGVersion, r.RedisVersion)
	p("load: one generator for both servers, over %d gRPC (HTTP/2) connections; closed loop (conc 16 = 16 workers = requests",
		r.Config.Conns)
	if len(r.Config.Rates) > 0 {
		p("      in flight): warm-up %s then %s measured per run; fixed rate (conc @2000/s): warm-up %s then %s measured, at most",
			r.Config.Warmup, r.Config.Duration, r.Config.Warmup, r.Config.RateDuration)
		p("      %d in flight; GET /api/orgs/{org}/leave/{id} (route read-leave), 14 headers, a Better Auth EdDSA JWT (e, f, g:",
			r.Config.MaxInFlight)
		p("      a session cookie, a bearer session token, an API key); every answer checked: must be OK (and name the right")
		p("      user, sidecar)")
	} else {
		p("      in flight): warm-up %s then %s measured per run; no fixed-rate runs (BENCH_RATE=0); GET /api/orgs/{org}/leave/{id}",
			r.Config.Warmup, r.Config.Duration)
		p("      (route read-leave), 14 headers, a Better Auth EdDSA JWT (e, f, g: a session cookie, a bearer session token, an")
		p("      API key); every answer checked: must be OK (and name the right user, sidecar)")
	}
	p("")
	p("%-16s %-7s %7s %8s %7s %7s %7s %8s %8s %7s %6s %5s %6s %4s %6s  %-11s %s",
		"scenario", "server", "conc", "req/s", "p50", "p99", "p99.9", "thr/noop", "p99/noop", "CPU/req", "PG/req", "503s", "stall",
		"late", "lag99", "L1/L2/PG %", "tok %")
	var checked, unavailable uint64
	for _, sc := range scenarios {
		for _, l := range b.loads(sc) {
			for _, kind := range []string{"noop", "sidecar"} {
				x := r.find(sc.ID, kind, l)
				if x == nil {
					continue
				}
				checked += x.Sent
				thr, p99 := "1", "1"
				if kind == "sidecar" {
					thr, p99 = "-", "-"
					if x.Ratio != nil {
						thr, p99 = fmt.Sprintf("%.2f", x.Ratio.Throughput), fmt.Sprintf("%.2f", x.Ratio.P99)
					}
				}
				late, lag := "-", "-"
				if f := x.FixedRate; f != nil {
					late, lag = strconv.FormatUint(f.Late, 10), loadgen.FormatDuration(f.SendLagP99)
				}
				p("%-16s %-7s %7s %8.0f %7s %7s %7s %8s %8s %7s %6s %5d %6s %4s %6s  %-11s %s",
					sc.ID+" "+sc.Name, kind, l, x.Summary.Throughput, loadgen.FormatDuration(x.Summary.P50), loadgen.FormatDuration(x.Summary.P99),
					loadgen.FormatDuration(x.Summary.P999), thr, p99, loadgen.FormatDuration(x.CPUPerRequest), x.pgCPUText(), x.Unavailable, loadgen.FormatDuration(x.DriverStall),
					late, lag, x.tierText(), x.tokenText())
				unavailable += x.Unavailable
			}
		}
	}
	p("")
	p("closed loop (conc 16, 64): each worker sends its next request when the answer arrives, so the run saturates the 2")
	if len(r.Config.Rates) > 0 {
		p("CPUs that generator, server, Redis and Postgres share, and p99 is mostly queueing. fixed rate (conc @N/s): requests")
		p("leave every 1/N s whatever the answers, latency counted from each one's intended send time (no coordinated")
		p("omission): the latency at a load the machine carries. late = fixed-rate requests held back because all %d slots",
			r.Config.MaxInFlight)
		p("were in flight (over 1%% fails the run); lag99 = p99 of how late requests left their schedule (included in p50..p99.9).")
	} else {
		p("CPUs that generator, server, Redis and Postgres share, and p99 is mostly queueing.")
	}
	p("thr/noop = sidecar req/s ÷ noop req/s; p99/noop = sidecar p99 ÷ noop p99 (same scenario, same conc).")
	p("CPU/req = server process user+sys CPU per request; PG/req = that of the PostgreSQL backends serving the")
	p("sidecar (only where it queries; \"-\" unknown); 503s = answers that timed out (--check-timeout) or were refused (overloaded);")
	p("stall = worst lateness of a 5ms ticker in the load generator (host stalls); L1/L2/PG = L1 hits, L2 hits")
	p("and Postgres loads per 100 membership lookups (background refreshes included, so they may add up to")
	p("more than 100; e, f, g count session and API key lookups too); tok = share of verified-token (JWT) cache hits.")
	p("a to d, f and g also send a session cookie whose signature does not verify (a stale one): checked and ignored.")
	p("scenarios (sidecar setup; noop gets the same requests):")
	for _, sc := range scenarios {
		if b.wants(sc.ID) {
			p("  %s %-14s %s", sc.ID, sc.Name, sc.Setup)
		}
	}
	if len(r.Memory) > 0 || r.Fill != nil {
		p("")
		p("sidecar memory (VmRSS / VmHWM from /proc/PID/status; Go heap in use from /metrics):")
		for _, m := range r.Memory {
			p("  %-13s RSS %10s  peak %10s  heap %10s  %s",
				m.Instance, mib(m.Memory.RSSKiB), mib(m.Memory.PeakKiB), mibBytes(m.HeapInuse), m.Note)
		}
	}
	if f := r.Fill; f != nil {
		p("  L1 fill:      %d distinct (user, org) memberships into a fresh sidecar (no Redis, default L1: 64 MiB, 30s TTL),",
			f.Requested)
		p("                at concurrency 64, each a Postgres load: %s (%.0f req/s); then every 10th re-read",
			f.Took, f.Throughput)
		p("                L1 holds ~%d memberships (re-read %d: %d L1 hits), %.0f evictions",
			f.CachedEstimate, f.Sample, f.SampleHits, f.Evictions)
		p("                RSS %s -> %s (peak %s); heap in use %s -> %s; live heap at last GC ≈ %s -> %s",
			mib(f.Before.RSSKiB), mib(f.After.RSSKiB), mib(f.After.PeakKiB), mibBytes(f.HeapBefore), mibBytes(f.HeapAfter),
			mibBytes(f.LiveBefore), mibBytes(f.LiveAfter))
		p("                ≈ %.0f B of RSS and ≈ %.0f B of live heap per cached membership", f.BytesPerEntry, f.LiveBytesPerEntry)
	}
	if len(r.Notes) > 0 {
		p("")
		p("notes:")
		for _, n := range r.Notes {
			p("  - %s", n)
		}
	}
	p("")
	if unavailable == 0 {
		p("RESULT: PASS — %d answers checked, all allows with the right identity", checked)
	} else {
		p("RESULT: PASS — %d answers checked, no wrong answer; %d were 503 timeouts (see 503s)", checked, unavailable)
	}
	return s.String()
}

// tierWarnings notes runs where the intended tier did not answer most
// lookups: such a run measures something else than its name says.
func (b *bench) tierWarnings() {
	for _, x := range b.report.Runs {
		if x.Tiers == nil {
			continue
		}
		var want string
		for _, sc := range scenarios {
			if sc.ID == x.Scenario {
				want = sc.Want
			}
		}
		l1, l2, pg := x.Tiers.shares()
		share := map[string]float64{"L1": l1, "L2": l2, "PG": pg}[want]
		if share < 0.9 {
			b.report.Notes = append(b.report.Notes, fmt.Sprintf(
				"%s c=%s: only %.1f%% of lookups answered by %s (L1/L2/PG %s)",
				x.Name, x.load(), 100*share, want, x.tierText()))
		}
	}
}

// finish prints the table and writes the results files.
func (b *bench) finish() error {
	b.tierWarnings()
	txt := b.text()
	fmt.Fprint(b.out, "\n"+txt)
	js, err := json.MarshalIndent(&b.report, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(b.cfg.ResultsDir, 0o755); err != nil {
		return fmt.Errorf("results dir: %w", err)
	}
	base := filepath.Join(b.cfg.ResultsDir, b.report.Start.Format("20060102-150405")+"-"+b.report.Commit)
	for _, f := range []struct {
		path string
		data []byte
	}{
		{base + ".txt", []byte(txt)},
		{base + ".json", append(js, '\n')},
		{filepath.Join(b.cfg.ResultsDir, "latest.txt"), []byte(txt)},
	} {
		if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
	}
	fmt.Fprintf(b.out, "results: %s.txt (.json), %s\n", base, filepath.Join(b.cfg.ResultsDir, "latest.txt"))
	return nil
}

// pgCPUText is PGCPUPerRequest for the table: "-" when unknown or none.
func (r *runRow) pgCPUText() string {
	if r.PGCPUPerRequest <= 0 {
		return "-"
	}
	return loadgen.FormatDuration(r.PGCPUPerRequest)
}
