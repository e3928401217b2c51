package authz

import (
	"encoding/json"
	"testing"
)

func TestCodes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		code   Code
		status int
		name   string
	}{
		{CodeOK, 200, "unavailable"}, // a deny carrying CodeOK fails closed
		{CodeUnauthenticated, 401, "unauthenticated"},
		{CodeForbidden, 403, "forbidden"},
		{CodeUnavailable, 503, "unavailable"},
		{Code(42), 503, "unavailable"},
	} {
		if got := tt.code.HTTPStatus(); got != tt.status {
			t.Errorf("Code(%d).HTTPStatus() = %d, want %d", tt.code, got, tt.status)
		}
		if got := tt.code.ErrorName(); got != tt.name {
			t.Errorf("Code(%d).ErrorName() = %q, want %q", tt.code, got, tt.name)
		}
	}
}

func TestFinishShadowMode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		d            Decision
		allow        bool
		wantAllow    bool
		wantShadowed bool
	}{
		{"enforced deny", Decision{Route: "r", enforce: true}, false, false, false},
		{"shadowed deny is let through", Decision{Route: "r", enforce: false}, false, true, true},
		{"shadowed allow is just an allow", Decision{Route: "r", enforce: false}, true, true, false},
		{"no route yet: always enforced", Decision{}, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Decision
			if tt.allow {
				d = tt.d.allow(ReasonGranted)
			} else {
				d = tt.d.deny(ReasonMissingPermission, "missing permission x:y")
			}
			if d.Allow != tt.wantAllow || d.Shadowed != tt.wantShadowed {
				t.Errorf("Allow %v Shadowed %v, want %v %v", d.Allow, d.Shadowed, tt.wantAllow, tt.wantShadowed)
			}
			if !tt.allow && d.Code != CodeForbidden {
				t.Errorf("a shadowed deny must keep its code: %v", d.Code)
			}
		})
	}
}

func TestDenyBody(t *testing.T) {
	t.Parallel()
	d := Decision{Code: CodeForbidden, Reason: ReasonMissingPermission, Detail: `requires "leave:approve"`, Route: "approve"}
	var got map[string]string
	if err := json.Unmarshal([]byte(d.DenyBody()), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"error": "forbidden", "reason": "missing_permission", "message": "missing permission",
		"detail": `requires "leave:approve"`, "route": "approve"}
	if len(got) != len(want) {
		t.Errorf("body = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("body[%s] = %q, want %q", k, got[k], v)
		}
	}
	// Optional members are omitted.
	empty := Decision{Code: CodeUnauthenticated, Reason: ReasonNoCredential}
	if b := empty.DenyBody(); b != `{"error":"unauthenticated","reason":"no_credential","message":"no credential"}` {
		t.Errorf("body = %s", b)
	}
}

// TestStatus: an allow (a shadowed deny included) is 200, a deny its code's
// status, and a deny that carries CodeOK (a bug) fails closed with 503.
func TestStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		d    Decision
		want int
	}{
		{"allow", Decision{Allow: true, Code: CodeOK}, 200},
		{"shadowed deny", Decision{Allow: true, Shadowed: true, Code: CodeForbidden}, 200},
		{"unauthenticated", Decision{Code: CodeUnauthenticated}, 401},
		{"forbidden", Decision{Code: CodeForbidden}, 403},
		{"unavailable", Decision{Code: CodeUnavailable}, 503},
		{"deny carrying CodeOK", Decision{Code: CodeOK}, 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.d.Status(); got != tt.want {
				t.Errorf("Status() = %d, want %d", got, tt.want)
			}
		})
	}
}
