// Package pg reads Better Auth's PostgreSQL tables for the sidecar. It is
// the project's only importer of pgx, and it only reads.
//
// # Names
//
// Better Auth owns the schema; pg adapts to it and never migrates or adds
// indexes. Tables and columns are named by Better Auth's models and fields
// (user, session, organization, member, organizationRole, team, teamMember,
// apikey; emailVerified, organizationId, ...) and found through the
// policy's schema section (policy.Schema): naming plural (users, sessions,
// organizations, members, organizationRoles, teams, teamMembers, apikeys),
// singular (Better Auth's default: user, session, ...) or auto (the
// default: whichever of the two sets exists in the search_path; both or
// neither is an error), tables renamed per model (Better Auth's
// modelName) and fields renamed per model (Better Auth's fields). Every
// identifier is double-quoted and schema-qualified as the catalog found it;
// the queries are built once, after the first schema check.
//
// # Schema check and features
//
// The first query, Check or Warm looks every table and column read up in
// the catalog, checks its type (text ids, boolean flags, timestamptz times,
// integer counters, JSON as text) and that the role may SELECT it, and
// fails with a *SchemaError that names each missing table or column and
// the Better Auth option that creates it. Required: user (id,
// emailVerified), organization (id, slug) and member (id, organizationId,
// userId, role, createdAt). Optional, each off when absent (Features):
// organizationRole (dynamic roles), team and teamMember (teams), the admin
// plugin's user.role, banned, banExpires and session.impersonatedBy, the
// anonymous plugin's user.isAnonymous, the two-factor plugin's
// user.twoFactorEnabled, the api-key plugin's apikey table, and the session
// table (absent when Better Auth keeps sessions only in secondaryStorage).
// Queries leave absent parts out and give the neutral answer: no dynamic
// roles, no such team, not banned, no platform role, not anonymous, no
// two-factor, no such session or key. Features.Supports says whether a
// policy needs a part that is off. Later checks (Check, run by readiness)
// verify the parts found at start still exist; a query that meets an
// undefined table or column reports a *SchemaError too. Parts added while
// running are used after a restart.
//
// # Query modes
//
// Config.QueryMode says how statements reach the server; see QueryMode
// for what each costs. QueryPrepare (the default) suits a direct
// connection; QueryDescribe and QuerySimple work through PgBouncer in
// transaction pooling mode (before 1.21, which cannot carry named prepared
// statements across transactions) and other transaction poolers.
//
// # Read-only
//
// In QueryPrepare mode every pooled session starts with
// default_transaction_read_only=on, statement_timeout and
// application_name=authz-sidecar as startup parameters, overriding any the
// URL carries. PgBouncer refuses startup parameters it does not know, and
// in transaction pooling a session setting would not follow the client
// anyway, so the pooler modes send only application_name: set read-only
// (and a statement timeout) on the database role (ALTER ROLE ... SET
// default_transaction_read_only = on) or in PgBouncer's connect_query.
// Features.ReadOnly reports what the server says. Read-only is defence in
// depth, not a boundary: the role should only have SELECT on the tables
// read here.
//
// # Connection cost
//
// A sidecar's pool holds at most Config.MaxConns connections (default 4),
// opens them on demand (no minimum unless the URL's pool_min_conns says
// so) and closes one after Config.MaxConnIdleTime idle (default 1 min;
// pgxpool looks every minute). Warm opens up to MaxConns at start, so the
// first requests pay no connect or prepare; a quiet sidecar gives the
// extra ones back within two minutes, and the first request after that
// pays one connect (and, in QueryPrepare mode, one prepare per statement)
// again. The sidecar's readiness check (Check, every 4-5 s) keeps one
// connection in use, so an idle sidecar holds one, never none.
// --pg-listen adds one dedicated connection (Listener), and so does a
// Fence (below). A fleet of N sidecars started at once thus opens
// N × MaxConns server connections (plus N with --pg-listen; each a
// PostgreSQL backend of a few MB) and keeps N (2N) when quiet; behind
// PgBouncer in transaction mode they share its server pool instead.
// docs/fleet.md has the measurements.
//
// # Hot standby
//
// The pool may reach a hot standby. Whether it does is asked at the first
// schema check and at every Check (pg_is_in_recovery). With a Fence
// (Config.Fence: the caches are invalidated), every read on a standby
// first waits, bounded, until the standby has replayed the primary's WAL
// position as of the last invalidation, and fails closed with
// ErrReplicaLag otherwise; on a primary a read pays one atomic load for
// it. A Fence holds one more connection, to the primary.
// docs/consistency.md ("Read replicas") states the guarantee and its
// limits.
package pg

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authz-sidecar/authz-sidecar/internal/policy"
)

