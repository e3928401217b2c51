package pg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// User is the part of Better Auth's users row (with the admin plugin's
// columns) that authorization cares about.
type User struct {
	ID    string
	Name  string
	Email string
	// Role is the admin plugin's global role (users.role), verbatim: "user",
	// "admin" or comma-joined; empty when NULL.
	Role string
	// Banned is false when users.banned is NULL (it has no default).
	Banned bool
	// BanExpires is zero when the ban has no end.
	BanExpires time.Time
}

// UserRepository reads users.
type UserRepository struct {
	q querier
}

// NewUserRepository returns a UserRepository reading through db.
func NewUserRepository(db *DB) *UserRepository {
	return &UserRepository{q: db.pool}
}

const userSQL = `SELECT id, name, email, coalesce(role, ''), coalesce(banned, false), "banExpires"
FROM users WHERE id = $1`

// User returns the user with id. Errors: ErrNotFound when there is none;
// otherwise wrapping roles.ErrUnavailable.
func (r *UserRepository) User(ctx context.Context, id string) (User, error) {
	var (
		u          User
		banExpires pgtype.Timestamptz
	)
	err := r.q.QueryRow(ctx, userSQL, id).Scan(&u.ID, &u.Name, &u.Email, &u.Role, &u.Banned, &banExpires)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, fmt.Errorf("pg: user %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return User{}, unavailable("user", err)
	}
	u.BanExpires = banEnd(banExpires)
	return u, nil
}

// banEnd maps users."banExpires" to the domain's convention, where zero
// means forever. NULL and 'infinity' never end; '-infinity' ended long ago.
func banEnd(ts pgtype.Timestamptz) time.Time {
	switch {
	case !ts.Valid || ts.InfinityModifier == pgtype.Infinity:
		return time.Time{}
	case ts.InfinityModifier == pgtype.NegativeInfinity:
		return time.Unix(0, 0).UTC()
	default:
		return ts.Time
	}
}
