package httpauthz_test

import (
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The proxy snippets of docs/proxies.md must copy every header only the
// sidecar may set, so that no client's copy reaches the application: these
// checks read the snippets and need no proxy installed. (The nginx and
// Caddy tests also run their snippets as written.)

func TestDocsNginxSnippetSetsEveryHeader(t *testing.T) {
	t.Parallel()
	checkNginxSetsEveryHeader(t, "the nginx snippet", docSnippet(t, "nginx"))
}

// TestLoadtestNginxSetsEveryHeader: the load test's front (make loadtest)
// is the same setup.
func TestLoadtestNginxSetsEveryHeader(t *testing.T) {
	t.Parallel()
	script, err := os.ReadFile("../../scripts/loadtest.sh")
	if err != nil {
		t.Fatal(err)
	}
	checkNginxSetsEveryHeader(t, "scripts/loadtest.sh's nginx front", string(script))
}

// checkNginxSetsEveryHeader fails unless snippet copies every sidecar
// header from the auth answer onto the upstream request.
func checkNginxSetsEveryHeader(t *testing.T, what, snippet string) {
	t.Helper()
	// $var -> the answer header it holds.
	vars := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s*auth_request_set\s+\$(\w+)\s+\$upstream_http_(\w+);`).FindAllStringSubmatch(snippet, -1) {
		vars[m[1]] = strings.ReplaceAll(m[2], "_", "-")
	}
	// header sent upstream -> the answer header it is copied from.
	sent := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s*proxy_set_header\s+(\S+)\s+\$(\w+);`).FindAllStringSubmatch(snippet, -1) {
		if from, ok := vars[m[2]]; ok {
			sent[strings.ToLower(m[1])] = from
		}
	}
	for _, h := range sidecarHeaders {
		if from, ok := sent[h]; !ok || from != h {
			t.Errorf("%s does not set %s from the sidecar's answer (auth_request_set $x $upstream_http_%s; proxy_set_header %s $x;)",
				what, http.CanonicalHeaderKey(h), strings.ReplaceAll(h, "-", "_"), http.CanonicalHeaderKey(h))
		}
	}
	for _, want := range []string{"auth_request /_authz;", "X-Original-URI     $request_uri;", "X-Original-Method  $request_method;"} {
		if !strings.Contains(snippet, want) {
			t.Errorf("%s lacks %q", what, want)
		}
	}
}

func TestDocsCaddySnippetSetsEveryHeader(t *testing.T) {
	t.Parallel()
	snippet := docSnippet(t, "caddy")
	lines := strings.Split(snippet, "\n")
	// The index of the first line matching re, -1 when none does.
	find := func(re string) int {
		r := regexp.MustCompile(`^\s*` + re + `\s*$`)
		return slices.IndexFunc(lines, r.MatchString)
	}
	ask := find(`reverse_proxy 127\.0\.0\.1:9193 \{`)
	if ask < 0 {
		t.Fatal("the Caddy snippet does not ask the sidecar (reverse_proxy 127.0.0.1:9193)")
	}
	for _, h := range sidecarHeaders {
		name := regexp.QuoteMeta(http.CanonicalHeaderKey(h))
		if i := find(`request_header -` + name); i < 0 || i > ask {
			t.Errorf("the Caddy snippet does not strip a client's %s before asking", http.CanonicalHeaderKey(h))
		}
		matcher := find(`@(\w+)\s+not vars \{rp\.header\.` + name + `\} "" "<nil>"`)
		if matcher < 0 {
			t.Errorf("the Caddy snippet has no matcher for %s having been sent", http.CanonicalHeaderKey(h))
			continue
		}
		m := strings.Fields(lines[matcher])[0]
		if i := find(`request_header ` + regexp.QuoteMeta(m) + ` ` + name + ` \{rp\.header\.` + name + `\}`); i < ask {
			t.Errorf("the Caddy snippet does not copy %s from the sidecar's answer (request_header %s %s {rp.header.%[1]s})",
				http.CanonicalHeaderKey(h), m, http.CanonicalHeaderKey(h))
		}
	}
}

func TestDocsTraefikSnippetCopiesEveryHeader(t *testing.T) {
	t.Parallel()
	var conf struct {
		HTTP struct {
			Middlewares map[string]struct {
				ForwardAuth struct {
					Address             string   `yaml:"address"`
					TrustForwardHeader  *bool    `yaml:"trustForwardHeader"`
					AuthResponseHeaders []string `yaml:"authResponseHeaders"`
				} `yaml:"forwardAuth"`
			} `yaml:"middlewares"`
		} `yaml:"http"`
	}
	if err := yaml.Unmarshal([]byte(docSnippet(t, "traefik")), &conf); err != nil {
		t.Fatal(err)
	}
	fa := conf.HTTP.Middlewares["authz"].ForwardAuth
	if fa.Address == "" || fa.TrustForwardHeader == nil || *fa.TrustForwardHeader {
		t.Errorf("forwardAuth address %q, trustForwardHeader %v: want an address and false", fa.Address, fa.TrustForwardHeader)
	}
	for _, h := range sidecarHeaders {
		if !slices.ContainsFunc(fa.AuthResponseHeaders, func(s string) bool { return strings.EqualFold(s, h) }) {
			t.Errorf("authResponseHeaders lacks %s", http.CanonicalHeaderKey(h))
		}
	}
}
