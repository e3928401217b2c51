package cache

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

type policyTable map[string][]string

func (p policyTable) RolePermissions(r string) ([]string, bool)         { v, ok := p[r]; return v, ok }
func (p policyTable) PlatformRolePermissions(r string) ([]string, bool) { return nil, false }
func (p policyTable) PlatformDefaultRole() string                       { return "user" }

var benchRoles = policyTable{
	"owner":  {"leave:approve", "leave:read", "leave:request", "member:create", "member:delete", "organization:delete"},
	"admin":  {"leave:approve", "leave:read", "leave:request", "member:create", "member:delete"},
	"member": {"leave:read", "leave:request"},
}

// freshSource builds every membership from new strings, as rows read from
// Postgres would be.
type freshSource struct{}

func (freshSource) Membership(_ context.Context, s roles.Subject) (roles.Membership, error) {
	role := []string{"member", "admin", "owner", "admin,member"}[len(s.UserID)%4]
	return roles.Membership{UserFound: true, OrgID: strings.Clone(s.OrgRef),
		Roles: strings.Split(strings.Clone(role), ",")}, nil
}

// freshSessions makes every session from new strings.
type freshSessions struct{}

func (freshSessions) Lookup(_ context.Context, token string) (*authn.Session, roles.Tier, error) {
	return &authn.Session{Found: true, ID: "s" + token[1:], UserID: "u" + token[1:], ExpiresAt: time.Now().Add(time.Hour),
		ActiveOrganizationID: "o" + token[2:], LoadedAt: time.Now()}, roles.TierSource, nil
}

// measure fills a fresh L1 with n answers of a kind shaped like Better
// Auth's (32-character ids) and returns the live heap they hold and the
// cost the --l1-max-bytes budget counts for them, per entry.
func measure[Q, V any](tb testing.TB, n int, kind *Kind[Q, V], next Lookup[Q, V], query func(int) Q) (live, cost float64) {
	tb.Helper()
	s := newL1Store(tb, L1Config{TTL: time.Hour, MaxBytes: 256 << 20})
	l1 := newL1(tb, s, kind, next)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	var total int64
	ctx := context.Background()
	for i := range n {
		q := query(i)
		v, _, err := l1.Lookup(ctx, q)
		if err != nil {
			tb.Fatal(err)
		}
		e := &entry[V]{value: v}
		e.key, e.subjects = l1.tag+string(kind.AppendKey(nil, q)), kind.subjects(q, v)
		total += l1.cost(e)
		if i%1000 == 0 {
			s.Wait()
		}
	}
	s.Wait()
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := 0
	for i := 0; i < n; i += 97 {
		if _, tier, _ := l1.Lookup(ctx, query(i)); tier == roles.TierL1 {
			held++
		}
	}
	if held != (n+96)/97 {
		tb.Fatalf("L1 kept %d of %d sampled entries; the budget is too small for the measurement", held, (n+96)/97)
	}
	runtime.KeepAlive(l1)
	return (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(n), float64(total) / float64(n)
}

func measureAccess(tb testing.TB, n int) (live, cost float64) {
	return measure(tb, n, AccessKind(), LookupFunc[roles.Query, *roles.Access](roles.NewSourceResolver(freshSource{}, nil).Resolve),
		func(i int) roles.Query {
			return roles.Query{Subject: roles.Subject{UserID: fmt.Sprintf("u%031d", i), OrgRef: fmt.Sprintf("o%031d", i%100)},
				Version: "0123456789abcdef", Tables: benchRoles}
		})
}

func measureSessions(tb testing.TB, n int) (live, cost float64) {
	return measure(tb, n, SessionTokenKind(), Lookup[string, *authn.Session](freshSessions{}),
		func(i int) string { return fmt.Sprintf("t%031d", i) })
}

// The budget is a real bound only if the cost does not under-count.
func TestL1CostBoundsLiveHeap(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes the heap")
	}
	for _, m := range []struct {
		kind    string
		measure func(testing.TB, int) (float64, float64)
	}{{"access", measureAccess}, {"session_token", measureSessions}} {
		live, cost := m.measure(t, 20_000)
		t.Logf("%s: live heap %.0f B/entry, counted cost %.0f B/entry", m.kind, live, cost)
		if live > cost {
			t.Errorf("%s entries hold %.0f B of live heap but are counted as %.0f B: --l1-max-bytes would be exceeded", m.kind, live, cost)
		}
	}
}

// BenchmarkL1Memory reports the live heap and counted cost per entry with
// 100 000 cached memberships.
func BenchmarkL1Memory(b *testing.B) {
	for range b.N {
		live, cost := measureAccess(b, 100_000)
		b.ReportMetric(live, "live-B/entry")
		b.ReportMetric(cost, "cost-B/entry")
	}
}
