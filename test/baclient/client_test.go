package baclient_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
	"github.com/authz-sidecar/authz-sidecar/test/baclient"
)

// TestSchemaModes drives every client method against a real fixture server
// in each SCHEMA mode and checks what Better Auth wrote in the mode's tables.
func TestSchemaModes(t *testing.T) {
	for _, mode := range []string{"plural", "singular", "custom"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, mode)
			if layout, ok := map[string]pgtest.Layout{"plural": pgtest.Plural, "singular": pgtest.Singular}[mode]; ok {
				t.Run("schema", func(t *testing.T) { testSchema(t, f, layout) })
			}
			t.Run("sessions", func(t *testing.T) { testSessions(t, f) })
			t.Run("users", func(t *testing.T) { testUsers(t, f) })
			t.Run("organizations", func(t *testing.T) { testOrganizations(t, f) })
			t.Run("dynamic roles", func(t *testing.T) { testDynamicRoles(t, f) })
			t.Run("teams", func(t *testing.T) { testTeams(t, f) })
			t.Run("api keys", func(t *testing.T) { testAPIKeys(t, f) })
			t.Run("admin", func(t *testing.T) { testAdmin(t, f) })
			t.Run("two factor", func(t *testing.T) { testTwoFactor(t, f) })
		})
	}
}

// testSchema compares what Better Auth's own migrator created in f's
// database with the schema internal/pgtest gives the unit tests in the same
// layout, column by column (type and nullability): the unit tests run on
// the schema the real thing makes. (pgtest's Custom layout renames other
// names than the fixture's custom mode, to try more of them; the plural
// and singular ones are what Better Auth makes.)
func testSchema(t *testing.T, f *fixture, layout pgtest.Layout) {
	got := pgtest.Columns(t, f.dbURL)
	want := pgtest.Columns(t, pgtest.NewDatabaseWith(t, pgtest.Options{Layout: layout}).URL)
	for col, typ := range want {
		if got[col] != typ {
			t.Errorf("%s: Better Auth's migrator made %q, internal/pgtest %q", col, got[col], typ)
		}
	}
	for col, typ := range got {
		if _, ok := want[col]; !ok {
			t.Errorf("%s (%s): Better Auth's migrator made it, internal/pgtest lacks it", col, typ)
		}
	}
}