// Defaults applied by Open to zero Config fields.
const (
	DefaultMaxConns         = 4
	DefaultMaxConnIdleTime  = time.Minute
	DefaultStatementTimeout = 2 * time.Second
	DefaultConnectTimeout   = 5 * time.Second
	applicationName         = "authz-sidecar"
)

// QueryMode says how queries reach the server.
type QueryMode uint8

// The query modes. The zero value takes the URL's default_query_exec_mode
// (cache_statement, cache_describe or simple_protocol), else QueryPrepare.
//
// What they cost, measured on PostgreSQL 15 with BenchmarkMembership (5,000
// members): the membership query takes about 0.7 ms to parse and plan and
// 0.25 ms to execute, so a prepared execution is several times cheaper in
// server CPU and latency (0.2 ms against 1.5-3 ms a call on a loaded
// two-core machine). The caches in front of pg absorb most calls either
// way; choose a pooler mode only when a transaction pooler is in the path.
const (
	// QueryPrepare prepares each statement once per connection (a named
	// prepared statement, pgx's statement cache) and then executes it in
	// one round trip; the server parses and plans it once per connection
	// and may reuse a generic plan. Cheapest. Breaks through PgBouncer
	// before 1.21 in transaction mode: a named statement lives on one
	// server connection, the next transaction may get another ("prepared
	// statement ... already exists" or "does not exist"), and PgBouncer
	// refuses the session settings this mode sends at startup.
	QueryPrepare QueryMode = iota + 1
	// QueryDescribe (pgx's cache_describe) asks the server once per
	// connection for each statement's parameter and result types, then
	// executes it with the unnamed statement in one round trip (Parse,
	// Bind, Execute, Sync): no named statement outlives a transaction, so
	// it works through transaction poolers. The server parses and plans
	// every execution.
	QueryDescribe
	// QuerySimple uses the simple query protocol: pgx interpolates the
	// parameters client-side (quoted and escaped) and the server parses
	// and plans every query; results come as text, which costs the client
	// more decoding than QueryDescribe. One round trip; works through any
	// pooler, statement pooling included.
	QuerySimple
)

// ParseQueryMode reads "prepare", "describe" or "simple".
func ParseQueryMode(s string) (QueryMode, error) {
	switch s {
	case "prepare":
		return QueryPrepare, nil
	case "describe":
		return QueryDescribe, nil
	case "simple":
		return QuerySimple, nil
	}
	return 0, fmt.Errorf("pg: query mode %q: want prepare, describe or simple", s)
}

// String returns the mode's name as ParseQueryMode reads it.
func (m QueryMode) String() string {
	switch m {
	case QueryPrepare:
		return "prepare"
	case QueryDescribe:
		return "describe"
	case QuerySimple:
		return "simple"
	}
	return "QueryMode(" + strconv.Itoa(int(m)) + ")"
}

func (m QueryMode) pgx() pgx.QueryExecMode {
	switch m {
	case QueryDescribe:
		return pgx.QueryExecModeCacheDescribe
	case QuerySimple:
		return pgx.QueryExecModeSimpleProtocol
	}
	return pgx.QueryExecModeCacheStatement
}

