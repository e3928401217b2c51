package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// SecondaryStorageConfig says where Better Auth keeps its sessions when
// the application gives it a secondaryStorage on Redis (the policy's
// session.storage: secondary).
type SecondaryStorageConfig struct {
	// Prefix starts every key the application's secondaryStorage writes:
	// Better Auth itself adds none, an application's storage may.
	Prefix string
	// Now stamps answers' LoadedAt; time.Now by default. It must be the
	// clock of the Invalidations the tiers above use.
	Now func() time.Time
}

// SecondarySessions reads Better Auth 1.7's sessions from its secondary
// storage, read-only, as Better Auth's findSession does
// (docs/better-auth-source-notes.md §3):
//
//   - "<prefix><token>" holds {"session":{...},"user":{...}} with dates as
//     ISO strings; a missing key is no session (with storeSessionInDatabase
//     off, the default, the key is the only copy);
//   - "<prefix>revoked-sessions-before-<userId>" holds unix milliseconds: a
//     session created earlier counts as revoked (Better Auth writes it when
//     it revokes all of a user's sessions: revoke-sessions, ban, deletion).
//
// It is a source, the innermost tier: its answers are cached in L1 only.
// L2 would cost a Redis round trip just as this does.
type SecondarySessions struct {
	rdb redis.UniversalClient
	cfg SecondaryStorageConfig
}

// NewSecondarySessions returns a session source reading rdb, Better Auth's
// Redis (see NewRedis; its calls should have deadlines).
func NewSecondarySessions(rdb redis.UniversalClient, cfg SecondaryStorageConfig) *SecondarySessions {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &SecondarySessions{rdb: rdb, cfg: cfg}
}

// storedSession is the part of Better Auth's stored value the sidecar
// reads; the field names are Better Auth's whatever the table's columns.
type storedSession struct {
	Session *struct {
		ID                   string `json:"id"`
		UserID               string `json:"userId"`
		ExpiresAt            string `json:"expiresAt"`
		CreatedAt            string `json:"createdAt"`
		ActiveOrganizationID string `json:"activeOrganizationId"`
		ActiveTeamID         string `json:"activeTeamId"`
		ImpersonatedBy       string `json:"impersonatedBy"`
	} `json:"session"`
	User json.RawMessage `json:"user"`
}

// SessionByToken returns the session whose token is token (Found false when
// there is none, it was revoked, or the stored value is not one Better Auth
// could use). The token is part of Better Auth's key and nothing else: it
// is never logged, and errors never quote the key. Errors wrap
// roles.ErrUnavailable.
func (s *SecondarySessions) SessionByToken(ctx context.Context, token string) (*authn.Session, roles.Tier, error) {
	started := s.cfg.Now()
	none := &authn.Session{LoadedAt: started}
	b, err := s.rdb.Get(ctx, s.cfg.Prefix+token).Bytes()
	if errors.Is(err, redis.Nil) {
		return none, roles.TierSource, nil
	}
	if err != nil {
		return nil, roles.TierSource, fmt.Errorf("secondary storage: read session: %w: %w", roles.ErrUnavailable, err)
	}
	var v storedSession
	// Better Auth fails on what it cannot parse, or on a value without a
	// session or a user: no session either way.
	if json.Unmarshal(b, &v) != nil || v.Session == nil || v.Session.ID == "" || v.Session.UserID == "" ||
		len(v.User) == 0 || v.User[0] != '{' {
		return none, roles.TierSource, nil
	}
	expires, err := time.Parse(time.RFC3339Nano, v.Session.ExpiresAt)
	if err != nil {
		// Stricter than Better Auth, which would take an unreadable expiry
		// for one that never passes: fail closed.
		return none, roles.TierSource, nil
	}
	revoked, err := s.revoked(ctx, v.Session.UserID, v.Session.CreatedAt)
	if err != nil {
		return nil, roles.TierSource, err
	}
	if revoked {
		return none, roles.TierSource, nil
	}
	return &authn.Session{
		Found: true, ID: v.Session.ID, UserID: v.Session.UserID, ExpiresAt: expires,
		ActiveOrganizationID: v.Session.ActiveOrganizationID, ActiveTeamID: v.Session.ActiveTeamID,
		ImpersonatedBy: v.Session.ImpersonatedBy, LoadedAt: started,
	}, roles.TierSource, nil
}

// revoked applies Better Auth's isRevokedSession: the session counts as
// revoked when it was created before the user's revocation marker
// (createdAt's milliseconds < the marker).
func (s *SecondarySessions) revoked(ctx context.Context, userID, createdAt string) (bool, error) {
	b, err := s.rdb.Get(ctx, s.cfg.Prefix+"revoked-sessions-before-"+userID).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("secondary storage: read revocation marker: %w: %w", roles.ErrUnavailable, err)
	}
	before, err := strconv.ParseFloat(strings.TrimSpace(b), 64)
	created, cerr := time.Parse(time.RFC3339Nano, createdAt)
	if err != nil || cerr != nil {
		// A marker exists but cannot be compared (Better Auth would then
		// let the session through): fail closed, the user revoked something.
		return true, nil
	}
	return float64(created.UnixMilli()) < before, nil
}
