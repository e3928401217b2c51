package pg

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
)

// SessionRepository reads Better Auth's session table. It is read-only:
// Better Auth deletes expired rows; the sidecar only judges expiresAt.
type SessionRepository struct {
	db *DB
}

// NewSessionRepository returns a SessionRepository reading through db.
func NewSessionRepository(db *DB) *SessionRepository {
	return &SessionRepository{db: db}
}

// SessionByToken returns the session whose token is token (Found false when
// there is none, or when the database has no session table). The token is
// a query parameter only; it is never logged. Errors are *Error, wrapping
// roles.ErrUnavailable (and, on a hot standby, possibly ErrReplicaLag).
func (r *SessionRepository) SessionByToken(ctx context.Context, token string) (authn.Session, error) {
	st, err := r.db.ready(ctx, "session")
	if err != nil {
		return authn.Session{}, err
	}
	return r.one(ctx, st.q.sessionByToken, token)
}

// SessionByID returns the session whose id is id, like SessionByToken.
func (r *SessionRepository) SessionByID(ctx context.Context, id string) (authn.Session, error) {
	st, err := r.db.ready(ctx, "session")
	if err != nil {
		return authn.Session{}, err
	}
	return r.one(ctx, st.q.sessionByID, id)
}

func (r *SessionRepository) one(ctx context.Context, sql, arg string) (authn.Session, error) {
	if sql == "" {
		return authn.Session{}, nil // no session table: no such session
	}
	if err := r.db.fenced(ctx, "session"); err != nil {
		return authn.Session{}, err
	}
	var (
		s       authn.Session
		expires pgtype.Timestamptz
	)
	err := r.db.pool.QueryRow(ctx, sql, arg).Scan(&s.ID, &s.UserID, &expires,
		&s.ActiveOrganizationID, &s.ActiveTeamID, &s.ImpersonatedBy)
	if errors.Is(err, pgx.ErrNoRows) {
		return authn.Session{}, nil
	}
	if err != nil {
		return authn.Session{}, r.db.fail(ctx, "session", err)
	}
	s.Found = true
	switch {
	case !expires.Valid || expires.InfinityModifier == pgtype.NegativeInfinity:
		// No expiry recorded: Better Auth's `expiresAt < now` holds for
		// null (0 < now), so the session is over.
		s.ExpiresAt = time.Unix(0, 0).UTC()
	case expires.InfinityModifier == pgtype.Infinity:
		s.ExpiresAt = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
	default:
		s.ExpiresAt = expires.Time
	}
	return s, nil
}
