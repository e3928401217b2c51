package authn

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// API key errors; they wrap ErrAPIKey (401).
var (
	// ErrAPIKey is wrapped by every error about an API key.
	ErrAPIKey = errors.New("authn: invalid API key")
	// ErrAPIKeyUnknown: no key has this hash, or its configuration is not
	// one the policy knows.
	ErrAPIKeyUnknown = fmt.Errorf("%w: no such key", ErrAPIKey)
	// ErrAPIKeyDisabled: the key's enabled is false.
	ErrAPIKeyDisabled = fmt.Errorf("%w: key disabled", ErrAPIKey)
	// ErrAPIKeyExpired: the key's expiresAt has passed.
	ErrAPIKeyExpired = fmt.Errorf("%w: key expired", ErrAPIKey)
	// ErrAPIKeyCounted: the key has a usage limit (remaining) or a rate
	// limit, which only Better Auth can count (the sidecar never writes),
	// and the policy does not leave counting to the application.
	ErrAPIKeyCounted = fmt.Errorf("%w: key needs usage counting", ErrAPIKey)
)

// MaxAPIKeyBytes bounds an API key header; longer values are refused
// before hashing. Better Auth's keys are a prefix plus 64 letters.
const MaxAPIKeyBytes = 512

// HashAPIKey is how the api-key plugin stores a key (and looks it up):
// base64url without padding of SHA-256 of the key's UTF-8 bytes.
func HashAPIKey(key string) string {
	// Hashed from a copy on the stack and encoded into one: one allocation
	// (the result) rather than three, on every request with a key (Better
	// Auth's are a prefix and 64 letters; longer ones take the slow way).
	var buf [128]byte
	var sum [sha256.Size]byte
	if len(key) <= len(buf) {
		sum = sha256.Sum256(buf[:copy(buf[:], key)])
	} else {
		sum = sha256.Sum256([]byte(key))
	}
	var out [43]byte // base64url of 32 bytes, unpadded
	base64.RawURLEncoding.Encode(out[:], sum[:])
	return string(out[:])
}

// APIKey is what the api-key plugin's table says about one key. Found is
// false when no key has the hash, which is cached like any other answer.
type APIKey struct {
	Found    bool   `json:"f"`
	ID       string `json:"i,omitempty"`
	ConfigID string `json:"c,omitempty"`
	// ReferenceID is a user id or an organization id, depending on the
	// configuration (policy api_keys.owners).
	ReferenceID string    `json:"r,omitempty"`
	Enabled     bool      `json:"en,omitempty"`
	ExpiresAt   time.Time `json:"e,omitzero"`
	// Counted is true when Better Auth would count this key's use on every
	// verification: it has a remaining count, or its rate limit is on.
	Counted bool `json:"n,omitempty"`
	// Permissions are what the key may do: its permissions JSON flattened
	// into literal, sorted "resource:action" pairs (nil when NULL or not
	// parseable: the key then grants no permission).
	Permissions []string `json:"p,omitempty"`
	// LoadedAt is when the load that produced this answer started.
	LoadedAt time.Time `json:"t,omitzero"`
}

// Check reports whether the key authenticates at now, in Better Auth's
// order (enabled, then expiry), and whether its counting can be left to
// the application.
func (k *APIKey) Check(now time.Time, countingInApp bool) error {
	switch {
	case k == nil || !k.Found:
		return ErrAPIKeyUnknown
	case !k.Enabled:
		return ErrAPIKeyDisabled
	case !k.ExpiresAt.IsZero() && now.After(k.ExpiresAt):
		// Better Auth: `Date.now() > expiresAt` → KEY_EXPIRED.
		return ErrAPIKeyExpired
	case k.Counted && !countingInApp:
		return ErrAPIKeyCounted
	}
	return nil
}
