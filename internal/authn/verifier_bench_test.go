package authn

import (
	"context"
	"crypto/elliptic"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
)

// benchmarkVerify measures the hot path: a KeySet already loaded over HTTP
// (so Lookup is an atomic load and a map read) and a Better Auth-shaped
// token.
func benchmarkVerify(b *testing.B, key testKey) {
	srv := newJWKSServer(b, jwksBody(b, key.jwkJSON(b)))
	ks := loadedKeySet(b, srv, KeySetConfig{})
	v := newTestVerifier(b, ks, key.alg.String())
	tok := signToken(b, key, nil, with(baClaims(), map[string]any{"activeOrganizationId": "org_123"}))
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyEdDSA(b *testing.B) { benchmarkVerify(b, newEd25519Key(b, "ed")) }

func BenchmarkVerifyES256(b *testing.B) {
	benchmarkVerify(b, newECKey(b, "es256", jwa.ES256, elliptic.P256()))
}

func BenchmarkVerifyRS256(b *testing.B) { benchmarkVerify(b, newRSAKey(b, "rs256", jwa.RS256)) }

// BenchmarkVerifyRejectMalformed: garbage must be cheap to refuse.
func BenchmarkVerifyRejectMalformed(b *testing.B) {
	v := newTestVerifier(b, staticKeys{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, "eyJhbGciOiJub25lIn0.e30."); err == nil {
			b.Fatal("accepted")
		}
	}
}