func testSessions(t *testing.T, f *fixture) {
	ctx := context.Background()
	f.signUp("sam")
	s, err := f.SignIn(ctx, "sam@example.test", password("sam"))
	must(t, err)

	// The cookie is Set-Cookie's, URL-encoded; decoded it is the bearer token.
	if s.Cookie.Name != "better-auth.session_token" {
		t.Errorf("cookie name %q", s.Cookie.Name)
	}
	if v, err := url.QueryUnescape(s.Cookie.Value); err != nil || v != s.Token {
		t.Errorf("cookie value %q decodes to %q, want the bearer token %q", s.Cookie.Value, v, s.Token)
	}
	// <token>.<base64 HMAC-SHA256(secret, token)>, padded.
	mac := hmac.New(sha256.New, []byte(testproc.BetterAuthSecret))
	mac.Write([]byte(s.RawToken()))
	if want := s.RawToken() + "." + base64.StdEncoding.EncodeToString(mac.Sum(nil)); s.Token != want {
		t.Errorf("token %q, want %q", s.Token, want)
	}

	for _, via := range []struct {
		name string
		s    *baclient.Session
	}{{"bearer", s}, {"cookie", s.ViaCookie()}} {
		info, err := f.GetSession(ctx, via.s)
		if err != nil || info == nil || info.UserID != s.UserID || info.Token != s.RawToken() {
			t.Fatalf("get-session by %s: %+v, %v", via.name, info, err)
		}
	}
	var id string
	if !f.query(`SELECT id FROM {session} WHERE token = $1 AND {session.userId} = $2`, []any{s.RawToken(), s.UserID}, &id) {
		t.Fatalf("no %s row for the session", f.table("session"))
	}

	// A cookie POST needs an allowed Origin; the client sends BaseURL.
	bad := *f.Client
	bad.Origin = "http://evil.example"
	wantStatus(t, bad.SetActive(ctx, s.ViaCookie(), ""), http.StatusForbidden, "INVALID_ORIGIN")

	s2, err := f.SignIn(ctx, "sam@example.test", password("sam"))
	must(t, err)
	s3, err := f.SignIn(ctx, "sam@example.test", password("sam"))
	must(t, err)
	list, err := f.ListSessions(ctx, s)
	must(t, err)
	if len(list) != 4 {
		t.Fatalf("list-sessions: %d sessions, want 4 (sign-up, three sign-ins)", len(list))
	}
	must(t, f.RevokeSession(ctx, s, s3.RawToken()))
	if info, err := f.GetSession(ctx, s3); err != nil || info != nil {
		t.Fatalf("revoked session: %+v, %v", info, err)
	}
	must(t, f.RevokeOtherSessions(ctx, s))
	if info, _ := f.GetSession(ctx, s2); info != nil {
		t.Fatal("revoke-other-sessions left s2")
	}
	if n := f.count(`SELECT count(*) FROM {session} WHERE {session.userId} = $1`, s.UserID); n != 1 {
		t.Fatalf("%d sessions left, want 1", n)
	}
	must(t, f.SignOut(ctx, s))
	if info, _ := f.GetSession(ctx, s); info != nil {
		t.Fatal("signed-out session still valid")
	}
	s4, err := f.SignIn(ctx, "sam@example.test", password("sam"))
	must(t, err)
	must(t, f.SignOut(ctx, s4.ViaCookie()))
	if n := f.count(`SELECT count(*) FROM {session} WHERE {session.userId} = $1`, s.UserID); n != 0 {
		t.Fatalf("%d sessions left after sign-out, want 0", n)
	}

	s5, err := f.SignIn(ctx, "sam@example.test", password("sam"))
	must(t, err)
	_, err = f.SignIn(ctx, "sam@example.test", password("sam"))
	must(t, err)
	must(t, f.RevokeSessions(ctx, s5))
	if n := f.count(`SELECT count(*) FROM {session} WHERE {session.userId} = $1`, s.UserID); n != 0 {
		t.Fatalf("%d sessions left after revoke-sessions, want 0", n)
	}
	if _, err := f.Token(ctx, s5); err == nil {
		t.Fatal("/token works after revoke-sessions")
	}
}

func testUsers(t *testing.T, f *fixture) {
	ctx := context.Background()
	anon, err := f.SignInAnonymous(ctx)
	must(t, err)
	var isAnon bool
	if !f.query(`SELECT "isAnonymous" FROM {user} WHERE id = $1`, []any{anon.UserID}, &isAnon) || !isAnon {
		t.Fatalf("anonymous user: isAnonymous %v", isAnon)
	}

	v := f.signUp("vera")
	var verified bool
	f.query(`SELECT {user.emailVerified} FROM {user} WHERE id = $1`, []any{v.UserID}, &verified)
	if verified {
		t.Fatal("email verified at sign-up")
	}
	must(t, f.VerifyEmail(ctx, v))
	f.query(`SELECT {user.emailVerified} FROM {user} WHERE id = $1`, []any{v.UserID}, &verified)
	if !verified {
		t.Fatal("email not verified after VerifyEmail")
	}

	d := f.signUp("dora")
	if err := f.DeleteUser(ctx, d, "wrong-password"); err == nil {
		t.Fatal("delete-user with a wrong password worked")
	}
	must(t, f.DeleteUser(ctx, d, password("dora")))
	if f.count(`SELECT count(*) FROM {user} WHERE id = $1`, d.UserID) != 0 {
		t.Fatal("deleted user still there")
	}
	_, err = f.SignIn(ctx, "dora@example.test", password("dora"))
	wantStatus(t, err, http.StatusUnauthorized, "INVALID_EMAIL_OR_PASSWORD")
}

