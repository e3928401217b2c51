// Package policytest runs a policy's test cases: requests, the users who
// send them and the decisions expected, written in YAML beside
// policies.yaml and run by "authz-sidecar test FILE". Each case is decided
// by the sidecar's real engine (internal/authz) and token verifier
// (internal/authn), so a test can never disagree with production; only
// the JWKS and Better Auth's tables are replaced by in-memory fakes, so no
// database, Redis or identity service is needed.
//
// # File format
//
// docs/policy.md ("Policy tests") is the reference for the file format:
// every key of every mapping, which doc_test.go keeps equal to the keys
// parseFile accepts (file.go). Unknown keys are errors reported as
// file:line:col, like the policy loader's.
package policytest

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
)

// Run runs the cases of testFile against the policy it names, writes
// PASS or FAIL per case (a failure with the request, the user, what was
// expected and what the engine decided) and a last line "N passed, M
// failed" to w. A failing case is not an error: err is for a test file
// or policy that cannot be read or is invalid (a *policy.Error listing
// every problem as file:line:col, for either file), a canceled ctx, or a
// failed write to w.
func Run(ctx context.Context, testFile string, w io.Writer) (passed, failed int, err error) {
	data, err := os.ReadFile(testFile)
	if err != nil {
		return 0, 0, fmt.Errorf("read test file: %w", err)
	}
	f, err := parseFile(testFile, data)
	if err != nil {
		return 0, 0, err
	}
	polPath := f.Policy
	if !filepath.IsAbs(polPath) {
		polPath = filepath.Join(filepath.Dir(testFile), polPath)
	}
	pol, err := policy.Load(polPath)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: policy: %w", testFile, err)
	}
	h, err := newHarness(pol)
	if err != nil {
		return 0, 0, err
	}

	var out strings.Builder
	for i := range f.Cases {
		tc := &f.Cases[i]
		if err := ctx.Err(); err != nil {
			return passed, failed, err
		}
		d, err := h.decide(ctx, tc.request(), tc.user())
		if err != nil {
			return passed, failed, fmt.Errorf("case %q: %w", tc.Name, err)
		}
		if tc.Expect.matches(d) {
			passed++
			fmt.Fprintf(&out, "PASS  %s\n", tc.Name)
			continue
		}
		failed++
		fmt.Fprintf(&out, "FAIL  %s  (%s:%d)\n", tc.Name, testFile, tc.line)
		fmt.Fprintf(&out, "      request:  %s\n", tc.Request.describe())
		fmt.Fprintf(&out, "      user:     %s\n", tc.User.describe())
		fmt.Fprintf(&out, "      expected: %s\n", tc.Expect.describe())
		fmt.Fprintf(&out, "      got:      %s\n", describeDecision(d))
	}
	fmt.Fprintf(&out, "%d passed, %d failed\n", passed, failed)
	if _, err := io.WriteString(w, out.String()); err != nil {
		return passed, failed, fmt.Errorf("write results: %w", err)
	}
	return passed, failed, nil
}

func (tc *testCase) request() authz.Request {
	r := authz.Request{Method: tc.Request.Method, Path: tc.Request.Path, RouteName: tc.Request.Route}
	if tc.Request.Headers != nil {
		r.Headers = authz.HeaderMap(tc.Request.Headers)
	}
	return r
}

func (tc *testCase) user() *User {
	u := tc.User
	if u == nil {
		return nil
	}
	var cred policy.Credential
	switch u.Credential {
	case "jwt":
		cred = policy.CredJWT
	case "session":
		cred = policy.CredSession
	case "api_key":
		cred = policy.CredAPIKey
	}
	return &User{
		ID: u.ID, Credential: cred, Roles: u.Roles, CustomRoles: u.Custom, OrgID: u.Org, Slug: u.Slug,
		NotMember: u.Member != nil && !*u.Member, Banned: u.Banned,
		Unknown: u.Exists != nil && !*u.Exists, Claims: u.Claims,
		PlatformRole: u.PlatformRole, EmailVerified: u.EmailVerified, Anonymous: u.Anonymous, TwoFactor: u.TwoFactor,
		ImpersonatedBy: u.ImpersonatedBy, ActiveOrg: u.ActiveOrg, ActiveTeam: u.ActiveTeam, Teams: u.Teams,
		KeyPermissions: u.KeyPermissions, KeyOrg: u.KeyOrg,
	}
}

