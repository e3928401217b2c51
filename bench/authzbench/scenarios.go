package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/authz-sidecar/authz-sidecar/bench/loadgen"
)

// requests builds CheckRequests as Envoy sends them for
// GET /api/orgs/<org>/leave/<id> (policy route read-leave), already encoded
// for the load generator. The noop server and the sidecar get the very same
// bytes.
type requests struct {
	d          *dataset
	userTokens []string // one reusable token per user
	// sessionValues are the users' signed session tokens,
	// "<token>.<signature>" (signSession with the sidecars' secret).
	sessionValues []string
	salt          uint32 // request-id prefix, per benchmark run
	// keyed holds the encoded request of every membership key (see
	// allKeys), made once before any measurement; each request is a copy
	// with its own x-request-id.
	keyed []template
	// credKeyed holds, for each credential but the JWT, the encoded
	// requests of the first fewUsers users in their first organization.
	credKeyed map[credential][]template
}

// credential is what authenticates a scenario's requests. Each is carried
// by two headers (the cookie and one more); the other 12 headers are the
// same in every scenario, so every request has 14.
type credential int

const (
	// credJWT: Authorization: Bearer <Better Auth EdDSA JWT>, next to a
	// session cookie that does not verify (scenarios a to d).
	credJWT credential = iota
	// credCookie: the signed session cookie, as a browser sends it, with a
	// referer header where the others have their credential header.
	credCookie
	// credBearer: the bearer plugin's Authorization: Bearer
	// <token>.<signature>, next to the stale cookie.
	credBearer
	// credAPIKey: x-api-key with the user's key, next to the stale cookie.
	credAPIKey
)

// sessionCookieName is Better Auth's session cookie with the default
// prefix, on http (the bench policy's base_url).
const sessionCookieName = "better-auth.session_token"

// credentialHeaders returns the cookie header and the one other header
// that carry credential c for user u; token is u's JWT (credJWT only).
func (q *requests) credentialHeaders(u int, c credential, token string) (cookie, name, value string) {
	usr := &q.d.Users[u]
	switch c {
	case credCookie:
		// Better Auth URL-encodes the value (encodeURIComponent): the
		// signature's "+", "/" and "=" travel as %2B, %2F, %3D.
		return sessionCookieName + "=" + url.QueryEscape(q.sessionValues[u]), "referer", "https://" + benchHost + "/leave"
	case credBearer:
		return usr.Cookie, "authorization", "Bearer " + q.sessionValues[u]
	case credAPIKey:
		return usr.Cookie, "x-api-key", usr.APIKey
	}
	return usr.Cookie, "authorization", "Bearer " + token
}

const (
	benchHost = "app.bench.example"
	userAgent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/139.0.0.0 Safari/537.36"
	// idPlaceholder stands for the request id in a template: 36 bytes, like
	// the UUID that replaces it, and unlike anything else in a request.
	idPlaceholder = "@@@@@@@@-@@@@-4@@@-8@@@-@@@@@@@@@@@@"
)

// fewUsers is the number of (user, organization) pairs of scenario a.
const fewUsers = 8

var (
	clientPeer = &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 41234}}}}
	upstreamPeer = &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080}}}}
)

// checkRequest is Envoy's CheckRequest for user u in its k-th
// organization, carrying the JWT token; 14 headers, pseudo-headers
// included, as Envoy sends them.
func (q *requests) checkRequest(u, k int, leaveID, token, requestID string) *authv3.CheckRequest {
	return q.credRequest(u, k, credJWT, leaveID, token, requestID)
}

// credRequest is checkRequest with credential c (token: the JWT, for
// credJWT only).
func (q *requests) credRequest(u, k int, c credential, leaveID, token, requestID string) *authv3.CheckRequest {
	path := "/api/orgs/" + q.d.Orgs[orgOf(u, k)] + "/leave/" + leaveID
	cookie, credName, credValue := q.credentialHeaders(u, c, token)
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: clientPeer},
		Destination: &authv3.AttributeContext_Peer{Address: upstreamPeer},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(time.Now()),
			Http: &authv3.AttributeContext_HttpRequest{
				Id: requestID, Method: "GET", Path: path, Host: benchHost, Scheme: "https", Protocol: "HTTP/1.1",
				Headers: map[string]string{
					":authority":        benchHost,
					":method":           "GET",
					":path":             path,
					":scheme":           "https",
					"user-agent":        userAgent,
					"accept":            "application/json, text/plain, */*",
					"accept-encoding":   "gzip, deflate, br, zstd",
					"accept-language":   "en-GB,en;q=0.9",
					"content-type":      "application/json",
					"cookie":            cookie,
					"x-request-id":      requestID,
					"x-forwarded-for":   "203.0.113.7",
					"x-forwarded-proto": "https",
				},
			},
		},
	}}
	req.Attributes.Request.Http.Headers[credName] = credValue
	return req
}

