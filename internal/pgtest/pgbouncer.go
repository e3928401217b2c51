package pgtest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// PgBouncerOptions configure NewPgBouncer.
type PgBouncerOptions struct {
	// PoolSize is the number of server connections (default_pool_size);
	// default 2, fewer than a client pool, so transactions of one client
	// connection land on different server connections.
	PoolSize int
	// ConnectQuery runs on every new server connection (connect_query),
	// e.g. "SET default_transaction_read_only = on".
	ConnectQuery string
}

// NewPgBouncer starts a pgbouncer (Debian's package, scripts/setup.sh
// installs it) on a free loopback port, in transaction pooling mode, in
// front of databaseURL's database, and returns the URL that reaches that
// database through it. It accepts any client user and logs in to the
// server as databaseURL's user. It is killed when t ends. A missing
// pgbouncer fails t under CI and skips it otherwise.
func NewPgBouncer(t testing.TB, databaseURL string, o PgBouncerOptions) string {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		// Debian installs it in /usr/sbin, which a user's PATH may lack.
		bin, err = exec.LookPath("/usr/sbin/pgbouncer")
	}
	if err != nil {
		testproc.RequireOrSkip(t, "pgbouncer not installed (run scripts/setup.sh): %v", err)
	}
	if o.PoolSize == 0 {
		o.PoolSize = 2
	}
	u, err := url.Parse(databaseURL)
	if err != nil {
		t.Fatalf("pgtest: pgbouncer: %v", err)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		host, port = u.Hostname(), "5432"
	}
	dbname := strings.TrimPrefix(u.Path, "/")
	server := fmt.Sprintf("host=%s port=%s dbname=%s user=%s", host, port, dbname, u.User.Username())
	if pw, ok := u.User.Password(); ok {
		server += " password=" + iniQuote(pw)
	}
	if o.ConnectQuery != "" {
		server += " connect_query=" + iniQuote(o.ConnectQuery)
	}
	listen := testproc.FreePortT(t)
	ini := fmt.Sprintf(`[databases]
%s = %s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = %d
max_client_conn = 100
logfile =
pidfile =
`, dbname, server, listen, o.PoolSize)
	// pgbouncer refuses to run as root; it may switch to another user,
	// which must be able to read the file.
	dir, err := os.MkdirTemp("", "pgtest-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(cfg, []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{cfg}
	if os.Geteuid() == 0 {
		args = []string{"-u", "nobody", cfg}
	}
	p := testproc.StartT(t, testproc.Spec{Name: fmt.Sprintf("pgbouncer-%d", listen), Bin: bin, Args: args})
	addr := fmt.Sprintf("127.0.0.1:%d", listen)
	if err := waitListening(addr, 10*time.Second); err != nil {
		t.Fatalf("pgtest: pgbouncer: %v\n%s", err, p.Tail(20))
	}
	through := *u
	through.Host = addr
	through.User = url.User("any") // auth_type any: the server login is the database entry's
	return through.String()
}

// iniQuote quotes a value of a pgbouncer connection string.
func iniQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func waitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return errors.Join(fmt.Errorf("%s not listening after %v", addr, timeout), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
