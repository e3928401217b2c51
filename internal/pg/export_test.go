package pg

import "github.com/jackc/pgx/v5/pgxpool"

// PoolOf exposes db's pool so tests can prove it refuses writes.
func PoolOf(db *DB) *pgxpool.Pool { return db.pool }

// Statements returns the queries built at db's first schema check ("" for
// those of absent parts), by name: membership, membership with team, session by token, session
// by id, api key.
func Statements(db *DB) map[string]string {
	st := db.st.Load()
	if st == nil {
		return nil
	}
	return map[string]string{
		"membership": st.q.membership, "membership with team": st.q.membershipTeam, "session by token": st.q.sessionByToken,
		"session by id": st.q.sessionByID, "api key": st.q.apiKeyByHash,
	}
}
