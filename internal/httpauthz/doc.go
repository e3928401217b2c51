// Package httpauthz serves the sidecar's decisions over plain HTTP, for the
// proxies that ask an HTTP endpoint instead of speaking ext_authz gRPC:
// nginx auth_request, Traefik ForwardAuth, Caddy forward_auth and Envoy's
// ext_authz HTTP service. It translates one HTTP "may this request pass?"
// request into an authz.Request and the authz.Decision back into a status
// and headers; it decides nothing itself. internal/extauthz is the gRPC
// twin, and both answer alike: same statuses, header names and deny body.
//
// The Handler is mounted at "/" of a listener of its own. It has no health
// or metrics endpoint; those live on the operations listener.
//
// # Who may ask
//
// Only a peer whose address (the TCP peer, never X-Forwarded-For) is in
// Config.TrustedProxies gets a decision; anything else is answered 403 with
// reason "untrusted_peer" and the engine is not asked. The original method
// and URI arrive in headers (or, for Envoy, as the request line) that the
// asker writes itself, so they mean something only when the asker is the
// proxy that will enforce the answer. Refusing everyone else also keeps the
// endpoint from serving as a token or permission oracle that bypasses the
// proxy. The default is loopback only (127.0.0.0/8 and ::1); a proxy in
// another container or host must be listed by address. Serve on TCP: a
// Unix-socket peer has no address and is never trusted.
//
// # Which request is being asked about
//
// Exactly one of these sources names the original request, tried in order:
//
//  1. Envoy: when Config.EnvoyPathPrefix is set and the request target is
//     that prefix followed by "/", the request's own method is the original
//     method and the target minus the prefix is the original path (Envoy's
//     http_service.path_prefix prepends the prefix to the original :path,
//     query included). X-Original-* and X-Forwarded-* are ignored: the
//     request line is Envoy's own and cannot be spoofed by a client.
//  2. nginx: X-Original-Method and X-Original-URI (set with proxy_set_header
//     in the auth_request location).
//  3. Traefik and Caddy: X-Forwarded-Method and X-Forwarded-Uri.
//
// A request carrying both X-Original-* and X-Forwarded-* is refused (403,
// "bad_original_request") rather than resolved by precedence: each proxy
// passes the client's other headers through to the auth request, so a
// client behind nginx could send its own X-Forwarded-Uri, and one behind
// Traefik its own X-Original-URI; whichever family won, some proxy's
// clients could name a request of their choosing. Also refused: a missing
// or repeated method or URI, a method that is not an HTTP token, a URI that
// does not start with "/" or holds spaces or control characters, and a
// request naming no original request at all. The query string is kept; the
// engine strips it.
//
// # Headers the engine sees
//
// Every request header, names lower-cased, repeated headers joined with ","
// (as Envoy does for the gRPC service), so Authorization and an
// organization header reach the engine as they reach extauthz. Client-sent
// copies of the identity headers (authz.IdentityHeaders) and of
// X-Authz-Decision-Id are dropped first: they can only be forgeries, and a
// policy must never be able to read them.
//
// # Answers
//
//   - allow: 200, empty body, each identity header (authz.IdentityHeaders:
//     X-Auth-User-Id, X-Auth-Org-Id, X-Auth-Roles comma-joined, ...) the
//     decision has a value for, and X-Authz-Decision-Id, for the proxy to
//     copy onto the upstream request. Only 200 means allow: Envoy denies on
//     any other status, including other 2xx.
//   - shadow deny (a route with enforce: false): 200 as above plus
//     X-Authz-Shadow-Deny: <reason>.
//   - deny: 401, 403 or 503 by the decision's code (anything unforeseen is
//     503, never a 2xx), Content-Type application/json, body
//     {"error":"unauthenticated|forbidden|unavailable","reason":"<detail>"},
//     X-Authz-Reason: <reason label>, on 401
//     WWW-Authenticate: Bearer error="invalid_token", and with
//     Config.DecisionIDResponseHeader X-Authz-Decision-Id. No identity header
//     is ever sent with a deny, and no request header is ever echoed.
//
// Every answer carries Cache-Control: no-store. The token never appears in
// an answer: the engine keeps it out of the detail, and this package writes
// nothing else from the request.
//
// What each proxy makes of a deny: Traefik and Caddy return our status,
// headers and body to the client. nginx's auth_request understands only
// 2xx, 401 and 403: 401 and 403 reach the client (with WWW-Authenticate on
// 401, but nginx's own error body), and any other status, our 503 included,
// becomes 500. It is still a deny; only the status differs. Envoy returns
// 401 and 403 with our body, but treats every 5xx from an HTTP authorization
// service as an error and answers its status_on_error (403 by default, so
// set it to 503) — or lets the request through if failure_mode_allow is
// true, which must therefore stay false.
//
// # The proxies
//
// docs/proxies.md holds the one copy of each proxy's setup (nginx
// auth_request, Caddy, Traefik ForwardAuth, Envoy's HTTP service); the
// tests read it, and run the nginx and Caddy ones against real servers.
// Each must copy every header this package sets on an allow onto the
// upstream request, replacing a client's copy, and send none the answer
// lacks. On an Envoy-style allow the handler also answers
// x-envoy-auth-headers-to-remove naming the headers it did not set, so
// Envoy removes a client's copies of those (it overwrites the others
// through allowed_upstream_headers). The gRPC service (internal/extauthz)
// remains the better fit for Envoy.
package httpauthz
