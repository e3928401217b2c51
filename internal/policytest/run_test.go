package policytest

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
)

const testPolicy = `
jwt: { issuer: "https://id.example", audiences: ["https://id.example"], jwks_url: "https://id.example/jwks" }
organization: { from: [path:org, header:x-organization-id] }
roles:
  member: { permissions: ["leave:read"] }
  admin:  { inherits: [member], permissions: ["leave:approve"] }
routes:
  - { name: health, methods: [GET], path: /healthz, public: true }
  - { name: read-leave, methods: [GET], path: "/api/orgs/{org}/leave/**", require: [leave:read] }
  - { name: approve-leave, methods: [POST], path: "/api/orgs/{org}/leave/{id}/approve", require: [leave:approve] }
  - { name: shadow, methods: [GET], path: "/api/shadow/{org}", require: [leave:approve], enforce: false }
  - { name: approve-by-header, methods: [POST], path: /api/approve, require: [leave:approve] }
  - { name: read-by-header, methods: [GET], path: /api/leave, require: [leave:read] }
`

// writeTest writes the policy (if not empty) and the test file into a new
// directory and returns the test file's path.
func writeTest(t *testing.T, pol, tests string) string {
	t.Helper()
	dir := t.TempDir()
	if pol != "" {
		if err := os.WriteFile(filepath.Join(dir, "policies.yaml"), []byte(pol), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "t.yaml")
	if err := os.WriteFile(path, []byte(tests), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		policy         string // default testPolicy; "-" for none
		file           string
		passed, failed int
		wantOut        []string // lines of the output, in order; FILE is the test file
		wantErr        string   // substring of the error; FILE is the test file
		wantErrIs      error
		wantPolicyErr  bool
		wantLine       string
	}{
		{
			name: "passing cases",
			file: `policy: policies.yaml
cases:
  - name: members read leave
    request: { method: GET, path: /api/orgs/acme/leave/1 }
    user: { id: u1, roles: [member] }
    expect: { decision: allow, status: 200, reason: granted, route: read-leave, org: acme }
  - name: health is public
    request: { method: GET, path: /healthz }
    expect: { decision: allow, reason: public }
  - name: no token
    request: { method: GET, path: /api/orgs/acme/leave/1 }
    expect: { decision: deny, status: 401, reason: no_credential }
  - name: header names are lower-cased
    request: { method: POST, path: /x, route: approve-by-header, headers: { X-Organization-Id: acme } }
    user: { id: u1, roles: [admin] }
    expect: { decision: allow, org: acme }
`,
			passed: 4,
			wantOut: []string{
				"PASS  members read leave",
				"PASS  health is public",
				"PASS  no token",
				"PASS  header names are lower-cased",
				"4 passed, 0 failed",
			},
		},
		{
			name: "a failing case shows a diff",
			file: `policy: policies.yaml
cases:
  - name: members read leave
    request: { method: GET, path: /api/orgs/acme/leave/1 }
    user: { id: u1, roles: [member] }
    expect: { decision: allow }
  - name: members cannot approve
    request: { method: POST, path: /api/orgs/acme/leave/1/approve }
    user: { id: u1, roles: [member] }
    expect: { decision: allow }
`,
			passed: 1, failed: 1,
			wantOut: []string{
				"PASS  members read leave",
				"FAIL  members cannot approve  (FILE:7)",
				"      request:  POST /api/orgs/acme/leave/1/approve",
				"      user:     u1 roles [member]",
				"      expected: allow",
				"      got:      deny 403 missing_permission: requires leave:approve from one role (route approve-leave, org acme from path:org)",
				"1 passed, 1 failed",
			},
		},
		{
			name: "every expected field is compared",
			file: `policy: policies.yaml
cases:
  - name: wrong status
    request: { method: GET, path: /api/orgs/acme/leave/1 }
    expect: { decision: deny, status: 403 }
  - name: wrong reason
    request: { method: GET, path: /api/orgs/acme/leave/1 }
    expect: { decision: deny, reason: missing_permission }
  - name: wrong route
    request: { method: GET, path: /api/orgs/acme/leave/1 }
    user: { id: u1, roles: [member] }
    expect: { decision: allow, route: approve-leave }
  - name: wrong org
    request: { method: GET, path: /api/orgs/acme/leave/1 }
    user: { id: u1, roles: [member], org: org_1, slug: acme }
    expect: { decision: allow, org: acme }
`,
			failed: 4,
			wantOut: []string{
				"FAIL  wrong status  (FILE:3)",
				"      expected: deny 403",
				"      got:      deny 401 no_credential (route read-leave)",
				"FAIL  wrong reason  (FILE:6)",
				"FAIL  wrong route  (FILE:9)",
				"      expected: allow (route approve-leave)",
				"FAIL  wrong org  (FILE:13)",
				"      user:     u1 roles [member] in org org_1 (slug acme)",
				"      got:      allow 200 granted (route read-leave, org org_1 from path:org)",
				"0 passed, 4 failed",
			},
		},
		{
			name: "shadow mode is an allow that shows its deny",
			file: `policy: policies.yaml
cases:
  - name: shadowed
    request: { method: GET, path: /api/shadow/acme }
    user: { id: u1, roles: [member], custom: { x: ["a:b"] }, banned: false, claims: { k: v } }
    expect: { decision: deny }
`,
			failed: 1,
			wantOut: []string{
				"FAIL  shadowed  (FILE:3)",
				"      request:  GET /api/shadow/acme",
				"      user:     u1 roles [member] custom {x: [a:b]} claims {k: v}",
				"      expected: deny",
				"      got:      allow (shadow mode) 403 missing_permission: requires leave:approve from one role (route shadow, org acme from path:org)",
				"0 passed, 1 failed",
			},
		},
		{
			name: "unknown key",
			file: `policy: policies.yaml
cases:
  - name: typo
    request: { method: GET, path: /healthz }
    expect: { decison: allow }
`,
			wantErr: `FILE:5:15: expect: unknown key "decison" (known keys: decision, status, reason, route, org)`,
		},
		{
			name: "unknown keys at every level",
			file: `policy: policies.yaml
polcy: x
cases:
  - name: typo
    requst: {}
    request: { method: GET, path: /healthz, query: x }
    user: { id: u1, role: admin }
    expect: { decision: allow }
`,
			wantErr: "FILE:2:1: test file: unknown key \"polcy\"",
			wantLine: "FILE:5:5: case: unknown key \"requst\"" +
				"|FILE:6:45: request: unknown key \"query\"" +
				"|FILE:7:21: user: unknown key \"role\"",
		},
		{
			name: "wrong type names its line",
			file: `policy: policies.yaml
cases:
  - name: bad status
    request: { method: GET, path: /healthz }
    expect: { decision: allow, status: ok }
`,
			wantErr: "FILE:5: cannot unmarshal !!str `ok` into int",
		},
		{
			name: "a mapping where a list is due",
			file: `policy: policies.yaml
cases:
  - name: bad roles
    request: { method: GET, path: /healthz }
    user: { id: u1, roles: { admin: true } }
    expect: { decision: allow }
`,
			wantErr: "FILE:5: cannot unmarshal !!map into []string",
		},
		{
			name: "invalid cases",
			file: `policy: policies.yaml
cases:
  - name: a
    request: { path: /healthz }
    expect: { decision: maybe, status: 404 }
  - name: a
    request: { method: GET, path: /x }
    user: { roles: [admin], member: false, slug: acme, claims: { sub: admin } }
    expect: { decision: allow }
  - request: { method: GET }
    expect: { decision: allow }
  - name: by name
    request: { route: me }
    expect: { decision: allow }
`,
			wantErr: `FILE:3:5: case "a": request needs a method when it has no route name`,
			wantLine: `FILE:3:5: case "a": expect.decision must be allow or deny, got "maybe"` +
				`|FILE:3:5: case "a": expect.status must be 200, 401, 403 or 503, got 404` +
				`|FILE:6:5: case "a": duplicate case name (first at line 3)` +
				`|FILE:6:5: case "a": user needs an id` +
				`|FILE:6:5: case "a": user has roles but member: false; drop one` +
				`|FILE:6:5: case "a": user.slug needs user.org` +
				`|FILE:6:5: case "a": user.claims may not set "sub"` +
				`|FILE:10:5: case: missing required key "name"` +
				`|FILE:10:5: case "": request needs a path (a route chosen by name still has its path checked and read for {params})` +
				`|FILE:12:5: case "by name": request needs a path`,
		},
		{
			name:     "no policy, no cases",
			file:     "cases: []\n",
			wantErr:  `FILE:1:1: test file: missing required key "policy"`,
			wantLine: "FILE:1:1: test file: no cases",
		},
		{
			name:    "not a mapping",
			file:    "- a\n",
			wantErr: "FILE:1:1: test file must be a mapping",
		},
		{
			name:    "empty file",
			file:    "",
			wantErr: "FILE:1: test file is empty",
		},
		{
			name:    "YAML syntax error",
			file:    "policy: [\n",
			wantErr: "FILE: yaml:",
		},
		{
			name:   "missing policy file",
			policy: "-",
			file: `policy: nowhere.yaml
cases:
  - { name: a, request: { method: GET, path: /healthz }, expect: { decision: allow } }
`,
			wantErrIs: fs.ErrNotExist,
			wantErr:   "nowhere.yaml",
		},
		{
			name:   "invalid policy",
			policy: "jwt: {}\nroutes: []\n",
			file: `policy: policies.yaml
cases:
  - { name: a, request: { method: GET, path: /healthz }, expect: { decision: allow } }
`,
			wantPolicyErr: true,
			wantErr:       "policies.yaml:1:",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pol := tt.policy
			switch pol {
			case "":
				pol = testPolicy
			case "-":
				pol = ""
			}
			path := writeTest(t, pol, tt.file)
			var out strings.Builder
			passed, failed, err := Run(context.Background(), path, &out)
			if tt.wantErr != "" || tt.wantErrIs != nil {
				if err == nil {
					t.Fatalf("Run: no error; output:\n%s", out.String())
				}
				msg := err.Error()
				for _, want := range append([]string{tt.wantErr}, strings.Split(tt.wantLine, "|")...) {
					if want = strings.ReplaceAll(want, "FILE", path); !strings.Contains(msg, want) {
						t.Errorf("error does not contain %q:\n%s", want, msg)
					}
				}
				if tt.wantErrIs != nil && !errors.Is(err, tt.wantErrIs) {
					t.Errorf("error %v is not %v", err, tt.wantErrIs)
				}
				var perr *policy.Error
				if tt.wantPolicyErr && !errors.As(err, &perr) {
					t.Errorf("error %v is not a *policy.Error", err)
				}
				if out.Len() != 0 {
					t.Errorf("output on error: %q", out.String())
				}
				return
			}
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if passed != tt.passed || failed != tt.failed {
				t.Errorf("Run = %d passed, %d failed; want %d, %d\n%s", passed, failed, tt.passed, tt.failed, out.String())
			}
			got := out.String()
			if !strings.HasSuffix(got, "\n") {
				t.Errorf("output does not end with a newline: %q", got)
			}
			lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
			// The wanted lines appear in order; the summary is the last line.
			i := 0
			for _, want := range tt.wantOut {
				want = strings.ReplaceAll(want, "FILE", path)
				for i < len(lines) && lines[i] != want {
					i++
				}
				if i == len(lines) {
					t.Errorf("output lacks line (in order) %q:\n%s", want, got)
					break
				}
			}
			if last := lines[len(lines)-1]; last != tt.wantOut[len(tt.wantOut)-1] {
				t.Errorf("last line = %q, want %q", last, tt.wantOut[len(tt.wantOut)-1])
			}
		})
	}
}

