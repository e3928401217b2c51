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

// BenchmarkL1Memory fills L1 with 100 000 memberships shaped like Better
// Auth's (32-character ids) and reports the live heap per entry next to
// entryCost's estimate, which is what the --l1-max-bytes budget counts.
func BenchmarkL1Memory(b *testing.B) {
	const n = 100_000
	for range b.N {
		l1, err := NewL1(roles.NewSourceResolver(freshSource{}), L1Config{TTL: time.Hour, MaxBytes: 256 << 20}, prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		var cost int64
		ctx := context.Background()
		for i := range n {
			q := roles.Query{UserID: fmt.Sprintf("u%031d", i), OrgRef: fmt.Sprintf("o%031d", i%100), Version: "0123456789abcdef", Roles: benchRoles}
			a, _, err := l1.Resolve(ctx, q)
			if err != nil {
				b.Fatal(err)
			}
			cost += entryCost(cacheKey(q), a)
			if i%1000 == 0 {
				l1.Wait()
			}
		}
		l1.Wait()
		runtime.GC()
		runtime.ReadMemStats(&after)
		held := 0
		for i := 0; i < n; i += 97 {
			if _, tier, _ := l1.Resolve(ctx, roles.Query{UserID: fmt.Sprintf("u%031d", i), OrgRef: fmt.Sprintf("o%031d", i%100), Version: "0123456789abcdef", Roles: benchRoles}); tier == roles.TierL1 {
				held++
			}
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "live-B/entry")
		b.ReportMetric(float64(cost)/n, "cost-B/entry")
		b.ReportMetric(float64(held)/float64((n+96)/97)*100, "%held")
		l1.Close()
	}
}
