// Package envoy holds the Envoy front-proxy configuration (envoy.yaml and
// its docker-compose twin envoy-compose.yaml) and the Istio manifests
// (istio/). It has no Go API: its tests load every file the way Envoy and
// Istio would (unknown fields are errors) and check the security contract
// between the proxy and the sidecar.
package envoy
