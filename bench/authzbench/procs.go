package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// server is a child process under test: the sidecar or the noop server.
type server struct {
	name     string
	cmd      *exec.Cmd
	grpcAddr string
	httpAddr string // the sidecar's metrics; empty for noop
	logPath  string
	done     chan struct{} // closed when the process has exited

	mu        sync.Mutex
	warnings  int    // guarded by mu: warn/error log lines
	firstWarn string // guarded by mu
}

// readyFunc recognises the line announcing the listen addresses.
type readyFunc func(line string) (grpcAddr, httpAddr string, ok bool)

// sidecarReady reads the sidecar's JSON "serving" log line.
func sidecarReady(line string) (string, string, bool) {
	var l struct {
		Msg  string `json:"msg"`
		GRPC string `json:"grpc"`
		HTTP string `json:"http"`
	}
	if json.Unmarshal([]byte(line), &l) != nil || l.Msg != "serving" {
		return "", "", false
	}
	return l.GRPC, l.HTTP, l.GRPC != ""
}

// noopReady reads noop's "listening ADDR".
func noopReady(line string) (string, string, bool) {
	addr, ok := strings.CutPrefix(line, "listening ")
	return addr, "", ok
}

// startServer starts bin with args, its output going to logPath, and waits
// until it announces its addresses and answers gRPC health SERVING. The
// child is killed if this process dies (Pdeathsig), so a killed benchmark
// leaves nothing behind.
func startServer(ctx context.Context, name, logPath string, ready readyFunc, bin string, args ...string) (*server, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", name, err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("%s: pipe: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.Env = childEnv(os.Environ())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		logf.Close()
		return nil, fmt.Errorf("%s: start %s: %w", name, bin, err)
	}
	pw.Close()
	s := &server{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	addrs := make(chan [2]string, 1)
	go func() {
		defer logf.Close()
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		announced := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if !announced {
				if g, h, ok := ready(line); ok {
					announced = true
					addrs <- [2]string{g, h}
				}
			}
			if strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`) {
				s.mu.Lock()
				s.warnings++
				if s.firstWarn == "" {
					s.firstWarn = line
				}
				s.mu.Unlock()
			}
		}
	}()
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()

	wait, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	select {
	case a := <-addrs:
		s.grpcAddr, s.httpAddr = a[0], a[1]
	case <-s.done:
		return nil, fmt.Errorf("%s exited during start-up (%v); see %s", name, cmd.ProcessState, logPath)
	case <-wait.Done():
		s.stop()
		return nil, fmt.Errorf("%s did not announce its address: %w; see %s", name, wait.Err(), logPath)
	}
	if err := waitServing(wait, s.grpcAddr); err != nil {
		s.stop()
		return nil, fmt.Errorf("%s: %w; see %s", name, err, logPath)
	}
	return s, nil
}

// childEnv drops the variables the sidecar reads as settings, so each
// instance runs with exactly the flags the benchmark gives it (a REDIS_URL
// in the caller's environment would otherwise turn L2 on where it must be
// off).
func childEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AUTHZ_") || k == "DATABASE_URL" || k == "REDIS_URL" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// waitServing polls gRPC health until it says SERVING (the sidecar does once
// it has the signing keys).
func waitServing(ctx context.Context, addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("health client: %w", err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		last = err
		if err == nil {
			last = fmt.Errorf("status %s", resp.GetStatus())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not SERVING (last: %v): %w", last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop asks the server to drain (SIGTERM) and kills it if it has not
// exited within 15 s. Safe to call twice.
func (s *server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

func (s *server) pid() int { return s.cmd.Process.Pid }

func (s *server) warnCount() (int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.warnings, s.firstWarn
}

// memory is what /proc/PID/status says, in KiB.
type memory struct {
	RSSKiB  int64 `json:"rss_kib"`
	PeakKiB int64 `json:"peak_rss_kib"`
}

func readMemory(pid int) (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	var m memory
	for line := range strings.SplitSeq(string(b), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(val)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch key {
		case "VmRSS":
			m.RSSKiB = n
		case "VmHWM":
			m.PeakKiB = n
		}
	}
	if m.RSSKiB == 0 {
		return m, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return m, nil
}

// clockTicks is USER_HZ, 100 on every Linux this runs on (reading it needs
// sysconf, i.e. cgo).
const clockTicks = 100

// cpuTime is the user+system CPU time the process has used.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'. utime and stime are fields 14 and 15 of the line.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("unparsable /proc/PID/stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc/PID/stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/PID/stat: %w", err)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// tiers counts which cache tier answered, from two scrapes.
type tiers struct {
	L1Hit, L1Miss, L2Hit, L2Miss float64
}

func tierDelta(before, after testproc.Metrics) tiers {
	d := func(tier, result string) float64 {
		lbl := []string{"tier", tier, "result", result}
		return after.Sum("authz_cache_lookups_total", lbl...) - before.Sum("authz_cache_lookups_total", lbl...)
	}
	return tiers{L1Hit: d("l1", "hit"), L1Miss: d("l1", "miss"), L2Hit: d("l2", "hit"), L2Miss: d("l2", "miss")}
}

// shares returns the fraction of lookups answered by L1, L2 and Postgres.
// Without an L2 tier every L1 miss went to Postgres.
func (t tiers) shares() (l1, l2, pg float64) {
	total := t.L1Hit + t.L1Miss
	if total == 0 {
		return 0, 0, 0
	}
	pgN := t.L2Miss
	if t.L2Hit+t.L2Miss == 0 {
		pgN = t.L1Miss
	}
	return t.L1Hit / total, t.L2Hit / total, pgN / total
}

// tokenDelta is the share of verified-token cache lookups that hit, or -1
// when the sidecar has no token cache.
func tokenDelta(before, after testproc.Metrics) float64 {
	hit := after.Sum("authz_cache_lookups_total", "tier", "token", "result", "hit") -
		before.Sum("authz_cache_lookups_total", "tier", "token", "result", "hit")
	miss := after.Sum("authz_cache_lookups_total", "tier", "token", "result", "miss") -
		before.Sum("authz_cache_lookups_total", "tier", "token", "result", "miss")
	if hit+miss == 0 {
		return -1
	}
	return hit / (hit + miss)
}

// watchStalls measures how late a ticker of period p fires in this process
// until the returned function is called, which returns the worst lateness.
// The load generator lives here, so a large value means the host (or this
// process) stalled, and every latency in that window with it.
func watchStalls(p time.Duration) func() time.Duration {
	stop := make(chan struct{})
	worst := make(chan time.Duration, 1)
	go func() {
		t := time.NewTicker(p)
		defer t.Stop()
		var w time.Duration
		last := time.Now()
		for {
			select {
			case <-stop:
				worst <- w
				return
			case <-t.C:
				n := time.Now()
				w = max(w, n.Sub(last)-p)
				last = n
			}
		}
	}()
	return func() time.Duration {
		close(stop)
		return <-worst
	}
}

// pgBackends reads the CPU time so far of each PostgreSQL backend
// connected to the database of dbURL (the sidecar's pool), by pid, from
// /proc: it works when PostgreSQL runs on this machine, as make bench's
// does, and is nil otherwise.
func pgBackends(ctx context.Context, dbURL string) map[int32]time.Duration {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	if err != nil {
		return nil
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil
	}
	out := make(map[int32]time.Duration, len(pids))
	for _, pid := range pids {
		t, err := cpuTime(int(pid))
		if err != nil {
			return nil
		}
		out[pid] = t
	}
	return out
}

// pgCPUDelta is the CPU the backends spent between two readings (a
// backend that appeared in between counts whole; one that ended loses its
// share), -1 when either reading failed.
func pgCPUDelta(before, after map[int32]time.Duration) time.Duration {
	if before == nil || after == nil {
		return -1
	}
	var d time.Duration
	for pid, t := range after {
		d += t - before[pid]
	}
	return d
}
