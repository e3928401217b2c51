package main

import (
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"time"

	"github.com/authz-sidecar/authz-sidecar/bench/loadgen"
)

// phaseResult is one phase: its window and what the load generator saw.
type phaseResult struct {
	name     string
	from, to time.Duration // since the fleet's start
	note     string
	loaded   bool
	sent     uint64
	checked  uint64 // answers checked against the expected allow or deny
	allowed  uint64 // of which allows
	denied   uint64 // of which denies as expected
	// unavail are 503 answers (the check's deadline passed, the sidecar
	// failed closed): not what was expected, but not wrong either.
	unavail uint64
	// wrong are answers that contradict the expected one: an allow for a
	// deny, a deny for an allow, 401 for 403, a gRPC error.
	wrong    uint64
	late     uint64
	first    string
	lats     []time.Duration
	measured time.Duration
}

func (p *phaseResult) add(r *loadgen.Result) {
	p.loaded = true
	p.sent += r.Sent
	p.wrong += r.Failures() - r.Unavailable
	p.unavail += r.Unavailable
	p.denied += r.DeniedAsWanted
	p.allowed += r.Sent - r.Failures() - r.DeniedAsWanted
	p.checked += r.Sent
	p.late += r.Late
	if p.first == "" {
		p.first = r.FirstWrong
	}
	p.lats = append(p.lats, r.Latencies...)
	p.measured += r.Elapsed
}

// report is what a run prints.
type report struct {
	cfg       config
	phases    []phaseResult
	samples   []sample
	stmts     bool
	warnings  map[string]int // sidecar log warnings by message
	elapsed   time.Duration
	pgVersion string
	keys      int // distinct permission-set keys the checks ask for
}

func (r *report) wrong() (n uint64) {
	for _, p := range r.phases {
		n += p.wrong
	}
	return n
}

func (r *report) unavailable() (n uint64) {
	for _, p := range r.phases {
		n += p.unavail
	}
	return n
}

func (r *report) firstWrong() string {
	for _, p := range r.phases {
		if p.first != "" {
			return p.first
		}
	}
	return ""
}

// phaseStats sums a phase's samples.
type phaseStats struct {
	dt                      time.Duration
	tiers                   counters
	xacts, tuples, calls    float64
	redisCmds               float64
	peakConns, endConns     int
	peakRedisConn, sidecars int
}

func (r *report) stats(name string) phaseStats {
	var s phaseStats
	for _, smp := range r.samples {
		if smp.phase != name {
			continue
		}
		s.dt += smp.dt
		s.tiers = s.tiers.add(smp.tiers)
		s.xacts += smp.pgXacts
		s.tuples += smp.pgTuples
		s.calls += smp.pgCalls
		s.redisCmds += smp.redisCmds
		s.peakConns = max(s.peakConns, smp.pgConns)
		s.endConns = smp.pgConns
		s.peakRedisConn = max(s.peakRedisConn, smp.redisConn-1) // less the sampler's own
		s.sidecars = max(s.sidecars, smp.sidecars)
	}
	return s
}

func rate(n float64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return n / d.Seconds()
}

func pct(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }

