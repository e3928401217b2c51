// Package pgtest gives tests a fresh PostgreSQL database holding Better
// Auth's schema, and a writable Seeder to fill it. It is test support: import
// it only from _test.go files (and test drivers).
//
// The schema is schema.sql, the dump of Better Auth's own migrator with plural
// table names and the api-key, anonymous and two-factor plugins. A test may
// ask for another Layout
// (Singular, Custom: the same schema with tables and columns renamed, as
// Better Auth's modelName and fields options do) and for a database without
// some optional Parts (dynamic roles, teams, admin columns, ...).
//
// Databases are cloned from a template database (CREATE DATABASE ... TEMPLATE),
// which takes milliseconds instead of replaying the schema every time. A
// template's name is derived from a hash of the SQL that builds it, so it is
// built once per schema version and layout and then reused by every process,
// run and package that tests against the same server.
//
// NewCluster starts a private primary and hot standby (initdb and
// pg_basebackup on loopback) for tests of reads on a replica; it needs the
// server binaries, not only a reachable server.
//
// The server is found through AUTHZ_TEST_DATABASE_URL (URL form, a role
// allowed to CREATE DATABASE), default DefaultURL. When it is unreachable the
// test is skipped, or fails when CI=true.
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authz-sidecar/authz-sidecar/internal/policy"
)

// DefaultURL is the server used when AUTHZ_TEST_DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// EnvURL names the environment variable that points tests at a server.
const EnvURL = "AUTHZ_TEST_DATABASE_URL"

//go:embed schema.sql
var schemaSQL string

// Process-wide state, deliberately package-level: a template exists once
// per server and layout, and name uniqueness is per process, whatever test
// asks.
var (
	templates sync.Map // admin URL + "|" + layout name -> *templateDB
	dbCounter atomic.Uint64
)

type templateDB struct {
	once sync.Once
	name string
	err  error
}

// Options say what database NewDatabaseWith creates.
type Options struct {
	// Layout names the tables and columns; the zero Layout is Plural.
	Layout Layout
	// Without lists optional parts the database lacks.
	Without []Part
}

// Database is a test's or driver's database: its URL and how it was made.
type Database struct {
	URL     string
	Name    string // in pg_database, pg_stat_activity
	Layout  Layout
	Without []Part

	adminURL string // the server it was created on, for Drop
}

// NewDatabase creates a database for t with Better Auth's schema (Plural,
// every part), returns its connection URL and drops it (terminating
// leftover connections) when t and its subtests finish. Call it once per
// test, or once in a parent test whose subtests share the data.
func NewDatabase(t testing.TB) string {
	t.Helper()
	return NewDatabaseWith(t, Options{}).URL
}

// NewDatabaseWith is NewDatabase for another layout, or without some
// optional parts. Seed it with (*Database).Seeder, which writes the names
// and columns the database has.
func NewDatabaseWith(t testing.TB, o Options) *Database {
	t.Helper()
	if o.Layout.name == "" {
		o.Layout = Plural
	}
	d := create(t, &o.Layout)
	d.Without = slices.Clone(o.Without)
	if len(o.Without) > 0 {
		var b strings.Builder
		for _, p := range dropOrder {
			if slices.Contains(o.Without, p) {
				b.WriteString(o.Layout.dropSQL(p))
			}
		}
		execSQL(t, d.URL, b.String())
	}
	return d
}

// dropOrder drops columns before the tables that hold them.
var dropOrder = []Part{Admin, Anonymous, TwoFactor, Teams, DynamicRoles, APIKeys, Sessions}

// Has reports whether the database has the optional part p.
func (d *Database) Has(p Part) bool { return !slices.Contains(d.Without, p) }

// Schema is the policy schema section for the database's layout.
func (d *Database) Schema() policy.Schema { return d.Layout.Schema() }

