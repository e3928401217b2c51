package httpauthz_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/httpauthz"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// The engine's own tests cover deciding; these check that the HTTP
// translation feeds it what it needs and carries its answers through.

const enginePolicy = `
jwt:
  issuer: https://auth.example.test
  audiences: [https://auth.example.test]
  jwks_url: https://auth.example.test/api/auth/jwks
organization:
  from: [path:org, header:x-organization-id]
roles:
  admin:  { inherits: [member], permissions: ["leave:approve"] }
  member: { permissions: ["leave:read"] }
routes:
  - { name: health, methods: [GET], path: /healthz, public: true }
  - { name: me, path: /api/me, authenticated: true }
  - { name: approve-leave, methods: [POST], path: "/api/orgs/{org}/leave/{id}/approve", require: [leave:approve] }
  - { name: leave-report, methods: [GET], path: /api/leave-report, require: [leave:read] }
  - { name: shadow, methods: [GET], path: "/api/orgs/{org}/shadow", require: [leave:approve], enforce: false }
`

// tokenVerifier accepts the tokens it knows; its error, like the real
// verifier's, never contains the token.
type tokenVerifier map[string]string

func (v tokenVerifier) Verify(_ context.Context, raw string) (*authn.Identity, error) {
	if sub, ok := v[raw]; ok {
		return &authn.Identity{Subject: sub}, nil
	}
	return nil, errors.New("signature does not verify")
}

// memberships resolves "user/org" to roles in organization "org-1".
type memberships map[string][]string

func (m memberships) Resolve(_ context.Context, q roles.Query) (*roles.Access, roles.Tier, error) {
	ms := roles.Membership{UserFound: true}
	if q.OrgRef == "org-1" {
		ms.OrgID = "org-1"
		ms.Roles = m[q.UserID+"/"+q.OrgRef]
	}
	return roles.Compute(ms, q.Tables), roles.TierSource, nil
}

func TestWithEngine(t *testing.T) {
	t.Parallel()
	pol, err := policy.Parse("engine.yaml", []byte(enginePolicy))
	if err != nil {
		t.Fatal(err)
	}
	const badToken = "not-a-valid-token-7f3a9c"
	engine, err := authz.New(authz.State{Policy: pol, Verifier: tokenVerifier{"tok-admin": "u-admin", "tok-member": "u-member"}},
		authz.Deps{Access: memberships{"u-admin/org-1": {"admin"}, "u-member/org-1": {"member"}}},
		authz.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, engine, nil, httpauthz.Config{EnvoyPathPrefix: "/envoy"})

	nginx := func(method, uri string) []string {
		return []string{"X-Original-Method: " + method, "X-Original-URI: " + uri}
	}
	tests := []struct {
		name       string
		method     string
		target     string
		headers    []string
		wantStatus int
		wantReason string
		wantUser   string
		wantOrg    string
		wantRoles  string
		wantShadow string
	}{
		{
			name: "admin approves, query kept and stripped by the engine", method: "GET", target: "/",
			headers:    append(nginx("POST", "/api/orgs/org-1/leave/7/approve?notify=1"), "Authorization: Bearer tok-admin"),
			wantStatus: 200, wantUser: "u-admin", wantOrg: "org-1", wantRoles: "admin",
		},
		{
			name: "envoy style", method: "POST", target: "/envoy/api/orgs/org-1/leave/7/approve?notify=1",
			headers:    []string{"Authorization: Bearer tok-admin"},
			wantStatus: 200, wantUser: "u-admin", wantOrg: "org-1", wantRoles: "admin",
		},
		{
			name: "traefik style", method: "GET", target: "/",
			headers:    []string{"X-Forwarded-Method: POST", "X-Forwarded-Uri: /api/orgs/org-1/leave/7/approve", "Authorization: Bearer tok-admin"},
			wantStatus: 200, wantUser: "u-admin", wantOrg: "org-1", wantRoles: "admin",
		},
		{
			name: "member may not approve", method: "GET", target: "/",
			headers:    append(nginx("POST", "/api/orgs/org-1/leave/7/approve"), "Authorization: Bearer tok-member"),
			wantStatus: 403, wantReason: "missing_permission",
		},
		{
			// The original method decides, not the auth request's.
			name: "original method counts", method: "POST", target: "/",
			headers:    append(nginx("GET", "/api/orgs/org-1/leave/7/approve"), "Authorization: Bearer tok-admin"),
			wantStatus: 403, wantReason: "no_route",
		},
		{
			name: "organization from header", method: "GET", target: "/",
			headers:    append(nginx("GET", "/api/leave-report"), "Authorization: Bearer tok-member", "X-Organization-Id: org-1"),
			wantStatus: 200, wantUser: "u-member", wantOrg: "org-1", wantRoles: "member",
		},
		{
			// A client's identity header names no organization (a policy
			// cannot read x-auth-*; the policy package refuses it).
			name: "forged identity header stripped", method: "GET", target: "/",
			headers:    append(nginx("GET", "/api/leave-report"), "Authorization: Bearer tok-member", "X-Auth-Org-Id: org-1"),
			wantStatus: 403, wantReason: "no_organization",
		},
		{
			name: "no token", method: "GET", target: "/",
			headers:    nginx("GET", "/api/me"),
			wantStatus: 401, wantReason: "no_credential",
		},
		{
			name: "bad token", method: "GET", target: "/",
			headers:    append(nginx("GET", "/api/me"), "Authorization: Bearer "+badToken),
			wantStatus: 401, wantReason: "invalid_token",
		},
		{
			name: "public", method: "GET", target: "/",
			headers:    append(nginx("GET", "/healthz"), "X-Auth-User-Id: evil"),
			wantStatus: 200,
		},
		{
			name: "ambiguous path", method: "GET", target: "/",
			headers:    append(nginx("GET", "/api/me/../orgs/org-1/leave/7/approve"), "Authorization: Bearer tok-admin"),
			wantStatus: 403, wantReason: "ambiguous_path",
		},
		{
			name: "shadow route lets a deny through", method: "GET", target: "/",
			headers:    append(nginx("GET", "/api/orgs/org-1/shadow"), "Authorization: Bearer tok-member"),
			wantStatus: 200, wantUser: "u-member", wantOrg: "org-1", wantRoles: "member", wantShadow: "missing_permission",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := raw(t, srv, tc.method, tc.target, tc.headers...)
			if res.status != tc.wantStatus {
				t.Fatalf("status %d, want %d (reason %q, body %s)", res.status, tc.wantStatus, res.header.Get("X-Authz-Reason"), res.body)
			}
			for name, want := range map[string]string{
				"X-Authz-Reason":      tc.wantReason,
				"X-Auth-User-Id":      tc.wantUser,
				"X-Auth-Org-Id":       tc.wantOrg,
				"X-Auth-Roles":        tc.wantRoles,
				"X-Authz-Shadow-Deny": tc.wantShadow,
			} {
				if got := strings.Join(res.header.Values(name), "|"); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			if res.status == http.StatusUnauthorized && res.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if strings.Contains(res.body, badToken) || strings.Contains(headerText(res.header), badToken) ||
				strings.Contains(res.body, "tok-") || strings.Contains(headerText(res.header), "tok-") {
				t.Errorf("token echoed: %v %s", res.header, res.body)
			}
		})
	}
}
