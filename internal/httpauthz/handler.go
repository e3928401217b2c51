package httpauthz

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
)

// Decider makes decisions; *authz.Engine satisfies it.
type Decider interface {
	Decide(ctx context.Context, r *authz.Request) authz.Decision
}

// Observer sees every answer after it is made (metrics, decision log),
// refusals by this package included. *observe.Recorder satisfies it.
type Observer interface {
	Observe(ctx context.Context, r *authz.Request, d *authz.Decision, requestID string, elapsed time.Duration)
}

// The reasons for refusals made here, before the engine is asked. They
// join the engine's reasons as metric labels, so they are a fixed set.
const (
	// ReasonUntrustedPeer: the TCP peer is not in Config.TrustedProxies.
	ReasonUntrustedPeer authz.Reason = "untrusted_peer"
	// ReasonBadOriginalRequest: the original method and URI are missing,
	// repeated, malformed or named twice (X-Original-* and X-Forwarded-*).
	ReasonBadOriginalRequest authz.Reason = "bad_original_request"
)

// The request headers naming the original request.
const (
	HeaderOriginalMethod  = "X-Original-Method"
	HeaderOriginalURI     = "X-Original-Uri"
	HeaderForwardedMethod = "X-Forwarded-Method"
	HeaderForwardedURI    = "X-Forwarded-Uri"
)

// Config tunes the handler. The zero value is usable.
type Config struct {
	// TrustedProxies are the peers (by TCP address) that may ask at all;
	// see the package doc. Empty means loopback only: 127.0.0.0/8 and ::1.
	// IPv4 peers connecting over IPv6 (::ffff:a.b.c.d) match IPv4 prefixes.
	TrustedProxies []netip.Prefix
	// Timeout bounds one decision; keep it below the proxy's own timeout
	// so the sidecar answers 503 itself. Zero means 100ms.
	Timeout time.Duration
	// EnvoyPathPrefix is Envoy's http_service.path_prefix: requests whose
	// target starts with it and then "/" are Envoy-style. It must start
	// with "/", not end with "/", and hold only unreserved path characters.
	// Empty disables Envoy-style requests: without a prefix they could not
	// be told from a misconfigured proxy's request for "/".
	EnvoyPathPrefix string
	// DecisionIDResponseHeader also sends HeaderDecisionID with denies,
	// which the proxy returns to the client. On an allow the header is
	// always sent, for the upstream; whether the client sees it too is the
	// proxy's choice (docs/proxies.md).
	DecisionIDResponseHeader bool
}

var defaultTrustedProxies = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("::1/128"),
}

// Handler answers "may this request pass?" for a proxy. It is safe for
// concurrent use.
type Handler struct {
	decider  Decider
	observer Observer
	cfg      Config
}

// NewHandler returns a handler asking d. obs may be nil. It returns an error
// when d is nil or cfg has an invalid prefix.
func NewHandler(d Decider, obs Observer, cfg Config) (*Handler, error) {
	if d == nil {
		return nil, errors.New("httpauthz: nil decider")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 100 * time.Millisecond
	}
	if len(cfg.TrustedProxies) == 0 {
		cfg.TrustedProxies = defaultTrustedProxies
	} else {
		ps := make([]netip.Prefix, 0, len(cfg.TrustedProxies))
		for _, p := range cfg.TrustedProxies {
			if !p.IsValid() {
				return nil, fmt.Errorf("httpauthz: invalid trusted proxy prefix %q", p)
			}
			if p.Addr().Is4In6() {
				// Peers are unmapped before matching, so this would never match.
				return nil, fmt.Errorf("httpauthz: trusted proxy prefix %s: write IPv4-mapped prefixes in IPv4 form", p)
			}
			ps = append(ps, p.Masked())
		}
		cfg.TrustedProxies = ps
	}
	if err := checkEnvoyPrefix(cfg.EnvoyPathPrefix); err != nil {
		return nil, err
	}
	return &Handler{decider: d, observer: obs, cfg: cfg}, nil
}

func checkEnvoyPrefix(p string) error {
	if p == "" {
		return nil
	}
	if p == "/" || !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
		return fmt.Errorf("httpauthz: envoy path prefix %q must start with \"/\", not end with \"/\" and not be \"/\"", p)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		ok := c == '/' || c == '-' || c == '.' || c == '_' || c == '~' ||
			'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !ok {
			return fmt.Errorf("httpauthz: envoy path prefix %q: only letters, digits, \"/-._~\" are allowed", p)
		}
	}
	return nil
}

// mode is the source that named the original request.
type mode uint8

const (
	modeNone mode = iota
	modeEnvoy
	modeOriginal
	modeForwarded
)