func TestRunMissingTestFile(t *testing.T) {
	t.Parallel()
	_, _, err := Run(context.Background(), filepath.Join(t.TempDir(), "none.yaml"), &strings.Builder{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Run = %v, want fs.ErrNotExist", err)
	}
}

func TestRunCanceled(t *testing.T) {
	t.Parallel()
	path := writeTest(t, testPolicy, `policy: policies.yaml
cases:
  - { name: a, request: { method: GET, path: /healthz }, expect: { decision: allow } }
`)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Run(ctx, path, &strings.Builder{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
}

// The shipped test file must pass against the shipped policy, and must
// exercise every route: each one decided at least once as allow and, unless
// public, at least once as deny.
func TestShippedPolicyTests(t *testing.T) {
	t.Parallel()
	const file = "../../policies_test.yaml"
	var out strings.Builder
	passed, failed, err := Run(context.Background(), file, &out)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if failed != 0 || passed == 0 {
		t.Fatalf("%d passed, %d failed:\n%s", passed, failed, out.String())
	}

	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	f, err := parseFile(file, data)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(filepath.Join(filepath.Dir(file), f.Policy))
	if err != nil {
		t.Fatal(err)
	}
	h, err := newHarness(pol)
	if err != nil {
		t.Fatal(err)
	}
	allowed, denied := map[string]bool{}, map[string]bool{}
	for i := range f.Cases {
		d, err := h.decide(context.Background(), f.Cases[i].request(), f.Cases[i].user())
		if err != nil {
			t.Fatal(err)
		}
		if d.Allow {
			allowed[d.Route] = true
		} else {
			denied[d.Route] = true
		}
	}
	for _, rt := range pol.Routes {
		if !allowed[rt.Name] {
			t.Errorf("route %s: no case allows it", rt.Name)
		}
		if !rt.Public && !denied[rt.Name] {
			t.Errorf("route %s: no case denies it", rt.Name)
		}
	}
}

func TestDecide(t *testing.T) {
	t.Parallel()
	pol, err := policy.Parse("p.yaml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	read := authz.Request{Method: "GET", Path: "/api/orgs/acme/leave/1"}

	// A token from another harness (another key) must not be accepted:
	// the real verifier checks the signature, the fakes do not bypass it.
	other, err := newHarness(pol)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.token(&User{ID: "u1", Roles: []string{"admin"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		req    authz.Request
		user   *User
		allow  bool
		reason authz.Reason
		org    string
	}{
		{name: "member", req: read, user: &User{ID: "u1", Roles: []string{"member"}}, allow: true, reason: authz.ReasonGranted, org: "acme"},
		{name: "no user, no token", req: read, reason: authz.ReasonNoCredential},
		{name: "not a member", req: read, user: &User{ID: "u1", Roles: []string{"member"}, NotMember: true}, reason: authz.ReasonNotMember, org: "acme"},
		{name: "other organization", req: read, user: &User{ID: "u1", Roles: []string{"admin"}, OrgID: "globex"}, reason: authz.ReasonNotMember, org: "acme"},
		{name: "slug", req: read, user: &User{ID: "u1", Roles: []string{"member"}, OrgID: "org_1", Slug: "acme"}, allow: true, reason: authz.ReasonGranted, org: "org_1"},
		{name: "banned", req: read, user: &User{ID: "u1", Roles: []string{"admin"}, Banned: true}, reason: authz.ReasonBanned},
		{name: "deleted", req: read, user: &User{ID: "u1", Roles: []string{"admin"}, Unknown: true}, reason: authz.ReasonUnknownUser},
		{
			name: "org from header", allow: true, reason: authz.ReasonGranted, org: "acme",
			req:  authz.Request{RouteName: "read-by-header", Path: "/x", Headers: authz.HeaderMap{"x-organization-id": "acme"}},
			user: &User{ID: "u1", Roles: []string{"member"}, OrgID: "acme"},
		},
		{
			name: "token signed by another key", reason: authz.ReasonInvalidToken,
			req:  authz.Request{Method: "GET", Path: "/api/orgs/acme/leave/1", Headers: authz.HeaderMap{"authorization": "Bearer " + foreign}},
			user: &User{ID: "u1", Roles: []string{"admin"}},
		},
		{
			name: "foreign token without a user", reason: authz.ReasonInvalidToken,
			req: authz.Request{Method: "GET", Path: "/api/orgs/acme/leave/1", Headers: authz.HeaderMap{"authorization": "Bearer " + foreign}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := Decide(ctx, pol, tt.req, tt.user, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allow != tt.allow || d.Reason != tt.reason || d.OrgID != tt.org {
				t.Errorf("Decide = allow %v reason %s org %q (%s); want allow %v reason %s org %q",
					d.Allow, d.Reason, d.OrgID, d.Detail, tt.allow, tt.reason, tt.org)
			}
		})
	}
}
