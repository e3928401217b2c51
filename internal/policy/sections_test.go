package policy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fullPolicy uses every section and route key.
const fullPolicy = `jwt:
  issuer: https://auth.example
  audiences: [https://auth.example]
  jwks_url: https://auth.example/api/auth/jwks
  algorithms: [EdDSA, ES512]
  session_claim: sid
session:
  cookie_prefix: acme
  bearer: signed_or_raw
  base_url: https://App.Example:443/path
  trusted_origins: ["https://admin.example", "*.acme.example", "https://*.acme.dev"]
api_keys:
  header: x-acme-key
  owners: { user-keys: user, org-keys: organization }
  counting: app
organization:
  from: [path:org, header:x-org, session:activeOrganizationId, claim:org]
team:
  from: [path:team, session:activeTeamId]
statements:
  project: [read, update, delete]
roles:
  lead: { permissions: ["project:*"] }
  viewer: { permissions: ["project:read"] }
admin:
  default_role: viewer
  admin_user_ids: [root-1]
  roles:
    superadmin: { permissions: ["user:*", "session:*"] }
    support: { permissions: ["user:list", "user:impersonate"] }
    viewer: {}
schema:
  naming: singular
  tables: { user: auth_users, apikey: keys }
  fields: { user: { emailVerified: email_verified }, member: { role: member_role } }
routes:
  - { name: ban, methods: [POST], path: /admin/ban, require_platform: [user:ban], impersonation: deny, credentials: [session] }
  - { name: support, path: /support, platform_roles: [support, superadmin] }
  - { name: team-doc, path: "/orgs/{org}/teams/{team}/docs", team: true, require: [project:read], user: { email_verified: true, anonymous: false, two_factor: true } }
  - { name: keys, path: /keys, authenticated: true, credentials: [api_key, jwt] }
`

func TestSectionsParse(t *testing.T) {
	t.Parallel()
	p, err := Parse("full.yaml", []byte(fullPolicy))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.JWT.Algorithms, []string{"EdDSA", "ES512"}) || p.JWT.SessionClaim != "sid" {
		t.Errorf("jwt = %+v", p.JWT)
	}
	s := p.Session
	if !s.Enabled || !s.Cookie || s.Bearer != BearerSignedOrRaw || s.BaseURL != "https://app.example:443" {
		t.Errorf("session = %+v", s)
	}
	// https base URL: Better Auth names its cookies __Secure-<prefix>.
	if s.CookieName != "__Secure-acme.session_token" || !s.Secure {
		t.Errorf("cookie name = %q (secure %v)", s.CookieName, s.Secure)
	}
	if !slices.Equal(s.TrustedOrigins, []string{"https://admin.example", "*.acme.example", "https://*.acme.dev"}) {
		t.Errorf("trusted origins = %v", s.TrustedOrigins)
	}
	a := p.APIKeys
	if !a.Enabled || a.Header != "x-acme-key" || !a.CountingInApp ||
		a.Owners["user-keys"] != OwnerUser || a.Owners["org-keys"] != OwnerOrganization || len(a.Owners) != 2 {
		t.Errorf("api keys = %+v", a)
	}
	if want := (CredJWT | CredSession | CredAPIKey); p.Enabled() != want {
		t.Errorf("Enabled = %v, want %v", p.Enabled(), want)
	}
	wantOrg := []Source{{FromPath, "org"}, {FromHeader, "x-org"}, {FromSession, "activeOrganizationId"}, {FromClaim, "org"}}
	if !slices.Equal(p.OrgSources, wantOrg) {
		t.Errorf("org sources = %v", p.OrgSources)
	}
	if want := []Source{{FromPath, "team"}, {FromSession, "activeTeamId"}}; !slices.Equal(p.TeamSources, want) {
		t.Errorf("team sources = %v", p.TeamSources)
	}
	if got, _ := p.RolePermissions("lead"); !slices.Equal(got, []string{"project:delete", "project:read", "project:update"}) {
		t.Errorf("lead = %v", got)
	}
	// Platform wildcards expand against the admin plugin's statements.
	super, _ := p.PlatformRolePermissions("superadmin")
	for _, want := range []string{"user:impersonate-admins", "user:ban", "session:revoke"} {
		if !slices.Contains(super, want) {
			t.Errorf("superadmin lacks %s: %v", want, super)
		}
	}
	if !slices.Equal(p.PlatformRoleNames(), []string{"superadmin", "support", "viewer"}) {
		t.Errorf("platform roles = %v", p.PlatformRoleNames())
	}
	if p.PlatformDefaultRole() != "viewer" || !p.IsAdminUser("root-1") || p.IsAdminUser("root-2") {
		t.Errorf("admin = %+v", p.Admin)
	}
	if p.Schema.Naming != "singular" || p.Schema.Tables["user"] != "auth_users" || p.Schema.Tables["apikey"] != "keys" ||
		p.Schema.Fields["user"]["emailVerified"] != "email_verified" || p.Schema.Fields["member"]["role"] != "member_role" {
		t.Errorf("schema = %+v", p.Schema)
	}

	ban, _ := p.Route("ban")
	if !slices.Equal(ban.RequirePlatform, []string{"user:ban"}) || !ban.DenyImpersonation || ban.Credentials != CredSession ||
		!ban.NeedsPlatform() || ban.NeedsOrganization() || !ban.NeedsUser() {
		t.Errorf("ban = %+v", ban)
	}
	support, _ := p.Route("support")
	if !slices.Equal(support.PlatformRoles, []string{"support", "superadmin"}) {
		t.Errorf("support = %+v", support)
	}
	doc, _ := p.Route("team-doc")
	if !doc.Team || !doc.NeedsOrganization() || doc.Conditions != (Conditions{EmailVerified: true, NotAnonymous: true, TwoFactor: true}) {
		t.Errorf("team-doc = %+v", doc)
	}
	if !slices.Equal(doc.Params(), []string{"org", "team"}) {
		t.Errorf("params = %v", doc.Params())
	}
	keys, _ := p.Route("keys")
	if keys.Credentials != CredAPIKey|CredJWT || keys.Credentials.String() != "jwt,api_key" {
		t.Errorf("keys credentials = %v", keys.Credentials)
	}
}

