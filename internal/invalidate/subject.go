package invalidate

// Subject names a thing cached answers depend on and invalidations
// concern: a cached answer is refused once one of its subjects was
// invalidated after the answer was loaded. A subject is a one-letter type,
// a colon and an id:
//
//	u:<user id>                      a user (the row, memberships, team memberships)
//	o:<organization id or slug>      an organization (the row, custom roles)
//	s:<session id>                   a session (never its token)
//	k:<API key id>                   an API key (never the key or its hash)
//
// The shared tier's marker of a subject is the Redis key
// "<prefix>inv:<subject>" (docs/consistency.md), so a subject is also what
// publishers outside the sidecar write.
type Subject string

// UserSubject is the subject of user id.
func UserSubject(id string) Subject { return Subject("u:" + id) }

// OrgSubject is the subject of an organization reference, an id or a
// slug: answers cached under either are found by either's invalidation
// (an answer depends on the reference it was asked with and on the
// canonical id it found).
func OrgSubject(ref string) Subject { return Subject("o:" + ref) }

// SessionSubject is the subject of the session whose id is id.
func SessionSubject(id string) Subject { return Subject("s:" + id) }

// APIKeySubject is the subject of the API key whose id is id.
func APIKeySubject(id string) Subject { return Subject("k:" + id) }
