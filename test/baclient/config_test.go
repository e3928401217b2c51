package baclient_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
	"github.com/authz-sidecar/authz-sidecar/test/baclient"
)

// TestConfiguration checks the switches a sidecar test sees both ways:
// cookie prefix, secret rotation, JWT algorithm, signed bearer tokens only.
func TestConfiguration(t *testing.T) {
	const current, old = "current-secret-0123456789abcdefghijklmnop", "old-secret-0123456789abcdefghijklmnopqrs"
	f := newFixture(t, "singular", "COOKIE_PREFIX=myapp", "BETTER_AUTH_SECRETS=2:"+current+",1:"+old,
		"JWT_ALG=ES256", "BEARER_REQUIRE_SIGNATURE=1")
	ctx := context.Background()
	s := f.signUp("cora")
	if s.Cookie.Name != "myapp.session_token" {
		t.Errorf("cookie name %q, want myapp.session_token", s.Cookie.Name)
	}
	sign := func(secret string) string {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(s.RawToken()))
		return s.RawToken() + "." + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	}
	if s.Token != sign(current) {
		t.Errorf("token %q is not signed with the first of BETTER_AUTH_SECRETS", s.Token)
	}
	for _, tc := range []struct {
		name, token string
		valid       bool
	}{
		{"signed with the current secret", sign(current), true},
		{"signed with the old secret", sign(old), false},
		{"unsigned (BEARER_REQUIRE_SIGNATURE=1)", s.RawToken(), false},
	} {
		info, err := f.GetSession(ctx, &baclient.Session{Token: tc.token})
		if err != nil || (info != nil) != tc.valid {
			t.Errorf("%s: get-session %+v, %v; want valid %v", tc.name, info, err, tc.valid)
		}
	}

	jwt, err := f.Token(ctx, s)
	must(t, err)
	var header struct{ Alg, Kid string }
	b, _ := base64.RawURLEncoding.DecodeString(strings.Split(jwt, ".")[0])
	must(t, json.Unmarshal(b, &header))
	resp, err := http.Get(f.BaseURL + "/api/auth/jwks")
	must(t, err)
	defer resp.Body.Close()
	var jwks struct {
		Keys []struct{ Alg, Kty, Crv, Kid string }
	}
	must(t, json.NewDecoder(resp.Body).Decode(&jwks))
	if header.Alg != "ES256" || len(jwks.Keys) != 1 || jwks.Keys[0].Kty != "EC" || jwks.Keys[0].Crv != "P-256" ||
		jwks.Keys[0].Kid != header.Kid {
		t.Errorf("JWT header %+v, JWKS %+v; want ES256 on P-256", header, jwks.Keys)
	}
}

// TestOptionalPluginsOff runs the fixture without dynamic access control,
// teams and the admin plugin: their tables and columns are absent.
func TestOptionalPluginsOff(t *testing.T) {
	for _, mode := range []string{"plural", "singular"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, mode, "DYNAMIC_AC=0", "TEAMS=0", "ADMIN_PLUGIN=0")
			ctx := context.Background()
			for _, model := range []string{"organizationRole", "team", "teamMember"} {
				name := strings.Trim(f.table(model), `"`)
				if f.count(`SELECT count(*) FROM information_schema.tables WHERE table_name = $1`, name) != 0 {
					t.Errorf("table %s exists", name)
				}
			}
			for _, c := range []struct{ model, column string }{
				{"user", "role"}, {"user", "banned"}, {"user", "banExpires"}, {"session", "impersonatedBy"},
				{"session", "activeTeamId"},
			} {
				if f.count(`SELECT count(*) FROM information_schema.columns WHERE table_name = $1 AND column_name = $2`,
					strings.Trim(f.table(c.model), `"`), c.column) != 0 {
					t.Errorf("column %s.%s exists", f.table(c.model), c.column)
				}
			}
			w := newWorld(t, f, "bare")
			if ok, err := f.HasPermission(ctx, w.adam, w.org, map[string][]string{"leave": {"approve"}}); !ok || err != nil {
				t.Fatalf("has-permission: %v, %v", ok, err)
			}
			if err := f.CreateRole(ctx, w.olga, w.org, "x", map[string][]string{"leave": {"read"}}); err == nil {
				t.Error("create-role works without dynamic access control")
			}
			if _, err := f.CreateTeam(ctx, w.olga, w.org, "t"); err == nil {
				t.Error("create-team works without teams")
			}
			admin, err := f.SignUp(ctx, adminEmail, password("admin"), "admin")
			must(t, err)
			if err := f.BanUser(ctx, admin, w.mia.UserID, "x"); !notFound(err) {
				t.Errorf("ban-user without the admin plugin: %v, want 404", err)
			}
		})
	}
}

