package cache

import (
	"context"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/invalidate"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// Lookup answers one kind of query: what every tier is and decorates.
// Errors mean the answer cannot be known (the caller fails closed); an
// answer saying "there is no such thing" is a value, cached like any
// other.
type Lookup[Q, V any] interface {
	Lookup(ctx context.Context, q Q) (V, roles.Tier, error)
}

// LookupFunc adapts a function, typically a source's method, to Lookup.
type LookupFunc[Q, V any] func(ctx context.Context, q Q) (V, roles.Tier, error)

// Lookup calls f.
func (f LookupFunc[Q, V]) Lookup(ctx context.Context, q Q) (V, roles.Tier, error) { return f(ctx, q) }

// Kind describes one kind of lookup to the tiers, which are generic over
// it: how its queries are keyed, what its answers depend on, how long they
// may live and how they are stored in Redis. The kinds are AccessKind,
// SessionTokenKind, SessionIDKind and APIKeyKind. A Kind is immutable.
type Kind[Q, V any] struct {
	// Name labels the kind's metrics (kind="...") and starts its keys in
	// both tiers; it never contains ':' or '|'.
	Name string
	// AppendKey appends q's key, unique within the kind. It must not
	// allocate when dst has room (it runs on every L1 lookup), and never
	// put a secret in the key: a session token becomes its digest.
	AppendKey func(dst []byte, q Q) []byte
	// QuerySubjects appends the invalidation subjects known from q alone,
	// before the answer is read (nil: none). L2 reads their markers
	// together with the entry.
	QuerySubjects func(dst []invalidate.Subject, q Q) []invalidate.Subject
	// Subjects appends every subject the answer v to q depends on: those
	// of QuerySubjects and those only the answer names (a session's user,
	// an organization's canonical id). The answer is refused once one of
	// them is invalidated after it was loaded.
	Subjects func(dst []invalidate.Subject, q Q, v V) []invalidate.Subject
	// Positive reports whether v says that something exists (it then lives
	// the TTL); "no such thing" answers live the negative TTL.
	Positive func(q Q, v V) bool
	// LoadedAt is when the source query that produced v started (zero:
	// unknown, which is older than any invalidation).
	LoadedAt func(v V) time.Time
	// Expires, when set, is when v stops being valid whatever the caches
	// say (a session's expiresAt); no tier keeps v past it. Zero: never.
	Expires func(v V) time.Time
	// Cost approximates the heap bytes v holds (L1's memory budget).
	Cost func(v V) int64
	// Encode appends v's L2 encoding; Decode reads it back. Decode must
	// refuse (with an error) anything it did not write: a value it cannot
	// read is a miss, never an answer.
	Encode func(dst []byte, v V) []byte
	Decode func(b []byte) (V, error)
}

// subjects returns the subjects of v, packed.
func (k *Kind[Q, V]) subjects(q Q, v V) packedSubjects {
	var buf [4]invalidate.Subject
	return packSubjects(k.Subjects(buf[:0], q, v))
}

// packedSubjects is a list of subjects in one string, each a uvarint
// length then its bytes: one allocation per cached answer instead of one
// per subject plus a slice.
type packedSubjects string

func packSubjects(subjects []invalidate.Subject) packedSubjects {
	n := 0
	for _, s := range subjects {
		n += len(s) + 2
	}
	b := make([]byte, 0, n)
	for _, s := range subjects {
		for l := uint(len(s)); ; l >>= 7 {
			if l < 0x80 {
				b = append(b, byte(l))
				break
			}
			b = append(b, byte(l)|0x80)
		}
		b = append(b, s...)
	}
	return packedSubjects(b)
}

// next returns the first subject and the rest; ok is false at the end.
// It does not allocate.
func (p packedSubjects) next() (first invalidate.Subject, rest packedSubjects, ok bool) {
	var n, shift uint
	for i := 0; i < len(p); i++ {
		c := p[i]
		n |= uint(c&0x7f) << shift
		if c < 0x80 {
			end := i + 1 + int(n)
			if end > len(p) || end < i+1 {
				return "", "", false // not written by packSubjects
			}
			return invalidate.Subject(p[i+1 : end]), p[end:], true
		}
		if shift += 7; shift >= 64 {
			break
		}
	}
	return "", "", false
}
