package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// Cluster is a PostgreSQL primary and a hot standby streaming from it,
// both private to one test, on loopback ports the OS picked. Its servers
// have no Better Auth database until NewDatabase makes one (on the
// primary; streaming replication copies it to the standby).
type Cluster struct {
	// PrimaryURL and StandbyURL reach the postgres database of each
	// server as the superuser postgres (trust authentication).
	PrimaryURL, StandbyURL string

	bin    string // the server's bindir
	dir    string // holds both data directories and the socket directory
	asUser string // run the server as this user ("" = as this process)
}

// NewCluster initialises a primary (wal_level=replica) in a temporary
// directory, starts it, clones it with pg_basebackup -R into a standby and
// starts that, and waits until the standby is in recovery and accepting
// connections. Both are stopped and removed when t ends.
//
// The binaries are the ones pg_config --bindir names, else the newest
// /usr/lib/postgresql/*/bin (Debian). initdb and postgres refuse to run as
// root: when this process is root (a container, CI), they run as the
// postgres user through runuser, and the directory is handed to that user.
// The servers run in the foreground under testproc, rather than through
// pg_ctl start, so that they die with the test process even when it is
// killed. A missing PostgreSQL server installation fails t under CI and
// skips it otherwise.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	bin, err := serverBindir()
	if err != nil {
		testproc.RequireOrSkip(t, "pgtest: cluster: %v", err)
	}
	c := &Cluster{bin: bin}
	if os.Geteuid() == 0 {
		c.asUser = "postgres"
	}
	if c.dir, err = os.MkdirTemp("", "pgtest-cluster-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(c.dir) })
	if c.asUser != "" {
		if err := chownTo(c.dir, c.asUser); err != nil {
			testproc.RequireOrSkip(t, "pgtest: cluster: running as root and %v", err)
		}
	}

	primary, standby := filepath.Join(c.dir, "primary"), filepath.Join(c.dir, "standby")
	c.run(t, "initdb", "-D", primary, "-U", "postgres", "-A", "trust", "--no-sync", "--no-instructions")
	pport := c.start(t, "primary", primary)
	c.PrimaryURL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", pport)
	c.waitReady(t, c.PrimaryURL, false)

	// -R writes standby.signal and primary_conninfo; -c fast does not wait
	// for the next checkpoint.
	c.run(t, "pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(pport), "-U", "postgres",
		"-D", standby, "-R", "-X", "stream", "-c", "fast", "--no-sync")
	sport := c.start(t, "standby", standby)
	c.StandbyURL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", sport)
	c.waitReady(t, c.StandbyURL, true)
	return c
}

// NewDatabase creates a database with Better Auth's schema (Plural, every
// part) on the primary and returns it, with URL on the primary, and the
// URL of the same database on the standby, once the standby has it.
func (c *Cluster) NewDatabase(t testing.TB) (db *Database, standbyURL string) {
	t.Helper()
	layout := Plural
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := fmt.Sprintf("authz_test_%d_%d_%s", os.Getpid(), dbCounter.Add(1), randomHex(4))
	db, err := createNamed(ctx, c.PrimaryURL, name, &layout)
	if err != nil {
		t.Fatalf("pgtest: cluster: %v", err)
	}
	// The servers go with t; no need to drop the database.
	if standbyURL, err = withDatabase(c.StandbyURL, name); err != nil {
		t.Fatal(err)
	}
	c.WaitReplayed(t)
	return db, standbyURL
}