// ServeHTTP answers one auth request. It never reads the body.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.Timeout)
	defer cancel()

	req := authz.Request{Headers: engineHeaders(r.Header)}
	m, refusal := h.original(r, &req)
	var d authz.Decision
	if refusal != nil {
		d = *refusal
	} else {
		d = h.decider.Decide(ctx, &req)
	}
	if h.observer != nil {
		h.observer.Observe(ctx, &req, &d, r.Header.Get("X-Request-Id"), time.Since(start))
	}
	writeAnswer(w, &d, answerOptions{envoy: m == modeEnvoy, idOnDeny: h.cfg.DecisionIDResponseHeader})
}

// original fills req.Method and req.Path from the one source naming the
// original request (see the package doc for the order), or returns the
// refusal to answer with.
func (h *Handler) original(r *http.Request, req *authz.Request) (mode, *authz.Decision) {
	// Trust first: nothing an unknown peer sends is believed.
	if !h.trusted(r.RemoteAddr) {
		return modeNone, refuse(ReasonUntrustedPeer, "the request did not come from a trusted proxy")
	}
	if p := h.cfg.EnvoyPathPrefix; p != "" {
		// RequestURI is the target exactly as sent (not decoded), which is
		// what Envoy built from the original :path.
		if rest, ok := strings.CutPrefix(r.RequestURI, p); ok && strings.HasPrefix(rest, "/") {
			req.Method, req.Path = r.Method, rest
			return modeEnvoy, nil
		}
	}
	hasOriginal := has(r.Header, HeaderOriginalMethod) || has(r.Header, HeaderOriginalURI)
	hasForwarded := has(r.Header, HeaderForwardedMethod) || has(r.Header, HeaderForwardedURI)
	var (
		m           mode
		method, uri string
		problem     string
	)
	switch {
	case hasOriginal && hasForwarded:
		// Each proxy passes the client's other headers through, so
		// precedence either way would let some proxy's clients choose.
		return modeNone, refuse(ReasonBadOriginalRequest, "both X-Original-* and X-Forwarded-* name the original request")
	case hasOriginal:
		m = modeOriginal
		method, uri, problem = pair(r.Header, HeaderOriginalMethod, HeaderOriginalURI)
	case hasForwarded:
		m = modeForwarded
		method, uri, problem = pair(r.Header, HeaderForwardedMethod, HeaderForwardedURI)
	default:
		return modeNone, refuse(ReasonBadOriginalRequest,
			"no original request: expected X-Original-Method and X-Original-URI, or X-Forwarded-Method and X-Forwarded-Uri")
	}
	if problem != "" {
		return modeNone, refuse(ReasonBadOriginalRequest, problem)
	}
	req.Method, req.Path = method, uri
	return m, nil
}

// trusted reports whether the TCP peer may ask. An address that does not
// parse (a Unix socket, say) is not trusted.
func (h *Handler) trusted(remoteAddr string) bool {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap().WithZone("")
	for _, p := range h.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func has(h http.Header, name string) bool { return len(h[name]) > 0 }

// pair reads the original method and URI from one header family. The
// problem text names headers, never their values, so nothing a client sent
// is echoed.
func pair(h http.Header, methodHeader, uriHeader string) (method, uri, problem string) {
	ms, us := h[methodHeader], h[uriHeader]
	switch {
	case len(ms) != 1:
		return "", "", fmt.Sprintf("%s must be sent exactly once", methodHeader)
	case len(us) != 1:
		return "", "", fmt.Sprintf("%s must be sent exactly once", uriHeader)
	case !isToken(ms[0]):
		return "", "", fmt.Sprintf("%s is not an HTTP method", methodHeader)
	case !isOriginForm(us[0]):
		return "", "", fmt.Sprintf("%s is not a path starting with \"/\"", uriHeader)
	}
	return ms[0], us[0], ""
}

// isToken reports whether s is an RFC 9110 token of sane length (methods
// are tokens).
func isToken(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// isOriginForm reports whether s looks like an origin-form request target:
// a "/" then no spaces or control characters. Anything else (an absolute
// URI, "*") is refused rather than guessed at.
func isOriginForm(s string) bool {
	if !strings.HasPrefix(s, "/") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}

func refuse(reason authz.Reason, detail string) *authz.Decision {
	return &authz.Decision{Code: authz.CodeForbidden, Reason: reason, Detail: detail}
}

// engineHeaders lower-cases names and joins repeated values with "," as
// Envoy does, dropping client-sent identity headers and decision ids: only
// this sidecar may set them, so any copy in a request is forged.
func engineHeaders(h http.Header) authz.HeaderMap {
	m := make(authz.HeaderMap, len(h))
	for k, vs := range h {
		name := strings.ToLower(k)
		if authz.IsIdentityHeader(name) {
			continue
		}
		v := strings.Join(vs, ",")
		if prev, ok := m[name]; ok {
			// Only names net/http could not canonicalize collide here.
			v = prev + "," + v
		}
		m[name] = v
	}
	return m
}