// TestExtraStaticRole creates a dynamic role, then restarts the app with a
// static role of the same name (EXTRA_STATIC_ROLE): Better Auth merges the
// two.
func TestExtraStaticRole(t *testing.T) {
	f := newFixture(t, "plural")
	ctx := context.Background()
	w := newWorld(t, f, "extra")
	must(t, f.CreateRole(ctx, w.olga, w.org, "billing", map[string][]string{"leave": {"read"}}))
	must(t, f.UpdateMemberRole(ctx, w.olga, w.org, w.miaM, "billing"))
	both := map[string][]string{"leave": {"read", "approve"}}
	if ok, _ := f.HasPermission(ctx, w.mia, w.org, both); ok {
		t.Fatal("dynamic billing grants leave:approve")
	}

	f.server.Stop(5 * time.Second)
	f.start(`EXTRA_STATIC_ROLE=billing:{"leave":["approve"]}`)
	for _, tc := range []struct {
		name  string
		perms map[string][]string
		want  bool
	}{
		{"static part", map[string][]string{"leave": {"approve"}}, true},
		{"dynamic part", map[string][]string{"leave": {"read"}}, true},
		{"both at once", both, true},
		{"neither", map[string][]string{"leave": {"request"}}, false},
	} {
		if got, err := f.HasPermission(ctx, w.mia, w.org, tc.perms); got != tc.want || err != nil {
			t.Errorf("%s: has-permission %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	// Better Auth now refuses the name for a new dynamic role.
	wantStatus(t, f.CreateRole(ctx, w.olga, w.org, "Billing", map[string][]string{"leave": {"read"}}),
		http.StatusBadRequest, "ROLE_NAME_IS_ALREADY_TAKEN")
}

// TestRolesJSONIsCurrent checks that the committed test/betterauth/roles.json
// is what print-roles.ts prints from access.ts now.
func TestRolesJSONIsCurrent(t *testing.T) {
	dir, bun := testproc.BetterAuthBun(t)
	cmd := exec.Command(bun, "print-roles.ts")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "EXTRA_STATIC_ROLE=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("bun print-roles.ts: %v\n%s", err, stderr.String())
	}
	want, err := os.ReadFile(filepath.Join(dir, "roles.json"))
	must(t, err)
	if !bytes.Equal(got, want) {
		t.Errorf("test/betterauth/roles.json is stale: run (cd test/betterauth && node_modules/.bin/bun print-roles.ts > roles.json)\ngot:\n%s", got)
	}
}

// TestSecondaryStorageSession checks where Better Auth keeps a session in
// secondary storage: <prefix><token> = {"session": {...}, "user": {...}}
// with the session's remaining lifetime as TTL, and
// <prefix>active-sessions-<userId> = [{"token", "expiresAt"}].
func TestSecondaryStorageSession(t *testing.T) {
	rdb, prefix := testproc.RedisDB(t)
	f := newFixture(t, "singular", "SECONDARY_STORAGE_REDIS_URL="+testproc.RedisURL(), "SECONDARY_STORAGE_PREFIX="+prefix)
	ctx := context.Background()
	w := newWorld(t, f, "redis")
	must(t, f.SetActive(ctx, w.mia, w.org))

	raw, err := rdb.Get(ctx, prefix+w.mia.RawToken()).Result()
	must(t, err)
	var v struct {
		Session map[string]any `json:"session"`
		User    map[string]any `json:"user"`
	}
	must(t, json.Unmarshal([]byte(raw), &v))
	info, err := f.GetSession(ctx, w.mia)
	must(t, err)
	if v.Session["id"] != info.ID || v.Session["token"] != w.mia.RawToken() || v.Session["userId"] != w.mia.UserID ||
		v.Session["activeOrganizationId"] != w.org || v.User["id"] != w.mia.UserID || v.User["email"] != w.mia.Email {
		t.Errorf("session value %s", raw)
	}
	if exp, err := time.Parse(time.RFC3339, v.Session["expiresAt"].(string)); err != nil || time.Until(exp) < 6*24*time.Hour {
		t.Errorf("expiresAt %v, %v", v.Session["expiresAt"], err)
	}
	ttl, err := rdb.TTL(ctx, prefix+w.mia.RawToken()).Result()
	if err != nil || ttl < 6*24*time.Hour || ttl > 7*24*time.Hour {
		t.Errorf("TTL %v, %v; want about 7 days", ttl, err)
	}
	list, err := rdb.Get(ctx, prefix+"active-sessions-"+w.mia.UserID).Result()
	must(t, err)
	var refs []struct {
		Token     string `json:"token"`
		ExpiresAt int64  `json:"expiresAt"`
	}
	if err := json.Unmarshal([]byte(list), &refs); err != nil || len(refs) != 1 || refs[0].Token != w.mia.RawToken() {
		t.Errorf("active-sessions list %s, %v", list, err)
	}
	if f.count(`SELECT count(*) FROM information_schema.tables WHERE table_name = 'session'`) != 0 {
		t.Error("a session table exists with secondary storage")
	}

	must(t, f.RevokeSessions(ctx, w.mia))
	if n, _ := rdb.Exists(ctx, prefix+w.mia.RawToken()).Result(); n != 0 {
		t.Error("revoked session still in Redis")
	}
	before, err := rdb.Get(ctx, prefix+"revoked-sessions-before-"+w.mia.UserID).Int64()
	if err != nil || time.Since(time.UnixMilli(before)) > time.Minute {
		t.Errorf("revoked-sessions-before-<userId>: %d, %v; want a recent unix ms", before, err)
	}
}