// template is an encoded CheckRequest whose request id (two places: the
// id field and x-request-id) is filled in per request.
type template struct {
	b      []byte
	idAt   [2]int
	userID string
}

func newTemplate(req *authv3.CheckRequest, userID string) (template, error) {
	b, err := proto.Marshal(req)
	if err != nil {
		return template{}, fmt.Errorf("encode request: %w", err)
	}
	t := template{b: b, userID: userID}
	from := 0
	for n := range 2 {
		i := bytes.Index(b[from:], []byte(idPlaceholder))
		if i < 0 {
			return template{}, errors.New("encode request: request id placeholder not found twice")
		}
		t.idAt[n] = from + i
		from += i + len(idPlaceholder)
	}
	return t, nil
}

// request is a copy of t carrying request id i.
func (q *requests) request(t *template, i uint64) loadgen.Request {
	b := make([]byte, len(t.b))
	copy(b, t.b)
	var id [36]byte
	q.requestID(&id, i)
	copy(b[t.idAt[0]:], id[:])
	copy(b[t.idAt[1]:], id[:])
	return loadgen.Request{Frame: b, UserID: t.userID}
}

// requestID writes a UUID-shaped id unique to this run and i.
func (q *requests) requestID(dst *[36]byte, i uint64) {
	const hexdigits = "0123456789abcdef"
	put := func(at int, v uint64, n int) {
		for j := n - 1; j >= 0; j-- {
			dst[at+j] = hexdigits[v&0xf]
			v >>= 4
		}
	}
	put(0, uint64(q.salt), 8)
	dst[8] = '-'
	put(9, i>>48, 4)
	dst[13] = '-'
	dst[14] = '4'
	put(15, i>>36, 3)
	dst[18] = '-'
	dst[19] = '8'
	put(20, i>>24, 3)
	dst[23] = '-'
	put(24, i, 12)
}

// Key spaces. A membership key m in [0, numUsers*orgsPerUser) is user
// m%numUsers in its (m/numUsers)-th organization, so consecutive keys are
// distinct users and the first numUsers keys are one membership per user.
const numKeys = numUsers * orgsPerUser

// encodeKeys makes the template of every membership key, on every CPU,
// and those of the other credentials' scenarios.
func (q *requests) encodeKeys() error {
	q.keyed = make([]template, numKeys)
	err := parallel(numKeys, func(m int) error {
		u, k := m%numUsers, m/numUsers
		req := q.checkRequest(u, k, "lv_"+strconv.FormatInt(int64(m), 36), q.userTokens[u], idPlaceholder)
		t, err := newTemplate(req, q.d.Users[u].ID)
		q.keyed[m] = t
		return err
	})
	if err != nil {
		return err
	}
	q.credKeyed = map[credential][]template{}
	for _, c := range []credential{credCookie, credBearer, credAPIKey} {
		ts := make([]template, fewUsers)
		for u := range ts {
			// The same memberships (and leave ids) as scenario a.
			req := q.credRequest(u, 0, c, "lv_"+strconv.FormatInt(int64(u), 36), "", idPlaceholder)
			if ts[u], err = newTemplate(req, q.d.Users[u].ID); err != nil {
				return err
			}
		}
		q.credKeyed[c] = ts
	}
	return nil
}

// fewKeys cycles over fewUsers memberships with reused tokens.
func (q *requests) fewKeys() loadgen.Source {
	return func(i uint64) (loadgen.Request, bool) {
		return q.request(&q.keyed[i%fewUsers], i), true
	}
}

// credKeys cycles over the memberships of fewKeys, with credential c
// (not credJWT) instead of the JWT.
func (q *requests) credKeys(c credential) loadgen.Source {
	ts := q.credKeyed[c]
	return func(i uint64) (loadgen.Request, bool) {
		return q.request(&ts[i%uint64(len(ts))], i), true
	}
}

// userKeys cycles over one membership per user, limit requests in all
// (0: no limit), with reused tokens.
func (q *requests) userKeys(limit uint64) loadgen.Source {
	return q.allKeys(0, 1, numUsers, limit)
}

// allKeys walks membership keys from offset with the given stride, modulo
// span, limit requests in all (0: no limit), with reused tokens.
func (q *requests) allKeys(offset, stride, span, limit uint64) loadgen.Source {
	return func(i uint64) (loadgen.Request, bool) {
		if limit > 0 && i >= limit {
			return loadgen.Request{}, false
		}
		return q.request(&q.keyed[(offset+i*stride)%span], i), true
	}
}

