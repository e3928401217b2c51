package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
)

// The data set: Better Auth rows as its sign-up and organization plugin
// would write them. Every user belongs to orgsPerUser organizations, so
// users*orgsPerUser distinct (user, organization) memberships exist for the
// L1 memory step.
const (
	numUsers    = 10_000
	numOrgs     = 100
	orgsPerUser = 10
	benchDB     = "authz_bench"
)

type user struct {
	ID, Name, Email string
	CreatedAt       time.Time
	Cookie          string // a Better Auth session cookie, sent as clients do
}

type dataset struct {
	Users []user
	Orgs  []string // organization ids
}

// orgOf is the organization index of user u's k-th membership
// (0 <= k < orgsPerUser); distinct for distinct k.
func orgOf(u, k int) int { return (u + (numOrgs/orgsPerUser)*k) % numOrgs }

// roleOf is the members.role of user u in its k-th organization: all roles
// of policies.yaml, some comma-joined as Better Auth stores several. Each
// grants leave:read, so every benchmark request must be allowed.
func roleOf(u, k int) string {
	switch (u*7 + k) % 10 {
	case 0:
		return "owner"
	case 1, 2:
		return "admin"
	case 3:
		return "admin,member"
	default:
		return "member"
	}
}

// newDataset makes the same ids on every run (fixed seed), shaped like
// Better Auth's: 32 alphanumeric characters.
func newDataset() *dataset {
	rng := rand.New(rand.NewPCG(20260101, 42))
	d := &dataset{Users: make([]user, numUsers), Orgs: make([]string, numOrgs)}
	base := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	for i := range d.Users {
		d.Users[i] = user{
			ID:        randomID(rng, 32),
			Name:      fmt.Sprintf("Bench User %05d", i),
			Email:     fmt.Sprintf("user%05d@bench.example", i),
			CreatedAt: base.Add(time.Duration(i) * time.Minute),
			Cookie: "better-auth.session_token=" + randomID(rng, 32) + "." +
				url.QueryEscape(randomID(rng, 43)+"="),
		}
	}
	for i := range d.Orgs {
		d.Orgs[i] = randomID(rng, 32)
	}
	return d
}

const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func randomID(rng *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alnum[rng.IntN(len(alnum))]
	}
	return string(b)
}

// seed drops and recreates the bench database with Better Auth's schema,
// fills it with d and returns its URL and the server's version.
func seed(ctx context.Context, adminURL, schemaPath string, d *dataset) (dbURL, version string, err error) {
	schema, err := os.ReadFile(schemaPath)
	if err != nil {
		return "", "", fmt.Errorf("read schema: %w", err)
	}
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", "", fmt.Errorf("connect %s: %w", redact(adminURL), err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	if err := admin.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
		return "", "", fmt.Errorf("server version: %w", err)
	}
	for _, stmt := range []string{
		"DROP DATABASE IF EXISTS " + benchDB + " WITH (FORCE)",
		"CREATE DATABASE " + benchDB,
	} {
		if _, err := admin.Exec(ctx, stmt); err != nil {
			return "", "", fmt.Errorf("%s: %w", stmt, err)
		}
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", "", fmt.Errorf("database url: %w", err)
	}
	u.Path = "/" + benchDB
	dbURL = u.String()

	// The dump sets search_path to '' for its session: apply it on a
	// connection of its own.
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return "", "", fmt.Errorf("connect %s: %w", benchDB, err)
	}
	_, err = conn.Exec(ctx, string(schema), pgx.QueryExecModeSimpleProtocol)
	conn.Close(context.WithoutCancel(ctx))
	if err != nil {
		return "", "", fmt.Errorf("apply schema: %w", err)
	}

	conn, err = pgx.Connect(ctx, dbURL)
	if err != nil {
		return "", "", fmt.Errorf("connect %s: %w", benchDB, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := copyRows(ctx, conn, d); err != nil {
		return "", "", err
	}
	if _, err := conn.Exec(ctx, "ANALYZE"); err != nil {
		return "", "", fmt.Errorf("analyze: %w", err)
	}
	return dbURL, version, nil
}

func copyRows(ctx context.Context, conn *pgx.Conn, d *dataset) error {
	users := make([][]any, len(d.Users))
	for i, u := range d.Users {
		users[i] = []any{u.ID, u.Name, u.Email, true, nil, u.CreatedAt, u.CreatedAt, "user", false, nil, nil}
	}
	orgCreated := time.Date(2025, 12, 1, 9, 0, 0, 0, time.UTC)
	orgs := make([][]any, len(d.Orgs))
	for i, id := range d.Orgs {
		slug := fmt.Sprintf("bench-org-%03d", i)
		orgs[i] = []any{id, slug, slug, nil, orgCreated, nil}
	}
	rng := rand.New(rand.NewPCG(7, 7))
	members := make([][]any, 0, len(d.Users)*orgsPerUser)
	for u := range d.Users {
		for k := range orgsPerUser {
			members = append(members, []any{
				randomID(rng, 32), d.Orgs[orgOf(u, k)], d.Users[u].ID, roleOf(u, k), d.Users[u].CreatedAt,
			})
		}
	}
	for _, t := range []struct {
		table string
		cols  []string
		rows  [][]any
	}{
		{"users", []string{"id", "name", "email", "emailVerified", "image", "createdAt", "updatedAt", "role", "banned", "banReason", "banExpires"}, users},
		{"organizations", []string{"id", "name", "slug", "logo", "createdAt", "metadata"}, orgs},
		{"members", []string{"id", "organizationId", "userId", "role", "createdAt"}, members},
	} {
		n, err := conn.CopyFrom(ctx, pgx.Identifier{t.table}, t.cols, pgx.CopyFromRows(t.rows))
		if err != nil {
			return fmt.Errorf("copy %s: %w", t.table, err)
		}
		if int(n) != len(t.rows) {
			return fmt.Errorf("copy %s: %d rows written, want %d", t.table, n, len(t.rows))
		}
	}
	return nil
}

// redact hides a password in a URL for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}
