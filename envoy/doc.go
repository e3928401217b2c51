// Package envoy holds the Envoy front-proxy configuration (envoy.yaml and
// its docker-compose twin envoy-compose.yaml) and the Istio manifests
// (istio/). It has no Go API: its tests load every file the way Envoy and
// Istio would (unknown fields are errors), check the security contract
// between the proxy and the sidecar, check that the route lists are the
// ones "authz-sidecar envoy-routes" generates from policies.yaml
// (internal/envoyconf), and load the Envoy snippet of docs/proxies.md.
package envoy
