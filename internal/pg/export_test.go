package pg

import "github.com/jackc/pgx/v5/pgxpool"

// Test-only access to internals for the external pg_test package.
var (
	MembershipSQL = membershipSQL
	RoleCutset    = roleCutset
)

// PoolOf exposes db's pool so tests can prove it refuses writes.
func PoolOf(db *DB) *pgxpool.Pool { return db.pool }
