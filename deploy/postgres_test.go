package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/authz-sidecar/authz-sidecar/internal/pg"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// SQLSTATEs the reader role must run into when it tries to write.
const (
	insufficientPrivilege = "42501"
	readOnlyTransaction   = "25006"
)

// TestPostgresInitRole runs postgres-init.sql the way the compose stack
// does: on an empty database, before Better Auth's migrator creates the
// tables. The role it creates must then be able to do what the sidecar
// does (read a membership through internal/pg) and nothing else.
func TestPostgresInitRole(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	dbURL := pgtest.NewEmptyDatabase(t) // skips, or fails on CI, without Postgres
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	dbName, admin := strings.TrimPrefix(u.Path, "/"), u.User.Username()

	// A role name of its own: roles are server-wide and tests run in parallel.
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	role := readerRole + "_" + hex.EncodeToString(suffix)
	script := string(readFile(t, initSQL))
	for _, r := range []struct{ old, new string }{
		{readerRole, role}, // the role and its password
		{"DATABASE betterauth", "DATABASE " + pgx.Identifier{dbName}.Sanitize()},
		{"FOR ROLE postgres", "FOR ROLE " + pgx.Identifier{admin}.Sanitize()},
	} {
		if !strings.Contains(script, r.old) {
			t.Fatalf("%s no longer contains %q; update this test", initSQL, r.old)
		}
		script = strings.ReplaceAll(script, r.old, r.new)
	}

	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, script, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("%s: %v", initSQL, err)
	}
	t.Cleanup(func() {
		// Revoke what the role holds (here and on the database), then drop it.
		ctx := context.Background()
		if _, err := conn.Exec(ctx, "DROP OWNED BY "+pgx.Identifier{role}.Sanitize()); err != nil {
			t.Errorf("drop owned by %s: %v", role, err)
		}
		if _, err := conn.Exec(ctx, "DROP ROLE "+pgx.Identifier{role}.Sanitize()); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})

	// Better Auth's migrator runs later, as the database owner.
	schema := readFile(t, filepath.Join(repoRoot, "internal", "pgtest", "schema.sql"))
	if _, err := conn.Exec(ctx, string(schema), pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("schema: %v", err)
	}
	seed := pgtest.NewSeeder(t, dbURL)
	seed.User(t, "u1", "alice")
	seed.Org(t, "o1", "acme")
	seed.Member(t, "o1", "u1", "admin,member")

	reader := *u
	reader.User = url.UserPassword(role, role) // the script's password is the role name
	readerURL := reader.String()

	// What the sidecar does works.
	db, err := pg.Open(ctx, readerURL, pg.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	m, err := pg.NewMemberRepository(db).Membership(ctx, roles.Subject{UserID: "u1", OrgRef: "acme"})
	if err != nil {
		t.Fatalf("membership as %s: %v", role, err)
	}
	if !m.UserFound || m.OrgID != "o1" || !slices.Equal(m.Roles, []string{"admin", "member"}) {
		t.Errorf("membership as %s = %+v", role, m)
	}

	// Nothing else does, even with read-only mode switched off.
	rc, err := pgx.Connect(ctx, readerURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close(context.Background()) })
	writes := []struct {
		name string
		// off switches default_transaction_read_only off first, as a
		// compromised or buggy session could: privileges must still hold.
		off       bool
		sql, code string
	}{
		{"update, read-only session", false, `UPDATE members SET role = 'owner'`, readOnlyTransaction},
		{"update", true, `UPDATE members SET role = 'owner'`, insufficientPrivilege},
		{"insert", true, `INSERT INTO users (id, name, email, "emailVerified") VALUES ('x', 'x', 'x@x', false)`, insufficientPrivilege},
		{"delete", true, `DELETE FROM members`, insufficientPrivilege},
		{"create table", true, `CREATE TABLE public.evil (x int)`, insufficientPrivilege},
	}
	for _, w := range writes {
		if w.off {
			if _, err := rc.Exec(ctx, "SET default_transaction_read_only = off"); err != nil {
				t.Fatal(err)
			}
		}
		_, err := rc.Exec(ctx, w.sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != w.code {
			t.Errorf("%s as %s: got %v, want SQLSTATE %s", w.name, role, err, w.code)
		}
		if _, err := rc.Exec(ctx, "RESET default_transaction_read_only"); err != nil {
			t.Fatal(err)
		}
	}
}
