// Package invalidate carries "this changed" messages from where membership
// data changes (Better Auth hooks, PostgreSQL triggers) to every sidecar
// replica, and applies them to the caches: it owns the message format, the
// de-duplication, the republishing of database notifications, and the
// flushes after possibly missed messages (docs/consistency.md).
//
// It imports neither Redis nor PostgreSQL: internal/cache provides the bus
// and the stores, internal/pg the notification feed, through the small
// interfaces in service.go.
package invalidate

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// Version is the message format version this package writes.
const Version = 1

// Kind says what changed.
type Kind string

// The kinds of change. Each names the smallest set of cached answers that
// may be wrong after it.
const (
	// KindMember: a membership of User in Org (or in a team of Org) was
	// added, changed or removed. Invalidates User's answers (in every
	// organization; a user has few, and this needs no per-pair
	// bookkeeping).
	KindMember Kind = "member"
	// KindUser: the user row changed (ban, unban, deletion).
	KindUser Kind = "user"
	// KindOrg: the organization changed (slug, deletion). Slugs lists its
	// old and new slugs when known, so answers cached under a slug are
	// caught too.
	KindOrg Kind = "org"
	// KindRole: the organization's custom role Role was created, changed or
	// deleted. Invalidates the whole organization.
	KindRole Kind = "role"
	// KindSession: the session Session (of User) was updated (active
	// organization or team, expiry) or deleted. Invalidates the answers
	// about that session, found by token or by id.
	KindSession Kind = "session"
	// KindAPIKey: the API key APIKey was updated or deleted. Invalidates
	// the answers about that key.
	KindAPIKey Kind = "apikey"
	// KindAll: anything may have changed (for example notifications were
	// lost). Invalidates every answer, in every tier.
	KindAll Kind = "all"
)

// Message is one invalidation, JSON-encoded on the channel:
//
//	{"v":1,"id":"3b0c…","kind":"member","user":"u1","org":"o1","src":"pg","at":1795731650123}
//
// Receivers apply a message at most once per ID.
type Message struct {
	V    int    `json:"v"`
	ID   string `json:"id"`
	Kind Kind   `json:"kind"`
	// User is the user id (member, user; session, where it is
	// informative).
	User string `json:"user,omitempty"`
	// Org is the organization id (member, org, role).
	Org string `json:"org,omitempty"`
	// Slugs are slugs the organization has or had (org; optional).
	Slugs []string `json:"slugs,omitempty"`
	// Role is the custom role's name (role; informative).
	Role string `json:"role,omitempty"`
	// Session is the session's id, never its token (session).
	Session string `json:"session,omitempty"`
	// APIKey is the API key's id, never the key (apikey).
	APIKey string `json:"apikey,omitempty"`
	// Src names the publisher (informative: "pg", "better-auth", a host).
	Src string `json:"src,omitempty"`
	// At is when the message was published, unix milliseconds (optional;
	// used to measure propagation lag).
	At int64 `json:"at,omitempty"`
}

// ErrMalformed reports a payload that is not a message at all.
var ErrMalformed = errors.New("malformed invalidation message")

// Parse decodes a message. A payload that is not a JSON object with a
// version and an id is ErrMalformed. A well-formed message this version
// does not fully understand (a newer version, an unknown kind, a kind
// without the ids it needs) is turned into KindAll: whatever it meant,
// forgetting everything is safe.
func Parse(b []byte) (Message, error) {
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return Message{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if m.V < 1 || m.ID == "" {
		return Message{}, fmt.Errorf("%w: no version or id", ErrMalformed)
	}
	if m.V > Version || !m.complete() {
		m.Kind = KindAll
	}
	return m, nil
}

func (m Message) complete() bool {
	switch m.Kind {
	case KindMember:
		return m.User != "" && m.Org != ""
	case KindUser:
		return m.User != ""
	case KindOrg, KindRole:
		return m.Org != ""
	case KindSession:
		return m.Session != ""
	case KindAPIKey:
		return m.APIKey != ""
	case KindAll:
		return true
	default:
		return false
	}
}

// Subjects lists what the message invalidates: the subjects whose cached
// answers must go, or, with all, everything.
func (m Message) Subjects() (subjects []Subject, all bool) {
	switch m.Kind {
	case KindMember, KindUser:
		return []Subject{UserSubject(m.User)}, false
	case KindOrg:
		subjects = []Subject{OrgSubject(m.Org)}
		for _, slug := range m.Slugs {
			if slug != "" {
				subjects = append(subjects, OrgSubject(slug))
			}
		}
		return subjects, false
	case KindRole:
		return []Subject{OrgSubject(m.Org)}, false
	case KindSession:
		return []Subject{SessionSubject(m.Session)}, false
	case KindAPIKey:
		return []Subject{APIKeySubject(m.APIKey)}, false
	default:
		return nil, true
	}
}

// NewID returns a random message id.
func NewID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
