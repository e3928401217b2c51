package pg_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/authz-sidecar/authz-sidecar/internal/pg"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
)

// TestMembershipQueryUsesIndexes proves, on enough rows for the planner to
// care, that the membership query reaches members, organizations and users
// through Better Auth's own indexes, both as a custom plan (parameters
// known) and as the generic plan a prepared statement may switch to after
// five executions.
func TestMembershipQueryUsesIndexes(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	seed := pgtest.NewSeeder(t, dbURL)
	seedBulk(t, seed, 2000, 5000)
	// One custom role per organization, and user_7 holding org_7's.
	seed.Exec(t, `INSERT INTO "organizationRoles" (id, "organizationId", role, permission)
		SELECT 'role_' || i, 'org_' || i, 'billing', '{"project":["read"]}' FROM generate_series(0, 1999) i`)
	seed.Exec(t, `UPDATE members SET role = 'member,billing' WHERE "userId" = 'user_7'`)
	seed.Exec(t, "ANALYZE")
	ctx := context.Background()
	db := openDB(t, dbURL, pg.Config{})
	if _, err := db.Check(ctx); err != nil {
		t.Fatal(err)
	}

	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "PREPARE membership(text, text, text) AS "+pg.Statements(db)["membership"]); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		planMode string
		org      string
	}{
		{"custom plan, by id", "force_custom_plan", "org_7"},
		{"custom plan, by slug", "force_custom_plan", "slug-7"},
		{"generic plan", "force_generic_plan", "org_7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := conn.Exec(ctx, "SET plan_cache_mode = "+tt.planMode); err != nil {
				t.Fatal(err)
			}
			// EXECUTE takes no bind parameters: literals it is.
			plan := explain(t, conn, "EXPLAIN EXECUTE membership("+literal("user_7")+", "+literal(tt.org)+", "+literal("")+")")
			t.Logf("plan:\n%s", plan)
			for _, table := range []string{"members", "organizations", "users", `"organizationRoles"`} {
				if strings.Contains(plan, "Seq Scan on "+table) {
					t.Errorf("sequential scan on %s", table)
				}
			}
			for _, index := range []string{
				`"members_userId_idx"`,
				"organizations_pkey",
				"organizations_slug_key",
				"users_pkey",
			} {
				if !strings.Contains(plan, " "+index+" ") && !strings.Contains(plan, " "+index+"\n") {
					t.Errorf("plan does not use %s", index)
				}
			}
		})
	}
}

func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func explain(t *testing.T, conn *pgx.Conn, sql string) string {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return strings.Join(lines, "\n")
}

// TestMembershipQueryReadsTheUsersRows proves, on large organizations (a
// thousand members each, every user in ten), that the membership query
// reads the user's member rows by the userId index alone: ANDed with the
// organizationId index it read every member of the organization for each
// lookup, which cost twice the PostgreSQL CPU (queries.go).
func TestMembershipQueryReadsTheUsersRows(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	seed := pgtest.NewSeeder(t, dbURL)
	seedBulk(t, seed, 2000, 4000)
	seed.Exec(t, `INSERT INTO members (id, "organizationId", "userId", role, "createdAt")
		SELECT 'big_' || u || '_' || k, 'org_' || ((u + k) % 40), 'user_' || u, 'member', now()
		FROM generate_series(0, 3999) u, generate_series(1, 9) k`)
	seed.Exec(t, "ANALYZE")
	ctx := context.Background()
	db := openDB(t, dbURL, pg.Config{})
	if _, err := db.Check(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "PREPARE membership(text, text, text) AS "+pg.Statements(db)["membership"]); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		if _, err := conn.Exec(ctx, "SET plan_cache_mode = "+mode); err != nil {
			t.Fatal(err)
		}
		plan := explain(t, conn, "EXPLAIN EXECUTE membership("+literal("user_7")+", "+literal("org_8")+", "+literal("")+")")
		if strings.Contains(plan, `"members_organizationId_idx"`) || !strings.Contains(plan, `"members_userId_idx"`) {
			t.Errorf("%s: the plan does not read members by the userId index alone:\n%s", mode, plan)
		}
	}
}

// TestMembershipTeamTablesOnlyWhenAsked: the statement for a request
// without a team names no team table (each table named costs a lock and an
// open per execution); the one for a request with a team does.
func TestMembershipTeamTablesOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	db := openDB(t, pgtest.NewDatabase(t), pg.Config{})
	f, err := db.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !f.Teams {
		t.Fatalf("Features = %+v: the test schema has teams", f)
	}
	st := pg.Statements(db)
	for _, table := range []string{`"teams"`, `"teamMembers"`} {
		if strings.Contains(st["membership"], table) {
			t.Errorf("membership statement names %s:\n%s", table, st["membership"])
		}
		if !strings.Contains(st["membership with team"], table) {
			t.Errorf("membership with team statement does not name %s:\n%s", table, st["membership with team"])
		}
	}
}