func (r *report) print(w io.Writer) {
	c := r.cfg
	fmt.Fprintf(w, "\nFleet: %d sidecars (--pg-max-conns %d), one PostgreSQL %s, one Redis; %.0f checks/s over the fleet (%.1f per sidecar);\n",
		c.Sidecars, c.PGConns, r.pgVersion, c.Rate, c.Rate/float64(c.Sidecars))
	fmt.Fprintf(w, "%d users in %d organizations, Zipf-drawn; %s; %d CPUs, %s/%s; run %.0fs.\n",
		c.Users, c.Orgs, ttlNote(c), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, r.elapsed.Seconds())
	queries := "PostgreSQL xact/s: transactions committed in the fleet's database (pg_stat_database)"
	if r.stmts {
		queries = "PostgreSQL stmt/s: statements run (pg_stat_statements)"
	}
	fmt.Fprintf(w, "Tiers: share of permission-set lookups answered by L1, L2, PostgreSQL (each sidecar's /metrics). %s.\n\n", queries)

	fmt.Fprintln(w, "Over time:")
	fmt.Fprintf(w, "%7s  %-13s %4s %9s %7s %7s %7s %8s %8s %9s %9s %7s\n",
		"t", "phase", "up", "lookups/s", "L1", "L2", "PG", "pg conns", "active", "pg xact/s", "redis/s", "clients")
	for _, s := range r.samples {
		l1, l2, pg := s.tiers.shares()
		x := s.pgXacts
		if r.stmts {
			x = s.pgCalls
		}
		fmt.Fprintf(w, "%6.1fs  %-13s %4d %9.0f %7s %7s %7s %8d %8d %9.0f %9.0f %7d\n",
			s.at.Seconds(), s.phase, s.sidecars, rate(s.tiers.lookups(), s.dt), pct(l1), pct(l2), pct(pg),
			s.pgConns, s.pgActive, rate(x, s.dt), rate(s.redisCmds, s.dt), s.redisConn-1)
	}

	fmt.Fprintln(w, "\nPer phase:")
	fmt.Fprintf(w, "%-13s %6s %8s %8s %6s %6s %8s %8s %6s %6s %6s %8s %9s %10s %9s %9s\n",
		"phase", "secs", "checks", "allow", "503", "wrong", "p50", "p99", "L1", "L2", "PG", "PG loads", "pg xact/s", "peak conns", "redis/s", "clients")
	for _, p := range r.phases {
		s := r.stats(p.name)
		l1, l2, pg := s.tiers.shares()
		x := s.xacts
		if r.stmts {
			x = s.calls
		}
		p50, p99 := "-", "-"
		if len(p.lats) > 0 {
			sum := loadgen.Summarize(sortDurations(p.lats), p.measured)
			p50, p99 = loadgen.FormatDuration(sum.P50), loadgen.FormatDuration(sum.P99)
		}
		allow := "-"
		if p.checked > 0 {
			allow = pct(float64(p.allowed) / float64(p.checked))
		}
		fmt.Fprintf(w, "%-13s %6.1f %8d %8s %6d %6d %8s %8s %6s %6s %6s %8.0f %9.1f %10d %9.0f %9d\n",
			p.name, (p.to - p.from).Seconds(), p.checked, allow, p.unavail, p.wrong, p50, p99, pct(l1), pct(l2), pct(pg),
			s.tiers.l2Miss, rate(x, s.dt), s.peakConns, rate(s.redisCmds, s.dt), s.peakRedisConn)
		if p.note != "" || p.late > 0 {
			fmt.Fprintf(w, "%-13s   %s", "", p.note)
			if p.late > 0 {
				fmt.Fprintf(w, " (%d checks left late: the machine fell behind the rate)", p.late)
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintf(w, "\nAnswers: %d checked against the expected allow or deny, %d wrong, %d unavailable (503: the check's deadline passed, failed closed).",
		r.checked(), r.wrong(), r.unavailable())
	if r.wrong() > 0 {
		fmt.Fprintf(w, " First: %s", r.firstWrong())
	}
	fmt.Fprintf(w, "\nSidecar log warnings:")
	if len(r.warnings) == 0 {
		fmt.Fprint(w, " none")
	}
	for _, msg := range slices.Sorted(maps.Keys(r.warnings)) {
		fmt.Fprintf(w, " %q ×%d;", truncate(msg, 100), r.warnings[msg])
	}
	fmt.Fprintln(w)
	r.printEstimate(w, 1000)
}

func (r *report) checked() (n uint64) {
	for _, p := range r.phases {
		n += p.checked
	}
	return n
}

// printEstimate scales the measured per-sidecar figures to n sidecars
// carrying the same load each.
func (r *report) printEstimate(w io.Writer, n int) {
	c := r.cfg
	per := func(v float64) float64 { return v / float64(c.Sidecars) }
	start, cold, steady, after, idle := r.stats("start"), r.stats("cold"), r.stats("steady"), r.stats("after restart"), r.stats("idle")
	scale := float64(n)
	fmt.Fprintf(w, "\n%d sidecars at %.1f checks/s each (%.0f checks/s), from the per-sidecar figures above:\n", n, c.Rate/float64(c.Sidecars), scale*c.Rate/float64(c.Sidecars))
	peak := max(start.peakConns, cold.peakConns, after.peakConns)
	fmt.Fprintf(w, "  PostgreSQL connections: at a simultaneous start %.2f per sidecar (--pg-max-conns %d: Warm opens them all) → %.0f;\n",
		per(float64(peak)), c.PGConns, scale*per(float64(peak)))
	fmt.Fprintf(w, "    under load %.2f per sidecar → %.0f", per(float64(steady.endConns)), scale*per(float64(steady.endConns)))
	if idle.dt > 0 {
		fmt.Fprintf(w, "; idle %.2f per sidecar → %.0f (the readiness check, every 4-5 s, keeps one open)", per(float64(idle.endConns)), scale*per(float64(idle.endConns)))
	}
	fmt.Fprintf(w, ".\n    Behind PgBouncer (transaction mode) the server sees its pool instead, e.g. 20-50.\n")
	if idle.dt > 0 {
		fmt.Fprintf(w, "  PostgreSQL queries: readiness checks %.2f xact/s per sidecar (measured idle) → %.0f/s;\n",
			per(rate(idle.xacts, idle.dt)), scale*per(rate(idle.xacts, idle.dt)))
	}
	fmt.Fprintf(w, "    permission-set loads: cold start %.0f in %.0fs for the whole fleet (%.2f per distinct key drawn), steady %.1f/s, after a full restart %.1f/s.\n",
		cold.tiers.l2Miss, cold.dt.Seconds(), cold.tiers.l2Miss/float64(max(r.keys, 1)), rate(steady.tiers.l2Miss, steady.dt), rate(after.tiers.l2Miss, after.dt))
	fmt.Fprintf(w, "    Loads follow the distinct (user, organization) keys and the TTLs, not the number of sidecars: L2 is shared, so a key\n")
	fmt.Fprintf(w, "    is loaded about once per --l2-ttl fleet-wide, and singleflight makes concurrent misses of one sidecar one load.\n")
	fmt.Fprintf(w, "    Without L2 every sidecar would load each of its keys every --l1-ttl: steady %.1f L1 misses/s per sidecar → %.0f/s.\n",
		per(rate(steady.tiers.l1Miss, steady.dt)), scale*per(rate(steady.tiers.l1Miss, steady.dt)))
	fmt.Fprintf(w, "  Redis: steady %.1f commands/s per sidecar → %.0f/s; cold start %.1f → %.0f/s; after a full restart %.1f → %.0f/s;\n",
		per(rate(steady.redisCmds, steady.dt)), scale*per(rate(steady.redisCmds, steady.dt)),
		per(rate(cold.redisCmds, cold.dt)), scale*per(rate(cold.redisCmds, cold.dt)),
		per(rate(after.redisCmds, after.dt)), scale*per(rate(after.redisCmds, after.dt)))
	fmt.Fprintf(w, "    clients %.1f per sidecar → %.0f.\n", per(float64(steady.peakRedisConn)), scale*per(float64(steady.peakRedisConn)))
	fmt.Fprintf(w, "  Jittered TTLs (--cache-ttl-jitter 0.1) spread the expiries of entries loaded together over 10%% of their TTL.\n")
}

func ttlNote(c config) string {
	l1, l2, rt := c.L1TTL, c.L2TTL, c.RedisTimeout
	if l1 == "" {
		l1 = "30s"
	}
	if l2 == "" {
		l2 = "5m"
	}
	if rt == "" {
		rt = "25ms"
	}
	return fmt.Sprintf("--l1-ttl %s, --l2-ttl %s, --redis-timeout %s", l1, l2, rt)
}

func sortDurations(d []time.Duration) []time.Duration {
	out := append([]time.Duration(nil), d...)
	slices.Sort(out)
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
