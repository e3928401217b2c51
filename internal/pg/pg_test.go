package pg_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/authz-sidecar/authz-sidecar/internal/pg"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// openDB opens the sidecar's read-only pool on databaseURL for the test.
func openDB(t testing.TB, databaseURL string, cfg pg.Config) *pg.DB {
	t.Helper()
	db, err := pg.Open(context.Background(), databaseURL, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(db.Close)
	return db
}

// withQuery returns databaseURL with extra query parameters.
func withQuery(t testing.TB, databaseURL string, params map[string]string) string {
	t.Helper()
	u, err := url.Parse(databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for k, v := range params {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func TestOpenSessionSettings(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)

	tests := []struct {
		name string
		url  string
		cfg  pg.Config
		want map[string]string
	}{
		{
			name: "defaults",
			url:  dbURL,
			want: map[string]string{
				"default_transaction_read_only": "on",
				"statement_timeout":             "2s",
				"application_name":              "authz-sidecar",
			},
		},
		{
			name: "configured statement timeout",
			url:  dbURL,
			cfg:  pg.Config{StatementTimeout: 750 * time.Millisecond},
			want: map[string]string{"statement_timeout": "750ms"},
		},
		{
			// A pooler refuses these startup parameters: the role or the
			// pooler sets them, and the URL cannot turn read-only off.
			name: "pooler mode sends only application_name",
			url: withQuery(t, dbURL, map[string]string{
				"default_transaction_read_only": "off",
				"statement_timeout":             "0",
			}),
			cfg: pg.Config{QueryMode: pg.QueryDescribe},
			want: map[string]string{
				"default_transaction_read_only": "off", // the server's default: nothing sent
				"statement_timeout":             "0",
				"application_name":              "authz-sidecar",
			},
		},
		{
			// The URL must not be able to turn read-only off.
			name: "URL parameters are overridden",
			url: withQuery(t, dbURL, map[string]string{
				"default_transaction_read_only": "off",
				"statement_timeout":             "0",
				"application_name":              "other",
			}),
			want: map[string]string{
				"default_transaction_read_only": "on",
				"statement_timeout":             "2s",
				"application_name":              "authz-sidecar",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := openDB(t, tt.url, tt.cfg)
			for setting, want := range tt.want {
				var got string
				if err := pg.PoolOf(db).QueryRow(context.Background(), "SELECT current_setting($1)", setting).Scan(&got); err != nil {
					t.Fatalf("current_setting(%s): %v", setting, err)
				}
				if got != want {
					t.Errorf("%s = %q, want %q", setting, got, want)
				}
			}
		})
	}
}

func TestPoolRefusesWrites(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	db := openDB(t, dbURL, pg.Config{})
	pool := pg.PoolOf(db)
	ctx := context.Background()

	tests := []struct {
		name string
		exec func() error
	}{
		{"insert", func() error {
			_, err := pool.Exec(ctx, `INSERT INTO organizations (id, name, slug, "createdAt") VALUES ('o', 'o', 'o', now())`)
			return err
		}},
		{"update", func() error {
			_, err := pool.Exec(ctx, `UPDATE members SET role = 'owner'`)
			return err
		}},
		{"ddl", func() error {
			_, err := pool.Exec(ctx, `CREATE TABLE evil (id int)`)
			return err
		}},
		{"explicit transaction", func() error {
			return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, `DELETE FROM users`)
				return err
			})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.exec()
			if err == nil || !strings.Contains(err.Error(), "read-only transaction") {
				t.Fatalf("err = %v, want a read-only transaction error", err)
			}
		})
	}
}

func TestOpenRejectsBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		url  string
		cfg  pg.Config
	}{
		{"negative max conns", pgtest.DefaultURL, pg.Config{MaxConns: -1}},
		{"negative statement timeout", pgtest.DefaultURL, pg.Config{StatementTimeout: -time.Second}},
		{"negative connect timeout", pgtest.DefaultURL, pg.Config{ConnectTimeout: -time.Second}},
		{"negative idle time", pgtest.DefaultURL, pg.Config{MaxConnIdleTime: -time.Second}},
		{"unknown query mode", pgtest.DefaultURL, pg.Config{QueryMode: 9}},
		{"unsupported exec mode in the URL", pgtest.DefaultURL + "&default_query_exec_mode=exec", pg.Config{}},
		{"unparsable URL", "postgres://u:secret@[::1/db", pg.Config{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db, err := pg.Open(context.Background(), tt.url, tt.cfg)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded, want an error")
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

// The pool dials lazily: Open succeeds against a dead server, and every
// read then fails with roles.ErrUnavailable, classified as a connection
// failure (never a "not found", which could be cached).
func TestUnreachableServer(t *testing.T) {
	t.Parallel()
	db, err := pg.Open(context.Background(), "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable",
		pg.Config{ConnectTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open: %v (it must not connect)", err)
	}
	t.Cleanup(db.Close)
	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"check", func(ctx context.Context) error { _, err := db.Check(ctx); return err }},
		{"warm", func(ctx context.Context) error { _, err := db.Warm(ctx); return err }},
		{"membership", func(ctx context.Context) error {
			_, err := pg.NewMemberRepository(db).Membership(ctx, roles.Subject{UserID: "u", OrgRef: "o"})
			return err
		}},
		{"session", func(ctx context.Context) error {
			_, err := pg.NewSessionRepository(db).SessionByToken(ctx, "t")
			return err
		}},
		{"api key", func(ctx context.Context) error {
			_, err := pg.NewAPIKeyRepository(db).APIKeyByHash(ctx, "h")
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Each call must fail on its own (a refused connection); the
			// deadline, far above that, only turns a hang into a failure.
			// It starts here, not in the parent: a parallel subtest may
			// wait long for a slot on a busy machine.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := tt.call(ctx)
			if !errors.Is(err, roles.ErrUnavailable) {
				t.Fatalf("err = %v, want roles.ErrUnavailable", err)
			}
			var pgErr *pg.Error
			if !errors.As(err, &pgErr) || pgErr.SourceCause() != pg.CauseConnection {
				t.Errorf("err = %v (%T), want a pg.Error with cause connection", err, err)
			}
			if ctx.Err() != nil {
				t.Errorf("err = %v: the call hung until the test's deadline", err)
			}
		})
	}
}

// Membership must fail closed, with a cause the caller can classify
// (deadline vs cancel vs server timeout), when Postgres does not answer.
func TestMembershipUnavailable(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	seed := pgtest.NewSeeder(t, dbURL)
	seed.User(t, "u1", "U")
	seed.Org(t, "o1", "one")
	seed.Member(t, "o1", "u1", "admin")
	sub := roles.Subject{UserID: "u1", OrgRef: "o1"}

	// A writer holding an ACCESS EXCLUSIVE lock on members blocks every
	// reader, like a long migration or a stuck transaction would.
	lockMembers := func(t *testing.T) {
		t.Helper()
		conn, err := pgx.Connect(context.Background(), dbURL)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := conn.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(context.Background(), "LOCK TABLE members IN ACCESS EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			tx.Rollback(context.Background()) //nolint:errcheck // closing the connection ends it anyway
			conn.Close(context.Background())
		})
	}

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name      string
		cfg       pg.Config
		lock      bool
		ctx       func(t *testing.T) context.Context
		wantErr   error  // besides roles.ErrUnavailable
		wantPg    string // SQLSTATE, when the server reported the error
		wantCause string
	}{
		{
			name:      "context cancelled before the call",
			ctx:       func(*testing.T) context.Context { return cancelled },
			wantErr:   context.Canceled,
			wantCause: pg.CauseCanceled,
		},
		{
			name: "context deadline while blocked",
			cfg:  pg.Config{StatementTimeout: time.Minute},
			lock: true,
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				t.Cleanup(cancel)
				return ctx
			},
			wantErr:   context.DeadlineExceeded,
			wantCause: pg.CauseTimeout,
		},
		{
			// Long enough for the warm-up on a loaded machine; the blocked
			// query reaches it whatever its length.
			name:      "statement timeout while blocked",
			cfg:       pg.Config{StatementTimeout: 2 * time.Second},
			lock:      true,
			ctx:       func(*testing.T) context.Context { return context.Background() },
			wantPg:    "57014", // query_canceled
			wantCause: pg.CauseTimeout,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openDB(t, dbURL, tt.cfg)
			repo := pg.NewMemberRepository(db)
			// Connect, check and prepare first, so the failure below is the query's.
			if _, err := db.Warm(context.Background()); err != nil {
				t.Fatalf("Warm: %v", err)
			}
			if tt.lock {
				lockMembers(t)
			}
			m, err := repo.Membership(tt.ctx(t), sub)
			if !errors.Is(err, roles.ErrUnavailable) {
				t.Fatalf("err = %v, want roles.ErrUnavailable", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want it to wrap %v", err, tt.wantErr)
			}
			if tt.wantPg != "" {
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != tt.wantPg {
					t.Errorf("err = %v, want SQLSTATE %s", err, tt.wantPg)
				}
			}
			var e *pg.Error
			if !errors.As(err, &e) || e.Cause != tt.wantCause {
				t.Errorf("err = %v, want cause %s", err, tt.wantCause)
			}
			if m.UserFound || len(m.Roles) != 0 {
				t.Errorf("membership = %+v alongside an error, want zero", m)
			}
		})
	}
}

