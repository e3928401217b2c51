package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"
	"unsafe"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/invalidate"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// The kinds the sidecar caches, and the adapters that present their tiers
// as the interfaces the decision engine consumes (roles.Resolver and
// internal/authz's SessionResolver and APIKeyResolver).
//
//	kind           query                      key                              subjects
//	access         roles.Query                version|user|org ref|team ref    u:<user>, o:<ref>, o:<org id>
//	session_token  a session token            hex SHA-256 of the token         s:<session id>, u:<user>
//	session_id     a session id               the id                           s:<session id>, u:<user>
//	apikey         an API key's stored hash   the hash                         k:<key id>, u:<owner>, o:<owner>

// AccessKind describes what a user may do in an organization (and team):
// roles.Access, keyed by policy version, user, organization and team
// reference. The version comes first, so a policy change moves every lookup
// to fresh keys.
func AccessKind() *Kind[roles.Query, *roles.Access] {
	return &Kind[roles.Query, *roles.Access]{
		Name: "access",
		AppendKey: func(dst []byte, q roles.Query) []byte {
			dst = append(append(dst, q.Version...), '|')
			dst = append(append(dst, q.UserID...), '|')
			dst = append(append(dst, q.OrgRef...), '|')
			return append(dst, q.TeamRef...)
		},
		QuerySubjects: func(dst []invalidate.Subject, q roles.Query) []invalidate.Subject {
			dst = append(dst, invalidate.UserSubject(q.UserID))
			if q.OrgRef != "" {
				dst = append(dst, invalidate.OrgSubject(q.OrgRef))
			}
			return dst
		},
		Subjects: func(dst []invalidate.Subject, q roles.Query, a *roles.Access) []invalidate.Subject {
			dst = append(dst, invalidate.UserSubject(q.UserID))
			if q.OrgRef != "" {
				dst = append(dst, invalidate.OrgSubject(q.OrgRef))
			}
			// Asked by slug: the organization's id names it too.
			if a.OrgID != "" && a.OrgID != q.OrgRef {
				dst = append(dst, invalidate.OrgSubject(a.OrgID))
			}
			return dst
		},
		// Negative: no such user, or not a member of the organization asked
		// for (a membership added later must not wait a full TTL).
		Positive: func(q roles.Query, a *roles.Access) bool {
			return a.UserFound && (q.OrgRef == "" || a.Member())
		},
		LoadedAt: func(a *roles.Access) time.Time { return a.LoadedAt },
		Cost:     accessCost,
		Encode:   encodeAccess,
		Decode:   decodeAccess,
	}
}

// accessCost counts an Access's struct and every string and slice it
// holds, as allocated.
func accessCost(a *roles.Access) int64 {
	n := heapSize(int(unsafe.Sizeof(*a))) + heapSize(len(a.OrgID)) + heapSize(len(a.TeamID)) + heapSize(len(a.InvalidRoles))
	n += stringsSize(a.Roles) + stringsSize(a.UnknownRoles) + stringsSize(a.PlatformRoles)
	for _, gs := range []roles.Grants{a.Grants, a.Platform} {
		n += heapSize(int(unsafe.Sizeof(roles.Grant{})) * len(gs))
		for _, g := range gs {
			n += heapSize(len(g.Role)) + stringsSize(g.Perms)
		}
	}
	return n
}

// SessionTokenKind describes Better Auth sessions looked up by token
// (cookies and bearer tokens). The key is the token's digest
// (authn.TokenDigest): the token itself is never a key, in memory or in
// Redis.
func SessionTokenKind() *Kind[string, *authn.Session] {
	k := sessionKind("session_token")
	k.AppendKey = appendTokenDigest
	return k
}

// SessionIDKind describes Better Auth sessions looked up by id (a JWT's
// session claim).
func SessionIDKind() *Kind[string, *authn.Session] {
	k := sessionKind("session_id")
	k.AppendKey = func(dst []byte, id string) []byte { return append(dst, id...) }
	k.QuerySubjects = func(dst []invalidate.Subject, id string) []invalidate.Subject {
		return append(dst, invalidate.SessionSubject(id))
	}
	k.Subjects = func(dst []invalidate.Subject, id string, s *authn.Session) []invalidate.Subject {
		dst = append(dst, invalidate.SessionSubject(id))
		if s.Found && s.UserID != "" {
			dst = append(dst, invalidate.UserSubject(s.UserID))
		}
		return dst
	}
	return k
}

