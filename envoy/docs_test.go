package envoy

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
)

// docSnippet returns the code block that follows "<!-- snippet: name -->"
// in docs/proxies.md.
func docSnippet(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile("../docs/proxies.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "<!-- snippet: "+name+" -->\n```")
	if !ok {
		t.Fatalf("docs/proxies.md has no %s snippet", name)
	}
	_, rest, _ = strings.Cut(rest, "\n")
	block, _, ok := strings.Cut(rest, "\n```")
	if !ok {
		t.Fatalf("docs/proxies.md: the %s snippet is not closed", name)
	}
	return block
}

// exacts returns the exact names of a ListStringMatcher; any other kind of
// pattern is an error.
func exacts(l *matcherv3.ListStringMatcher) ([]string, error) {
	var out []string
	for _, p := range l.GetPatterns() {
		if p.GetExact() == "" {
			return nil, fmt.Errorf("pattern %v: only exact names are expected", p)
		}
		out = append(out, p.GetExact())
	}
	return out, nil
}

// TestDocsEnvoyHTTPSnippet loads the Envoy HTTP-service snippet of
// docs/proxies.md the way Envoy would (unknown fields refused, typed
// configs resolved and validated) and checks that it forwards what the
// policy reads and copies, or removes, every header only the sidecar may
// set.
func TestDocsEnvoyHTTPSnippet(t *testing.T) {
	t.Parallel()
	var tree any
	if err := yaml.Unmarshal([]byte(docSnippet(t, "envoy-http")), &tree); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(tree)
	if err != nil {
		t.Fatal(err)
	}
	h := &hcmv3.HttpConnectionManager{}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, h); err != nil {
		t.Fatalf("snippet: %v", err)
	}
	if err := walk("snippet", h.ProtoReflect()); err != nil {
		t.Fatal(err)
	}
	var a *extauthzv3.ExtAuthz
	for _, f := range h.GetHttpFilters() {
		if f.GetName() == extAuthzFilter {
			if a, err = unpack[*extauthzv3.ExtAuthz](f.GetTypedConfig()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if a == nil || a.GetHttpService() == nil {
		t.Fatal("no ext_authz filter with an http_service")
	}
	if a.GetFailureModeAllow() || a.GetStatusOnError().GetCode() != 503 {
		t.Errorf("failure_mode_allow %v, status_on_error %v: want false and 503", a.GetFailureModeAllow(), a.GetStatusOnError().GetCode())
	}

	allowed, err := exacts(a.GetAllowedHeaders())
	if err != nil {
		t.Fatal(err)
	}
	for _, hd := range forwardedHeaders(loadPolicy(t)) {
		// Envoy always sends Authorization to an HTTP service.
		if hd != "authorization" && !slices.Contains(allowed, hd) {
			t.Errorf("allowed_headers lacks %s, which the policy reads", hd)
		}
	}
	resp := a.GetHttpService().GetAuthorizationResponse()
	upstream, err := exacts(resp.GetAllowedUpstreamHeaders())
	if err != nil {
		t.Fatal(err)
	}
	for _, hd := range authz.IdentityHeaders[:] {
		if !slices.Contains(upstream, hd) {
			t.Errorf("allowed_upstream_headers lacks %s: a client's copy would reach the upstream", hd)
		}
	}
	client, err := exacts(resp.GetAllowedClientHeaders())
	if err != nil {
		t.Fatal(err)
	}
	for _, hd := range []string{authz.HeaderReason, authz.HeaderDecisionID} {
		if !slices.Contains(client, hd) {
			t.Errorf("allowed_client_headers lacks %s", hd)
		}
	}
}
