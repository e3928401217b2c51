package cache

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
)

// fakeVerifier accepts tokens listed in ok, with the given expiry, and
// counts calls. (The real verifier is tested in internal/authn.)
type fakeVerifier struct {
	calls atomic.Int64
	exp   time.Time
	ok    map[string]string // raw -> subject
}

func (f *fakeVerifier) Verify(_ context.Context, raw string) (*authn.Identity, error) {
	f.calls.Add(1)
	sub, ok := f.ok[raw]
	if !ok {
		return nil, authn.ErrSignature
	}
	return &authn.Identity{Subject: sub, Expiry: f.exp}, nil
}

func TestTokens(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	newCache := func(t *testing.T) *Tokens {
		tc, err := NewTokens(TokensConfig{MaxTTL: time.Minute, Now: clock}, prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tc.Close)
		return tc
	}
	ctx := context.Background()

	t.Run("second verification of a token is a hit", func(t *testing.T) {
		tc := newCache(t)
		fv := &fakeVerifier{exp: now.Add(10 * time.Minute), ok: map[string]string{"tokA": "alice"}}
		v := tc.For(fv)
		for range 3 {
			id, err := v.Verify(ctx, "tokA")
			if err != nil || id.Subject != "alice" {
				t.Fatalf("Verify = %v, %v", id, err)
			}
			tc.Wait()
		}
		if n := fv.calls.Load(); n != 1 {
			t.Errorf("verifier calls = %d, want 1", n)
		}
	})
	t.Run("failures are never cached", func(t *testing.T) {
		tc := newCache(t)
		fv := &fakeVerifier{exp: now.Add(time.Hour), ok: map[string]string{}}
		v := tc.For(fv)
		for range 2 {
			if _, err := v.Verify(ctx, "forged"); !errors.Is(err, authn.ErrSignature) {
				t.Fatalf("err = %v", err)
			}
			tc.Wait()
		}
		if fv.calls.Load() != 2 {
			t.Errorf("verifier calls = %d, want 2", fv.calls.Load())
		}
	})
	t.Run("an entry never outlives the token", func(t *testing.T) {
		tc := newCache(t)
		fv := &fakeVerifier{exp: now.Add(30 * time.Second), ok: map[string]string{"tokB": "bob"}}
		v := tc.For(fv)
		v.Verify(ctx, "tokB")
		tc.Wait()
		later := now.Add(31 * time.Second)
		tc.cfg.Now = func() time.Time { return later }
		fv.ok = map[string]string{} // the verifier now refuses it (expired)
		if _, err := v.Verify(ctx, "tokB"); err == nil {
			t.Error("an expired token was served from the cache")
		}
	})
	t.Run("a new verifier generation does not see old entries", func(t *testing.T) {
		tc := newCache(t)
		fv := &fakeVerifier{exp: now.Add(time.Hour), ok: map[string]string{"tokC": "carol"}}
		old := tc.For(fv)
		old.Verify(ctx, "tokC")
		tc.Wait()
		strict := &fakeVerifier{exp: now.Add(time.Hour), ok: map[string]string{}} // e.g. a new issuer
		if _, err := tc.For(strict).Verify(ctx, "tokC"); err == nil {
			t.Error("a token verified under the old policy passed the new one from cache")
		}
	})
	t.Run("entries are bounded by MaxTTL", func(t *testing.T) {
		tc := newCache(t) // MaxTTL one minute
		fv := &fakeVerifier{exp: now.Add(time.Hour), ok: map[string]string{"tokD": "dave"}}
		v := tc.For(fv)
		for _, at := range []time.Duration{0, time.Minute - time.Nanosecond, time.Minute} {
			tc.cfg.Now = func() time.Time { return now.Add(at) }
			v.Verify(ctx, "tokD")
			tc.Wait()
		}
		if fv.calls.Load() != 2 {
			t.Errorf("verifier calls = %d, want 2 (a hit within MaxTTL, a miss at MaxTTL)", fv.calls.Load())
		}
	})
}
