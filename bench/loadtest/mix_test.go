package main

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/policytest"
)

func TestScheduleKeepsTheMixInEveryStretch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mix  []kind
	}{
		{name: "default mix", mix: defaultMix()},
		{name: "two kinds", mix: []kind{{name: "a", weight: 3}, {name: "b", weight: 1}}},
		{name: "zero weight never scheduled", mix: []kind{{name: "a", weight: 2}, {name: "never", weight: 0}, {name: "b", weight: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := schedule(tt.mix)
			total := 0
			for _, k := range tt.mix {
				total += k.weight
			}
			if len(s) != total {
				t.Fatalf("schedule has %d slots, want %d", len(s), total)
			}
			counts := make([]int, len(tt.mix))
			for n, ki := range s {
				counts[ki]++
				// Smooth round-robin: after any n requests, every kind is
				// within one request of its share. Blocks of one kind fail.
				for i, k := range tt.mix {
					want := float64(n+1) * float64(k.weight) / float64(total)
					if d := math.Abs(float64(counts[i]) - want); d >= 1 {
						t.Fatalf("after %d requests %s has %d, want ~%.2f", n+1, k.name, counts[i], want)
					}
				}
			}
			for i, k := range tt.mix {
				if counts[i] != k.weight {
					t.Errorf("%s scheduled %d times, want %d", k.name, counts[i], k.weight)
				}
			}
		})
	}
}

func TestDefaultMixIsEightyTwenty(t *testing.T) {
	t.Parallel()
	allowed, total := 0, 0
	statuses := map[int]bool{}
	for _, k := range defaultMix() {
		total += k.weight
		if k.status == 200 {
			allowed += k.weight
		}
		statuses[k.status] = true
	}
	if total != 100 || allowed != 80 {
		t.Errorf("allowed %d of %d, want 80 of 100", allowed, total)
	}
	for _, s := range []int{200, 401, 403} {
		if !statuses[s] {
			t.Errorf("no kind expects %d", s)
		}
	}
}

// TestMixMatchesPolicy derives each kind's status from the repository's
// policies.yaml, so a policy change that the mix does not follow fails
// here, not in the middle of a load run.
func TestMixMatchesPolicy(t *testing.T) {
	t.Parallel()
	pol, err := policy.Load(filepath.Join("..", "..", "policies.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range defaultMix() {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			path := k.what.path("org-1", 7)
			m, ok := pol.Match(k.what.method(), path)
			if !ok {
				t.Fatalf("no route for %s %s", k.what.method(), path)
			}
			if org, _ := m.Param("org"); org != "org-1" {
				t.Errorf("organization from the path = %q, want org-1", org)
			}
			// The oracle is the sidecar's own engine (policytest's harness),
			// so the mix can never disagree with the real decision rule.
			var user *policytest.User
			if k.who != anonymous {
				user = &policytest.User{ID: "u-" + k.who.String()}
				if k.who == outsider {
					user.NotMember = true
				} else {
					user.Roles = []string{k.who.String()}
				}
			}
			d, err := policytest.Decide(context.Background(), pol, authz.Request{Method: k.what.method(), Path: path}, user, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := d.Status()
			if k.status != want {
				t.Errorf("expects %d, policy route %s says %d", k.status, m.Route.Name, want)
			}
		})
	}
}

func testWorld() world {
	var w world
	w.orgID = "org-1"
	for a := range anonymous {
		w.users[a] = identity{userID: "u-" + a.String(), auth: "Bearer tok-" + a.String()}
	}
	return w
}