func TestSessionDefaults(t *testing.T) {
	t.Parallel()
	doc := `session:
  base_url: http://127.0.0.1:3000
routes:
  - { name: me, path: /me, authenticated: true }
`
	p, err := Parse("s.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	s := p.Session
	if s.CookieName != "better-auth.session_token" || s.Secure || !s.Cookie || s.Bearer != BearerOff || s.Storage != StorageDatabase {
		t.Errorf("session = %+v", s)
	}
	if p.JWT.Enabled || p.APIKeys.Enabled || p.Enabled() != CredSession {
		t.Errorf("only sessions should be enabled: %v", p.Enabled())
	}
	if p.Schema.Naming != "auto" {
		t.Errorf("schema naming = %q", p.Schema.Naming)
	}
	// secure_cookies overrides the base URL's scheme, as useSecureCookies does.
	doc2 := strings.Replace(doc, "  base_url:", "  secure_cookies: true\n  base_url:", 1)
	p2, err := Parse("s.yaml", []byte(doc2))
	if err != nil {
		t.Fatal(err)
	}
	if p2.Session.CookieName != "__Secure-better-auth.session_token" {
		t.Errorf("cookie = %q", p2.Session.CookieName)
	}
}

func TestAPIKeyDefaults(t *testing.T) {
	t.Parallel()
	p, err := Parse("k.yaml", []byte("api_keys: {}\nroutes:\n  - { name: me, path: /me, authenticated: true }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a := p.APIKeys; a.Header != "x-api-key" || a.CountingInApp || len(a.Owners) != 1 || a.Owners["default"] != OwnerUser {
		t.Errorf("api keys = %+v", a)
	}
}

func TestSectionProblems(t *testing.T) {
	t.Parallel()
	route := "routes:\n  - { name: me, path: /me, authenticated: true }\n"
	tests := []struct {
		name string
		doc  string
		line int
		msg  string
	}{
		{"session needs base_url", "session: { cookie: true }\n" + route, 1, `missing required key "base_url"`},
		{"session bearer value", "session: { base_url: http://a.example, bearer: maybe }\n" + route, 1, "session.bearer must be off, signed"},
		{"session nothing on", "session: { cookie: false, bearer: off }\n" + route, 1, "neither the cookie nor bearer session tokens are on"},
		{"session base_url scheme", "session: { base_url: ftp://a.example }\n" + route, 1, "must be an http:// or https:// URL"},
		{"trusted origin with slash", "session: { base_url: http://a.example, trusted_origins: [\"https://b.example/\"] }\n" + route, 1, `never matches: Better Auth compares exact origins; write "https://b.example"`},
		{"trusted origin upper case", "session: { base_url: http://a.example, trusted_origins: [\"https://B.example\"] }\n" + route, 1, "never matches"},
		{"cookie prefix", "session: { base_url: http://a.example, cookie_prefix: \"a;b\" }\n" + route, 1, "not a valid cookie name prefix"},
		{"storage value", "session: { base_url: http://a.example, storage: disk }\n" + route, 1, "session.storage must be database"},
		{"api key header case", "api_keys: { header: X-Key }\n" + route, 1, "must be lower case"},
		{"api key header authorization", "api_keys: { header: authorization }\n" + route, 1, "carries other credentials"},
		{"api key owner", "api_keys: { owners: { a: team } }\n" + route, 1, "must be user or organization"},
		{"api key counting", "api_keys: { counting: never }\n" + route, 1, "api_keys.counting must be refuse"},
		{"claim source without jwt", "session: { base_url: http://a.example }\norganization: { from: [claim:org] }\n" + route, 1, "a claim source needs the jwt section"},
		{"session source without session", "api_keys: {}\norganization: { from: [session:activeOrganizationId] }\n" + route, 1, "a session source needs the session section"},
		{"session field", "api_keys: {}\norganization: { from: [session:activeTeamId] }\n" + route, 2, "the session field here is activeOrganizationId"},
		{"identity header as a source", "api_keys: {}\norganization: { from: [header:x-auth-org-id] }\n" + route, 2, "the sidecar's own headers"},
		{"team session field", "api_keys: {}\nteam: { from: [session:activeOrganizationId] }\n" + route, 2, "the session field here is activeTeamId"},
		{"schema naming", "api_keys: {}\nschema: { naming: camel }\n" + route, 2, "schema.naming must be auto, plural"},
		{"schema model", "api_keys: {}\nschema: { tables: { users: u } }\n" + route, 2, `unknown model "users"`},
		{"schema field", "api_keys: {}\nschema: { fields: { user: { email: e } } }\n" + route, 2, `unknown field "email"`},
		{"schema quote", "api_keys: {}\nschema: { tables: { user: 'a\"b' } }\n" + route, 2, "holds a quote"},
		{"admin roles key", "api_keys: {}\nadmin: { rolez: {} }\n" + route, 2, `unknown key "rolez"`},
		{"admin wildcard unknown resource", "api_keys: {}\nadmin: { roles: { a: { permissions: [\"team:*\"] } } }\n" + route, 2, `the statements declare no resource "team"`},
		{"wildcard without statements", "api_keys: {}\nroles: { a: { permissions: [\"x:*\"] } }\n" + route, 2, "needs the statements it expands to"},
		{"statement action", "api_keys: {}\nstatements: { x: [\"a b\"] }\n" + route, 2, `action "a b" must match`},
		{"app_roles without a reader", "api_keys: {}\napp_roles: roles.json\n" + route, 2, "parsed without access to other files"},
		{"session claim with secondary storage", "jwt: { issuer: a, audiences: [a], jwks_url: http://a/j, session_claim: sid }\nsession: { base_url: http://a.example, storage: secondary }\n" + route, 1, "jwt.session_claim looks sessions up by id"},
		{"credentials not enabled", "api_keys: {}\nroutes:\n  - { name: me, path: /me, authenticated: true, credentials: [jwt] }\n", 3, "accepts credentials jwt that the policy does not enable"},
		{"credentials unknown", "api_keys: {}\nroutes:\n  - { name: me, path: /me, authenticated: true, credentials: [cookie] }\n", 3, `unknown kind "cookie"`},
		{"platform permission ungranted", "api_keys: {}\nroutes:\n  - { name: me, path: /me, require_platform: [user:fly] }\n", 3, `no platform role grants "user:fly"`},
		{"platform role unknown", "api_keys: {}\nroutes:\n  - { name: me, path: /me, platform_roles: [god] }\n", 3, `"god" is not a platform role`},
		{"team without team section", "api_keys: {}\norganization: { from: [header:x-org] }\nroutes:\n  - { name: me, path: /me, team: true }\n", 4, "checks its team, but the policy has no valid team.from"},
		{"team without organization", "api_keys: {}\nteam: { from: [header:x-team] }\nroutes:\n  - { name: me, path: /me, team: true }\n", 4, "checks its organization, but the policy has no valid organization.from"},
		{"team path param missing", "api_keys: {}\norganization: { from: [header:x-org] }\nteam: { from: [path:team] }\nroutes:\n  - { name: me, path: /me, team: true }\n", 5, "captures none of the team path parameters"},
		{"user anonymous true", "api_keys: {}\nroutes:\n  - { name: me, path: /me, authenticated: true, user: { anonymous: true } }\n", 3, "would require anonymous users"},
		{"user unknown key", "api_keys: {}\nroutes:\n  - { name: me, path: /me, authenticated: true, user: { verified: true } }\n", 3, `unknown key "verified"`},
		{"impersonation value", "api_keys: {}\nroutes:\n  - { name: me, path: /me, authenticated: true, impersonation: maybe }\n", 3, "impersonation must be allow or deny"},
		{"public with user", "api_keys: {}\nroutes:\n  - { name: me, path: /me, public: true, user: { email_verified: true } }\n", 3, "user has no effect on a public route"},
		{"authenticated and platform", "api_keys: {}\nroutes:\n  - { name: me, path: /me, authenticated: true, platform_roles: [admin] }\n", 3, "sets more than one of"},
		{"jwt ES512 ok but ES511 not", "jwt: { issuer: a, audiences: [a], jwks_url: http://a/j, algorithms: [ES511] }\n" + route, 1, `unsupported algorithm "ES511"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("p.yaml", []byte(tt.doc))
			assertProblem(t, err, tt.line, tt.msg)
		})
	}
}

// assertProblem checks that err is an *Error with a problem at line
// containing msg.
func assertProblem(t *testing.T, err error, line int, msg string) {
	t.Helper()
	perr, ok := err.(*Error)
	if !ok {
		t.Fatalf("err = %v (%T), want *Error", err, err)
	}
	for _, p := range perr.Problems {
		if p.Line == line && strings.Contains(p.Message, msg) {
			return
		}
	}
	t.Errorf("no problem at line %d containing %q; got:\n%v", line, msg, err)
}

// appRolesJSON is the shape print-roles.ts prints.
const appRolesJSON = `{
  "organization": {
    "statements": {"project": ["read", "update", "delete"], "leave": ["read", "approve"]},
    "roles": {
      "lead":   {"project": ["read", "update", "delete"], "leave": ["read", "approve"]},
      "viewer": {"project": ["read"], "leave": ["read"]}
    }
  },
  "admin": {
    "statements": {"user": ["ban", "list"]},
    "roles": {"admin": {"user": ["ban", "list"]}, "user": {}}
  }
}`

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestAppRoles(t *testing.T) {
	t.Parallel()
	routes := "routes:\n  - { name: approve, path: \"/o/{org}/approve\", require: [leave:approve] }\n  - { name: ban, path: /ban, require_platform: [user:ban] }\n"
	head := "api_keys: {}\norganization: { from: [path:org] }\napp_roles: roles.json\n"

	t.Run("roles come from the app", func(t *testing.T) {
		t.Parallel()
		dir := writeFiles(t, map[string]string{"roles.json": appRolesJSON, "p.yaml": head + routes})
		p, err := Load(filepath.Join(dir, "p.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := p.RolePermissions("viewer"); !slices.Equal(got, []string{"leave:read", "project:read"}) {
			t.Errorf("viewer = %v", got)
		}
		if got, _ := p.PlatformRolePermissions("admin"); !slices.Equal(got, []string{"user:ban", "user:list"}) {
			t.Errorf("platform admin = %v", got)
		}
		if p.AppRoles != "roles.json" {
			t.Errorf("AppRoles = %q", p.AppRoles)
		}
		// The version covers the app's roles too: editing roles.json is a
		// new policy.
		v1 := p.Version
		changed := strings.Replace(appRolesJSON, `"viewer": {"project": ["read"]`, `"viewer": {"project": ["read", "update"]`, 1)
		if err := os.WriteFile(filepath.Join(dir, "roles.json"), []byte(changed), 0o600); err != nil {
			t.Fatal(err)
		}
		p2, err := Load(filepath.Join(dir, "p.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if p2.Version == v1 {
			t.Error("the version did not change with the app's roles")
		}
	})

	t.Run("policy roles equal to the app's", func(t *testing.T) {
		t.Parallel()
		yaml := head + "roles:\n  lead: { inherits: [viewer], permissions: [\"project:*\", leave:approve] }\n  viewer: { permissions: [project:read, leave:read] }\n" + routes
		dir := writeFiles(t, map[string]string{"roles.json": appRolesJSON, "p.yaml": yaml})
		if _, err := Load(filepath.Join(dir, "p.yaml")); err != nil {
			t.Fatal(err)
		}
	})

	tests := []struct {
		name  string
		roles string
		line  int
		msg   string
	}{
		{"a policy role the app lacks", "roles:\n  lead: { permissions: [\"project:*\", leave:read, leave:approve] }\n  viewer: { permissions: [project:read, leave:read] }\n  approver: { permissions: [leave:approve] }\n", 7,
			`role "approver" is not one of the app's roles`},
		{"a permission the app's role lacks", "roles:\n  lead: { permissions: [\"project:*\", leave:read, leave:approve] }\n  viewer: { permissions: [project:read, leave:read, leave:approve] }\n", 6,
			`role "viewer" grants leave:approve that the app's role does not`},
		{"a permission the policy lacks", "roles:\n  lead: { permissions: [\"project:*\", leave:read] }\n  viewer: { permissions: [project:read, leave:read] }\n", 5,
			`role "lead" lacks leave:approve that the app's role grants`},
		{"an app role missing from the policy", "roles:\n  lead: { permissions: [\"project:*\", leave:read, leave:approve] }\n", 5,
			`the app's role "viewer" is missing from the policy`},
		{"an admin role the app lacks", "admin:\n  roles:\n    admin: { permissions: [user:ban, user:list] }\n    user: {}\n    support: { permissions: [user:list] }\n", 8,
			`role "support" is not one of the app's roles`},
		{"statements the app lacks", "statements: { project: [read, update, delete], leave: [read, approve, cancel] }\n", 4, "leave:cancel not in the app's statements"},
		{"statements missing the app's", "statements: { project: [read, update, delete], leave: [read] }\n", 4, "the app's statements also have leave:approve"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := writeFiles(t, map[string]string{"roles.json": appRolesJSON, "p.yaml": head + tt.roles + routes})
			_, err := Load(filepath.Join(dir, "p.yaml"))
			assertProblem(t, err, tt.line, tt.msg)
		})
	}

	for _, bad := range []struct{ name, json, msg string }{
		{"not JSON", `{`, "unexpected EOF"},
		{"unknown key", `{"org": {}}`, `unknown field "org"`},
		{"null role", `{"organization": {"roles": {"a": null}}}`, `role "a": not an object`},
		{"null actions", `{"organization": {"roles": {"a": {"x": null}}}}`, `resource "x": not a list`},
	} {
		t.Run("app_roles "+bad.name, func(t *testing.T) {
			t.Parallel()
			dir := writeFiles(t, map[string]string{"roles.json": bad.json, "p.yaml": head + "routes:\n  - { name: me, path: /me, authenticated: true }\n"})
			_, err := Load(filepath.Join(dir, "p.yaml"))
			assertProblem(t, err, 3, bad.msg)
		})
	}
	t.Run("statements equal to the app's", func(t *testing.T) {
		t.Parallel()
		yaml := head + "statements: { project: [read, update, delete], leave: [read, approve] }\n" + routes
		dir := writeFiles(t, map[string]string{"roles.json": appRolesJSON, "p.yaml": yaml})
		if _, err := Load(filepath.Join(dir, "p.yaml")); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("admin roles checked against the app's admin statements", func(t *testing.T) {
		t.Parallel()
		app := `{"admin": {"statements": {"user": ["ban"], "report": ["read"]}, "roles": {"auditor": {"report": ["read"]}}}}`
		yaml := head + "admin:\n  roles:\n    auditor: { permissions: [\"report:*\"] }\n" +
			"routes:\n  - { name: audit, path: /audit, require_platform: [report:read] }\n"
		dir := writeFiles(t, map[string]string{"roles.json": app, "p.yaml": yaml})
		p, err := Load(filepath.Join(dir, "p.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := p.PlatformRolePermissions("auditor"); !slices.Equal(got, []string{"report:read"}) {
			t.Errorf("auditor = %v", got)
		}
	})

	t.Run("app_roles of the largest size", func(t *testing.T) {
		t.Parallel()
		padded := appRolesJSON + strings.Repeat(" ", MaxFileBytes-len(appRolesJSON))
		dir := writeFiles(t, map[string]string{"roles.json": padded, "p.yaml": head + routes})
		if _, err := Load(filepath.Join(dir, "p.yaml")); err != nil {
			t.Fatal(err)
		}
		dir = writeFiles(t, map[string]string{"roles.json": padded + " ", "p.yaml": head + routes})
		_, err := Load(filepath.Join(dir, "p.yaml"))
		assertProblem(t, err, 3, "larger than")
	})

	t.Run("app_roles missing file", func(t *testing.T) {
		t.Parallel()
		dir := writeFiles(t, map[string]string{"p.yaml": head + routes})
		_, err := Load(filepath.Join(dir, "p.yaml"))
		assertProblem(t, err, 3, "no such file")
	})
}

// LoadWith's AppRoles is a command-line path (validate --app-roles): it is
// relative to the working directory, not to the policy file as app_roles
// in the file is. Not parallel: it changes the working directory.
func TestLoadWithAppRolesFromWorkingDirectory(t *testing.T) {
	routes := "routes:\n  - { name: approve, path: \"/o/{org}/approve\", require: [leave:approve] }\n"
	dir := writeFiles(t, map[string]string{"roles.json": appRolesJSON})
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	policy := "api_keys: {}\norganization: { from: [path:org] }\n" + routes
	if err := os.WriteFile(filepath.Join(dir, "sub", "p.yaml"), []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	p, err := LoadWith(filepath.Join("sub", "p.yaml"), LoadOptions{AppRoles: "roles.json"})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := p.RolePermissions("viewer"); !slices.Equal(got, []string{"leave:read", "project:read"}) {
		t.Errorf("viewer = %v, want the roles of ./roles.json", got)
	}
}

func TestCredentialString(t *testing.T) {
	t.Parallel()
	for c, want := range map[Credential]string{
		0:                                  "",
		CredJWT:                            "jwt",
		CredSession:                        "session",
		CredAPIKey:                         "api_key",
		CredJWT | CredSession:              "jwt,session",
		CredJWT | CredSession | CredAPIKey: "jwt,session,api_key",
	} {
		if got := c.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", c, got, want)
		}
	}
	for m, want := range map[BearerMode]string{BearerOff: "off", BearerSigned: "signed", BearerSignedOrRaw: "signed_or_raw"} {
		if m.String() != want {
			t.Errorf("%d.String() = %q", m, m.String())
		}
	}
	if StorageSecondary.String() != "secondary" || StorageDatabase.String() != "database" {
		t.Error("storage names")
	}
	if OwnerUser.String() != "user" || OwnerOrganization.String() != "organization" {
		t.Error("owner names")
	}
	if FromSession.String() != "session" || FromAPIKey.String() != "api_key" {
		t.Error("source kind names")
	}
}

// TestCheckIdentifier: PostgreSQL's 63-byte identifiers, without quotes or
// control bytes.
func TestCheckIdentifier(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		s    string
		ok   bool
	}{
		{"plain", "user", true},
		{"63 bytes", strings.Repeat("x", 63), true},
		{"64 bytes", strings.Repeat("x", 64), false},
		{"space and tilde", "a b~", true},
		{"last C0 control", "a\x1f", false},
		{"DEL", "a\x7f", false},
		{"NUL", "a\x00", false},
		{"double quote", `a"b`, false},
		{"UTF-8", "tâble", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := checkIdentifier(tt.s); (got == "") != tt.ok {
				t.Errorf("checkIdentifier(%q) = %q, want ok %v", tt.s, got, tt.ok)
			}
		})
	}
}

// TestStatements: a resource may list no actions; the others keep theirs.
func TestStatements(t *testing.T) {
	t.Parallel()
	doc := "jwt:\n  issuer: https://auth.example\n  audiences: [https://auth.example]\n  jwks_url: https://auth.example/jwks\n" +
		"organization: { from: [path:org] }\n" +
		"statements: { leave: [read, approve], archive: [] }\n" +
		"roles:\n  member: { permissions: [leave:read] }\n  lead: { permissions: [\"leave:*\"] }\n" +
		"routes:\n  - { name: r, path: \"/o/{org}/r\", require: [leave:read] }\n"
	p, err := Parse("p.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for role, want := range map[string][]string{"member": {"leave:read"}, "lead": {"leave:approve", "leave:read"}} {
		if got, _ := p.RolePermissions(role); !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", role, got, want)
		}
	}
}
