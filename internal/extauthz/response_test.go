package extauthz_test

import (
	"maps"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/extauthz"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
)

// upstreamHeaders are the headers only the sidecar may set for the
// upstream: the identity headers and the decision id.
var upstreamHeaders = authz.IdentityHeaders[:]

// envoyUpstream applies an allow to the client's request headers the way
// Envoy's ext_authz filter does (source/extensions/filters/http/ext_authz/
// ext_authz.cc, Filter::onComplete): first the headers to set, add and
// append, then headers_to_remove. It returns the headers the upstream gets.
func envoyUpstream(t *testing.T, client map[string]string, r *authv3.CheckResponse) map[string]string {
	t.Helper()
	ok := r.GetOkResponse()
	if ok == nil {
		t.Fatalf("not an allow: %v", r)
	}
	up := maps.Clone(client)
	if up == nil {
		up = map[string]string{}
	}
	for _, h := range ok.GetHeaders() {
		k, v := strings.ToLower(h.GetHeader().GetKey()), h.GetHeader().GetValue()
		switch h.GetAppendAction() {
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			up[k] = v
		default:
			t.Errorf("header %s has append action %v; the sidecar's headers must overwrite", k, h.GetAppendAction())
		}
	}
	for _, k := range ok.GetHeadersToRemove() {
		delete(up, strings.ToLower(k))
	}
	return up
}

// forgedAll is a client request carrying its own copy of every header only
// the sidecar may set.
func forgedAll() map[string]string {
	h := map[string]string{"authorization": "Bearer x", "x-organization-id": "org_acme"}
	for _, name := range upstreamHeaders {
		h[name] = "forged"
	}
	return h
}

var fullDecision = authz.Decision{
	ID: "0123456789abcdef0123456789abcdef", Allow: true, Code: authz.CodeOK, Reason: authz.ReasonGranted,
	Route: "team-board", UserID: "alice", OrgID: "org_acme", OrgSource: policy.Source{Kind: policy.FromPath, Name: "org"},
	TeamID: "team_1", Roles: []string{"admin", "member"}, Credential: policy.CredSession, ImpersonatedBy: "root",
}

// TestAllowReachesUpstream: whatever a client sends, the upstream sees the
// sidecar's value of each identity header, or none.
func TestAllowReachesUpstream(t *testing.T) {
	t.Parallel()
	shadow := authz.Decision{ID: "feedfacefeedfacefeedfacefeedface", Allow: true, Shadowed: true, Code: authz.CodeForbidden,
		Reason: authz.ReasonMissingPermission, Route: "approve-leave", UserID: "bob", Credential: policy.CredJWT}
	apiKey := authz.Decision{ID: "1111", Allow: true, Code: authz.CodeOK, Reason: authz.ReasonGranted, Route: "me",
		UserID: "carol", Credential: policy.CredAPIKey, APIKeyID: "key_1"}
	tests := []struct {
		name string
		d    authz.Decision
		want map[string]string // every upstreamHeaders entry the upstream may see
	}{
		{name: "every field", d: fullDecision, want: map[string]string{
			"x-auth-user-id": "alice", "x-auth-org-id": "org_acme", "x-auth-roles": "admin,member",
			"x-auth-org-source": "path:org", "x-auth-team-id": "team_1", "x-auth-credential": "session",
			"x-auth-impersonated-by": "root", "x-authz-decision-id": fullDecision.ID,
		}},
		{name: "public route: nothing but the decision id", d: authz.Decision{ID: "2222", Allow: true, Code: authz.CodeOK, Reason: authz.ReasonPublic, Route: "health"},
			want: map[string]string{"x-authz-decision-id": "2222"}},
		{name: "shadowed deny", d: shadow, want: map[string]string{
			"x-auth-user-id": "bob", "x-auth-credential": "jwt", "x-authz-shadow-deny": "missing_permission", "x-authz-decision-id": shadow.ID,
		}},
		{name: "API key", d: apiKey, want: map[string]string{
			"x-auth-user-id": "carol", "x-auth-credential": "api_key", "x-auth-api-key-id": "key_1", "x-authz-decision-id": "1111",
		}},
		{name: "no decision id", d: authz.Decision{Allow: true, Code: authz.CodeOK, Reason: authz.ReasonGranted, UserID: "dave"},
			want: map[string]string{"x-auth-user-id": "dave"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client := forgedAll()
			up := envoyUpstream(t, client, extauthz.Response(&tt.d, extauthz.Options{}))
			for _, name := range upstreamHeaders {
				if got, want := up[name], tt.want[name]; got != want {
					t.Errorf("upstream %s = %q, want %q", name, got, want)
				}
			}
			// The client's other headers pass untouched.
			if up["authorization"] != client["authorization"] || up["x-organization-id"] != client["x-organization-id"] {
				t.Errorf("other headers changed: %v", up)
			}
		})
	}
}

// TestHeadersToRemoveNeverNamesASetHeader guards the ordering trap: Envoy
// removes after it sets, so a set header that is also removed is lost.
func TestHeadersToRemoveNeverNamesASetHeader(t *testing.T) {
	t.Parallel()
	for _, d := range []authz.Decision{fullDecision, {Allow: true, Code: authz.CodeOK, Reason: authz.ReasonPublic}} {
		ok := extauthz.Response(&d, extauthz.Options{}).GetOkResponse()
		var set []string
		for _, h := range ok.GetHeaders() {
			set = append(set, h.GetHeader().GetKey())
		}
		for _, r := range ok.GetHeadersToRemove() {
			if slices.Contains(set, r) {
				t.Errorf("%s is both set and removed", r)
			}
		}
		if n := len(set) + len(ok.GetHeadersToRemove()); n != len(upstreamHeaders) {
			t.Errorf("%d headers set or removed, want each of the %d exactly once", n, len(upstreamHeaders))
		}
	}
}

