package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// Defaults for KeySetConfig's zero values.
const (
	DefaultRefreshInterval    = 5 * time.Minute
	DefaultMinRefreshInterval = 10 * time.Second
	DefaultFetchTimeout       = 5 * time.Second
	DefaultInitialBackoff     = time.Second
	DefaultMaxBodyBytes       = 1 << 20
)

// minRSABits is the smallest RSA modulus we accept (RFC 7518 §3.3 requires
// 2048 for RS256/PS256); smaller keys in the JWKS are skipped.
const minRSABits = 2048

// KeySetConfig configures a KeySet. Zero values take the defaults above.
type KeySetConfig struct {
	// URL of the JWKS, e.g. "https://app.example.com/api/auth/jwks".
	// Required; http or https.
	URL string
	// RefreshInterval between scheduled fetches once a set was loaded, and
	// the cap of the retry backoff before that. Better Auth sends no
	// Cache-Control, so this interval alone bounds how long a key removed
	// from the JWKS is still trusted.
	RefreshInterval time.Duration
	// MinRefreshInterval rate-limits fetches triggered by an unknown kid:
	// no such fetch starts sooner than this after the previous attempt of
	// any kind. It bounds the load an attacker sending random kids can put
	// on the identity service.
	MinRefreshInterval time.Duration
	// FetchTimeout bounds one fetch, including reading the body.
	FetchTimeout time.Duration
	// InitialBackoff is Run's first retry delay while no fetch has ever
	// succeeded; it doubles up to RefreshInterval.
	InitialBackoff time.Duration
	// HTTPClient to fetch with; default: a client with Timeout FetchTimeout
	// that follows redirects but never from https to http.
	HTTPClient *http.Client
	// MaxBodyBytes caps the JWKS response body; larger bodies fail the fetch.
	MaxBodyBytes int64
	// OnRefresh, if set, is called after every fetch attempt with its
	// result (nil on success), e.g. to count refreshes in metrics. It runs
	// on the fetching goroutine and must not block.
	OnRefresh func(err error)
	// Now is the clock of the MinRefreshInterval rate limit and of each
	// set's fetch time; time.Now by default (tests replace it). Run's
	// schedule uses timers.
	Now func() time.Time
}

// keyIndex is one fetched key set; it is immutable once published.
type keyIndex struct {
	byKID     map[string]jwk.Key
	fetchedAt time.Time
}

// KeySet holds the issuer's public signing keys, fetched from a JWKS URL and
// refreshed in the background (Run) and on demand when a token names an
// unknown kid (Lookup). A failed fetch keeps the last good set; with no good
// set ever, Lookup fails closed with ErrNoKeys. There are no fallback keys.
// A KeySet is safe for concurrent use.
type KeySet struct {
	cfg     KeySetConfig
	url     string // for logs: userinfo redacted
	log     *zap.Logger
	client  *http.Client
	current atomic.Pointer[keyIndex] // swapped whole, never mutated
	flights singleflight.Group       // key "fetch": at most one fetch at a time

	mu          sync.Mutex
	lastAttempt time.Time           // guarded by mu; start of the latest fetch
	fetching    bool                // guarded by mu; a fetch is running
	warned      map[string]struct{} // guarded by mu; skipped-key warnings already logged
}

// NewKeySet validates cfg and returns a KeySet with no keys yet: call Run (or
// Refresh) to load them. A nil log discards logs.
func NewKeySet(cfg KeySetConfig, log *zap.Logger) (*KeySet, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("authn: JWKS URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("authn: JWKS URL %q: want an absolute http(s) URL", u.Redacted())
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"RefreshInterval", &cfg.RefreshInterval, DefaultRefreshInterval},
		{"MinRefreshInterval", &cfg.MinRefreshInterval, DefaultMinRefreshInterval},
		{"FetchTimeout", &cfg.FetchTimeout, DefaultFetchTimeout},
		{"InitialBackoff", &cfg.InitialBackoff, DefaultInitialBackoff},
	} {
		if *d.v < 0 {
			return nil, fmt.Errorf("authn: KeySetConfig.%s is negative", d.name)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.MaxBodyBytes < 0 {
		return nil, errors.New("authn: KeySetConfig.MaxBodyBytes is negative")
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: cfg.FetchTimeout, CheckRedirect: noDowngrade}
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &KeySet{
		cfg:    cfg,
		url:    u.Redacted(),
		log:    log,
		client: client,
		warned: make(map[string]struct{}),
	}, nil
}

// noDowngrade follows redirects like net/http's default, except from https
// to http: keys fetched in clear text could be replaced by anyone on the path.
func noDowngrade(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return errors.New("refusing redirect from https to " + req.URL.Scheme)
	}
	return nil
}

