package invalidate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
)

// triggers is sql/invalidation-triggers.sql.
func triggers(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "sql", "invalidation-triggers.sql"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// listenDB LISTENs on authz_invalidate and returns the next payload,
// parsed, on each call.
func listenDB(t *testing.T, dbURL string) func() Message {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "LISTEN authz_invalidate"); err != nil {
		t.Fatal(err)
	}
	return func() Message {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		n, err := conn.WaitForNotification(wctx)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		m, err := Parse([]byte(n.Payload))
		if err != nil {
			t.Fatalf("payload %q: %v", n.Payload, err)
		}
		if m.V != 1 || m.ID == "" || m.Src != "pg" || m.At == 0 {
			t.Errorf("envelope %q", n.Payload)
		}
		return m
	}
}

// The session, API key and team membership triggers send messages this
// package parses into the right subjects, for the changes that matter and
// only for those.
func TestSessionKeyAndTeamTriggers(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	s := pgtest.NewSeeder(t, dbURL)
	s.Exec(t, triggers(t))
	s.Exec(t, triggers(t)) // idempotent
	s.User(t, "u1", "one")
	s.User(t, "u2", "two")
	s.User(t, "u3", "three")
	s.Org(t, "o1", "acme")
	s.Org(t, "o2", "globex")
	s.Exec(t, `INSERT INTO teams (id, name, "memberCount", "organizationId", "createdAt") VALUES
		('t1', 'One', 0, 'o1', now()), ('t2', 'Two', 0, 'o2', now()), ('t3', 'Three', 0, 'o1', now())`)
	next := listenDB(t, dbURL)

	// sentinel is a change that always notifies: expecting it next proves
	// the statements before it sent nothing more.
	sentinel := func() { s.Exec(t, `UPDATE users SET "banExpires" = now() + interval '1 day' WHERE id = 'u2'`) }
	isSentinel := func(m Message) bool { return m.Kind == KindUser && m.User == "u2" }

	type msg struct {
		kind     Kind
		subjects string // space-separated, in order
		fields   string // user org session apikey
	}
	session := func(id, user string) msg { return msg{KindSession, "s:" + id, user + " - " + id + " -"} }
	apikey := func(id string) msg { return msg{KindAPIKey, "k:" + id, "- - - " + id} }
	member := func(user, org string) msg { return msg{KindMember, "u:" + user, user + " " + org + " - -"} }
	user := func(id string) msg { return msg{KindUser, "u:" + id, id + " - - -"} }
	tests := []struct {
		name string
		sql  string
		want []msg // in any order; nil = nothing
	}{
		{"session created", `INSERT INTO sessions (id, "expiresAt", token, "createdAt", "updatedAt", "userId") VALUES
			('s1', now() + interval '7 days', 'tok1', now(), now(), 'u1'), ('s2', now() + interval '7 days', 'tok2', now(), now(), 'u1'),
			('s3', now() + interval '7 days', 'tok3', now(), now(), 'u3')`, nil},
		{"session refreshed", `UPDATE sessions SET "expiresAt" = now() + interval '8 days', "updatedAt" = now() WHERE id = 's1'`, nil},
		{"session's client seen again", `UPDATE sessions SET "ipAddress" = '203.0.113.7', "userAgent" = 'curl' WHERE id = 's1'`, nil},
		{"active organization set", `UPDATE sessions SET "activeOrganizationId" = 'o1', "updatedAt" = now() WHERE id = 's1'`, []msg{session("s1", "u1")}},
		{"active team set", `UPDATE sessions SET "activeTeamId" = 't1' WHERE id = 's1'`, []msg{session("s1", "u1")}},
		{"active team set again", `UPDATE sessions SET "activeTeamId" = 't1' WHERE id = 's1'`, nil},
		{"session ended early (preserveSessionInDatabase)", `UPDATE sessions SET "expiresAt" = now() WHERE id = 's2'`, []msg{session("s2", "u1")}},
		{"session deleted (sign-out)", `DELETE FROM sessions WHERE id = 's2'`, []msg{session("s2", "u1")}},
		{"API key created", `INSERT INTO apikeys (id, "configId", "referenceId", key, enabled, remaining, "requestCount", "createdAt", "updatedAt")
			VALUES ('k1', 'default', 'u1', 'hash1', true, 5, 0, now(), now()), ('k2', 'default', 'u1', 'hash2', true, NULL, 0, now(), now())`, nil},
		{"API key used (Better Auth's counters)", `UPDATE apikeys SET "requestCount" = "requestCount" + 1, "lastRequest" = now(), remaining = 4, "updatedAt" = now() WHERE id = 'k1'`, nil},
		{"API key refilled", `UPDATE apikeys SET remaining = 10, "lastRefillAt" = now() WHERE id = 'k1'`, nil},
		{"API key's usage limit removed", `UPDATE apikeys SET remaining = NULL WHERE id = 'k1'`, []msg{apikey("k1")}},
		{"API key disabled", `UPDATE apikeys SET enabled = false, "updatedAt" = now() WHERE id = 'k1'`, []msg{apikey("k1")}},
		{"API key's permissions changed", `UPDATE apikeys SET permissions = '{"leave":["read"]}' WHERE id = 'k2'`, []msg{apikey("k2")}},
		{"API key expiry set", `UPDATE apikeys SET "expiresAt" = now() + interval '1 day' WHERE id = 'k2'`, []msg{apikey("k2")}},
		{"API key deleted", `DELETE FROM apikeys WHERE id = 'k1'`, []msg{apikey("k1")}},
		{"team member added", `INSERT INTO "teamMembers" (id, "teamId", "userId", "createdAt") VALUES ('tm1', 't1', 'u1', now())`,
			[]msg{member("u1", "o1")}},
		{"team member moved to another organization's team", `UPDATE "teamMembers" SET "teamId" = 't2' WHERE id = 'tm1'`,
			[]msg{member("u1", "o1"), member("u1", "o2")}},
		{"team member's key rewritten", `UPDATE "teamMembers" SET "membershipKey" = 'x' WHERE id = 'tm1'`, nil},
		{"team member removed", `DELETE FROM "teamMembers" WHERE id = 'tm1'`, []msg{member("u1", "o2")}},
		{"team deleted, cascading to its members", `INSERT INTO "teamMembers" (id, "teamId", "userId", "createdAt") VALUES ('tm2', 't3', 'u3', now()); DELETE FROM teams WHERE id = 't3'`,
			[]msg{member("u3", "o1"), user("u3")}},
		{"rolled back", `BEGIN; DELETE FROM sessions; DELETE FROM apikeys; ROLLBACK`, nil},
		{"user deleted, cascading to their sessions", `DELETE FROM users WHERE id = 'u1'`,
			[]msg{user("u1"), session("s1", "u1")}},
	}
	for _, tt := range tests {
		s.Exec(t, tt.sql)
		sentinel()
		var got []string
		for m := next(); !isSentinel(m); m = next() {
			subjects, all := m.Subjects()
			if all {
				t.Errorf("%s: %+v invalidates everything", tt.name, m)
			}
			got = append(got, fmt.Sprintf("%s %v %s %s %s %s", m.Kind, subjects, orDash(m.User), orDash(m.Org), orDash(m.Session), orDash(m.APIKey)))
		}
		var want []string
		for _, w := range tt.want {
			want = append(want, fmt.Sprintf("%s [%s] %s", w.kind, w.subjects, w.fields))
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s:\n got  %s\n want %s", tt.name, strings.Join(got, "; "), strings.Join(want, "; "))
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Without the optional tables (sessions in secondary storage, no api-key
// plugin, no teams) the file still applies, and the other triggers work.
func TestTriggersWithoutOptionalTables(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	s := pgtest.NewSeeder(t, dbURL)
	s.Exec(t, `DROP TABLE sessions; DROP TABLE "teamMembers"; DROP TABLE teams`)
	s.Exec(t, triggers(t))
	s.User(t, "u1", "one")
	next := listenDB(t, dbURL)
	s.Exec(t, `UPDATE users SET banned = true WHERE id = 'u1'`)
	if m := next(); m.Kind != KindUser || m.User != "u1" {
		t.Errorf("got %+v, want a user message", m)
	}
}