// WaitReplayed waits until the standby has replayed everything the primary
// had written when it was called (replay must not be paused).
func (c *Cluster) WaitReplayed(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := connect(ctx, c.PrimaryURL)
	if err != nil {
		t.Fatalf("pgtest: cluster: %v", err)
	}
	defer p.Close(context.Background())
	var lsn string
	if err := p.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
		t.Fatalf("pgtest: cluster: primary position: %v", err)
	}
	s, err := connect(ctx, c.StandbyURL)
	if err != nil {
		t.Fatalf("pgtest: cluster: %v", err)
	}
	defer s.Close(context.Background())
	for {
		var done bool
		if err := s.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", lsn).Scan(&done); err != nil {
			t.Fatalf("pgtest: cluster: standby has not replayed %s: %v", lsn, err)
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pgtest: cluster: standby has not replayed %s: %v", lsn, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// PauseReplay stops the standby from applying WAL (it still receives it),
// so that it lags the primary for as long as the test wants; ResumeReplay
// lets it catch up.
func (c *Cluster) PauseReplay(t testing.TB) { c.standbyExec(t, "SELECT pg_wal_replay_pause()") }

// ResumeReplay undoes PauseReplay.
func (c *Cluster) ResumeReplay(t testing.TB) { c.standbyExec(t, "SELECT pg_wal_replay_resume()") }

func (c *Cluster) standbyExec(t testing.TB, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := connect(ctx, c.StandbyURL)
	if err != nil {
		t.Fatalf("pgtest: cluster: %v", err)
	}
	defer s.Close(context.Background())
	if _, err := s.Exec(ctx, sql); err != nil {
		t.Fatalf("pgtest: cluster: %s: %v", sql, err)
	}
}

// command is how to run the server binary name with args: directly, or
// through runuser as c.asUser.
func (c *Cluster) command(name string, args ...string) (string, []string) {
	bin := filepath.Join(c.bin, name)
	if c.asUser == "" {
		return bin, args
	}
	return "runuser", append([]string{"-u", c.asUser, "--", bin}, args...)
}

// run runs a server tool to completion.
func (c *Cluster) run(t testing.TB, name string, args ...string) {
	t.Helper()
	bin, args := c.command(name, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("pgtest: cluster: %s: %v\n%s", name, err, out)
	}
}

// start runs the server of data directory dir on a free loopback port,
// returning the port; it is shut down (immediate mode) when t ends.
func (c *Cluster) start(t testing.TB, name, dir string) int {
	t.Helper()
	port := testproc.FreePortT(t)
	bin, args := c.command("postgres", "-D", dir, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+c.dir,
		"-c", "wal_level=replica", "-c", "max_wal_senders=4", "-c", "hot_standby=on",
		"-c", "fsync=off", "-c", "shared_buffers=16MB", "-c", "max_connections=40")
	p := testproc.StartT(t, testproc.Spec{Name: fmt.Sprintf("postgres-%s-%d", name, port), Bin: bin, Args: args})
	t.Cleanup(func() {
		// Immediate shutdown releases shared memory; the kill that
		// KillAtCleanup registered (which runs after this) is then a no-op.
		bin, args := c.command("pg_ctl", "stop", "-D", dir, "-m", "immediate", "-w", "-t", "60")
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Logf("pgtest: cluster: stop %s: %v\n%s", name, err, out)
		}
		p.Wait(time.Minute)
	})
	return port
}

// waitReady waits until the server at url accepts connections and is, or
// is not, in recovery.
func (c *Cluster) waitReady(t testing.TB, url string, standby bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		conn, err := connect(ctx, url)
		if err == nil {
			var recovery bool
			err = conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&recovery)
			conn.Close(context.Background())
			if err == nil && recovery == standby {
				return
			}
			if err == nil {
				err = fmt.Errorf("pg_is_in_recovery() = %v", recovery)
			}
		}
		last = err
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("pgtest: cluster: %s not ready: %v", redact(url), last)
}

// serverBindir finds the server binaries: pg_config --bindir (when it
// names a directory holding initdb), else the newest Debian
// /usr/lib/postgresql/<version>/bin.
func serverBindir() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(dirs) == 0 {
		return "", errors.New("no PostgreSQL server binaries (initdb) under pg_config --bindir or /usr/lib/postgresql/*/bin")
	}
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	return filepath.Dir(dirs[0]), nil
}

// version is the major version in a /usr/lib/postgresql/<version>/bin/x
// path (0 when it is not a number).
func version(path string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return n
}

// chownTo gives dir to the named user, who runs the servers.
func chownTo(dir, name string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("no %s user to run the servers as: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", dir, err)
	}
	return nil
}
