package pg

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Organization is the identity of a Better Auth organization.
type Organization struct {
	ID   string
	Slug string
	Name string
}

// OrganizationRepository reads organizations.
type OrganizationRepository struct {
	q querier
}

// NewOrganizationRepository returns an OrganizationRepository reading
// through db.
func NewOrganizationRepository(db *DB) *OrganizationRepository {
	return &OrganizationRepository{q: db.pool}
}

// organizationSQL finds an organization by id or slug. Ids and slugs share
// no namespace, so one organization's slug may equal another's id; the id
// match wins because an id is what the caller most likely holds (JWT claims,
// sessions."activeOrganizationId") and it cannot be renamed. Both columns are
// unique-indexed, so this reads at most two index entries (BitmapOr).
const organizationSQL = `SELECT id, slug, name FROM organizations
WHERE id = $1 OR slug = $1
ORDER BY id = $1 DESC
LIMIT 1`

// Organization returns the organization whose id, or else slug, is
// idOrSlug. Errors: ErrNotFound when there is none; otherwise wrapping
// roles.ErrUnavailable.
func (r *OrganizationRepository) Organization(ctx context.Context, idOrSlug string) (Organization, error) {
	var o Organization
	err := r.q.QueryRow(ctx, organizationSQL, idOrSlug).Scan(&o.ID, &o.Slug, &o.Name)
	if errors.Is(err, pgx.ErrNoRows) {
		return Organization{}, fmt.Errorf("pg: organization %q: %w", idOrSlug, ErrNotFound)
	}
	if err != nil {
		return Organization{}, unavailable("organization", err)
	}
	return o, nil
}