// sessionKind is what both session kinds share. A session depends on its
// own row and on its user: Better Auth revokes all of a user's sessions
// stored in secondary storage with one marker, announced as a user
// invalidation. A session is never kept past its expiresAt.
func sessionKind(name string) *Kind[string, *authn.Session] {
	return &Kind[string, *authn.Session]{
		Name: name,
		Subjects: func(dst []invalidate.Subject, _ string, s *authn.Session) []invalidate.Subject {
			if !s.Found {
				return dst
			}
			if s.ID != "" {
				dst = append(dst, invalidate.SessionSubject(s.ID))
			}
			if s.UserID != "" {
				dst = append(dst, invalidate.UserSubject(s.UserID))
			}
			return dst
		},
		Positive: func(_ string, s *authn.Session) bool { return s.Found },
		LoadedAt: func(s *authn.Session) time.Time { return s.LoadedAt },
		Expires: func(s *authn.Session) time.Time {
			if !s.Found {
				return time.Time{}
			}
			if s.ExpiresAt.IsZero() {
				return time.Unix(0, 1) // no expiry: not valid, never kept
			}
			return s.ExpiresAt
		},
		Cost: func(s *authn.Session) int64 {
			return heapSize(int(unsafe.Sizeof(*s))) + heapSize(len(s.ID)) + heapSize(len(s.UserID)) +
				heapSize(len(s.ActiveOrganizationID)) + heapSize(len(s.ActiveTeamID)) + heapSize(len(s.ImpersonatedBy))
		},
		Encode: encodeSession,
		Decode: decodeSession,
	}
}

// appendTokenDigest appends authn.TokenDigest(token) (hex SHA-256) without
// allocating when dst has room for the token: the token is hashed where it
// was appended, then overwritten by the digest.
func appendTokenDigest(dst []byte, token string) []byte {
	n := len(dst)
	dst = append(dst, token...)
	sum := sha256.Sum256(dst[n:])
	return hex.AppendEncode(dst[:n], sum[:])
}

// APIKeyKind describes API keys looked up by their stored hash (not a
// secret: the key cannot be derived from it). A key depends on its row
// and on its owner, a user or an organization depending on the key's
// configuration, which only the policy knows: both are subjects (ids never
// collide). A key is never kept past its expiresAt.
func APIKeyKind() *Kind[string, *authn.APIKey] {
	return &Kind[string, *authn.APIKey]{
		Name:      "apikey",
		AppendKey: func(dst []byte, hash string) []byte { return append(dst, hash...) },
		Subjects: func(dst []invalidate.Subject, _ string, k *authn.APIKey) []invalidate.Subject {
			if !k.Found {
				return dst
			}
			if k.ID != "" {
				dst = append(dst, invalidate.APIKeySubject(k.ID))
			}
			if k.ReferenceID != "" {
				dst = append(dst, invalidate.UserSubject(k.ReferenceID), invalidate.OrgSubject(k.ReferenceID))
			}
			return dst
		},
		Positive: func(_ string, k *authn.APIKey) bool { return k.Found },
		LoadedAt: func(k *authn.APIKey) time.Time { return k.LoadedAt },
		Expires: func(k *authn.APIKey) time.Time {
			if !k.Found {
				return time.Time{}
			}
			return k.ExpiresAt
		},
		Cost: func(k *authn.APIKey) int64 {
			return heapSize(int(unsafe.Sizeof(*k))) + heapSize(len(k.ID)) + heapSize(len(k.ConfigID)) +
				heapSize(len(k.ReferenceID)) + stringsSize(k.Permissions)
		},
		Encode: encodeAPIKey,
		Decode: decodeAPIKey,
	}
}

// AccessResolver presents an access lookup (its tiers) as the
// roles.Resolver the engine consumes.
type AccessResolver struct {
	Lookup Lookup[roles.Query, *roles.Access]
}

// Resolve looks q up.
func (r AccessResolver) Resolve(ctx context.Context, q roles.Query) (*roles.Access, roles.Tier, error) {
	return r.Lookup.Lookup(ctx, q)
}

// SessionResolver presents the two session lookups as the engine's
// SessionResolver. ByID may be nil when sessions cannot be found by id
// (Better Auth's secondary storage keys them by token only).
type SessionResolver struct {
	ByToken Lookup[string, *authn.Session]
	ByID    Lookup[string, *authn.Session]
}

// ErrNoSessionByID is returned by SessionByID when sessions cannot be
// looked up by id (the policy refuses jwt.session_claim then).
var ErrNoSessionByID = errors.New("cache: sessions cannot be looked up by id in this session storage")

// SessionByToken looks the session of a (verified) token up.
func (r SessionResolver) SessionByToken(ctx context.Context, token string) (*authn.Session, roles.Tier, error) {
	return r.ByToken.Lookup(ctx, token)
}

// SessionByID looks a session up by its id.
func (r SessionResolver) SessionByID(ctx context.Context, id string) (*authn.Session, roles.Tier, error) {
	if r.ByID == nil {
		return nil, roles.TierNone, ErrNoSessionByID
	}
	return r.ByID.Lookup(ctx, id)
}

// APIKeyResolver presents the API key lookup as the engine's
// APIKeyResolver.
type APIKeyResolver struct {
	ByHash Lookup[string, *authn.APIKey]
}

// APIKeyByHash looks a key up by its stored hash.
func (r APIKeyResolver) APIKeyByHash(ctx context.Context, hash string) (*authn.APIKey, roles.Tier, error) {
	return r.ByHash.Lookup(ctx, hash)
}
