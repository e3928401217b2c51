// Package cache holds the cache tiers that sit in front of the sources of
// truth (Better Auth's PostgreSQL tables, or its secondary storage for
// sessions): an in-process ristretto tier (L1) and a Redis tier (L2),
// generic over what they cache.
//
// A Kind describes one kind of lookup: its query and answer types, its
// key, the invalidation subjects its answers depend on, its lifetimes and
// its Redis encoding. Four kinds exist (AccessKind, SessionTokenKind,
// SessionIDKind, APIKeyKind), and one L1 and one L2 implementation serve
// them all: L1[Q, V] and L2[Q, V] are each a Lookup[Q, V] decorating the
// next one (L1 → L2 → source), sharing per tier one store (L1Store: one
// memory budget and clock; L2Store: one Redis client, breaker and set of
// invalidation markers). AccessResolver, SessionResolver and
// APIKeyResolver present the tiers as the interfaces the decision engine
// consumes.
//
// Every tier collapses concurrent misses into one load (singleflight),
// loads detached from the caller with its own deadline, caches negative
// answers with their own TTL, refuses answers loaded before an
// invalidation of one of their subjects (invalidate.Subject: u:<user>,
// o:<organization>, s:<session id>, k:<API key id>; Invalidations, and the
// L2 markers "<prefix>inv:<subject>"), and never keeps an answer past its
// own expiry (a session's or key's expiresAt). A session token is never a
// key: its digest is. An L1 hit neither allocates nor locks (but for a read
// lock on the first hit of an entry after an invalidation). L2 values are a
// compact binary encoding behind a format byte (codec.go).
// docs/consistency.md states the guarantees.
//
// NewRedis opens any Redis topology (single node, Cluster, Sentinel);
// RedisBus carries invalidation messages over pub/sub; SecondarySessions
// reads Better Auth's sessions from its secondary storage; Tokens caches
// verified JWTs.
//
// It is the only package that imports ristretto and go-redis.
package cache
