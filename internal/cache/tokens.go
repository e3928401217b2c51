package cache

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
)

// TokenVerifier validates a raw JWT; *authn.Verifier satisfies it.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (*authn.Identity, error)
}

// TokensConfig sizes the verified-token cache.
type TokensConfig struct {
	// MaxBytes is the memory budget.
	MaxBytes int64
	// MaxTTL bounds how long a verified token is trusted without being
	// verified again, whatever its exp. It bounds how long a key removed
	// from the JWKS (a compromised key) can still vouch for a cached token.
	MaxTTL time.Duration
	// Now is the clock token expiry and MaxTTL are judged on; time.Now by
	// default (tests replace it). Ristretto also drops an entry once its
	// lifetime has passed in real time: the clock can only end it sooner.
	Now func() time.Time
}

// Tokens caches successful verifications, so the signature check (tens of
// microseconds for EdDSA) runs once per token rather than once per request.
// An entry never outlives the token's exp nor MaxTTL, and is only served
// for the exact token string it was made for (the string is stored and
// compared, so a hash collision can never pass one token off as another).
// Failures are never cached.
type Tokens struct {
	cfg   TokensConfig
	cache *ristretto.Cache[string, *tokenEntry]
	gen   atomic.Uint64
	m     *tierMetrics
}

type tokenEntry struct {
	raw string
	gen uint64
	id  *authn.Identity
	// expires is the earlier of the token's exp and MaxTTL after it was
	// verified, on the cache's clock.
	expires time.Time
}

// NewTokens returns an empty token cache.
func NewTokens(cfg TokensConfig, reg prometheus.Registerer) (*Tokens, error) {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 32 << 20
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newTierMetrics(reg, "token", "jwt")
	if err != nil {
		return nil, err
	}
	c, err := ristretto.NewCache(&ristretto.Config[string, *tokenEntry]{
		NumCounters:        max(cfg.MaxBytes/1500*10, 10_000),
		MaxCost:            cfg.MaxBytes,
		BufferItems:        64,
		IgnoreInternalCost: true,
		OnEvict:            func(*ristretto.Item[*tokenEntry]) { m.evictions.Inc() },
	})
	if err != nil {
		return nil, fmt.Errorf("cache: new token cache: %w", err)
	}
	return &Tokens{cfg: cfg, cache: c, m: m}, nil
}

// Close stops ristretto's goroutines.
func (t *Tokens) Close() { t.cache.Close() }

// Wait applies pending writes (for tests and benchmarks).
func (t *Tokens) Wait() { t.cache.Wait() }

// For returns a verifier that answers from the cache what v verified
// before. Each call starts a new generation: entries made through an
// earlier view (an old policy's issuer or audiences) are never served by a
// later one.
func (t *Tokens) For(v TokenVerifier) TokenVerifier {
	return &tokenView{t: t, next: v, gen: t.gen.Add(1)}
}

type tokenView struct {
	t    *Tokens
	next TokenVerifier
	gen  uint64
}

// Verify serves a cached identity for the same token while both the token
// and the entry are live, else verifies and remembers a success.
func (v *tokenView) Verify(ctx context.Context, raw string) (*authn.Identity, error) {
	t := v.t
	now := t.cfg.Now()
	if e, ok := t.cache.Get(raw); ok && e.gen == v.gen && e.raw == raw && now.Before(e.expires) {
		t.m.hits.Inc()
		return e.id, nil
	}
	t.m.misses.Inc()
	id, err := v.next.Verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	ttl := min(id.Expiry.Sub(now), t.cfg.MaxTTL)
	if ttl > 0 {
		e := &tokenEntry{raw: raw, gen: v.gen, id: id, expires: now.Add(ttl)}
		t.cache.SetWithTTL(raw, e, int64(2*len(raw)+512), ttl)
	}
	return id, nil
}
