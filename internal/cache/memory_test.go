package cache

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

type policyTable map[string][]string

func (p policyTable) RolePermissions(r string) ([]string, bool) { v, ok := p[r]; return v, ok }

var benchRoles = policyTable{
	"owner":  {"leave:approve", "leave:read", "leave:request", "member:*", "organization:delete"},
	"admin":  {"leave:approve", "leave:read", "leave:request", "member:*"},
	"member": {"leave:read", "leave:request"},
}

// freshSource builds every membership from new strings, as rows read from
// Postgres would be.
type freshSource struct{}

func (freshSource) Membership(_ context.Context, u, o string) (roles.Membership, error) {
	role := []string{"member", "admin", "owner", "admin,member"}[len(u)%4]
	return roles.Membership{UserID: u, UserFound: true, OrgID: strings.Clone(o),
		Roles: strings.Split(strings.Clone(role), ",")}, nil
}

// measureL1 fills a fresh L1 with n memberships shaped like Better Auth's
// (32-character ids) and returns the live heap they hold and entryCost's
// estimate of it (what the --l1-max-bytes budget counts), per entry.
func measureL1(tb testing.TB, n int) (live, cost float64) {
	tb.Helper()
	l1, err := NewL1(roles.NewSourceResolver(freshSource{}), L1Config{TTL: time.Hour, MaxBytes: 256 << 20}, prometheus.NewRegistry())
	if err != nil {
		tb.Fatal(err)
	}
	defer l1.Close()
	query := func(i int) roles.Query {
		return roles.Query{UserID: fmt.Sprintf("u%031d", i), OrgRef: fmt.Sprintf("o%031d", i%100), Version: "0123456789abcdef", Roles: benchRoles}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	var total int64
	ctx := context.Background()
	for i := range n {
		a, _, err := l1.Resolve(ctx, query(i))
		if err != nil {
			tb.Fatal(err)
		}
		total += entryCost(cacheKey(query(i)), a)
		if i%1000 == 0 {
			l1.Wait()
		}
	}
	l1.Wait()
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := 0
	for i := 0; i < n; i += 97 {
		if _, tier, _ := l1.Resolve(ctx, query(i)); tier == roles.TierL1 {
			held++
		}
	}
	if held != (n+96)/97 {
		tb.Fatalf("L1 kept %d of %d sampled entries; the budget is too small for the measurement", held, (n+96)/97)
	}
	return (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(n), float64(total) / float64(n)
}

// The budget is a real bound only if entryCost does not under-count.
func TestL1CostBoundsLiveHeap(t *testing.T) {
	live, cost := measureL1(t, 20_000)
	t.Logf("live heap %.0f B/entry, counted cost %.0f B/entry", live, cost)
	if live > cost {
		t.Errorf("entries hold %.0f B of live heap but are counted as %.0f B: --l1-max-bytes would be exceeded", live, cost)
	}
}

// BenchmarkL1Memory reports the live heap and counted cost per entry with
// 100 000 cached memberships.
func BenchmarkL1Memory(b *testing.B) {
	for range b.N {
		live, cost := measureL1(b, 100_000)
		b.ReportMetric(live, "live-B/entry")
		b.ReportMetric(cost, "cost-B/entry")
	}
}