func TestParseQueryMode(t *testing.T) {
	t.Parallel()
	for _, m := range []pg.QueryMode{pg.QueryPrepare, pg.QueryDescribe, pg.QuerySimple} {
		got, err := pg.ParseQueryMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseQueryMode(%q) = %v, %v; want %v", m.String(), got, err, m)
		}
	}
	if _, err := pg.ParseQueryMode("exec"); err == nil {
		t.Error(`ParseQueryMode("exec") succeeded`)
	}
}

// An idle sidecar holds few connections: a small pool, no minimum, idle
// connections closed after a minute; the URL or Config may change them.
func TestPoolDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		url      string
		cfg      pg.Config
		max, min int32
		idle     time.Duration
	}{
		{"defaults", pgtest.DefaultURL, pg.Config{}, 4, 0, time.Minute},
		{"config", pgtest.DefaultURL, pg.Config{MaxConns: 9, MaxConnIdleTime: time.Second}, 9, 0, time.Second},
		{"URL", pgtest.DefaultURL + "&pool_max_conns=7&pool_min_conns=1&pool_max_conn_idle_time=5s", pg.Config{}, 7, 1, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := openDB(t, tt.url, tt.cfg)
			c := pg.PoolOf(db).Config()
			if c.MaxConns != tt.max || c.MinConns != tt.min || c.MaxConnIdleTime != tt.idle {
				t.Errorf("pool MaxConns %d MinConns %d MaxConnIdleTime %v, want %d %d %v",
					c.MaxConns, c.MinConns, c.MaxConnIdleTime, tt.max, tt.min, tt.idle)
			}
		})
	}
}

// The query mode may come from the URL (pgx's default_query_exec_mode), so
// an operator can choose it without a flag.
func TestQueryModeFromURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		param string
		want  pg.QueryMode
	}{
		{"", pg.QueryPrepare},
		{"cache_statement", pg.QueryPrepare},
		{"cache_describe", pg.QueryDescribe},
		{"simple_protocol", pg.QuerySimple},
	}
	for _, tt := range tests {
		t.Run(tt.param, func(t *testing.T) {
			t.Parallel()
			u := pgtest.DefaultURL
			if tt.param != "" {
				u += "&default_query_exec_mode=" + tt.param
			}
			if got := openDB(t, u, pg.Config{}).Mode(); got != tt.want {
				t.Errorf("Mode() = %v, want %v", got, tt.want)
			}
			// Config wins over the URL.
			if got := openDB(t, u, pg.Config{QueryMode: pg.QuerySimple}).Mode(); got != pg.QuerySimple {
				t.Errorf("Mode() with Config = %v, want simple", got)
			}
		})
	}
}
