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
	q querier
}

// NewSessionRepository returns a SessionRepository reading through db.
func NewSessionRepository(db *DB) *SessionRepository {
	return &SessionRepository{q: db.pool}
}

// sessionColumns is what a session answer needs; the user join makes a
// session whose user row is gone not found, as Better Auth's findSession
// does. Index: the token's unique index, or the primary key.
const sessionColumns = `SELECT s.id, s."userId", s."expiresAt",
	coalesce(s."activeOrganizationId", ''), coalesce(s."activeTeamId", ''), coalesce(s."impersonatedBy", '')
FROM sessions s JOIN users u ON u.id = s."userId"`

const (
	sessionByTokenSQL = sessionColumns + ` WHERE s.token = $1`
	sessionByIDSQL    = sessionColumns + ` WHERE s.id = $1`
)

// SessionByToken returns the session whose token is token (Found false when
// there is none). The token is a query parameter only; it is never logged.
// Errors wrap roles.ErrUnavailable.
func (r *SessionRepository) SessionByToken(ctx context.Context, token string) (authn.Session, error) {
	return r.one(ctx, sessionByTokenSQL, token)
}

// SessionByID returns the session whose id is id, like SessionByToken.
func (r *SessionRepository) SessionByID(ctx context.Context, id string) (authn.Session, error) {
	return r.one(ctx, sessionByIDSQL, id)
}

func (r *SessionRepository) one(ctx context.Context, sql, arg string) (authn.Session, error) {
	var (
		s       authn.Session
		expires pgtype.Timestamptz
	)
	err := r.q.QueryRow(ctx, sql, arg).Scan(&s.ID, &s.UserID, &expires,
		&s.ActiveOrganizationID, &s.ActiveTeamID, &s.ImpersonatedBy)
	if errors.Is(err, pgx.ErrNoRows) {
		return authn.Session{}, nil
	}
	if err != nil {
		return authn.Session{}, unavailable("session", err)
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