// freshPool holds single-use tokens: token j is user j%numUsers's, issued
// 1+j/numUsers seconds before the reusable ones, so no two are alike.
type freshPool struct {
	q      *requests
	tokens []string
	next   uint64 // first token no sidecar run has used
}

// source serves the pool's tokens in order, one per request, for user
// j%numUsers in its first organization. Each request is encoded when it is
// asked for (no two are alike), for both servers. For the sidecar (reuse
// false) it starts after every token used before and ends when the pool
// does; for the noop server, which never reads them, it starts over and
// wraps.
func (p *freshPool) source(reuse bool) loadgen.Source {
	base, n := p.next, uint64(len(p.tokens))
	if reuse {
		base = 0
	}
	return func(i uint64) (loadgen.Request, bool) {
		j := base + i
		if j >= n {
			if !reuse {
				return loadgen.Request{}, false
			}
			j %= n
		}
		u := int(j % numUsers)
		var id [36]byte
		p.q.requestID(&id, i)
		req := p.q.checkRequest(u, 0, "lv_"+strconv.FormatUint(j, 36), p.tokens[j], string(id[:]))
		b, err := proto.Marshal(req)
		if err != nil {
			// A CheckRequest of strings always encodes; nothing to send.
			return loadgen.Request{}, false
		}
		return loadgen.Request{Frame: b, UserID: p.q.d.Users[u].ID}, true
	}
}

// used records that a sidecar run consumed n tokens.
func (p *freshPool) used(n uint64) { p.next += n }

// scenario is one row group of the table.
type scenario struct {
	ID, Name string
	// Setup says how the sidecar is configured for it, for the report.
	Setup string
	// Want is the tier that should answer ("L1", "L2" or "PG").
	Want string
	// FixedRate: the scenario also runs at each of config.Rates. Not d:
	// each of its runs uses up single-use tokens from a pool sized for the
	// closed-loop runs.
	FixedRate bool
	// Cred is the credential its requests carry.
	Cred credential
}

// allScenarios are the ids of scenarios, in order (BENCH_SCENARIOS picks
// some).
const allScenarios = "abcdefgh"

var scenarios = []scenario{
	{ID: "a", Name: "L1 hits", Want: "L1", FixedRate: true,
		Setup: fmt.Sprintf("%d users, one org each, tokens reused (token-cache hits); default L1 (30s TTL), Redis L2 on", fewUsers)},
	{ID: "b", Name: "L2 hits", Want: "L2", FixedRate: true,
		Setup: fmt.Sprintf("%d users, one org each, tokens reused; --l1-ttl 1ms so L1 always misses; Redis (and token cache) "+
			"prefilled by one pass over all %d users before the runs", numUsers, numUsers)},
	{ID: "c", Name: "Postgres", Want: "PG", FixedRate: true,
		Setup: fmt.Sprintf("%d distinct (user, org) keys in turn, tokens reused (token cache prefilled); no Redis, --l1-ttl 1ms",
			numKeys)},
	{ID: "d", Name: "fresh tokens", Want: "L1",
		Setup: fmt.Sprintf("a new pre-signed token per request (%d users; token-cache misses), memberships L1 hits "+
			"(prefilled before each run); default L1, Redis on", numUsers)},
	// e, f and g are a with another credential: the same users,
	// memberships and paths, sessions and keys (seeded rows) and
	// memberships in L1 after the warm-up, so each differs from a by what
	// its credential costs.
	{ID: "e", Name: "session cookie", Want: "L1", FixedRate: true, Cred: credCookie,
		Setup: "as a, with the signed session cookie (" + sessionCookieName + "=<token>.<HMAC>, URL-encoded) and a " +
			"referer header instead of the JWT; sessions L1 hits"},
	{ID: "f", Name: "bearer session", Want: "L1", FixedRate: true, Cred: credBearer,
		Setup: "as a, with Authorization: Bearer <session token>.<HMAC> (bearer plugin) instead of the JWT; sessions L1 hits"},
	{ID: "g", Name: "API key", Want: "L1", FixedRate: true, Cred: credAPIKey,
		Setup: "as a, with x-api-key (a user's key, leave:read, no limits; stored hashed as @better-auth/api-key does) " +
			"instead of authorization; keys L1 hits"},
	// h is a on gRPC's standard codec: a and h side by side are what the
	// lean codec (the default) is worth.
	{ID: "h", Name: "a, proto codec", Want: "L1", FixedRate: true,
		Setup: "as a, on a sidecar started with --grpc-codec proto (gRPC's standard codec decodes the whole CheckRequest; " +
			"a runs on the default lean codec)"},
}
