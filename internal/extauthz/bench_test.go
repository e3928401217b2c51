package extauthz_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/cache"
	"github.com/authz-sidecar/authz-sidecar/internal/extauthz"
	"github.com/authz-sidecar/authz-sidecar/internal/jwttest"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// staticSource answers every membership as an admin of the org: the hot
// path benchmark measures the sidecar, not Postgres.
type staticSource struct{}

func (staticSource) Membership(_ context.Context, s roles.Subject) (roles.Membership, error) {
	return roles.Membership{UserFound: true, OrgID: s.OrgRef, Roles: []string{"admin"}}, nil
}

// realisticRequest is a CheckRequest as Envoy sends it: ~10 headers and a
// Better Auth-shaped token.
func realisticRequest(token string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "7f3c9d1e-1b2a-4c5d-9e8f-0a1b2c3d4e5f", Method: "POST", Path: "/api/orgs/org_acme/leave/l1/approve?notify=1",
			Host: "app.example.test", Scheme: "https", Protocol: "HTTP/2",
			Headers: map[string]string{
				":authority": "app.example.test", ":method": "POST", ":path": "/api/orgs/org_acme/leave/l1/approve?notify=1",
				"authorization": "Bearer " + token, "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
				"accept": "application/json", "accept-encoding": "gzip, deflate, br", "content-type": "application/json",
				"x-request-id": "7f3c9d1e-1b2a-4c5d-9e8f-0a1b2c3d4e5f", "x-forwarded-for": "203.0.113.7",
				"x-forwarded-proto": "https", "cookie": "theme=dark; lang=en",
			},
		}},
	}}
}

// signedPolicy parses doc with its JWKS_URL pointed at a fresh test key
// set and returns the keys (to sign tokens), the policy and a verifier
// that has loaded them.
func signedPolicy(tb testing.TB, doc string) (*jwttest.Keys, *policy.Policy, *authn.Verifier) {
	tb.Helper()
	keys := jwttest.NewKeys(tb)
	pol, err := policy.Parse("test.yaml", []byte(strings.Replace(doc, "JWKS_URL", keys.URL, 1)))
	if err != nil {
		tb.Fatal(err)
	}
	ks, err := authn.NewKeySet(authn.KeySetConfig{URL: pol.JWT.JWKSURL}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if err := ks.Refresh(context.Background()); err != nil {
		tb.Fatal(err)
	}
	v, err := authn.NewVerifier(authn.VerifierConfig{Issuer: pol.JWT.Issuer, Audiences: pol.JWT.Audiences, Leeway: pol.JWT.Leeway}, ks)
	if err != nil {
		tb.Fatal(err)
	}
	return keys, pol, v
}

// staticAccess is an L1 store (an hour's TTL) and its access tier in front
// of staticSource.
func staticAccess(b *testing.B) (*cache.L1Store, *cache.L1[roles.Query, *roles.Access]) {
	b.Helper()
	store, err := cache.NewL1Store(cache.L1Config{TTL: time.Hour}, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(store.Close)
	l1, err := cache.NewL1(store, cache.AccessKind(), cache.LookupFunc[roles.Query, *roles.Access](roles.NewSourceResolver(staticSource{}, nil).Resolve))
	if err != nil {
		b.Fatal(err)
	}
	return store, l1
}

// hotServer returns a server, a token and a func that makes the entries
// of the checks made so far visible (ristretto applies writes
// asynchronously).
func hotServer(b *testing.B) (*extauthz.Server, string, func()) {
	b.Helper()
	keys, pol, v := signedPolicy(b, policyYAML)
	store, l1 := staticAccess(b)
	tokens, err := cache.NewTokens(cache.TokensConfig{MaxTTL: time.Hour}, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(tokens.Close)
	engine, err := authz.New(authz.State{Policy: pol, Verifier: tokens.For(v)}, authz.Deps{Access: cache.AccessResolver{Lookup: l1}}, authz.Config{})
	if err != nil {
		b.Fatal(err)
	}
	settle := func() { store.Wait(); tokens.Wait() }
	return extauthz.New(engine, nil, extauthz.Config{}), keys.User("alice"), settle
}

// BenchmarkCheckHotPath is one full decision on the hot path: token seen
// before, permission set in L1, answer built. No network.
func BenchmarkCheckHotPath(b *testing.B) {
	srv, tok, settle := hotServer(b)
	req := realisticRequest(tok)
	ctx := context.Background()
	if r, _ := srv.Check(ctx, req); r.GetOkResponse() == nil {
		b.Fatalf("warm-up denied: %v", r)
	}
	settle()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if r, _ := srv.Check(ctx, req); r.GetOkResponse() == nil {
			b.Fatal("denied")
		}
	}
}

// BenchmarkCheckCodec is BenchmarkCheckHotPath with the request's bytes
// decoded and the answer encoded, as the gRPC server does, by each codec:
// the whole server-side cost of a decision but the network's.
func BenchmarkCheckCodec(b *testing.B) {
	srv, tok, settle := hotServer(b)
	in, err := proto.Marshal(realisticRequest(tok))
	if err != nil {
		b.Fatal(err)
	}
	for _, codec := range extauthz.Codecs {
		b.Run(codec, func(b *testing.B) {
			run, err := extauthz.CodecRunner(srv, codec)
			if err != nil {
				b.Fatal(err)
			}
			checked := false
			check := func() {
				out, err := run(context.Background(), mem.BufferSlice{mem.SliceBuffer(in)})
				if err != nil {
					b.Fatal(err)
				}
				var resp authv3.CheckResponse
				if !checked { // the first answer must be an allow
					if err := proto.Unmarshal(out.Materialize(), &resp); err != nil || resp.GetOkResponse() == nil {
						b.Fatalf("not an allow: %v %v", err, &resp)
					}
					checked = true
				}
				out.Free()
			}
			check()
			settle()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				check()
			}
		})
	}
}

// BenchmarkCheckHotPathParallel is the same under GOMAXPROCS goroutines.
func BenchmarkCheckHotPathParallel(b *testing.B) {
	srv, tok, settle := hotServer(b)
	req := realisticRequest(tok)
	srv.Check(context.Background(), req)
	settle()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r, _ := srv.Check(context.Background(), req); r.GetOkResponse() == nil {
				b.Error("denied")
				return
			}
		}
	})
}