// Config tunes the connection pool and names the tables. Zero fields take
// defaults.
type Config struct {
	// MaxConns caps the pool; 0 = pool_max_conns from the URL, else
	// DefaultMaxConns.
	MaxConns int32
	// MaxConnIdleTime closes a connection idle that long; 0 =
	// pool_max_conn_idle_time from the URL, else DefaultMaxConnIdleTime.
	MaxConnIdleTime time.Duration
	// StatementTimeout is the server-side statement_timeout of every
	// session in QueryPrepare mode; 0 = DefaultStatementTimeout.
	StatementTimeout time.Duration
	// ConnectTimeout bounds establishing one connection (dial, TLS,
	// startup); 0 = DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// QueryMode says how queries reach the server (see QueryMode).
	QueryMode QueryMode
	// Schema names the tables and columns (the policy's schema section);
	// the zero value is naming auto without renames.
	Schema policy.Schema
	// Fence, when the caches are invalidated, keeps reads on a hot
	// standby from returning what an invalidation replaced (see Fence);
	// nil when nothing invalidates the caches, where a standby's lag only
	// adds to the TTLs. Whether the server is a standby is asked at the
	// first schema check and at every Check.
	Fence *Fence
}

// DB is a read-only connection pool to Better Auth's database, and the
// queries built for its schema.
type DB struct {
	pool     *pgxpool.Pool
	schema   policy.Schema
	mode     QueryMode
	maxConns int32
	fence    *Fence // nil: no invalidations to fence

	// standby is whether the server was in recovery at the last check:
	// reads then go through the fence. On a primary a read pays this one
	// atomic load.
	standby atomic.Bool

	// first serialises the first schema check (a channel, so a waiter can
	// give up when its context ends); st holds its result once it
	// succeeded, and never changes after.
	first chan struct{}
	st    atomic.Pointer[state]
}

// state is what the first successful schema check produced.
type state struct {
	names    *names
	features Features
	q        queries
}

// Open configures a pool for databaseURL (a postgres:// URL or keyword/value
// string). It does not connect: pgxpool dials lazily, so the sidecar can
// start while Postgres is down and fail closed per request. Warm (at
// start) and Check (for readiness) connect and check the schema; the first
// query does so too if neither ran.
func Open(ctx context.Context, databaseURL string, cfg Config) (*DB, error) {
	if cfg.MaxConns < 0 || cfg.MaxConnIdleTime < 0 || cfg.StatementTimeout < 0 || cfg.ConnectTimeout < 0 {
		return nil, fmt.Errorf("pg: open: negative pool setting %+v", cfg)
	}
	pcfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		// pgx masks the password in parse errors (best effort).
		return nil, fmt.Errorf("pg: open: %w", err)
	}
	mode := cfg.QueryMode
	if mode == 0 {
		switch pcfg.ConnConfig.DefaultQueryExecMode {
		case pgx.QueryExecModeCacheStatement:
			mode = QueryPrepare
		case pgx.QueryExecModeCacheDescribe:
			mode = QueryDescribe
		case pgx.QueryExecModeSimpleProtocol:
			mode = QuerySimple
		default:
			return nil, fmt.Errorf("pg: open: default_query_exec_mode %s is not supported: use cache_statement, cache_describe or simple_protocol", pcfg.ConnConfig.DefaultQueryExecMode)
		}
	}
	if mode < QueryPrepare || mode > QuerySimple {
		return nil, fmt.Errorf("pg: open: unknown %v", mode)
	}
	pcfg.ConnConfig.DefaultQueryExecMode = mode.pgx()

	// pgxpool cannot tell a URL's setting from its default: look.
	switch {
	case cfg.MaxConns > 0:
		pcfg.MaxConns = cfg.MaxConns
	case !strings.Contains(databaseURL, "pool_max_conns"):
		pcfg.MaxConns = DefaultMaxConns
	}
	switch {
	case cfg.MaxConnIdleTime > 0:
		pcfg.MaxConnIdleTime = cfg.MaxConnIdleTime
	case !strings.Contains(databaseURL, "pool_max_conn_idle_time"):
		pcfg.MaxConnIdleTime = DefaultMaxConnIdleTime
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
	params := pcfg.ConnConfig.RuntimeParams
	params["application_name"] = applicationName
	if mode == QueryPrepare {
		params["default_transaction_read_only"] = "on"
		params["statement_timeout"] = strconv.FormatInt(statementTimeout.Milliseconds(), 10)
	} else {
		// A pooler refuses them (and the URL must not turn read-only
		// off): the role or the pooler sets them. See the package doc.
		delete(params, "default_transaction_read_only")
		delete(params, "statement_timeout")
	}

	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("pg: open: %w", err)
	}
	return &DB{pool: pool, schema: cfg.Schema, mode: mode, maxConns: pcfg.MaxConns, fence: cfg.Fence, first: make(chan struct{}, 1)}, nil
}

