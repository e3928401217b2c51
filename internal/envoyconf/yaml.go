package envoyconf

import (
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// WriteRoutes writes routes as the items of a YAML list (a
// RouteConfiguration virtual host's "routes:"), each line indented by
// indent spaces, in the layout of the shipped envoy/envoy.yaml. It writes
// what Routes makes (path, prefix or safe_regex matches, a :method header
// matcher, a cluster, ext_authz context_extensions) and returns an error
// for anything else rather than leave it out.
func WriteRoutes(w io.Writer, routes []*routev3.Route, indent int) error {
	pad := strings.Repeat(" ", indent)
	var b strings.Builder
	line := func(depth int, format string, args ...any) {
		b.WriteString(pad + strings.Repeat("  ", depth) + fmt.Sprintf(format, args...) + "\n")
	}
	for _, r := range routes {
		if err := checkShape(r); err != nil {
			return fmt.Errorf("envoyconf: route %s: %w", r.GetName(), err)
		}
		route, err := contextRoute(r)
		if err != nil {
			return fmt.Errorf("envoyconf: route %s: %w", r.GetName(), err)
		}
		m := r.GetMatch()
		var path string
		switch {
		case m.GetSafeRegex() != nil:
			path = "safe_regex: { regex: " + strconv.Quote(m.GetSafeRegex().GetRegex()) + " }"
		case m.GetPath() != "":
			path = "path: " + yamlString(m.GetPath())
		default:
			path = "prefix: " + yamlString(m.GetPrefix())
		}
		if route == "" && len(m.GetHeaders()) == 0 {
			line(0, "# Catch-all, last. No context_extensions: the sidecar matches the path")
			line(0, "# itself, so a policy route whose mirror above did not match (an unusual")
			line(0, "# but valid segment) is still found, and a path no policy route")
			line(0, "# describes is denied by default.")
		}
		line(0, "- name: %s", yamlString(r.GetName()))
		if len(m.GetHeaders()) == 0 {
			line(1, "match: { %s }", path)
		} else {
			line(1, "match:")
			line(2, "%s", path)
			line(2, "headers:")
			for _, h := range m.GetHeaders() {
				sm := h.GetStringMatch()
				value := "exact: " + yamlString(sm.GetExact())
				if sm.GetSafeRegex() != nil {
					value = "safe_regex: { regex: " + strconv.Quote(sm.GetSafeRegex().GetRegex()) + " }"
				}
				line(3, "- { name: %s, string_match: { %s } }", strconv.Quote(h.GetName()), value)
			}
		}
		line(1, "route: { cluster: %s }", yamlString(r.GetRoute().GetCluster()))
		if route != "" {
			line(1, "typed_per_filter_config:")
			line(2, "%s:", ExtAuthzFilter)
			line(3, "\"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute")
			line(3, "check_settings:")
			line(4, "context_extensions: { route: %s }", yamlString(route))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// checkShape refuses what WriteRoutes would not write.
func checkShape(r *routev3.Route) error {
	m := r.GetMatch()
	switch {
	case r.GetRoute() == nil || r.GetRoute().GetCluster() == "":
		return fmt.Errorf("only a route to a cluster is written")
	case m.GetSafeRegex() == nil && m.GetPath() == "" && m.GetPrefix() == "":
		return fmt.Errorf("only path, prefix and safe_regex matches are written")
	case m.GetCaseSensitive() != nil || len(m.GetQueryParameters()) > 0 || m.GetRuntimeFraction() != nil ||
		m.GetGrpc() != nil || len(m.GetDynamicMetadata()) > 0 || m.GetTlsContext() != nil:
		return fmt.Errorf("only path and :method conditions are written")
	}
	for _, h := range m.GetHeaders() {
		sm := h.GetStringMatch()
		if h.GetName() != ":method" || h.GetInvertMatch() || sm.GetIgnoreCase() || sm.GetExact() == "" && sm.GetSafeRegex() == nil {
			return fmt.Errorf("only exact or regex :method header matchers are written")
		}
	}
	for k := range r.GetTypedPerFilterConfig() {
		if k != ExtAuthzFilter {
			return fmt.Errorf("only %s per-filter configuration is written", ExtAuthzFilter)
		}
	}
	// Everything else a route may hold, compared against what is written.
	rest := &routev3.Route{Name: r.GetName(), Match: m, Action: &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: r.GetRoute().GetCluster()}}},
		TypedPerFilterConfig: r.GetTypedPerFilterConfig()}
	if !proto.Equal(rest, r) {
		return fmt.Errorf("only name, match, route cluster and ext_authz context_extensions are written")
	}
	return nil
}

// contextRoute returns the policy route r names to ext_authz, "" for none.
func contextRoute(r *routev3.Route) (string, error) {
	a, ok := r.GetTypedPerFilterConfig()[ExtAuthzFilter]
	if !ok {
		return "", nil
	}
	per := &extauthzv3.ExtAuthzPerRoute{}
	if err := anypb.UnmarshalTo(a, per, proto.UnmarshalOptions{}); err != nil {
		return "", err
	}
	ce := per.GetCheckSettings().GetContextExtensions()
	want := &extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{CheckSettings: &extauthzv3.CheckSettings{
		ContextExtensions: map[string]string{"route": ce["route"]}}}}
	if ce["route"] == "" || !proto.Equal(per, want) {
		return "", fmt.Errorf("only ext_authz check_settings.context_extensions {route: NAME} is written")
	}
	return ce["route"], nil
}

// plainYAML matches strings that YAML reads back as the same string when
// written without quotes.
var plainYAML = regexp.MustCompile(`^[A-Za-z_/][A-Za-z0-9_./~-]*$`)

// yamlString writes s as a YAML scalar that reads back as the string s:
// plain when that is unambiguous, else double-quoted (Go's quoting is valid
// YAML for the printable ASCII that names, paths and methods hold).
func yamlString(s string) string {
	switch strings.ToLower(s) {
	case "true", "false", "yes", "no", "on", "off", "y", "n", "null":
		return strconv.Quote(s)
	}
	if plainYAML.MatchString(s) {
		return s
	}
	return strconv.Quote(s)
}