var benchAllow = authz.Decision{ID: "0123456789abcdef0123456789abcdef", Allow: true, Code: authz.CodeOK, Reason: authz.ReasonGranted,
	Route: "approve-leave", UserID: "alice", OrgID: "org_acme", OrgSource: policy.Source{Kind: policy.FromPath, Name: "org"},
	Roles: []string{"admin"}, Credential: policy.CredJWT, PolicyVersion: "e05c04dd9273ab6a"}

// BenchmarkResponseAllow is the allow answer alone: headers, metadata and
// the messages holding them.
func BenchmarkResponseAllow(b *testing.B) {
	d := benchAllow
	b.ReportAllocs()
	for b.Loop() {
		if extauthz.Response(&d, extauthz.Options{}).GetOkResponse() == nil {
			b.Fatal("denied")
		}
	}
}

// BenchmarkResponseAllowMarshal is the allow answer as gRPC's standard
// codec sends it: built, then marshalled.
func BenchmarkResponseAllowMarshal(b *testing.B) {
	d := benchAllow
	b.ReportAllocs()
	for b.Loop() {
		if _, err := proto.Marshal(extauthz.Response(&d, extauthz.Options{})); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendResponseAllow is the allow answer as the lean codec
// sends it: the same bytes, written straight from the decision into a
// reused buffer (the codec's comes from a pool). Its one allocation is the
// organization source Decision.Identity spells out ("path:org").
func BenchmarkAppendResponseAllow(b *testing.B) {
	d := benchAllow
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		out, err := extauthz.AppendResponse(buf[:0], &d, extauthz.Options{})
		if err != nil || len(out) == 0 {
			b.Fatal(err)
		}
	}
}

// credPolicyYAML accepts every Better Auth credential, as the shipped
// policies.yaml does.
const credPolicyYAML = `
jwt:
  issuer: https://auth.example.test
  audiences: [https://auth.example.test]
  jwks_url: JWKS_URL
session:
  base_url: http://auth.example.test
  bearer: signed
api_keys:
  header: x-api-key
  owners: { default: user }
organization:
  from: [path:org]
statements:
  leave: [request, read, approve]
roles:
  member: { permissions: ["leave:request", "leave:read"] }
  admin:  { inherits: [member], permissions: ["leave:approve"] }
routes:
  - { name: read-leave, methods: [GET], path: "/api/orgs/{org}/leave/**", require_any: [leave:read, leave:approve] }
default: deny
`

// BenchmarkCheckCredentials is BenchmarkCheckHotPath for each credential
// the load benchmark's rows a, e, f and g send, with its 14 headers: a
// JWT, the session cookie, a bearer session token or an API key, next to
// a session cookie that does not verify (but in the cookie row). Session,
// key and membership are L1 hits; the sources are static.
func BenchmarkCheckCredentials(b *testing.B) {
	const (
		userID       = "u1"
		sessionToken = "abcdefghijklmnopqrstuvwxyz012345"
		apiKey       = "bench_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijkl"
	)
	keys, pol, v := signedPolicy(b, credPolicyYAML)
	secret, err := authn.NewSecret("bench-secret")
	if err != nil {
		b.Fatal(err)
	}
	store, access := staticAccess(b)
	session := &authn.Session{Found: true, ID: "s1", UserID: userID, ExpiresAt: time.Now().Add(24 * time.Hour)}
	byToken, err := cache.NewL1(store, cache.SessionTokenKind(), cache.LookupFunc[string, *authn.Session](
		func(context.Context, string) (*authn.Session, roles.Tier, error) {
			return session, roles.TierSource, nil
		}))
	if err != nil {
		b.Fatal(err)
	}
	key := &authn.APIKey{Found: true, ID: "k1", ConfigID: "default", ReferenceID: userID, Enabled: true, Permissions: []string{"leave:read"}}
	byHash, err := cache.NewL1(store, cache.APIKeyKind(), cache.LookupFunc[string, *authn.APIKey](
		func(context.Context, string) (*authn.APIKey, roles.Tier, error) { return key, roles.TierSource, nil }))
	if err != nil {
		b.Fatal(err)
	}
	tokens, err := cache.NewTokens(cache.TokensConfig{MaxTTL: time.Hour}, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(tokens.Close)
	engine, err := authz.New(authz.State{Policy: pol, Verifier: tokens.For(v)}, authz.Deps{
		Access:   cache.AccessResolver{Lookup: access},
		Sessions: cache.SessionResolver{ByToken: byToken},
		APIKeys:  cache.APIKeyResolver{ByHash: byHash},
	}, authz.Config{Secret: secret})
	if err != nil {
		b.Fatal(err)
	}
	srv := extauthz.New(engine, nil, extauthz.Config{})
	signed := sessionToken + "." + secret.Sign(sessionToken)
	// A cookie signed with another secret: well formed, so it costs the
	// whole signature check before it is ignored.
	other, err := authn.NewSecret("another-secret")
	if err != nil {
		b.Fatal(err)
	}
	staleCookie := "better-auth.session_token=" + url.QueryEscape("AbCdEfGhIjKlMnOpQrStUvWxYz012345."+other.Sign("AbCdEfGhIjKlMnOpQrStUvWxYz012345"))
	for _, bc := range []struct {
		name, cookie, header, value string
	}{
		{"jwt", staleCookie, "authorization", "Bearer " + keys.User(userID)},
		{"session_cookie", "better-auth.session_token=" + url.QueryEscape(signed), "referer", "https://app.example.test/leave"},
		{"bearer_session", staleCookie, "authorization", "Bearer " + signed},
		{"api_key", staleCookie, "x-api-key", apiKey},
	} {
		b.Run(bc.name, func(b *testing.B) {
			path := "/api/orgs/org_acme/leave/l1"
			req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Id: "7f3c9d1e-1b2a-4c5d-9e8f-0a1b2c3d4e5f", Method: "GET", Path: path,
					Host: "app.example.test", Scheme: "https", Protocol: "HTTP/1.1",
					Headers: map[string]string{
						":authority": "app.example.test", ":method": "GET", ":path": path, ":scheme": "https",
						"user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36", "accept": "application/json",
						"accept-encoding": "gzip, deflate, br", "accept-language": "en-GB,en;q=0.9", "content-type": "application/json",
						"x-request-id": "7f3c9d1e-1b2a-4c5d-9e8f-0a1b2c3d4e5f", "x-forwarded-for": "203.0.113.7",
						"x-forwarded-proto": "https", "cookie": bc.cookie, bc.header: bc.value,
					},
				}},
			}}
			ctx := context.Background()
			check := func() {
				r, _ := srv.Check(ctx, req)
				if r.GetOkResponse() == nil {
					b.Fatalf("denied: %v", r.GetDeniedResponse())
				}
				if !hasHeader(r.GetOkResponse().GetHeaders(), "x-auth-user-id", userID) {
					b.Fatalf("allowed without x-auth-user-id %s: %v", userID, r.GetOkResponse())
				}
			}
			check()
			store.Wait()
			tokens.Wait()
			b.ReportAllocs()
			for b.Loop() {
				check()
			}
		})
	}
}

func hasHeader(hs []*corev3.HeaderValueOption, name, value string) bool {
	for _, h := range hs {
		if h.GetHeader().GetKey() == name && h.GetHeader().GetValue() == value {
			return true
		}
	}
	return false
}