// Run fetches the key set at once and then every RefreshInterval until ctx
// ends. Until the first success it retries sooner, with a backoff starting at
// InitialBackoff and doubling up to RefreshInterval. Failures are logged and
// reported to OnRefresh; the last good set stays in use.
func (k *KeySet) Run(ctx context.Context) {
	backoff := k.cfg.InitialBackoff
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		_ = k.Refresh(ctx) // logged and reported inside
		var wait time.Duration
		wait, backoff = k.nextWait(backoff)
		timer.Reset(wait)
	}
}

// nextWait is how long Run waits after an attempt, and the backoff after
// that: RefreshInterval once a set is loaded, else backoff, which doubles
// up to RefreshInterval.
func (k *KeySet) nextWait(backoff time.Duration) (wait, next time.Duration) {
	if k.Ready() {
		return k.cfg.RefreshInterval, backoff
	}
	return backoff, min(2*backoff, k.cfg.RefreshInterval)
}

// Refresh fetches the key set now, or waits for a fetch already running, and
// returns its error. It is not rate-limited. The fetch itself runs with its
// own FetchTimeout, detached from ctx, because other callers may share it;
// ctx only bounds the wait.
func (k *KeySet) Refresh(ctx context.Context) error {
	select {
	case res := <-k.flights.DoChan("fetch", k.fetchFlight):
		return res.Err
	case <-ctx.Done():
		return fmt.Errorf("authn: waiting for JWKS fetch: %w", ctx.Err())
	}
}

// Ready reports whether a key set has been loaded at least once.
func (k *KeySet) Ready() bool {
	return k.current.Load() != nil
}

// Lookup returns the key with this kid. On a miss it triggers at most one
// fetch, shared with concurrent callers (singleflight) and skipped if any
// fetch started less than MinRefreshInterval ago, then looks again. It
// returns ErrUnknownKey if the kid is still unknown, ErrNoKeys if no key set
// was ever loaded, or a context error if ctx ends while waiting.
func (k *KeySet) Lookup(ctx context.Context, kid string) (jwk.Key, error) {
	if key, ok := k.find(kid); ok {
		return key, nil
	}
	if kid == "" {
		return nil, k.missError()
	}
	if ch, ok := k.refreshForMiss(); ok {
		select {
		case <-ch:
			// The fetch's error is logged and reported by fetchFlight;
			// for this caller only the outcome of the second look matters.
		case <-ctx.Done():
			return nil, fmt.Errorf("authn: waiting for JWKS refresh: %w", ctx.Err())
		}
		if key, ok := k.find(kid); ok {
			return key, nil
		}
	}
	return nil, k.missError()
}

func (k *KeySet) find(kid string) (jwk.Key, bool) {
	idx := k.current.Load()
	if idx == nil {
		return nil, false
	}
	key, ok := idx.byKID[kid]
	return key, ok
}

func (k *KeySet) missError() error {
	if !k.Ready() {
		return ErrNoKeys
	}
	return ErrUnknownKey
}

// refreshForMiss joins the running fetch, or starts one unless the rate limit
// forbids it. The decision and DoChan happen under mu so that a fetch that
// just finished cannot be followed by a second one from a caller that passed
// the check concurrently (fetchFlight records lastAttempt under mu too).
// DoChan never blocks, so holding mu across it is safe.
func (k *KeySet) refreshForMiss() (<-chan singleflight.Result, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.fetching && k.cfg.Now().Sub(k.lastAttempt) < k.cfg.MinRefreshInterval {
		return nil, false
	}
	return k.flights.DoChan("fetch", k.fetchFlight), true
}