// Close closes all connections, waiting for acquired ones to be released.
func (db *DB) Close() { db.pool.Close() }

// Mode returns the query mode in use.
func (db *DB) Mode() QueryMode { return db.mode }

// Tables returns each model's table as found by the first successful
// schema check (schema-qualified and quoted, as the queries name it), and
// how it was found: plural, singular, custom (every required table named
// by the schema section), with "+renamed" when some were. Empty before.
func (db *DB) Tables() (naming string, tables map[string]string) {
	st := db.st.Load()
	if st == nil {
		return "", nil
	}
	return st.names.naming, maps.Clone(st.names.qualified)
}

// Check connects and checks the schema: the first time, it finds the
// tables (naming), checks every table and column read and builds the
// queries; later, it verifies that what was found then is still there.
// Readiness runs it every few seconds, so a pool that reconnected (to a
// restored database, a new primary) is checked too. It costs two catalog
// queries. It returns the features found at the first check, with
// ReadOnly as the server says now. Errors are *Error,
// matching roles.ErrUnavailable; a schema mismatch also matches ErrSchema
// and says what is missing and which Better Auth option creates it.
func (db *DB) Check(ctx context.Context) (Features, error) {
	st := db.st.Load()
	if st == nil {
		st, err := db.ready(ctx, "check")
		if err != nil {
			return Features{}, err
		}
		return st.features, nil
	}
	_, f, err := check(ctx, db.pool, db.schema, st.names, &st.features)
	if err == nil {
		err = db.recovery(ctx)
	}
	if err != nil {
		return st.features, unavailable("check", err)
	}
	// Read-only can change with the role or the pooler; report it now.
	features := st.features
	features.ReadOnly = f.ReadOnly
	return features, nil
}

// Warm readies the pool for the first requests: it runs Check, then opens
// up to MaxConns connections and runs every query once on each (with
// arguments that match nothing), so that in QueryPrepare mode each is
// prepared there and in QueryDescribe mode its description is cached. The
// sidecar should report SERVING only after Warm succeeded. It fails when
// Check does or no connection can be warmed; connections beyond the first
// that cannot be opened (the server's connection limit, say) are left to
// open on demand. Errors as Check's.
func (db *DB) Warm(ctx context.Context) (Features, error) {
	f, err := db.Check(ctx)
	if err != nil {
		return f, err
	}
	st := db.st.Load()
	conns := make([]*pgxpool.Conn, 0, db.maxConns)
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	// Hold each connection while acquiring the next, so that they are
	// distinct; then ready all of them at once.
	for range db.maxConns {
		c, err := db.pool.Acquire(ctx)
		if err != nil {
			if len(conns) == 0 {
				return f, unavailable("warm", err)
			}
			break
		}
		conns = append(conns, c)
	}
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			for _, w := range st.q.warmups() {
				rows, err := c.Query(ctx, w.sql, w.args...)
				if err == nil {
					rows.Close()
					err = rows.Err()
				}
				if err != nil {
					errs[i] = db.fail(ctx, "warm", err)
					return
				}
			}
		})
	}
	wg.Wait()
	return f, errors.Join(errs...)
}

