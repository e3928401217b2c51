package cache

import (
	"context"
	"encoding/json"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// cpuTime is this process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measureCPU runs op b.N times and reports the CPU time it cost this
// process per op (the round trips' wall time is Redis's and the loaded
// machine's).
func measureCPU(b *testing.B, op func()) {
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime(b)
	for range b.N {
		op()
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
}

// measureCPUParallel is measureCPU with 16 goroutines running op.
func measureCPUParallel(b *testing.B, op func()) {
	b.ReportAllocs()
	b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	start := cpuTime(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			op()
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkL2Hit is an L2 hit with invalidation on (the entry and its
// markers read, decoded, judged), next to the floor: the same GETs in one
// pipeline through go-redis, with nothing done with the values.
func BenchmarkL2Hit(b *testing.B) {
	rdb, prefix := redisClient(b)
	ctx := context.Background()
	inv := NewInvalidations(InvalidationsConfig{})
	store := newL2Store(rdb, L2Config{Prefix: prefix, Invalidations: inv})
	access := newL2(b, store, AccessKind(), Lookup[roles.Query, *roles.Access](LookupFunc[roles.Query, *roles.Access](
		func(context.Context, roles.Query) (*roles.Access, roles.Tier, error) {
			return &roles.Access{UserFound: true, OrgID: "yK0ZXouz5O0ty1gvGr9OIdgSOkPWB7xN", Roles: []string{"admin"}, PlatformRoles: []string{"user"},
				Grants: roles.Grants{{Role: "admin", Perms: []string{"ac:create", "ac:delete", "ac:read", "ac:update", "invitation:cancel", "invitation:create",
					"leave:approve", "leave:read", "leave:request", "member:create", "member:delete", "member:update", "organization:update",
					"team:create", "team:delete", "team:update"}}},
				LoadedAt: time.Now()}, roles.TierSource, nil
		})))
	q := roles.Query{Subject: roles.Subject{UserID: "wmqcNNDAFhgqwsYs2ruLs4oPdnL6vJeC", OrgRef: "yK0ZXouz5O0ty1gvGr9OIdgSOkPWB7xN"}, Version: "0123456789abcdef"}
	const token = "Uw0Y0ozqQPfejrG45dS328Gp5IwjHaPo"
	sessions := newL2(b, store, SessionTokenKind(), Lookup[string, *authn.Session](&sessionSource{byKey: map[string]authn.Session{
		token: {Found: true, ID: "RxAskJaSNbP34TVdCSLFuNTOb8WGTCDJ", UserID: "wmqcNNDAFhgqwsYs2ruLs4oPdnL6vJeC",
			ExpiresAt: time.Now().Add(time.Hour), ActiveOrganizationID: "yK0ZXouz5O0ty1gvGr9OIdgSOkPWB7xN"},
	}}))
	access.Lookup(ctx, q)
	sessions.Lookup(ctx, token)
	accessKey := prefix + "access:" + string(AccessKind().AppendKey(nil, q))
	b.Run("floor", func(b *testing.B) {
		keys := []string{accessKey, prefix + "inv:all", prefix + "inv:u:" + q.UserID, prefix + "inv:o:" + q.OrgRef}
		measureCPU(b, func() {
			if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range keys {
					p.Get(ctx, k)
				}
				return nil
			}); err != nil && err != redis.Nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("access", func(b *testing.B) {
		measureCPU(b, func() {
			if _, tier, _ := access.Lookup(ctx, q); tier != roles.TierL2 {
				b.Fatal("not a hit")
			}
		})
	})
	// Sixteen lookups at once, as under a closed-loop load, next to the
	// floor's pipelines run the same way.
	b.Run("floor/parallel", func(b *testing.B) {
		keys := []string{accessKey, prefix + "inv:all", prefix + "inv:u:" + q.UserID, prefix + "inv:o:" + q.OrgRef}
		measureCPUParallel(b, func() {
			if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range keys {
					p.Get(ctx, k)
				}
				return nil
			}); err != nil && err != redis.Nil {
				b.Error(err)
			}
		})
	})
	b.Run("access/parallel", func(b *testing.B) {
		measureCPUParallel(b, func() {
			if _, tier, _ := access.Lookup(ctx, q); tier != roles.TierL2 {
				b.Error("not a hit")
			}
		})
	})
	b.Run("session_token", func(b *testing.B) {
		measureCPU(b, func() {
			if _, tier, _ := sessions.Lookup(ctx, token); tier != roles.TierL2 {
				b.Fatal("not a hit")
			}
		})
	})
}

// BenchmarkDecode compares the L2 value codec with the JSON the tier used
// before (encoding/json into the same struct, as roles.Access's and
// authn.Session's tags say), on values shaped like Better Auth's.
func BenchmarkDecode(b *testing.B) {
	access := &roles.Access{UserFound: true, OrgID: "yK0ZXouz5O0ty1gvGr9OIdgSOkPWB7xN", Roles: []string{"admin"}, PlatformRoles: []string{"user"},
		Grants: roles.Grants{{Role: "admin", Perms: []string{"ac:create", "ac:delete", "ac:read", "ac:update", "invitation:cancel", "invitation:create",
			"leave:approve", "leave:read", "leave:request", "member:create", "member:delete", "member:update", "organization:update",
			"team:create", "team:delete", "team:update"}}},
		LoadedAt: time.Now()}
	session := &authn.Session{Found: true, ID: "RxAskJaSNbP34TVdCSLFuNTOb8WGTCDJ", UserID: "wmqcNNDAFhgqwsYs2ruLs4oPdnL6vJeC",
		ExpiresAt: time.Now().Add(time.Hour), ActiveOrganizationID: "yK0ZXouz5O0ty1gvGr9OIdgSOkPWB7xN", LoadedAt: time.Now()}
	for _, bc := range []struct {
		name   string
		encode func() []byte
		decode func([]byte) error
	}{
		{"access/json", func() []byte { b, _ := json.Marshal(access); return b },
			func(b []byte) error { var a roles.Access; return json.Unmarshal(b, &a) }},
		{"access/binary", func() []byte { return encodeAccess(nil, access) },
			func(b []byte) error { _, err := decodeAccess(b); return err }},
		{"session/json", func() []byte { b, _ := json.Marshal(session); return b },
			func(b []byte) error { var s authn.Session; return json.Unmarshal(b, &s) }},
		{"session/binary", func() []byte { return encodeSession(nil, session) },
			func(b []byte) error { _, err := decodeSession(b); return err }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			v := bc.encode()
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.decode(v); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(v)), "value-bytes")
		})
	}
}