// fetchFlight is the only function run under the "fetch" flight, so fetches
// never overlap and a slow, older response can never replace a newer set.
func (k *KeySet) fetchFlight() (any, error) {
	k.mu.Lock()
	k.fetching = true
	k.lastAttempt = k.cfg.Now()
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		k.fetching = false
		k.mu.Unlock()
	}()

	ctx, cancel := context.WithTimeout(context.Background(), k.cfg.FetchTimeout)
	defer cancel()
	n, err := k.fetch(ctx)
	if err != nil {
		k.log.Warn("JWKS fetch failed; keeping the last good key set",
			zap.String("url", k.url), zap.Bool("have_keys", k.Ready()), zap.Error(err))
	} else {
		k.log.Debug("JWKS fetched", zap.String("url", k.url), zap.Int("keys", n))
	}
	if k.cfg.OnRefresh != nil {
		k.cfg.OnRefresh(err)
	}
	return nil, err
}

// fetch downloads and parses the JWKS and publishes it if it has at least
// one usable key. It returns the number of usable keys.
func (k *KeySet) fetch(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.cfg.URL, nil)
	if err != nil {
		return 0, fmt.Errorf("authn: building JWKS request: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("authn: fetching JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // allow connection reuse
		return 0, fmt.Errorf("authn: fetching JWKS %s: status %d", k.url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, k.cfg.MaxBodyBytes+1))
	if err != nil {
		return 0, fmt.Errorf("authn: reading JWKS %s: %w", k.url, err)
	}
	if int64(len(body)) > k.cfg.MaxBodyBytes {
		return 0, fmt.Errorf("authn: JWKS %s: body exceeds %d bytes", k.url, k.cfg.MaxBodyBytes)
	}
	idx, err := k.parse(body)
	if err != nil {
		return 0, fmt.Errorf("authn: JWKS %s: %w", k.url, err)
	}
	idx.fetchedAt = k.cfg.Now()
	k.current.Store(idx)
	return len(idx.byKID), nil
}

// parse builds a key index from a JWKS document. Keys are parsed one by one
// so that one key we cannot use (another kty, no kid, a private key) is
// skipped instead of failing the whole set. Zero usable keys is an error, so
// such a response never replaces a good set.
func (k *KeySet) parse(body []byte) (*keyIndex, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("decoding key set: %w", err)
	}
	idx := &keyIndex{byKID: make(map[string]jwk.Key, len(doc.Keys))}
	for i, raw := range doc.Keys {
		key, err := usableKey(raw)
		if err != nil {
			k.warnOnce(err.Error(), "JWKS key skipped", zap.Int("index", i), zap.Error(err))
			continue
		}
		kid := key.KeyID()
		if _, dup := idx.byKID[kid]; dup {
			// Two keys, one kid: keep the first rather than pick per token.
			k.warnOnce("duplicate kid "+kid, "JWKS key skipped: duplicate kid",
				zap.Int("index", i), zap.String("kid", kid))
			continue
		}
		idx.byKID[kid] = key
	}
	if len(idx.byKID) == 0 {
		return nil, fmt.Errorf("no usable keys among %d", len(doc.Keys))
	}
	return idx, nil
}

// maxWarned bounds the reasons warnOnce remembers.
const maxWarned = 256

// warnOnce logs a warning the first time a reason is seen, so that a JWKS
// with a key we skip does not log on every refresh. Bounded, to keep memory
// flat if the JWKS changes constantly.
func (k *KeySet) warnOnce(reason, msg string, fields ...zap.Field) {
	k.mu.Lock()
	_, seen := k.warned[reason]
	if !seen && len(k.warned) < maxWarned {
		k.warned[reason] = struct{}{}
	}
	k.mu.Unlock()
	if !seen {
		k.log.Warn(msg, fields...)
	}
}

