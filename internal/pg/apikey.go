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
	db *DB
}

// NewAPIKeyRepository returns an APIKeyRepository reading through db.
func NewAPIKeyRepository(db *DB) *APIKeyRepository {
	return &APIKeyRepository{db: db}
}

// APIKeyByHash returns the key whose stored hash is hash (Found false when
// there is none, or when the database has no apikey table). Errors are
// *Error, wrapping roles.ErrUnavailable (and, on a hot standby, possibly
// ErrReplicaLag).
func (r *APIKeyRepository) APIKeyByHash(ctx context.Context, hash string) (authn.APIKey, error) {
	st, err := r.db.ready(ctx, "api key")
	if err != nil {
		return authn.APIKey{}, err
	}
	if st.q.apiKeyByHash == "" {
		return authn.APIKey{}, nil // no apikey table: no such key
	}
	if err := r.db.fenced(ctx, "api key"); err != nil {
		return authn.APIKey{}, err
	}
	var (
		k       authn.APIKey
		expires pgtype.Timestamptz
		perms   *string
	)
	err = r.db.pool.QueryRow(ctx, st.q.apiKeyByHash, hash).Scan(&k.ID, &k.ConfigID, &k.ReferenceID,
		&k.Enabled, &expires, &k.Counted, &perms)
	if errors.Is(err, pgx.ErrNoRows) {
		return authn.APIKey{}, nil
	}
	if err != nil {
		return authn.APIKey{}, r.db.fail(ctx, "api key", err)
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