// ready returns the state of the first successful schema check, running
// it if none succeeded yet. One caller checks; the others wait for it or
// for their context.
func (db *DB) ready(ctx context.Context, op string) (*state, error) {
	if st := db.st.Load(); st != nil {
		return st, nil
	}
	select {
	case db.first <- struct{}{}:
	case <-ctx.Done():
		return nil, unavailable(op, ctx.Err())
	}
	defer func() { <-db.first }()
	if st := db.st.Load(); st != nil {
		return st, nil
	}
	n, f, err := check(ctx, db.pool, db.schema, nil, nil)
	if err == nil {
		err = db.recovery(ctx)
	}
	if err != nil {
		return nil, unavailable(op, err)
	}
	st := &state{names: n, features: f, q: buildQueries(n, f)}
	db.st.Store(st)
	return st, nil
}

// fail wraps a query's error. When the server says a table or column does
// not exist, the schema changed since the check: it checks again to name
// what is missing and the option that creates it.
func (db *DB) fail(ctx context.Context, op string, err error) error {
	pgErr, undefined := undefinedObject(err)
	st := db.st.Load()
	if !undefined || st == nil {
		return unavailable(op, err)
	}
	se := &SchemaError{Problems: []string{"a table or column the sidecar read at start is gone"}, Err: pgErr}
	_, _, cerr := check(ctx, db.pool, db.schema, st.names, &st.features)
	if found, ok := errors.AsType[*SchemaError](cerr); ok {
		se.Problems = found.Problems
	}
	return &Error{Op: op, Cause: CauseSchema, Err: se}
}

// recovery asks the server whether it is a hot standby and, when it has
// become one, arms the fence before reads see standby set.
func (db *DB) recovery(ctx context.Context) error {
	var standby bool
	if err := db.pool.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&standby); err != nil {
		return fmt.Errorf("pg_is_in_recovery: %w", err)
	}
	if standby && db.fence != nil && db.fence.pool == nil {
		// Fail closed, and say so at readiness: the fence cannot learn
		// what the standby must replay.
		return errors.New("DATABASE_URL is a hot standby and the caches are invalidated: set --pg-primary-url (or --pg-listen-url) to the primary, so that reads after an invalidation can wait for the standby to replay it")
	}
	if standby && !db.standby.Load() && db.fence != nil {
		db.fence.activate()
	}
	db.standby.Store(standby)
	return nil
}

// Standby reports whether the server was a hot standby at the last check.
func (db *DB) Standby() bool { return db.standby.Load() }

// fenced returns once a read on the server may start: at once on a
// primary; on a standby, once it has replayed every change invalidated
// before the call (Fence.wait). Errors are *Error; a standby too far
// behind gives Cause CauseReplicaLag, matching ErrReplicaLag.
func (db *DB) fenced(ctx context.Context, op string) error {
	if db.fence == nil || !db.standby.Load() {
		return nil
	}
	if err := db.fence.wait(ctx, db.replay); err != nil {
		return unavailable(op, err)
	}
	return nil
}

// replay reads the standby's replay position; see replayFunc.
func (db *DB) replay(ctx context.Context) (uint64, bool, error) {
	var (
		recovering bool
		lsn        *int64
	)
	err := db.pool.QueryRow(ctx, "SELECT pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8").Scan(&recovering, &lsn)
	if err != nil {
		return 0, false, fmt.Errorf("standby replay position: %w", err)
	}
	if lsn == nil {
		return 0, recovering, nil
	}
	return uint64(*lsn), recovering, nil
}