// usableKey parses one JWK and returns it if we can verify with it: a public
// key with a kid, of a type, curve and size that one of acceptedAlgs fits,
// whose alg (if set) is that algorithm, meant for signatures (use, key_ops).
func usableKey(raw json.RawMessage) (jwk.Key, error) {
	key, err := jwk.ParseKey(raw)
	if err != nil {
		return nil, fmt.Errorf("unparseable key: %w", err)
	}
	kid := key.KeyID()
	if kid == "" {
		// Tokens are matched by kid only; we never try keys in turn.
		return nil, errors.New("key has no kid")
	}
	if ak, ok := key.(jwk.AsymmetricKey); !ok || ak.IsPrivate() {
		// Symmetric keys would allow HMAC tokens; private keys in a public
		// JWKS mean anyone can sign, so trusting them is unsafe.
		return nil, fmt.Errorf("key %q is not an asymmetric public key", kid)
	}
	if u := key.KeyUsage(); u != "" && u != string(jwk.ForSignature) {
		return nil, fmt.Errorf("key %q has use %q", kid, u)
	}
	if ops := key.KeyOps(); len(ops) > 0 && !slices.Contains(ops, jwk.KeyOpVerify) {
		return nil, fmt.Errorf("key %q has no verify key_op", kid)
	}
	if err := key.Validate(); err != nil {
		return nil, fmt.Errorf("key %q: %w", kid, err)
	}
	algs, err := keyAlgorithms(key)
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", kid, err)
	}
	if a := key.Algorithm().String(); a != "" && !slices.Contains(algs, a) {
		return nil, fmt.Errorf("key %q: alg %q does not fit its key type", kid, a)
	}
	return key, nil
}

// keyAlgorithms returns the accepted algorithms the key can verify, checking
// its material on the way (Ed25519 length, EC point on the curve, RSA size),
// or an error if it can verify none.
func keyAlgorithms(key jwk.Key) ([]string, error) {
	switch key.KeyType() {
	case jwa.OKP:
		if _, err := ed25519Key(key); err != nil {
			return nil, err
		}
		return []string{"EdDSA"}, nil
	case jwa.EC:
		pub, err := ecdsaKey(key, "")
		if err != nil {
			return nil, err
		}
		if _, err := pub.ECDH(); err != nil { // rejects points not on the curve
			return nil, fmt.Errorf("invalid EC public key: %w", err)
		}
		return []string{ecAlgByCurve[pub.Curve.Params().Name]}, nil
	case jwa.RSA:
		if _, err := rsaKey(key); err != nil {
			return nil, err
		}
		return []string{"RS256", "PS256"}, nil
	default:
		return nil, fmt.Errorf("unsupported kty %q", key.KeyType())
	}
}

var ecAlgByCurve = map[string]string{"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}

// ed25519Key returns the Ed25519 public key of an OKP JWK. The slice aliases
// the JWK's own bytes (no copy; both are read-only).
func ed25519Key(key jwk.Key) (ed25519.PublicKey, error) {
	okp, ok := key.(jwk.OKPPublicKey)
	if !ok {
		return nil, fmt.Errorf("kty %q is not OKP", key.KeyType())
	}
	if okp.Crv() != jwa.Ed25519 {
		return nil, fmt.Errorf("OKP curve %q is not Ed25519", okp.Crv())
	}
	// Checked because ed25519.Verify panics on a key of another length.
	if x := okp.X(); len(x) == ed25519.PublicKeySize {
		return ed25519.PublicKey(x), nil
	}
	return nil, errors.New("Ed25519 key has wrong length")
}

// ecdsaKey returns the ECDSA public key of an EC JWK on P-256, P-384 or
// P-521; if
// crv is set, the key must be on that curve.
func ecdsaKey(key jwk.Key, crv jwa.EllipticCurveAlgorithm) (*ecdsa.PublicKey, error) {
	ec, ok := key.(jwk.ECDSAPublicKey)
	if !ok {
		return nil, fmt.Errorf("kty %q is not EC", key.KeyType())
	}
	if c := ec.Crv(); (c != jwa.P256 && c != jwa.P384 && c != jwa.P521) || (crv != "" && c != crv) {
		return nil, fmt.Errorf("EC curve %q not accepted here", c)
	}
	var pub *ecdsa.PublicKey
	if err := key.Raw(&pub); err != nil {
		return nil, fmt.Errorf("EC key: %w", err)
	}
	return pub, nil
}

// rsaKey returns the RSA public key of an RSA JWK of at least minRSABits.
func rsaKey(key jwk.Key) (*rsa.PublicKey, error) {
	if _, ok := key.(jwk.RSAPublicKey); !ok {
		return nil, fmt.Errorf("kty %q is not RSA", key.KeyType())
	}
	var pub *rsa.PublicKey
	if err := key.Raw(&pub); err != nil {
		return nil, fmt.Errorf("RSA key: %w", err)
	}
	if pub.N == nil || pub.N.BitLen() < minRSABits {
		return nil, fmt.Errorf("RSA key shorter than %d bits", minRSABits)
	}
	return pub, nil
}
