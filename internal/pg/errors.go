package pg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// ErrSchema is matched by every error about Better Auth's tables not being
// what the sidecar reads: a missing table or column, a column of another
// type, a missing SELECT privilege, an ambiguous naming, or a policy that
// needs an optional part the database lacks. A *SchemaError says which.
var ErrSchema = errors.New("schema mismatch")

// SchemaError lists how the database differs from what the sidecar reads,
// each problem naming the table or column and the Better Auth option (or
// policy setting) that fixes it. It matches ErrSchema.
type SchemaError struct {
	Problems []string
	// Err is the server's error when a query found the problem (undefined
	// table or column), nil when the schema check did.
	Err error
}

func (e *SchemaError) Error() string {
	msg := "schema: " + strings.Join(e.Problems, "; ")
	if e.Err != nil {
		msg += " (" + e.Err.Error() + ")"
	}
	return msg
}

// Is makes a SchemaError match ErrSchema.
func (e *SchemaError) Is(target error) bool { return target == ErrSchema }

// Unwrap returns the server's error, if any.
func (e *SchemaError) Unwrap() error { return e.Err }

// The causes of a failed read: a small fixed set, fit for a metric label.
const (
	// CauseTimeout: the caller's deadline or statement_timeout passed.
	CauseTimeout = "timeout"
	// CauseCanceled: the caller's context was cancelled.
	CauseCanceled = "canceled"
	// CauseConnection: no connection could be made or it broke
	// (refused, reset, server shutting down, too many connections).
	CauseConnection = "connection"
	// CauseSchema: a table, column or privilege the sidecar reads is
	// missing (ErrSchema).
	CauseSchema = "schema"
	// CauseOther: anything else the server or driver reported.
	CauseOther = "other"
)

// Error is a failed read. It matches roles.ErrUnavailable (callers must
// fail closed on it) and wraps the underlying error (a context error, a
// *pgconn.PgError, a *SchemaError, ...).
type Error struct {
	// Op is what was being done: membership, session, api key, check,
	// warm.
	Op string
	// Cause classifies Err: one of the Cause constants.
	Cause string
	Err   error
}

func (e *Error) Error() string { return "pg: " + e.Op + ": " + e.Err.Error() }

// Unwrap returns roles.ErrUnavailable and the underlying error.
func (e *Error) Unwrap() []error { return []error{roles.ErrUnavailable, e.Err} }

// SourceCause returns Cause. internal/observe reads it through an
// interface of its own, to label metrics without importing pg.
func (e *Error) SourceCause() string { return e.Cause }

// unavailable wraps err as an *Error of op, classified.
func unavailable(op string, err error) *Error {
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && strings.Contains(pgErr.Message, "unsupported startup parameter") {
		// PgBouncer's answer to QueryPrepare's session settings.
		err = fmt.Errorf("%w (a pooler such as PgBouncer refuses the session settings of query mode prepare: use query mode describe or simple)", err)
	}
	return &Error{Op: op, Cause: classify(err), Err: err}
}

// SQLSTATEs the classification needs.
const (
	sqlstateUndefinedTable  = "42P01"
	sqlstateUndefinedColumn = "42703"
	sqlstateQueryCanceled   = "57014" // statement_timeout or a cancel request
)

// classify tells why err happened, from its chain.
func classify(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return CauseTimeout
	case errors.Is(err, context.Canceled):
		return CauseCanceled
	case errors.Is(err, ErrSchema):
		return CauseSchema
	case errors.Is(err, ErrReplicaLag):
		return CauseReplicaLag
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch code := pgErr.Code; {
		case code == sqlstateQueryCanceled:
			// A cancel the caller's context sent was matched above.
			return CauseTimeout
		case strings.HasPrefix(code, "08"), // connection_exception
			code == "57P01", code == "57P02", code == "57P03", // admin/crash shutdown, cannot_connect_now
			code == "53300": // too_many_connections
			return CauseConnection
		case code == sqlstateUndefinedTable, code == sqlstateUndefinedColumn,
			code == "42501", // insufficient_privilege
			code == "3F000": // invalid_schema_name
			return CauseSchema
		}
		return CauseOther
	}
	if _, ok := errors.AsType[*pgconn.ConnectError](err); ok {
		return CauseConnection
	}
	if pgconn.Timeout(err) {
		return CauseTimeout
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return CauseConnection
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.SafeToRetry(err) {
		return CauseConnection
	}
	return CauseOther
}

// undefinedObject reports whether err is the server saying a table or
// column does not exist: the schema changed under a running sidecar.
func undefinedObject(err error) (*pgconn.PgError, bool) {
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	if ok && (pgErr.Code == sqlstateUndefinedTable || pgErr.Code == sqlstateUndefinedColumn) {
		return pgErr, true
	}
	return nil, false
}
