// Package pg reads Better Auth's PostgreSQL tables for the sidecar. It is
// the project's only importer of pgx, and it only reads: every pooled session
// starts with default_transaction_read_only=on.
//
// Better Auth owns the schema (plural table names, double-quoted camelCase
// columns); pg adapts to it and never migrates or adds indexes.
package pg

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// ErrNotFound reports that the user or organization asked for does not
// exist. MemberRepository never returns it: a missing membership is a
// roles.Membership value, not an error.
var ErrNotFound = errors.New("not found")

// Defaults applied by Open to zero Config fields.
const (
	DefaultStatementTimeout = 2 * time.Second
	DefaultConnectTimeout   = 5 * time.Second
	applicationName         = "authz-sidecar"
)

// Config tunes the connection pool. Zero fields take defaults.
type Config struct {
	// MaxConns caps the pool; 0 = pgxpool's default (max(4, NumCPU)) or
	// pool_max_conns from the URL.
	MaxConns int32
	// StatementTimeout is the server-side statement_timeout of every
	// session; 0 = DefaultStatementTimeout.
	StatementTimeout time.Duration
	// ConnectTimeout bounds establishing one connection (dial, TLS,
	// startup); 0 = DefaultConnectTimeout.
	ConnectTimeout time.Duration
}

// DB is a read-only connection pool to Better Auth's database.
type DB struct {
	pool *pgxpool.Pool
}

// querier is what the repositories need: satisfied by *pgxpool.Pool and
// pgx.Tx alike, so a read can also run inside a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Open configures a pool for databaseURL (a postgres:// URL or keyword/value
// string). It does not connect: pgxpool dials lazily, so the sidecar can
// start while Postgres is down and fail closed per request; call Ping for
// readiness.
//
// Every session is started with default_transaction_read_only=on,
// statement_timeout and application_name=authz-sidecar as startup
// parameters, overriding any the URL carries. Read-only is defence in depth,
// not a boundary (a session could SET it off): the database role should
// only have SELECT on the tables read here.
func Open(ctx context.Context, databaseURL string, cfg Config) (*DB, error) {
	if cfg.MaxConns < 0 || cfg.StatementTimeout < 0 || cfg.ConnectTimeout < 0 {
		return nil, fmt.Errorf("pg: open: negative pool setting %+v", cfg)
	}
	pcfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		// pgx masks the password in parse errors (best effort).
		return nil, fmt.Errorf("pg: open: %w", err)
	}
	if cfg.MaxConns > 0 {
		pcfg.MaxConns = cfg.MaxConns
	}
	statementTimeout := cfg.StatementTimeout
	if statementTimeout == 0 {
		statementTimeout = DefaultStatementTimeout
	}
	if statementTimeout < time.Millisecond {
		// statement_timeout is in ms and 0 would disable it.
		statementTimeout = time.Millisecond
	}
	pcfg.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		pcfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	// Startup parameters, not SET after connect: they hold from the first
	// statement on, cost no round trip, and survive DISCARD ALL/RESET ALL.
	pcfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	pcfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(statementTimeout.Milliseconds(), 10)
	pcfg.ConnConfig.RuntimeParams["application_name"] = applicationName

	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("pg: open: %w", err)
	}
	return &DB{pool: pool}, nil
}

// Ping checks that a connection can be acquired and answers. Its error
// wraps roles.ErrUnavailable.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// Close closes all connections, waiting for acquired ones to be released.
func (db *DB) Close() { db.pool.Close() }

// unavailable wraps err so that callers can both fail closed on
// roles.ErrUnavailable and tell a timeout from a cancel from a server error.
func unavailable(op string, err error) error {
	return fmt.Errorf("pg: %s: %w: %w", op, roles.ErrUnavailable, err)
}
