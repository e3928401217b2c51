package loadgen

import (
	"slices"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/extauthz"
)

// TestAnswerMatchesProto holds the lean answer reader to a whole decode of
// the sidecar's own answers.
func TestAnswerMatchesProto(t *testing.T) {
	allow := authz.Decision{ID: "0123456789abcdef0123456789abcdef", Allow: true, Code: authz.CodeOK, Reason: authz.ReasonGranted,
		Route: "read-leave", UserID: "user-0042", OrgID: "org-7", Roles: []string{"member"}}
	noUser := allow
	noUser.UserID = ""
	shadow := authz.Decision{Allow: true, Shadowed: true, Code: authz.CodeForbidden, Reason: authz.ReasonMissingPermission, UserID: "u2"}
	tests := []struct {
		name      string
		d         authz.Decision
		wantAllow bool
		lean      bool // read without a whole decode
	}{
		{"allow", allow, true, true},
		{"allow without a user", noUser, true, true},
		{"shadowed deny", shadow, true, true},
		{"401", authz.Decision{Code: authz.CodeUnauthenticated, Reason: authz.ReasonNoCredential}, false, false},
		{"403", authz.Decision{Code: authz.CodeForbidden, Reason: authz.ReasonMissingPermission, UserID: "u3"}, false, false},
		{"503", authz.Decision{Code: authz.CodeUnavailable, Reason: authz.ReasonOverloaded}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := extauthz.Response(&tt.d, extauthz.Options{})
			b, err := proto.Marshal(resp)
			if err != nil {
				t.Fatal(err)
			}
			// The same fields in reverse order must read the same.
			var reversed []byte
			for _, m := range []proto.Message{
				&authv3.CheckResponse{DynamicMetadata: resp.DynamicMetadata},
				&authv3.CheckResponse{HttpResponse: resp.HttpResponse},
				&authv3.CheckResponse{Status: resp.Status},
			} {
				part, err := proto.Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				reversed = append(reversed, part...)
			}
			for _, in := range [][]byte{b, reversed} {
				var a answer
				if err := a.read(in); err != nil {
					t.Fatal(err)
				}
				if a.code != resp.GetStatus().GetCode() || a.allow != tt.wantAllow || a.userID != okHeader(resp, headerUserID) {
					t.Errorf("read code %d allow %v user %q; the whole decode says code %d user %q, want allow %v",
						a.code, a.allow, a.userID, resp.GetStatus().GetCode(), okHeader(resp, headerUserID), tt.wantAllow)
				}
				if lean := a.full == nil; lean != tt.lean {
					t.Errorf("read without a whole decode: %v, want %v", lean, tt.lean)
				}
				want := new(authv3.CheckResponse) // decoded: resp's metadata is raw bytes
				if err := proto.Unmarshal(b, want); err != nil {
					t.Fatal(err)
				}
				if !tt.lean && !proto.Equal(a.full, want) {
					t.Errorf("whole decode differs: %v", a.full)
				}
			}
		})
	}
	t.Run("malformed", func(t *testing.T) {
		b, err := proto.Marshal(extauthz.Response(&allow, extauthz.Options{}))
		if err != nil {
			t.Fatal(err)
		}
		var a answer
		if err := a.read(slices.Concat(b, []byte{0x1a, 0x05})); err == nil {
			t.Fatalf("truncated answer read as %+v", a)
		}
	})
}
