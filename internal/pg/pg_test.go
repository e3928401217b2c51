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
// read then fails with roles.ErrUnavailable (never ErrNotFound, which
// would read as "no such user" and could be cached).
func TestUnreachableServer(t *testing.T) {
	t.Parallel()
	db, err := pg.Open(context.Background(), "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable",
		pg.Config{ConnectTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open: %v (it must not connect)", err)
	}
	t.Cleanup(db.Close)
	// Each call must fail on its own (a refused connection); the test's
	// deadline, far above that, only turns a hang into a failure.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)

	tests := []struct {
		name string
		call func() error
	}{
		{"ping", func() error { return db.Ping(ctx) }},
		{"membership", func() error {
			_, err := pg.NewMemberRepository(db).Membership(ctx, "u", "o")
			return err
		}},
		{"user", func() error {
			_, err := pg.NewUserRepository(db).User(ctx, "u")
			return err
		}},
		{"organization", func() error {
			_, err := pg.NewOrganizationRepository(db).Organization(ctx, "o")
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.call()
			if !errors.Is(err, roles.ErrUnavailable) {
				t.Fatalf("err = %v, want roles.ErrUnavailable", err)
			}
			if errors.Is(err, pg.ErrNotFound) {
				t.Errorf("err = %v, must not be ErrNotFound", err)
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
		name    string
		cfg     pg.Config
		lock    bool
		ctx     func(t *testing.T) context.Context
		wantErr error  // besides roles.ErrUnavailable
		wantPg  string // SQLSTATE, when the server reported the error
	}{
		{
			name:    "context cancelled before the call",
			ctx:     func(*testing.T) context.Context { return cancelled },
			wantErr: context.Canceled,
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
			wantErr: context.DeadlineExceeded,
		},
		{
			// Long enough for the warm-up on a loaded machine; the blocked
			// query reaches it whatever its length.
			name:   "statement timeout while blocked",
			cfg:    pg.Config{StatementTimeout: 2 * time.Second},
			lock:   true,
			ctx:    func(*testing.T) context.Context { return context.Background() },
			wantPg: "57014", // query_canceled
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openDB(t, dbURL, tt.cfg)
			repo := pg.NewMemberRepository(db)
			// Connect and prepare first, so the failure below is the query's.
			if _, err := repo.Membership(context.Background(), "u1", "o1"); err != nil {
				t.Fatalf("warm-up: %v", err)
			}
			if tt.lock {
				lockMembers(t)
			}
			m, err := repo.Membership(tt.ctx(t), "u1", "o1")
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
			if m.UserFound || len(m.Roles) != 0 {
				t.Errorf("membership = %+v alongside an error, want zero", m)
			}
		})
	}
}