// matches reports whether d is what e expects; unset fields match anything.
func (e expectSpec) matches(d authz.Decision) bool {
	return d.Allow == (e.Decision == "allow") &&
		(e.Status == 0 || e.Status == d.Code.HTTPStatus()) &&
		(e.Reason == "" || e.Reason == string(d.Reason)) &&
		(e.Route == "" || e.Route == d.Route) &&
		(e.Org == "" || e.Org == d.OrgID)
}

func (e expectSpec) describe() string {
	s := e.Decision
	if e.Status != 0 {
		s += fmt.Sprintf(" %d", e.Status)
	}
	if e.Reason != "" {
		s += " " + e.Reason
	}
	var ctx []string
	if e.Route != "" {
		ctx = append(ctx, "route "+e.Route)
	}
	if e.Org != "" {
		ctx = append(ctx, "org "+e.Org)
	}
	if len(ctx) > 0 {
		s += " (" + strings.Join(ctx, ", ") + ")"
	}
	return s
}

func describeDecision(d authz.Decision) string {
	s := "deny"
	if d.Allow {
		s = "allow"
	}
	if d.Shadowed {
		s += " (shadow mode)"
	}
	s += fmt.Sprintf(" %d %s", d.Code.HTTPStatus(), d.Reason)
	if d.Detail != "" {
		s += ": " + d.Detail
	}
	var ctx []string
	if d.Route != "" {
		ctx = append(ctx, "route "+d.Route)
	}
	if d.OrgID != "" {
		org := "org " + d.OrgID
		if d.OrgSource.Kind != 0 {
			org += " from " + d.OrgSource.String()
		}
		ctx = append(ctx, org)
	}
	if len(ctx) > 0 {
		s += " (" + strings.Join(ctx, ", ") + ")"
	}
	return s
}

func (r requestSpec) describe() string {
	var parts []string
	if r.Method != "" {
		parts = append(parts, r.Method)
	}
	if r.Path != "" {
		parts = append(parts, r.Path)
	}
	if r.Route != "" {
		parts = append(parts, "route "+r.Route)
	}
	if len(r.Headers) > 0 {
		parts = append(parts, "headers "+mapString(r.Headers))
	}
	return strings.Join(parts, " ")
}

func (u *userSpec) describe() string {
	if u == nil {
		return "none (no token)"
	}
	s := u.ID
	if len(u.Roles) > 0 {
		s += " roles " + listString(u.Roles)
	} else if u.Member == nil || *u.Member {
		s += " no roles"
	}
	if len(u.Custom) > 0 {
		s += " custom " + mapString(u.Custom)
	}
	if u.Org != "" {
		s += " in org " + u.Org
		if u.Slug != "" {
			s += " (slug " + u.Slug + ")"
		}
	}
	if u.Member != nil && !*u.Member {
		s += " not a member"
	}
	if u.Banned {
		s += " banned"
	}
	if u.Exists != nil && !*u.Exists {
		s += " deleted"
	}
	if len(u.Claims) > 0 {
		s += " claims " + mapString(u.Claims)
	}
	return s
}

func listString(l []string) string { return "[" + strings.Join(l, ", ") + "]" }

// mapString formats m like the YAML flow mapping it was written as, keys
// sorted.
func mapString[V string | []string](m map[string]V) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch v := any(m[k]).(type) {
		case string:
			parts = append(parts, k+": "+v)
		case []string:
			parts = append(parts, k+": "+listString(v))
		}
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