func TestDecisionIDToClient(t *testing.T) {
	t.Parallel()
	deny := authz.Decision{ID: "3333", Code: authz.CodeForbidden, Reason: authz.ReasonNotMember, UserID: "u1"}
	shadow := authz.Decision{ID: "4444", Allow: true, Shadowed: true, Code: authz.CodeForbidden, Reason: authz.ReasonNotMember, Route: "r"}
	tests := []struct {
		name string
		d    authz.Decision
		on   bool
		want map[string]string // headers to the client (allow: response_headers_to_add; deny: headers)
	}{
		{"allow, off", fullDecision, false, map[string]string{}},
		{"allow, on", fullDecision, true, map[string]string{"x-authz-decision-id": fullDecision.ID}},
		{"shadowed, on", shadow, true, map[string]string{"x-authz-decision-id": "4444", "x-authz-shadow-deny": "not_member"}},
		{"shadowed, off", shadow, false, map[string]string{"x-authz-shadow-deny": "not_member"}},
		{"deny, off", deny, false, map[string]string{"content-type": "application/json", "x-authz-reason": "not_member"}},
		{"deny, on", deny, true, map[string]string{"content-type": "application/json", "x-authz-reason": "not_member", "x-authz-decision-id": "3333"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := extauthz.Response(&tt.d, extauthz.Options{DecisionIDToClient: tt.on})
			hs := r.GetOkResponse().GetResponseHeadersToAdd()
			if r.GetOkResponse() == nil {
				hs = r.GetDeniedResponse().GetHeaders()
			}
			got := map[string]string{}
			for _, h := range hs {
				if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
					t.Errorf("%s: append action %v, want overwrite", h.GetHeader().GetKey(), h.GetAppendAction())
				}
				got[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("client headers %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMetadata(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		d       authz.Decision
		version string
		want    map[string]any
	}{
		{name: "allow with every field", d: fullDecision, version: "e05c04dd9273ab6a", want: map[string]any{
			"decision_id": fullDecision.ID, "decision": "allow", "status": 200.0, "reason": "granted", "route": "team-board",
			"user": "alice", "org": "org_acme", "org_source": "path:org", "team": "team_1", "roles": "admin,member",
			"credential": "session", "impersonated_by": "root", "policy_version": "e05c04dd9273ab6a",
		}},
		{name: "public allow", d: authz.Decision{ID: "5555", Allow: true, Code: authz.CodeOK, Reason: authz.ReasonPublic, Route: "health"},
			want: map[string]any{"decision_id": "5555", "decision": "allow", "status": 200.0, "reason": "public", "route": "health"}},
		{name: "deny with the caller known", d: authz.Decision{ID: "6666", Code: authz.CodeForbidden, Reason: authz.ReasonMissingPermission,
			Route: "approve-leave", UserID: "bob", OrgID: "org_acme", OrgSource: policy.Source{Kind: policy.FromHeader, Name: "x-organization-id"},
			Roles: []string{"member"}, Credential: policy.CredAPIKey, APIKeyID: "key_9"}, version: "v1",
			want: map[string]any{"decision_id": "6666", "decision": "deny", "status": 403.0, "reason": "missing_permission",
				"route": "approve-leave", "user": "bob", "org": "org_acme", "org_source": "header:x-organization-id", "roles": "member",
				"credential": "api_key", "api_key_id": "key_9", "policy_version": "v1"}},
		{name: "401", d: authz.Decision{ID: "7777", Code: authz.CodeUnauthenticated, Reason: authz.ReasonNoCredential, Route: "me"},
			want: map[string]any{"decision_id": "7777", "decision": "deny", "status": 401.0, "reason": "no_credential", "route": "me"}},
		{name: "shadowed deny names the status it would have had", d: authz.Decision{ID: "8888", Allow: true, Shadowed: true,
			Code: authz.CodeForbidden, Reason: authz.ReasonNotMember, Route: "shadow", UserID: "bob"},
			want: map[string]any{"decision_id": "8888", "decision": "shadow_deny", "status": 403.0, "reason": "not_member", "route": "shadow", "user": "bob"}},
		{name: "a deny claiming OK is still 503", d: authz.Decision{Code: authz.CodeOK, Reason: "bogus"},
			want: map[string]any{"decision": "deny", "status": 503.0, "reason": "bogus"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := tt.d
			d.PolicyVersion = tt.version
			md := metadataOf(t, extauthz.Response(&d, extauthz.Options{}))
			got := md.AsMap()
			if !maps.EqualFunc(got, tt.want, func(a, b any) bool { return a == b }) {
				t.Errorf("metadata %v,\nwant     %v", got, tt.want)
			}
			for k, v := range md.GetFields() {
				if !slices.Contains(extauthz.MetadataKeys[:], k) {
					t.Errorf("key %q is not in MetadataKeys", k)
				}
				if _, isNum := v.GetKind().(*structpb.Value_NumberValue); isNum != (k == extauthz.MetaStatus) {
					t.Errorf("key %q: kind %T", k, v.GetKind())
				}
			}
		})
	}
}

// metadataOf is r's dynamic metadata as Envoy reads it: after the wire.
func metadataOf(t *testing.T, r *authv3.CheckResponse) *structpb.Struct {
	t.Helper()
	wire, err := proto.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back authv3.CheckResponse
	if err := proto.Unmarshal(wire, &back); err != nil {
		t.Fatal(err)
	}
	if back.GetDynamicMetadata() == nil {
		t.Fatal("no dynamic metadata")
	}
	return back.GetDynamicMetadata()
}