func TestPlanCall(t *testing.T) {
	t.Parallel()
	mix := defaultMix()
	sched := schedule(mix)
	w := testWorld()
	guarded := &plan{base: "http://front", mix: mix, sched: sched, world: w, guarded: true}
	baseline := &plan{base: "http://base", mix: mix, sched: sched, world: w}
	for i := range uint64(2 * len(sched)) {
		k := mix[sched[i%uint64(len(sched))]]
		u := w.users[k.who]

		g := guarded.call(i)
		if g.kind != sched[i%uint64(len(sched))] || g.auth != u.auth || g.method != k.what.method() {
			t.Fatalf("call %d = %+v, want kind %s", i, g, k.name)
		}
		if !strings.HasPrefix(g.url, "http://front/api/orgs/org-1/leave/") {
			t.Fatalf("call %d url %q", i, g.url)
		}
		if g.want.request != g.method+" "+strings.TrimPrefix(g.url, "http://front") {
			t.Fatalf("call %d: expected request %q for url %q", i, g.want.request, g.url)
		}
		if g.want.status != k.status || g.want.upstream != (k.status == 200) {
			t.Fatalf("call %d (%s): want %+v", i, k.name, g.want)
		}
		if k.status == 200 && (g.want.userID != u.userID || g.want.orgID != "org-1") {
			t.Fatalf("call %d (%s): identity %q/%q", i, k.name, g.want.userID, g.want.orgID)
		}

		b := baseline.call(i)
		if b.want.status != 200 || !b.want.upstream || b.want.userID != "" || b.want.orgID != "" {
			t.Fatalf("baseline call %d: want %+v", i, b.want)
		}
		if strings.TrimPrefix(b.url, "http://base") != strings.TrimPrefix(g.url, "http://front") || b.auth != g.auth {
			t.Fatalf("baseline call %d differs from the guarded one: %q vs %q", i, b.url, g.url)
		}
	}
	if anon := w.users[anonymous]; anon.auth != "" {
		t.Errorf("anonymous sends %q", anon.auth)
	}
}

func echo(request, user, org string) []byte {
	return []byte("upstream: " + request + "\nx-auth-user-id: " + user + "\nx-auth-org-id: " + org +
		"\nx-auth-roles: member\nx-authz-shadow-deny: \n")
}

func TestExpectationCheck(t *testing.T) {
	t.Parallel()
	allow := expectation{status: 200, upstream: true, request: "GET /a", userID: "u1", orgID: "o1"}
	deny := expectation{status: 403, request: "POST /a"}
	baseline := expectation{status: 200, upstream: true, request: "GET /a"}
	nginx403 := []byte("<html>\n<head><title>403 Forbidden</title></head>\n</html>\n")
	tests := []struct {
		name    string
		want    expectation
		status  int
		body    []byte
		wantErr string // substring; empty: no error
	}{
		{name: "allow as the right user", want: allow, status: 200, body: echo("GET /a", "u1", "o1")},
		{name: "allow as another user", want: allow, status: 200, body: echo("GET /a", "u2", "o1"), wantErr: `x-auth-user-id "u2"`},
		{name: "allow in another org", want: allow, status: 200, body: echo("GET /a", "u1", "o2"), wantErr: `x-auth-org-id "o2"`},
		{name: "allow without identity", want: allow, status: 200, body: echo("GET /a", "", ""), wantErr: "x-auth-user-id"},
		{name: "allow of another request", want: allow, status: 200, body: echo("GET /b", "u1", "o1"), wantErr: `upstream "GET /b"`},
		{name: "allow not from the application", want: allow, status: 200, body: []byte("ok"), wantErr: "not the application's"},
		{name: "echo lacking a header", want: allow, status: 200, body: []byte("upstream: GET /a\n"), wantErr: "lacks x-auth-user-id"},
		{name: "allow denied", want: allow, status: 403, body: nginx403, wantErr: "status 403, want 200"},
		{name: "deny", want: deny, status: 403, body: nginx403},
		{name: "deny that reached the application", want: deny, status: 403, body: echo("POST /a", "", ""), wantErr: "reached the application"},
		{name: "deny allowed", want: deny, status: 200, body: echo("POST /a", "u1", "o1"), wantErr: "status 200, want 403"},
		{name: "deny with another status", want: deny, status: 401, body: nginx403, wantErr: "status 401, want 403"},
		{name: "unavailable is not a deny we expect", want: deny, status: 500, body: nil, wantErr: "status 500"},
		{name: "baseline without identity", want: baseline, status: 200, body: echo("GET /a", "", "")},
		{name: "baseline passing a forged identity", want: baseline, status: 200, body: echo("GET /a", "evil", ""), wantErr: `x-auth-user-id "evil"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.want.check(tt.status, tt.body)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("check: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("check passed, want an error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("check: %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}
