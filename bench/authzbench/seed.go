package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
)

// The data set: Better Auth rows as its sign-up and organization plugin
// would write them. Every user belongs to orgsPerUser organizations, so
// users*orgsPerUser distinct (user, organization) memberships exist for the
// L1 memory step.
const (
	numUsers    = 10_000
	numOrgs     = 100
	orgsPerUser = 10
	// benchDB prefixes the name of each run's database
	// (authz_bench_<pid>_<random>, pgtest.CreateScratch), dropped at the
	// end, so two runs on one server do not collide.
	benchDB = "authz_bench"
	// sessionLifetime is Better Auth's default session expiresIn (7 days).
	sessionLifetime = 7 * 24 * time.Hour
	// apiKeyPrefix starts every bench API key (the plugin's prefix option).
	apiKeyPrefix = "bench_"
)

type user struct {
	ID, Name, Email string
	CreatedAt       time.Time
	// Cookie is a session cookie whose signature does not verify (random,
	// as one signed with another secret looks), sent with the JWT, bearer
	// session and API key requests as a browser still holding a stale one
	// would: the sidecar checks it and ignores it.
	Cookie string
	// SessionToken is the user's sessions.token (Better Auth's
	// generateId(32)); signed with the fixture secret the sidecars get, it
	// makes the session cookie and the bearer session token.
	SessionToken string
	// APIKey is the user's key of the api-key plugin (configuration
	// "default", referenceId = the user); the table holds its hash.
	APIKey string
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
	// Credentials from a generator of their own, so the ids above stay
	// what they were before they existed.
	cred := rand.New(rand.NewPCG(20260102, 43))
	for i := range d.Users {
		d.Users[i].SessionToken = randomID(cred, 32)
		d.Users[i].APIKey = apiKeyPrefix + randomLetters(cred, 64)
	}
	return d
}

// signSession is the signed value of a session token as Better Auth sets
// it in the cookie and the bearer plugin's set-auth-token:
// "<token>.<standard base64, padded, of HMAC-SHA256(secret, token)>".
// Written here from Better Auth's description rather than taken from the
// sidecar, so the benchmark checks the sidecar against Better Auth's format.
func signSession(secret, token string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(token))
	return token + "." + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// hashAPIKey is how @better-auth/api-key stores a key: base64url without
// padding of SHA-256 of the key (again from the plugin's description).
func hashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// randomLetters is n of a-z and A-Z, the alphabet of the api-key plugin's
// keys.
func randomLetters(rng *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alnum[rng.IntN(52)]
	}
	return string(b)
}

func randomID(rng *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alnum[rng.IntN(len(alnum))]
	}
	return string(b)
}

// seed creates a database of its own with Better Auth's schema
// (pgtest's, as the tests have it) on the server at adminURL, fills it with
// d and returns it and the server's version. The caller drops it.
func seed(ctx context.Context, adminURL string, d *dataset) (*pgtest.Database, string, error) {
	db, err := pgtest.CreateScratch(ctx, adminURL, benchDB, &pgtest.Plural)
	if err != nil {
		return nil, "", err
	}
	conn, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		db.Drop(context.WithoutCancel(ctx))
		return nil, "", fmt.Errorf("connect %s: %w", db.Name, err)
	}
	var version string
	err = conn.QueryRow(ctx, "SHOW server_version").Scan(&version)
	conn.Close(context.WithoutCancel(ctx))
	if err == nil {
		err = copyRows(ctx, db, d)
	}
	if err != nil {
		db.Drop(context.WithoutCancel(ctx))
		return nil, "", err
	}
	return db, version, nil
}

// copyRows writes d as Better Auth's sign-up, organization, sign-in and
// api-key plugin would have (pgtest's Copy also ANALYZEs each table).
func copyRows(ctx context.Context, db *pgtest.Database, d *dataset) error {
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
	// One live session and one API key per user, as sign-in and the
	// api-key plugin's create write them (sessions last 7 days from now;
	// the key grants leave:read, with rate limiting off and no usage
	// limit, so the sidecar may answer for it without counting).
	now := time.Now().UTC().Truncate(time.Millisecond)
	sessions := make([][]any, len(d.Users))
	keys := make([][]any, len(d.Users))
	for u, usr := range d.Users {
		sessions[u] = []any{randomID(rng, 32), now.Add(sessionLifetime), usr.SessionToken, now, now,
			"203.0.113.7", userAgent, usr.ID, d.Orgs[orgOf(u, 0)], nil, nil}
		keys[u] = []any{randomID(rng, 32), "default", "bench", usr.APIKey[:6], usr.ID, apiKeyPrefix, hashAPIKey(usr.APIKey),
			nil, nil, nil, true, false, 86_400_000, 10, 0, nil, nil, nil, now, now, `{"leave":["read"]}`, nil}
	}
	for _, t := range []struct {
		model string
		cols  []string
		rows  [][]any
	}{
		{"user", []string{"id", "name", "email", "emailVerified", "image", "createdAt", "updatedAt", "role", "banned", "banReason", "banExpires"}, users},
		{"organization", []string{"id", "name", "slug", "logo", "createdAt", "metadata"}, orgs},
		{"member", []string{"id", "organizationId", "userId", "role", "createdAt"}, members},
		{"session", []string{"id", "expiresAt", "token", "createdAt", "updatedAt", "ipAddress", "userAgent", "userId",
			"activeOrganizationId", "activeTeamId", "impersonatedBy"}, sessions},
		{"apikey", []string{"id", "configId", "name", "start", "referenceId", "prefix", "key", "refillInterval",
			"refillAmount", "lastRefillAt", "enabled", "rateLimitEnabled", "rateLimitTimeWindow", "rateLimitMax",
			"requestCount", "remaining", "lastRequest", "expiresAt", "createdAt", "updatedAt", "permissions", "metadata"}, keys},
	} {
		if err := db.Copy(ctx, t.model, t.cols, t.rows); err != nil {
			return err
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
