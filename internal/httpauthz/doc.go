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
// copies of the identity headers (X-Auth-User-Id, X-Auth-Org-Id,
// X-Auth-Roles, X-Authz-Shadow-Deny) are dropped first: they can only be
// forgeries, and a policy must never be able to read them.
//
// # Answers
//
//   - allow: 200, empty body, X-Auth-User-Id, X-Auth-Org-Id and X-Auth-Roles
//     (roles comma-joined) when the decision has them, for the proxy to copy
//     onto the upstream request. Only 200 means allow: Envoy denies on any
//     other status, including other 2xx.
//   - shadow deny (a route with enforce: false): 200 as above plus
//     X-Authz-Shadow-Deny: <reason>.
//   - deny: 401, 403 or 503 by the decision's code (anything unforeseen is
//     503, never a 2xx), Content-Type application/json, body
//     {"error":"unauthenticated|forbidden|unavailable","reason":"<detail>"},
//     X-Authz-Reason: <reason label>, and on 401
//     WWW-Authenticate: Bearer error="invalid_token". No identity header is
//     ever sent with a deny, and no request header is ever echoed.
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
// # nginx
//
// The auth subrequest inherits the client's headers (Authorization
// included), so only the original method and URI need adding. Every
// identity header is set with proxy_set_header, which replaces a client's
// copy; when the allow carries no such header the variable is empty and
// nginx sends none at all. X-Original-URI is $request_uri, the target as
// the client sent it; proxy_pass without a URI part hands the app that same
// string, so the app serves the path that was judged:
//
//	location / {
//	    auth_request     /_authz;
//	    auth_request_set $authz_user   $upstream_http_x_auth_user_id;
//	    auth_request_set $authz_org    $upstream_http_x_auth_org_id;
//	    auth_request_set $authz_roles  $upstream_http_x_auth_roles;
//	    auth_request_set $authz_shadow $upstream_http_x_authz_shadow_deny;
//	    proxy_set_header X-Auth-User-Id      $authz_user;
//	    proxy_set_header X-Auth-Org-Id       $authz_org;
//	    proxy_set_header X-Auth-Roles        $authz_roles;
//	    proxy_set_header X-Authz-Shadow-Deny $authz_shadow;
//	    proxy_pass http://app;
//	}
//
//	location = /_authz {
//	    internal;
//	    proxy_pass              http://127.0.0.1:9193/;
//	    proxy_pass_request_body off;
//	    proxy_set_header Content-Length     "";
//	    proxy_set_header X-Original-URI     $request_uri;
//	    proxy_set_header X-Original-Method  $request_method;
//	    proxy_set_header X-Request-Id       $request_id;
//	    # Not required for safety (both families present = refused), but it
//	    # spares clients that happen to send these a 403:
//	    proxy_set_header X-Forwarded-Uri    "";
//	    proxy_set_header X-Forwarded-Method "";
//	}
//
// # Traefik
//
// trustForwardHeader must stay false (the default) so Traefik writes
// X-Forwarded-Method and X-Forwarded-Uri itself instead of passing a
// client's; authResponseHeaders removes a client's copies of the identity
// headers and copies ours. If authRequestHeaders is set, it must list
// Authorization and any header the policy reads (X-Organization-Id):
//
//	http:
//	  middlewares:
//	    authz:
//	      forwardAuth:
//	        address: http://127.0.0.1:9193/
//	        trustForwardHeader: false
//	        authResponseHeaders:
//	          - X-Auth-User-Id
//	          - X-Auth-Org-Id
//	          - X-Auth-Roles
//	          - X-Authz-Shadow-Deny
//
// # Caddy
//
// forward_auth sets X-Forwarded-Method and X-Forwarded-Uri itself. Caddy
// releases before the fix for GHSA-7r4p-vjf4-gxv4 (2026) left a client's
// copy of a copy_headers header in place when the auth answer lacked it, so
// strip them first; route keeps the directives in the order written
// (request_header would otherwise run after forward_auth):
//
//	example.com {
//	    route {
//	        request_header -X-Auth-User-Id
//	        request_header -X-Auth-Org-Id
//	        request_header -X-Auth-Roles
//	        request_header -X-Authz-Shadow-Deny
//	        forward_auth 127.0.0.1:9193 {
//	            uri /
//	            copy_headers X-Auth-User-Id X-Auth-Org-Id X-Auth-Roles X-Authz-Shadow-Deny
//	        }
//	        reverse_proxy app:8080
//	    }
//	}
//
// # Envoy (HTTP service)
//
// Envoy sends the original method and path as the request line, with
// path_prefix in front, plus Authorization and Host; other headers the
// policy reads (an organization header) must be listed in allowed_headers.
// On allow the handler also answers x-envoy-auth-headers-to-remove naming
// the identity headers it did not set, so Envoy removes a client's copies;
// those it did set replace a client's copy through allowed_upstream_headers.
// The gRPC service (internal/extauthz) remains the better fit for Envoy; use
// this where only an HTTP service can be configured.
//
//	http_filters:
//	  - name: envoy.filters.http.ext_authz
//	    typed_config:
//	      "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
//	      failure_mode_allow: false        # never true: Envoy would let our 503 through
//	      status_on_error: { code: ServiceUnavailable }  # Envoy takes any 5xx as an error
//	      allowed_headers:                 # Authorization, :method, :path, Host always go
//	        patterns: [{ exact: x-organization-id }, { exact: x-request-id }]
//	      http_service:
//	        server_uri: { uri: "http://127.0.0.1:9193", cluster: authz_http, timeout: 0.25s }
//	        path_prefix: /envoy            # = Config.EnvoyPathPrefix, no trailing "/"
//	        authorization_response:
//	          allowed_upstream_headers:    # overwrite a client's copies
//	            patterns:
//	              - { exact: x-auth-user-id }
//	              - { exact: x-auth-org-id }
//	              - { exact: x-auth-roles }
//	              - { exact: x-authz-shadow-deny }
//	          allowed_client_headers:      # on deny, besides WWW-Authenticate
//	            patterns: [{ exact: x-authz-reason }, { exact: content-type }]
//
// (Envoy releases before allowed_headers moved to the filter level take it
// as http_service.authorization_request.allowed_headers.)
package httpauthz