// NewEmptyDatabase creates an empty database for t (no tables), for a test
// whose schema comes from Better Auth's own migrator, and drops it when t
// finishes.
func NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	return create(t, nil).URL
}

// Columns describes the public schema of databaseURL: "table.column" →
// its data type, with " not null" when it is, for comparing a schema
// Better Auth's migrator made with one this package made.
func Columns(t testing.TB, databaseURL string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := connect(ctx, databaseURL)
	if err != nil {
		t.Fatalf("pgtest: columns: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT table_name || '.' || column_name, data_type || CASE WHEN is_nullable = 'NO' THEN ' not null' ELSE '' END
		FROM information_schema.columns WHERE table_schema = 'public'`)
	if err != nil {
		t.Fatalf("pgtest: columns: %v", err)
	}
	m := map[string]string{}
	for rows.Next() {
		var col, typ string
		if err := rows.Scan(&col, &typ); err != nil {
			t.Fatalf("pgtest: columns: %v", err)
		}
		m[col] = typ
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("pgtest: columns: %v", err)
	}
	return m
}

// execSQL runs sql (several statements) on databaseURL.
func execSQL(t testing.TB, databaseURL, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := connect(ctx, databaseURL)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("pgtest: %s: %v", sql, err)
	}
}

// create makes a database from layout's template, or an empty one when
// layout is nil, dropped when t finishes.
func create(t testing.TB, layout *Layout) *Database {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adminURL := AdminURL()
	admin, err := connect(ctx, adminURL)
	if err != nil {
		unreachable(t, adminURL, err)
	}
	admin.Close(context.Background())
	name := fmt.Sprintf("authz_test_%d_%d_%s", os.Getpid(), dbCounter.Add(1), randomHex(4))
	db, err := createNamed(ctx, adminURL, name, layout)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() { dropDatabase(t, adminURL, name) })
	return db
}

// AdminURL is the server tests and drivers create their databases on:
// $AUTHZ_TEST_DATABASE_URL, or DefaultURL.
func AdminURL() string {
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	return DefaultURL
}

// CreateScratch creates a database outside a test, for a benchmark or
// driver, on the server at adminURL (empty: AdminURL()) named
// prefix_<pid>_<random>, with Better Auth's schema in layout, or empty (for
// Better Auth's own migrator) when layout is nil. The caller drops it with
// Drop; Seeder, Copy and Schema work on it as on a test's database.
func CreateScratch(ctx context.Context, adminURL, prefix string, layout *Layout) (*Database, error) {
	if adminURL == "" {
		adminURL = AdminURL()
	}
	return createNamed(ctx, adminURL, fmt.Sprintf("%s_%d_%s", prefix, os.Getpid(), randomHex(4)), layout)
}

func createNamed(ctx context.Context, adminURL, name string, layout *Layout) (*Database, error) {
	admin, err := connect(ctx, adminURL)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL unreachable at %s (set %s): %w", redact(adminURL), EnvURL, err)
	}
	defer admin.Close(context.Background())
	d := &Database{Name: name, adminURL: adminURL}
	template := "template0"
	if layout != nil {
		d.Layout = *layout
		// Per server: a Cluster's servers are not AdminURL's.
		v, _ := templates.LoadOrStore(adminURL+"|"+layout.name, new(templateDB))
		tmpl := v.(*templateDB)
		tmpl.once.Do(func() {
			tmpl.name, tmpl.err = ensureTemplate(ctx, admin, adminURL, buildSQL(*layout))
		})
		if tmpl.err != nil {
			return nil, fmt.Errorf("%s template database: %w", layout.name, tmpl.err)
		}
		template = tmpl.name
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+quote(name)+" TEMPLATE "+quote(template)); err != nil {
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	if d.URL, err = withDatabase(adminURL, name); err != nil {
		return nil, err
	}
	return d, nil
}

// Drop drops the database, ending its connections.
func (d *Database) Drop(ctx context.Context) error {
	admin, err := connect(ctx, d.adminURL)
	if err != nil {
		return fmt.Errorf("drop database %s: %w", d.Name, err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+quote(d.Name)+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", d.Name, err)
	}
	return nil
}

// unreachable skips t, or fails it on CI where a missing service is a broken
// pipeline rather than a developer's laptop without Postgres.
func unreachable(t testing.TB, adminURL string, err error) {
	t.Helper()
	msg := fmt.Sprintf("pgtest: PostgreSQL unreachable at %s (set %s): %v", redact(adminURL), EnvURL, err)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
		return
	}
	t.Skip(msg)
}

// buildSQL is what builds layout's template: the dump, then the renames.
func buildSQL(layout Layout) string {
	return schemaSQL + "\n" + layout.renameSQL()
}

// ensureTemplate returns the name of the template database built by
// buildSQL, building it if no process did before. Parallel test packages are separate
// processes, so creation is serialised with an advisory lock, and the
// template is built under a scratch name and renamed when complete: a
// database with the template's name is always whole, even after a crash.
func ensureTemplate(ctx context.Context, admin *pgx.Conn, adminURL, buildSQL string) (string, error) {
	sum := sha256.Sum256([]byte(buildSQL))
	name := "authz_tmpl_" + hex.EncodeToString(sum[:8])
	building := name + "_building"
	lockKey := int64(binary.BigEndian.Uint64(sum[:8]))

	exists := func() (bool, error) {
		var ok bool
		err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&ok)
		return ok, err
	}
	if ok, err := exists(); err != nil || ok {
		return name, err
	}

	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey); err != nil {
		return "", fmt.Errorf("advisory lock: %w", err)
	}
	defer admin.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", lockKey) //nolint:errcheck // closing the session releases it anyway
	if ok, err := exists(); err != nil || ok {
		return name, err
	}

	// A leftover from a process that died mid-build.
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+quote(building)+" WITH (FORCE)"); err != nil {
		return "", fmt.Errorf("drop stale %s: %w", building, err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+quote(building)); err != nil {
		return "", fmt.Errorf("create %s: %w", building, err)
	}
	buildURL, err := withDatabase(adminURL, building)
	if err != nil {
		return "", err
	}
	conn, err := connect(ctx, buildURL)
	if err != nil {
		return "", fmt.Errorf("connect %s: %w", building, err)
	}
	// Simple protocol: the schema is several statements in one string.
	_, err = conn.Exec(ctx, buildSQL, pgx.QueryExecModeSimpleProtocol)
	conn.Close(context.Background())
	if err != nil {
		return "", fmt.Errorf("apply schema: %w", err)
	}
	for _, stmt := range []string{
		"ALTER DATABASE " + quote(building) + " RENAME TO " + quote(name),
		// No connections: CREATE DATABASE ... TEMPLATE fails while anyone is
		// connected to the template.
		"ALTER DATABASE " + quote(name) + " WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
	} {
		if _, err := admin.Exec(ctx, stmt); err != nil {
			return "", fmt.Errorf("%s: %w", stmt, err)
		}
	}
	return name, nil
}

func dropDatabase(t testing.TB, adminURL, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := (&Database{Name: name, adminURL: adminURL}).Drop(ctx); err != nil {
		t.Errorf("pgtest: %v", err)
	}
}

func connect(ctx context.Context, connURL string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(connURL)
	if err != nil {
		return nil, err
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 30 * time.Second // a presence probe: generous for a loaded machine
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// withDatabase returns connURL pointing at database name.
func withDatabase(connURL, name string) (string, error) {
	u, err := url.Parse(connURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("%s must be a postgres:// URL", EnvURL)
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String(), nil
}

// redact hides a password in a URL before it reaches test output.
func redact(connURL string) string {
	u, err := url.Parse(connURL)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

func quote(ident string) string { return pgx.Identifier{ident}.Sanitize() }

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b)
}
