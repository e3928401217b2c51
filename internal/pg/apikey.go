package pg

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// APIKeyRepository reads the api-key plugin's table. It never writes: the
// usage counters Better Auth updates on every verification stay untouched
// (see authn.APIKey.Counted).
type APIKeyRepository struct {
	q querier
}

// NewAPIKeyRepository returns an APIKeyRepository reading through db.
func NewAPIKeyRepository(db *DB) *APIKeyRepository {
	return &APIKeyRepository{q: db.pool}
}

// apiKeyByHashSQL finds a key by its stored hash. The column is indexed but
// not unique; Better Auth's findOne takes one row, and so does this.
//
// A key is counted (Better Auth writes usage on every verification that
// needs it) when it has a remaining count, or a rate limit that is on (the
// row's rateLimitEnabled, NULL meaning the default, on) with both a window
// and a maximum (without them Better Auth skips the limit).
const apiKeyByHashSQL = `SELECT k.id, coalesce(k."configId", 'default'), k."referenceId",
	k.enabled IS DISTINCT FROM false,
	k."expiresAt",
	k.remaining IS NOT NULL OR (k."rateLimitEnabled" IS DISTINCT FROM false AND k."rateLimitTimeWindow" IS NOT NULL AND k."rateLimitMax" IS NOT NULL),
	k.permissions
FROM apikeys k WHERE k.key = $1 LIMIT 1`

// APIKeyByHash returns the key whose stored hash is hash (Found false when
// there is none). Errors wrap roles.ErrUnavailable.
func (r *APIKeyRepository) APIKeyByHash(ctx context.Context, hash string) (authn.APIKey, error) {
	var (
		k       authn.APIKey
		expires pgtype.Timestamptz
		perms   *string
	)
	err := r.q.QueryRow(ctx, apiKeyByHashSQL, hash).Scan(&k.ID, &k.ConfigID, &k.ReferenceID,
		&k.Enabled, &expires, &k.Counted, &perms)
	if errors.Is(err, pgx.ErrNoRows) {
		return authn.APIKey{}, nil
	}
	if err != nil {
		return authn.APIKey{}, unavailable("api key", err)
	}
	k.Found = true
	switch {
	case expires.Valid && expires.InfinityModifier == pgtype.NegativeInfinity:
		k.ExpiresAt = time.Unix(0, 0).UTC()
	case expires.Valid && expires.InfinityModifier == pgtype.Finite:
		k.ExpiresAt = expires.Time
	}
	if perms != nil {
		// Better Auth reads the value with JSON.parse; one it cannot read
		// grants nothing here.
		if st, err := roles.ParseStatements(*perms); err == nil {
			k.Permissions = st.Perms()
		}
	}
	return k, nil
}