// world is an organization: owner olga, admin adam, member mia.
type world struct {
	org               string
	olga, adam, mia   *baclient.Session
	adamM, miaM, team string
}

func newWorld(t *testing.T, f *fixture, slug string) *world {
	t.Helper()
	ctx := context.Background()
	w := &world{olga: f.signUp("olga-" + slug), adam: f.signUp("adam-" + slug), mia: f.signUp("mia-" + slug)}
	var err error
	w.org, err = f.CreateOrganization(ctx, w.olga, "Org "+slug, slug)
	must(t, err)
	w.adamM, err = f.AddMember(ctx, w.olga, w.adam, w.org, "admin")
	must(t, err)
	w.miaM, err = f.AddMember(ctx, w.olga, w.mia, w.org, "member")
	must(t, err)
	return w
}

func testOrganizations(t *testing.T, f *fixture) {
	ctx := context.Background()
	w := newWorld(t, f, "acme")
	var role string
	if !f.query(`SELECT {member.role} FROM {member} WHERE {member.userId} = $1 AND "organizationId" = $2`,
		[]any{w.mia.UserID, w.org}, &role) || role != "member" {
		t.Fatalf("mia's member row: role %q", role)
	}

	for _, tc := range []struct {
		name  string
		s     *baclient.Session
		perms map[string][]string
		want  bool
	}{
		{"member may request leave", w.mia, map[string][]string{"leave": {"request", "read"}}, true},
		{"member may not approve", w.mia, map[string][]string{"leave": {"approve"}}, false},
		{"admin may approve", w.adam, map[string][]string{"leave": {"approve"}}, true},
		{"admin may not delete the organization", w.adam, map[string][]string{"organization": {"delete"}}, false},
		{"owner may delete the organization", w.olga, map[string][]string{"organization": {"delete"}}, true},
		{"unknown resource", w.olga, map[string][]string{"nothing": {"read"}}, false},
	} {
		got, err := f.HasPermission(ctx, tc.s, w.org, tc.perms)
		if err != nil || got != tc.want {
			t.Errorf("%s: has-permission %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	outsider := f.signUp("otto")
	_, err := f.HasPermission(ctx, outsider, w.org, map[string][]string{"leave": {"read"}})
	wantStatus(t, err, http.StatusUnauthorized, "USER_IS_NOT_A_MEMBER_OF_THE_ORGANIZATION")

	must(t, f.UpdateMemberRole(ctx, w.olga, w.org, w.miaM, "member", "admin"))
	f.query(`SELECT {member.role} FROM {member} WHERE id = $1`, []any{w.miaM}, &role)
	if role != "member,admin" {
		t.Fatalf("updated role %q, want member,admin", role)
	}
	if ok, _ := f.HasPermission(ctx, w.mia, w.org, map[string][]string{"leave": {"approve"}}); !ok {
		t.Fatal("member,admin may not approve")
	}

	must(t, f.SetActive(ctx, w.mia, w.org))
	info, err := f.GetSession(ctx, w.mia)
	must(t, err)
	if info.ActiveOrganizationID == nil || *info.ActiveOrganizationID != w.org {
		t.Fatalf("active organization %v, want %s", info.ActiveOrganizationID, w.org)
	}
	var active *string
	f.query(`SELECT {session.activeOrganizationId} FROM {session} WHERE id = $1`, []any{info.ID}, &active)
	if active == nil || *active != w.org {
		t.Fatalf("sessions row: active organization %v", active)
	}
	must(t, f.SetActive(ctx, w.mia, ""))
	if info, _ := f.GetSession(ctx, w.mia); info.ActiveOrganizationID != nil {
		t.Fatalf("active organization %v after clearing", *info.ActiveOrganizationID)
	}

	must(t, f.LeaveOrganization(ctx, w.mia, w.org))
	must(t, f.RemoveMember(ctx, w.olga, w.org, w.adamM))
	if n := f.count(`SELECT count(*) FROM {member} WHERE "organizationId" = $1`, w.org); n != 1 {
		t.Fatalf("%d members left, want 1 (the owner)", n)
	}
}

func testDynamicRoles(t *testing.T, f *fixture) {
	ctx := context.Background()
	w := newWorld(t, f, "roles")
	must(t, f.CreateRole(ctx, w.olga, w.org, "Approver", map[string][]string{"leave": {"read", "approve"}}))
	var perm string
	if !f.query(`SELECT permission FROM {organizationRole} WHERE "organizationId" = $1 AND {organizationRole.role} = 'approver'`,
		[]any{w.org}, &perm) || perm != `{"leave":["read","approve"]}` {
		t.Fatalf("organizationRole row: %q", perm)
	}
	roles, err := f.ListRoles(ctx, w.olga, w.org)
	must(t, err)
	if len(roles) != 1 || roles[0].Role != "approver" || !slices.Equal(roles[0].Permission["leave"], []string{"read", "approve"}) {
		t.Fatalf("list-roles: %+v", roles)
	}
	err = f.CreateRole(ctx, w.mia, w.org, "x", map[string][]string{"leave": {"read"}})
	wantStatus(t, err, http.StatusForbidden, "YOU_ARE_NOT_ALLOWED_TO_CREATE_A_ROLE")

	must(t, f.UpdateMemberRole(ctx, w.olga, w.org, w.miaM, "member", "approver"))
	approve := map[string][]string{"leave": {"approve"}}
	if ok, err := f.HasPermission(ctx, w.mia, w.org, approve); !ok || err != nil {
		t.Fatalf("approver may not approve: %v", err)
	}
	must(t, f.UpdateRole(ctx, w.olga, w.org, "approver", map[string][]string{"leave": {"read"}}))
	if ok, _ := f.HasPermission(ctx, w.mia, w.org, approve); ok {
		t.Fatal("approver still approves after update-role")
	}
	wantStatus(t, f.DeleteRole(ctx, w.olga, w.org, "approver"), http.StatusBadRequest, "ROLE_IS_ASSIGNED_TO_MEMBERS")
	must(t, f.UpdateMemberRole(ctx, w.olga, w.org, w.miaM, "member"))
	must(t, f.DeleteRole(ctx, w.olga, w.org, "approver"))
	if n := f.count(`SELECT count(*) FROM {organizationRole} WHERE "organizationId" = $1`, w.org); n != 0 {
		t.Fatalf("%d roles left", n)
	}

	// An unreadable permission (written outside Better Auth) is a 500, told
	// apart from a refusal.
	must(t, f.CreateRole(ctx, w.olga, w.org, "broken", map[string][]string{"leave": {"read"}}))
	must(t, f.UpdateMemberRole(ctx, w.olga, w.org, w.miaM, "broken"))
	f.exec(`UPDATE {organizationRole} SET permission = 'not json' WHERE "organizationId" = $1`, w.org)
	_, err = f.HasPermission(ctx, w.mia, w.org, approve)
	wantStatus(t, err, http.StatusInternalServerError, "")
}

func testTeams(t *testing.T, f *fixture) {
	ctx := context.Background()
	w := newWorld(t, f, "teams")
	team, err := f.CreateTeam(ctx, w.olga, w.org, "Blue")
	must(t, err)
	must(t, f.AddTeamMember(ctx, w.olga, w.org, team, w.mia.UserID))
	if n := f.count(`SELECT count(*) FROM {teamMember} WHERE "teamId" = $1 AND "userId" = $2`, team, w.mia.UserID); n != 1 {
		t.Fatalf("%d team rows for mia", n)
	}
	must(t, f.SetActive(ctx, w.mia, w.org))
	must(t, f.SetActiveTeam(ctx, w.mia, team))
	info, err := f.GetSession(ctx, w.mia)
	must(t, err)
	if info.ActiveTeamID == nil || *info.ActiveTeamID != team {
		t.Fatalf("active team %v, want %s", info.ActiveTeamID, team)
	}
	must(t, f.SetActiveTeam(ctx, w.mia, ""))
	must(t, f.RemoveTeamMember(ctx, w.olga, w.org, team, w.mia.UserID))
	must(t, f.AddTeamMember(ctx, w.olga, w.org, team, w.adam.UserID))
	must(t, f.RemoveTeam(ctx, w.olga, w.org, team))
	if n := f.count(`SELECT count(*) FROM {teamMember} WHERE "teamId" = $1`, team); n != 0 {
		t.Fatalf("%d team rows left after remove-team", n)
	}
}

func testAPIKeys(t *testing.T, f *fixture) {
	ctx := context.Background()
	w := newWorld(t, f, "keys")

	// A user's own key, over HTTP.
	k, err := f.CreateAPIKey(ctx, w.mia, baclient.NewAPIKey{Name: "ci", ExpiresIn: baclient.Seconds(time.Hour)})
	must(t, err)
	if !strings.HasPrefix(k.Key, "usr_") || len(k.Key) != len("usr_")+64 || k.ReferenceID != w.mia.UserID ||
		k.ConfigID != baclient.UserKeys || k.Start == nil || *k.Start != k.Key[:6] || k.ExpiresAt == nil {
		t.Fatalf("user key: %+v", k)
	}
	// Stored: SHA-256 of the key, base64url without padding.
	sum := sha256.Sum256([]byte(k.Key))
	var stored, owner string
	if !f.query(`SELECT key, {apikey.referenceId} FROM {apikey} WHERE id = $1`, []any{k.ID}, &stored, &owner) {
		t.Fatal("no apikey row")
	}
	if stored != base64.RawURLEncoding.EncodeToString(sum[:]) || owner != w.mia.UserID {
		t.Fatalf("apikey row: key %q owner %q", stored, owner)
	}
	_, err = f.CreateAPIKey(ctx, w.mia, baclient.NewAPIKey{Permissions: map[string][]string{"leave": {"read"}}})
	wantStatus(t, err, http.StatusBadRequest, "SERVER_ONLY_PROPERTY")

	v, err := f.VerifyAPIKey(ctx, k.Key, nil)
	must(t, err)
	if !v.Valid || v.Key.ID != k.ID {
		t.Fatalf("verify: %+v", v)
	}
	off := false
	_, err = f.UpdateAPIKey(ctx, w.mia, baclient.APIKeyUpdate{KeyID: k.ID, Enabled: &off})
	must(t, err)
	if v, _ := f.VerifyAPIKey(ctx, k.Key, nil); v.Valid || v.Error.Code != "KEY_DISABLED" {
		t.Fatalf("disabled key verifies: %+v", v)
	}
	list, err := f.ListAPIKeys(ctx, w.mia, "")
	must(t, err)
	if len(list) != 1 || list[0].ID != k.ID || list[0].Enabled {
		t.Fatalf("list: %+v", list)
	}
	must(t, f.DeleteAPIKey(ctx, w.mia, baclient.UserKeys, k.ID))
	if v, _ := f.VerifyAPIKey(ctx, k.Key, nil); v.Valid || v.Error.Code != "INVALID_API_KEY" {
		t.Fatalf("deleted key verifies: %+v", v)
	}

	// Server-side: permissions, remaining, rate limit.
	sk, err := f.CreateAPIKeyAsServer(ctx, w.mia.UserID, baclient.NewAPIKey{
		Permissions: map[string][]string{"leave": {"read", "request"}},
		Remaining:   baclient.Ptr(3),
		RateLimit:   baclient.RateLimit{RateLimitEnabled: baclient.Ptr(true), RateLimitMax: baclient.Ptr(100), RateLimitTimeWindow: baclient.Ptr(60_000)},
	})
	must(t, err)
	var perms string
	var remaining, rlMax int
	f.query(`SELECT permissions, remaining, "rateLimitMax" FROM {apikey} WHERE id = $1`, []any{sk.ID}, &perms, &remaining, &rlMax)
	if perms != `{"leave":["read","request"]}` || remaining != 3 || rlMax != 100 {
		t.Fatalf("server key row: permissions %q remaining %d rateLimitMax %d", perms, remaining, rlMax)
	}
	for _, tc := range []struct {
		name  string
		perms map[string][]string
		valid bool
	}{
		{"granted", map[string][]string{"leave": {"read"}}, true},
		{"not granted", map[string][]string{"leave": {"approve"}}, false},
		{"no permissions asked", nil, true},
	} {
		v, err := f.VerifyAPIKey(ctx, sk.Key, tc.perms)
		if err != nil || v.Valid != tc.valid {
			t.Errorf("%s: verify %+v, %v; want valid %v", tc.name, v, err, tc.valid)
		}
	}
	// Two successful uses: remaining is now 1 (a refused permission uses nothing).
	f.query(`SELECT remaining FROM {apikey} WHERE id = $1`, []any{sk.ID}, &remaining)
	if remaining != 1 {
		t.Fatalf("remaining %d after two successful verifications, want 1", remaining)
	}
	_, err = f.UpdateAPIKeyAsServer(ctx, w.mia.UserID, baclient.APIKeyUpdate{KeyID: sk.ID, Remaining: baclient.Ptr(10)})
	must(t, err)

	// An organization's key, created by its owner over HTTP.
	ok, err := f.CreateAPIKey(ctx, w.olga, baclient.NewAPIKey{ConfigID: baclient.OrgKeys, OrganizationID: w.org})
	must(t, err)
	if !strings.HasPrefix(ok.Key, "org_") || ok.ReferenceID != w.org || ok.ConfigID != baclient.OrgKeys {
		t.Fatalf("org key: %+v", ok)
	}
	_, err = f.CreateAPIKey(ctx, w.adam, baclient.NewAPIKey{ConfigID: baclient.OrgKeys, OrganizationID: w.org})
	wantStatus(t, err, http.StatusForbidden, "INSUFFICIENT_API_KEY_PERMISSIONS")
	opk, err := f.CreateAPIKeyAsServer(ctx, w.olga.UserID, baclient.NewAPIKey{ConfigID: baclient.OrgKeys,
		OrganizationID: w.org, Permissions: map[string][]string{"leave": {"approve"}}})
	must(t, err)
	if v, _ := f.VerifyAPIKey(ctx, opk.Key, map[string][]string{"leave": {"approve"}}); !v.Valid || v.Key.ReferenceID != w.org {
		t.Fatalf("org key with permissions: %+v", v)
	}
	orgKeys, err := f.ListAPIKeys(ctx, w.olga, w.org)
	must(t, err)
	if len(orgKeys) != 2 {
		t.Fatalf("%d org keys listed, want 2", len(orgKeys))
	}
	must(t, f.DeleteAPIKey(ctx, w.olga, baclient.OrgKeys, ok.ID))

	// An expired key is refused (and deleted by Better Auth).
	ek, err := f.CreateAPIKey(ctx, w.mia, baclient.NewAPIKey{ExpiresIn: baclient.Seconds(time.Second)})
	must(t, err)
	time.Sleep(1100 * time.Millisecond)
	if v, _ := f.VerifyAPIKey(ctx, ek.Key, nil); v.Valid || v.Error.Code != "KEY_EXPIRED" {
		t.Fatalf("expired key: %+v", v)
	}
}

func testAdmin(t *testing.T, f *fixture) {
	ctx := context.Background()
	admin, err := f.SignUp(ctx, adminEmail, password("admin"), "admin") // admin by ADMIN_EMAILS
	must(t, err)
	u := f.signUp("uma")

	must(t, f.SetRole(ctx, admin, u.UserID, "user", "auditor"))
	var role string
	f.query(`SELECT role FROM {user} WHERE id = $1`, []any{u.UserID}, &role)
	if role != "user,auditor" {
		t.Fatalf("users.role %q, want user,auditor", role)
	}
	wantStatus(t, f.SetRole(ctx, u, admin.UserID, "user"), http.StatusForbidden, "")

	imp, err := f.Impersonate(ctx, admin, u.UserID)
	must(t, err)
	info, err := f.GetSession(ctx, imp)
	must(t, err)
	if imp.UserID != u.UserID || info.ImpersonatedBy == nil || *info.ImpersonatedBy != admin.UserID {
		t.Fatalf("impersonation session %+v of %s", info, imp.UserID)
	}
	back, err := f.StopImpersonating(ctx, imp)
	must(t, err)
	if back.UserID != admin.UserID || back.RawToken() != admin.RawToken() {
		t.Fatalf("stop-impersonating gave %s's session %q, want the admin's %q", back.UserID, back.RawToken(), admin.RawToken())
	}
	if info, _ := f.GetSession(ctx, imp); info != nil {
		t.Fatal("impersonation session survives stop-impersonating")
	}

	must(t, f.BanUserFor(ctx, admin, u.UserID, "spam", time.Hour))
	var banned bool
	var expires *time.Time
	f.query(`SELECT banned, "banExpires" FROM {user} WHERE id = $1`, []any{u.UserID}, &banned, &expires)
	if !banned || expires == nil || time.Until(*expires) < 59*time.Minute {
		t.Fatalf("ban: banned %v until %v", banned, expires)
	}
	if info, _ := f.GetSession(ctx, u); info != nil {
		t.Fatal("banned user's session survives")
	}
	_, err = f.SignIn(ctx, "uma@example.test", password("uma"))
	wantStatus(t, err, http.StatusForbidden, "BANNED_USER")
	must(t, f.UnbanUser(ctx, admin, u.UserID))
	u, err = f.SignIn(ctx, "uma@example.test", password("uma"))
	must(t, err)

	must(t, f.RevokeUserSessions(ctx, admin, u.UserID))
	if info, _ := f.GetSession(ctx, u); info != nil {
		t.Fatal("session survives revoke-user-sessions")
	}
	must(t, f.RemoveUser(ctx, admin, u.UserID))
	if f.count(`SELECT count(*) FROM {user} WHERE id = $1`, u.UserID) != 0 {
		t.Fatal("removed user still there")
	}
}

func testTwoFactor(t *testing.T, f *fixture) {
	ctx := context.Background()
	s := f.signUp("tess")
	tf, err := f.EnableTwoFactor(ctx, s, password("tess"))
	must(t, err)
	var enabled bool
	f.query(`SELECT "twoFactorEnabled" FROM {user} WHERE id = $1`, []any{s.UserID}, &enabled)
	if !enabled {
		t.Fatal("twoFactorEnabled false after enabling")
	}
	if info, _ := f.GetSession(ctx, s); info != nil {
		t.Fatal("the session that enabled 2FA survives")
	}
	if info, err := f.GetSession(ctx, tf.Session); err != nil || info == nil || info.UserID != s.UserID {
		t.Fatalf("new session after enabling 2FA: %+v, %v", info, err)
	}
	_, err = f.SignIn(ctx, "tess@example.test", password("tess"))
	if !errors.Is(err, baclient.ErrTwoFactorRequired) {
		t.Fatalf("sign-in of a 2FA user: %v, want ErrTwoFactorRequired", err)
	}
	s2, err := f.SignInTOTP(ctx, "tess@example.test", password("tess"), tf.Secret)
	must(t, err)
	if info, err := f.GetSession(ctx, s2); err != nil || info == nil || info.UserID != s.UserID {
		t.Fatalf("TOTP sign-in: %+v, %v", info, err)
	}
}

// TestTOTP checks the code generator against RFC 6238's SHA-1 vectors (6 digits).
func TestTOTP(t *testing.T) {
	secret := "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" // base32("12345678901234567890")
	for _, tc := range []struct {
		unix int64
		want string
	}{{59, "287082"}, {1111111109, "081804"}, {1234567890, "005924"}, {20000000000, "353130"}} {
		got, err := baclient.TOTP(secret, time.Unix(tc.unix, 0))
		if err != nil || got != tc.want {
			t.Errorf("TOTP at %d = %q, %v; want %q", tc.unix, got, err, tc.want)
		}
	}
}
