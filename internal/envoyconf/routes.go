// Package envoyconf derives the parts of an Envoy configuration that follow
// from the policy: the routes that name policy routes to ext_authz (Routes,
// written out by WriteRoutes, printed by "authz-sidecar envoy-routes") and
// the request headers ext_authz must forward to the sidecar
// (RequestHeaders). It translates only; envoy/ holds the shipped
// configurations and the tests that keep them equal to what this package
// derives from policies.yaml.
package envoyconf

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/authz-sidecar/authz-sidecar/internal/policy"
)

// ExtAuthzFilter is the HTTP filter name that per-route ext_authz settings
// are filed under.
const ExtAuthzFilter = "envoy.filters.http.ext_authz"

// Segment is the regex of one variable path segment ({name}, * or a
// segment of **) in a named route: unreserved characters only, not
// starting with "." (so no "." or ".." segment), no "%", ";" or ":". It
// accepts a subset of what the policy's template accepts, so a path that
// fits it never makes the sidecar refuse the path as ambiguous; a path
// with an unusual segment falls to the catch-all, where the sidecar
// matches it itself.
const Segment = "[A-Za-z0-9_~-][A-Za-z0-9_.~-]*"

// CatchAll is the name of the last route, which names no policy route.
const CatchAll = "catch-all"

// MaxRE2ProgramSize is the largest RE2 program Envoy compiles by default
// (runtime key re2.max_program_size.error_level); a larger route regex makes
// Envoy refuse the whole configuration.
const MaxRE2ProgramSize = 100

// Routes returns the Envoy routes for pol, each forwarding to cluster: one
// per policy route, named after it and naming it to ext_authz
// (check_settings.context_extensions route: NAME), then the catch-all.
//
// A named route matches the policy route's methods (a :method header
// matcher) and its template: an exact path when the template has no
// variable segment, else a safe_regex with Segment for each variable one.
// Envoy takes the first route that matches while the policy picks the
// most specific, so the routes are ordered by the policy's precedence:
// segment by segment from the left a literal before {name} or *, those
// before **, a template that ends before one whose ** could match nothing
// there; then routes listing methods before those that list none; then
// file order. Whenever a named route matches a request, the policy's own
// matching would pick the same route (envoy/envoy_test.go checks this over
// many paths).
//
// Routes returns an error when cluster is empty; warnings name routes
// whose regex is too large for Envoy's default RE2 program size limit.
func Routes(pol *policy.Policy, cluster string) (routes []*routev3.Route, warnings []string, err error) {
	if cluster == "" {
		return nil, nil, errors.New("envoyconf: no cluster")
	}
	ordered := slices.Clone(pol.Routes)
	slices.SortStableFunc(ordered, func(a, b *policy.Route) int {
		// More specific first. Two templates that can match the same path
		// compare as the policy's precedence does; for two that cannot,
		// the order does not matter.
		if c := slices.Compare(kinds(a.Path), kinds(b.Path)); c != 0 {
			return -c
		}
		// Listing methods beats listing none.
		return cmp.Compare(min(len(b.Methods), 1), min(len(a.Methods), 1))
	})
	for _, r := range ordered {
		er, err := route(r, cluster)
		if err != nil {
			return nil, nil, err
		}
		if re := er.GetMatch().GetSafeRegex().GetRegex(); re != "" && RE2ProgramSize(re) > MaxRE2ProgramSize {
			warnings = append(warnings, fmt.Sprintf("route %s: its regex is too large for Envoy's default RE2 program size limit of %d (about %d): raise the runtime key re2.max_program_size.error_level, or Envoy refuses the configuration",
				r.Name, MaxRE2ProgramSize, RE2ProgramSize(re)))
		}
		routes = append(routes, er)
	}
	routes = append(routes, &routev3.Route{
		Name:   CatchAll,
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
	})
	return routes, warnings, nil
}

// The kinds of template segment, by how specific they are; end marks the
// end of a template, which beats a ** that would match nothing there.
const (
	kindRest    = iota + 1 // **
	kindEnd                // the template ends
	kindVar                // {name} or *
	kindLiteral            // a literal segment
)

func kinds(template string) []int {
	var ks []int
	if template != "/" {
		for _, s := range strings.Split(template, "/")[1:] {
			ks = append(ks, kindOf(s))
		}
	}
	return append(ks, kindEnd)
}

func kindOf(seg string) int {
	switch {
	case seg == "**":
		return kindRest
	case seg == "*" || strings.HasPrefix(seg, "{"):
		return kindVar
	default:
		return kindLiteral
	}
}

// route returns the Envoy route of r.
func route(r *policy.Route, cluster string) (*routev3.Route, error) {
	m := &routev3.RouteMatch{}
	if re, ok := pathRegex(r.Path); ok {
		m.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}
	} else {
		m.PathSpecifier = &routev3.RouteMatch_Path{Path: r.Path}
	}
	switch len(r.Methods) {
	case 0:
	case 1:
		m.Headers = []*routev3.HeaderMatcher{methodMatcher(&matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Exact{Exact: r.Methods[0]}})}
	default:
		// Several :method matchers would all have to match; one regex
		// (RE2 full match) takes any of the methods.
		m.Headers = []*routev3.HeaderMatcher{methodMatcher(&matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: strings.Join(r.Methods, "|")}}})}
	}
	per, err := anypb.New(&extauthzv3.ExtAuthzPerRoute{
		Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{CheckSettings: &extauthzv3.CheckSettings{
			ContextExtensions: map[string]string{"route": r.Name},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("envoyconf: route %s: %w", r.Name, err)
	}
	return &routev3.Route{
		Name:                 r.Name,
		Match:                m,
		Action:               &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
		TypedPerFilterConfig: map[string]*anypb.Any{ExtAuthzFilter: per},
	}, nil
}

func methodMatcher(sm *matcherv3.StringMatcher) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}}
}

// pathRegex returns the RE2 regex (matched against the whole path, without
// the query) of a template with a variable segment, and false for a
// template of literals only, which is matched exactly.
func pathRegex(template string) (string, bool) {
	if template == "/" {
		return "", false
	}
	var b strings.Builder
	variable := false
	for _, s := range strings.Split(template, "/")[1:] {
		switch kindOf(s) {
		case kindRest:
			b.WriteString(restRegex)
			variable = true
		case kindVar:
			b.WriteString("/" + Segment)
			variable = true
		default:
			b.WriteString("/" + regexp.QuoteMeta(s))
		}
	}
	return b.String(), variable
}

// restRegex matches zero or more further segments, optionally ending in
// "/": a template's "**".
const restRegex = "(/" + Segment + ")*/?"

// RE2ProgramSize estimates, from above, the size of the RE2 program Envoy
// compiles for a path regex made of literal characters, Segment and the
// "**" pattern: 3, plus 1 per literal character, 12 per Segment, 16 per
// "**". Measured with libre2 (2022-06-01): 49 for approve-leave's regex
// (estimated 52), 45 for read-leave's (47), 59 for five variable segments
// (68). Go's regexp/syntax counts a character class as one instruction
// where RE2 compiles it to byte ranges, so its count is no guide.
func RE2ProgramSize(regex string) int {
	n := 3
	n += 16 * strings.Count(regex, restRegex)
	regex = strings.ReplaceAll(regex, restRegex, "")
	n += 12 * strings.Count(regex, Segment)
	regex = strings.ReplaceAll(regex, Segment, "")
	return n + len(regex) - strings.Count(regex, `\`)
}
