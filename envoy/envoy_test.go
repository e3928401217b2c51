package envoy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	reqwithoutqueryv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/formatter/req_without_query/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/authz-sidecar/authz-sidecar/internal/envoyconf"
	"github.com/authz-sidecar/authz-sidecar/internal/extauthz"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
)

const (
	frontProxyFile = "envoy.yaml"
	composeFile    = "envoy-compose.yaml"
	policiesFile   = "../policies.yaml"

	extAuthzFilter = "envoy.filters.http.ext_authz"
	routerFilter   = "envoy.filters.http.router"
	// httpProtocolOptionsKey is the typed_extension_protocol_options key
	// that configures the upstream HTTP protocol of a cluster.
	httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

	// maxExtAuthzTimeout bounds Envoy's wait for the sidecar. A larger value
	// would hold every request that long when the sidecar hangs.
	maxExtAuthzTimeout = 250 * time.Millisecond

	// appCluster is the cluster the shipped routes forward to.
	appCluster = "app"
)

// typedExtensions are the Go types of every typed extension ("@type") the
// files name. Referring to them here links their packages in, which
// registers their descriptors; an "@type" not linked in fails to load, as
// an extension not compiled into Envoy would.
var typedExtensions = []proto.Message{
	(*hcmv3.HttpConnectionManager)(nil),
	(*extauthzv3.ExtAuthz)(nil),
	(*extauthzv3.ExtAuthzPerRoute)(nil),
	(*routerv3.Router)(nil),
	(*upstreamhttpv3.HttpProtocolOptions)(nil),
	(*streamv3.StdoutAccessLog)(nil),
	(*reqwithoutqueryv3.ReqWithoutQuery)(nil),
}

// loadBootstrap turns Envoy YAML into a Bootstrap the way Envoy does (YAML
// to JSON to proto), refusing unknown fields and unknown "@type"s. It then
// runs the protoc-gen-validate rules of the bootstrap and of every typed
// extension inside it (Validate does not look inside an Any), and refuses
// deprecated fields, which Envoy warns about or, once removed, rejects.
func loadBootstrap(data []byte) (*bootstrapv3.Bootstrap, error) {
	var tree any
	if err := yaml.Unmarshal(data, &tree); err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	js, err := json.Marshal(tree)
	if err != nil {
		return nil, fmt.Errorf("yaml to json: %w", err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, b); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("bootstrap validation: %w", err)
	}
	if err := walk("bootstrap", b.ProtoReflect()); err != nil {
		return nil, err
	}
	return b, nil
}

// walk visits every message under m. It refuses deprecated fields and enum
// values, unpacks every Any (which fails for a type not registered) and
// validates what it unpacked.
func walk(path string, m protoreflect.Message) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDeprecated() {
			err = fmt.Errorf("%s: deprecated field", p)
			return false
		}
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				return true
			}
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				err = walkMessage(p+"["+k.String()+"]", mv.Message())
				return err == nil
			})
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				if fd.Message() != nil {
					err = walkMessage(fmt.Sprintf("%s[%d]", p, i), l.Get(i).Message())
				} else if fd.Enum() != nil {
					err = checkEnum(p, fd, l.Get(i).Enum())
				}
			}
		case fd.Message() != nil:
			err = walkMessage(p, v.Message())
		case fd.Enum() != nil:
			err = checkEnum(p, fd, v.Enum())
		}
		return err == nil
	})
	return err
}

func walkMessage(path string, m protoreflect.Message) error {
	a, ok := m.Interface().(*anypb.Any)
	if !ok {
		return walk(path, m)
	}
	inner, err := a.UnmarshalNew()
	if err != nil {
		return fmt.Errorf("%s: %s: %w", path, a.GetTypeUrl(), err)
	}
	if v, ok := inner.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return walk(path+"<"+string(inner.ProtoReflect().Descriptor().FullName())+">", inner.ProtoReflect())
}

func checkEnum(path string, fd protoreflect.FieldDescriptor, n protoreflect.EnumNumber) error {
	ev := fd.Enum().Values().ByNumber(n)
	if ev == nil {
		return nil
	}
	if opts, ok := ev.Options().(*descriptorpb.EnumValueOptions); ok && opts.GetDeprecated() {
		return fmt.Errorf("%s: deprecated value %s", path, ev.Name())
	}
	return nil
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func loadPolicy(t *testing.T) *policy.Policy {
	t.Helper()
	pol, err := policy.Load(policiesFile)
	if err != nil {
		t.Fatalf("load %s: %v", policiesFile, err)
	}
	return pol
}

func mustLoad(t *testing.T, name string, data []byte) *bootstrapv3.Bootstrap {
	t.Helper()
	b, err := loadBootstrap(data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

// frontProxy is the part of a bootstrap the security checks look at, with
// typed configs unpacked.
type frontProxy struct {
	adminAddr *corev3.SocketAddress
	clusters  map[string]*clusterv3.Cluster
	hcms      []*hcmv3.HttpConnectionManager
	// statPrefixes are the listeners' stat_prefix by listener name.
	statPrefixes map[string]string
}

func unpack[T proto.Message](a *anypb.Any) (T, error) {
	var zero T
	m, err := a.UnmarshalNew()
	if err != nil {
		return zero, err
	}
	v, ok := m.(T)
	if !ok {
		return zero, fmt.Errorf("typed config is %s, want %T", m.ProtoReflect().Descriptor().FullName(), zero)
	}
	return v, nil
}

func parseFrontProxy(b *bootstrapv3.Bootstrap) (*frontProxy, error) {
	fp := &frontProxy{
		adminAddr:    b.GetAdmin().GetAddress().GetSocketAddress(),
		clusters:     map[string]*clusterv3.Cluster{},
		statPrefixes: map[string]string{},
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		fp.clusters[c.GetName()] = c
	}
	for _, l := range b.GetStaticResources().GetListeners() {
		fp.statPrefixes[l.GetName()] = l.GetStatPrefix()
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				h, err := unpack[*hcmv3.HttpConnectionManager](f.GetTypedConfig())
				if err != nil {
					// Only HTTP listeners: a TCP proxy here would bypass ext_authz.
					return nil, fmt.Errorf("listener %s filter %s: %w", l.GetName(), f.GetName(), err)
				}
				fp.hcms = append(fp.hcms, h)
			}
		}
	}
	if len(fp.hcms) == 0 {
		return nil, errors.New("no HTTP connection manager")
	}
	return fp, nil
}

// checkFrontProxy returns every way b breaks the security contract with the
// sidecar, joined, or nil.
func checkFrontProxy(b *bootstrapv3.Bootstrap, pol *policy.Policy) error {
	fp, err := parseFrontProxy(b)
	if err != nil {
		return err
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if a := fp.adminAddr; a != nil && a.GetAddress() != "127.0.0.1" && a.GetAddress() != "::1" {
		bad("admin listens on %s: the admin API is unauthenticated and must stay on loopback", a.GetAddress())
	}
	for name, prefix := range fp.statPrefixes {
		if prefix == "" {
			bad("listener %s has no stat_prefix", name)
		}
	}
	mirrored := map[string]bool{}
	for _, h := range fp.hcms {
		errs = append(errs, checkHCM(h, fp, pol, mirrored)...)
	}
	for _, r := range pol.Routes {
		if !mirrored[r.Name] {
			bad("policy route %q has no Envoy route naming it (context_extensions route: %s)", r.Name, r.Name)
		}
	}
	return errors.Join(errs...)
}

func checkHCM(h *hcmv3.HttpConnectionManager, fp *frontProxy, pol *policy.Policy, mirrored map[string]bool) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if !h.GetNormalizePath().GetValue() {
		bad("normalize_path is not true: the sidecar would see un-normalised paths")
	}
	if !h.GetMergeSlashes() {
		bad("merge_slashes is not true")
	}
	switch a := h.GetPathWithEscapedSlashesAction(); a {
	case hcmv3.HttpConnectionManager_REJECT_REQUEST, hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT:
	default:
		bad("path_with_escaped_slashes_action is %s, want REJECT_REQUEST or UNESCAPE_AND_REDIRECT", a)
	}
	if a := h.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction(); a != corev3.HttpProtocolOptions_REJECT_REQUEST {
		bad("headers_with_underscores_action is %s, want REJECT_REQUEST", a)
	}

	// Filters: exactly one ext_authz, enabled, before the router, which is last.
	authzAt, routerAt := -1, -1
	var authz *extauthzv3.ExtAuthz
	filters := h.GetHttpFilters()
	for i, f := range filters {
		switch f.GetName() {
		case extAuthzFilter:
			if authzAt >= 0 {
				bad("more than one %s filter", extAuthzFilter)
			}
			authzAt = i
			if f.GetDisabled() {
				bad("%s filter is disabled", extAuthzFilter)
			}
			a, err := unpack[*extauthzv3.ExtAuthz](f.GetTypedConfig())
			if err != nil {
				bad("%s: %v", extAuthzFilter, err)
				continue
			}
			authz = a
		case routerFilter:
			routerAt = i
		}
	}
	switch {
	case authzAt < 0:
		bad("no %s filter", extAuthzFilter)
	case routerAt != len(filters)-1:
		bad("%s is not the last HTTP filter", routerFilter)
	case authzAt > routerAt:
		bad("%s runs after the router", extAuthzFilter)
	}
	if authz != nil {
		errs = append(errs, checkExtAuthz(authz, fp, pol)...)
	}
	errs = append(errs, checkAccessLog(h)...)

	rc := h.GetRouteConfig()
	if rc == nil {
		// With RDS the routes could not be checked here.
		bad("route_config is not inline")
		return errs
	}
	for _, vh := range rc.GetVirtualHosts() {
		if _, ok := vh.GetTypedPerFilterConfig()[extAuthzFilter]; ok {
			bad("virtual host %s: ext_authz is configured per virtual host; configure it per route", vh.GetName())
		}
		errs = append(errs, checkRateLimits(vh)...)
		routes := vh.GetRoutes()
		if len(routes) == 0 {
			bad("virtual host %s has no routes", vh.GetName())
			continue
		}
		for i, r := range routes {
			last := i == len(routes)-1
			name, err := routePolicyName(r)
			if err != nil {
				bad("route %s: %v", r.GetName(), err)
				continue
			}
			if c := r.GetRoute().GetCluster(); c == "" || fp.clusters[c] == nil {
				bad("route %s does not forward to a defined cluster", r.GetName())
			}
			switch {
			case last && name != "":
				bad("virtual host %s: the last route must be the catch-all without context_extensions, but it names %q", vh.GetName(), name)
			case last:
				if !isCatchAll(r.GetMatch()) {
					bad("virtual host %s: the last route %s must match every path (prefix \"/\", no other conditions)", vh.GetName(), r.GetName())
				}
			case name == "":
				bad("route %s: only the last (catch-all) route may omit context_extensions route", r.GetName())
			default:
				if _, ok := pol.Route(name); !ok {
					bad("route %s names policy route %q, which %s does not define", r.GetName(), name, policiesFile)
				}
				mirrored[name] = true
			}
		}
	}
	return errs
}

func checkExtAuthz(a *extauthzv3.ExtAuthz, fp *frontProxy, pol *policy.Policy) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if a.GetStatPrefix() == "" {
		bad("ext_authz has no stat_prefix")
	}
	if v := a.GetEnableDynamicMetadataIngestion(); v != nil && !v.GetValue() {
		bad("ext_authz enable_dynamic_metadata_ingestion is false: the decision metadata would be dropped")
	}
	errs = append(errs, checkAllowedHeaders(a, pol)...)
	if a.GetFailureModeAllow() {
		bad("ext_authz failure_mode_allow is true: requests would pass when the sidecar is down")
	}
	if a.GetShadowMode() {
		bad("ext_authz shadow_mode is true: denies would not be enforced")
	}
	if a.GetFilterEnabled() != nil || a.GetFilterEnabledMetadata() != nil {
		bad("ext_authz filter_enabled/filter_enabled_metadata is set: some requests would skip authorization")
	}
	if c := a.GetStatusOnError().GetCode(); c != typev3.StatusCode_ServiceUnavailable {
		bad("ext_authz status_on_error is %s, want ServiceUnavailable (503)", c)
	}
	if v := a.GetTransportApiVersion(); v != corev3.ApiVersion_V3 {
		bad("ext_authz transport_api_version is %s, want V3", v)
	}
	if a.GetIncludePeerCertificate() {
		bad("ext_authz include_peer_certificate is true")
	}
	if a.GetWithRequestBody() != nil {
		bad("ext_authz with_request_body is set: decisions never need the body")
	}
	gs := a.GetGrpcService()
	if gs == nil {
		bad("ext_authz has no grpc_service")
		return errs
	}
	timeout := gs.GetTimeout().AsDuration()
	if gs.GetTimeout() == nil || timeout <= 0 || timeout > maxExtAuthzTimeout {
		bad("ext_authz grpc_service timeout is %v, want 0 < timeout <= %v", timeout, maxExtAuthzTimeout)
	}
	name := gs.GetEnvoyGrpc().GetClusterName()
	c := fp.clusters[name]
	if c == nil {
		bad("ext_authz cluster %q is not defined", name)
		return errs
	}
	opts, ok := c.GetTypedExtensionProtocolOptions()[httpProtocolOptionsKey]
	if !ok {
		bad("cluster %s has no %s: gRPC needs HTTP/2", name, httpProtocolOptionsKey)
		return errs
	}
	po, err := unpack[*upstreamhttpv3.HttpProtocolOptions](opts)
	if err != nil {
		bad("cluster %s: %v", name, err)
	} else if po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		bad("cluster %s does not use explicit HTTP/2: gRPC needs it", name)
	}
	return errs
}

// forwardedHeaders are the headers the shipped configurations forward to
// the sidecar: what a decision under the policy may read, and the request
// id for the decision log.
func forwardedHeaders(pol *policy.Policy) []string {
	hs := append(envoyconf.RequestHeaders(pol), "x-request-id")
	slices.Sort(hs)
	return hs
}

// checkAllowedHeaders: ext_authz forwards exactly the headers a decision
// under pol may read (and the request id), as exact lower-case names, so
// a header source added to the policy fails here until Envoy forwards it.
func checkAllowedHeaders(a *extauthzv3.ExtAuthz, pol *policy.Policy) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if a.GetDisallowedHeaders() != nil {
		bad("ext_authz disallowed_headers is set: the allowed_headers list says it all")
	}
	if a.GetAllowedHeaders() == nil {
		return append(errs, errors.New("ext_authz allowed_headers is not set: every request header (and every cookie of other apps) would go to the sidecar"))
	}
	var allowed []string
	for _, p := range a.GetAllowedHeaders().GetPatterns() {
		if p.GetExact() == "" || p.GetIgnoreCase() || strings.ToLower(p.GetExact()) != p.GetExact() {
			bad("ext_authz allowed_headers pattern %v: only exact lower-case names are expected", p)
			continue
		}
		allowed = append(allowed, p.GetExact())
	}
	slices.Sort(allowed)
	want := forwardedHeaders(pol)
	for _, h := range want {
		if !slices.Contains(allowed, h) {
			bad("ext_authz allowed_headers lacks %s, which %s reads: the sidecar would never see it", h, policiesFile)
		}
	}
	for _, h := range allowed {
		if !slices.Contains(want, h) {
			bad("ext_authz allowed_headers forwards %s, which no decision reads", h)
		}
	}
	return errs
}

// metadataCommand matches an access log command reading dynamic metadata.
var metadataCommand = regexp.MustCompile(`%DYNAMIC_METADATA\(([^:)]*)((?::[^:)]*)*)\)%`)

// pathWithQuery matches an access log command printing the path with its
// query string (REQ_WITHOUT_QUERY prints it without).
var pathWithQuery = regexp.MustCompile(`%REQ\([^)]*PATH\)%`)

// checkAccessLog: an access log records every metadata key the sidecar
// sets, each from ext_authz's namespace, the path without its query, and
// no credential.
func checkAccessLog(h *hcmv3.HttpConnectionManager) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	logged := map[string]bool{}
	for _, al := range h.GetAccessLog() {
		sl, err := unpack[*streamv3.StdoutAccessLog](al.GetTypedConfig())
		if err != nil {
			bad("access log %s: %v", al.GetName(), err)
			continue
		}
		js, err := protojson.Marshal(sl.GetLogFormat().GetJsonFormat())
		if err != nil {
			bad("access log %s: %v", al.GetName(), err)
			continue
		}
		format := string(js)
		for _, m := range metadataCommand.FindAllStringSubmatch(format, -1) {
			key := strings.TrimPrefix(m[2], ":")
			switch {
			case m[1] != extauthz.MetadataNamespace:
				bad("access log reads metadata namespace %q; the sidecar's decision is in %q", m[1], extauthz.MetadataNamespace)
			case !slices.Contains(extauthz.MetadataKeys[:], key) && key != "ext_authz_duration":
				bad("access log reads metadata key %q, which the sidecar never sets", key)
			}
			logged[key] = true
		}
		upper := strings.ToUpper(format)
		for _, secret := range []string{"AUTHORIZATION", "COOKIE", "X-API-KEY"} {
			if strings.Contains(upper, "("+secret+")") {
				bad("access log records the %s header: credentials are never logged", secret)
			}
		}
		if pathWithQuery.MatchString(format) {
			bad("access log records the path with its query string, which may carry a token")
		}
	}
	for _, k := range extauthz.MetadataKeys {
		if !logged[k] {
			bad("no access log records the decision's %s (%%DYNAMIC_METADATA(%s:%s)%%)", k, extauthz.MetadataNamespace, k)
		}
	}
	return errs
}

// checkRateLimits: a rate limit action reading dynamic metadata reads a key
// the sidecar sets, in ext_authz's namespace.
func checkRateLimits(vh *routev3.VirtualHost) []error {
	var errs []error
	for _, rl := range vh.GetRateLimits() {
		for _, a := range rl.GetActions() {
			md := a.GetMetadata()
			if md == nil {
				continue
			}
			key := md.GetMetadataKey()
			path := key.GetPath()
			switch {
			case md.GetSource() != routev3.RateLimit_Action_MetaData_DYNAMIC:
				errs = append(errs, fmt.Errorf("virtual host %s: rate limit action reads route metadata, not the decision", vh.GetName()))
			case key.GetKey() != extauthz.MetadataNamespace:
				errs = append(errs, fmt.Errorf("virtual host %s: rate limit action reads namespace %q; the decision is in %q", vh.GetName(), key.GetKey(), extauthz.MetadataNamespace))
			case len(path) != 1 || !slices.Contains(extauthz.MetadataKeys[:], path[0].GetKey()):
				errs = append(errs, fmt.Errorf("virtual host %s: rate limit action reads %v, not one key the sidecar sets", vh.GetName(), path))
			}
		}
	}
	return errs
}

// routePolicyName returns the policy route r names through ext_authz's
// context_extensions, "" when it names none. It is an error for r to turn
// ext_authz off, to send the check elsewhere, or to configure anything but
// ext_authz per route.
func routePolicyName(r *routev3.Route) (string, error) {
	for k := range r.GetTypedPerFilterConfig() {
		if k != extAuthzFilter {
			return "", fmt.Errorf("per-filter config for %q: only %s is expected", k, extAuthzFilter)
		}
	}
	a, ok := r.GetTypedPerFilterConfig()[extAuthzFilter]
	if !ok {
		return "", nil
	}
	per, err := unpack[*extauthzv3.ExtAuthzPerRoute](a)
	if err != nil {
		return "", err
	}
	if per.GetDisabled() {
		return "", errors.New("ext_authz is disabled on this route")
	}
	cs := per.GetCheckSettings()
	if cs.GetServiceOverride() != nil {
		return "", errors.New("ext_authz check goes to another service on this route")
	}
	if cs.GetWithRequestBody() != nil {
		return "", errors.New("ext_authz with_request_body is set on this route")
	}
	for k := range cs.GetContextExtensions() {
		if k != "route" {
			return "", fmt.Errorf("context_extensions key %q: the sidecar reads only \"route\"", k)
		}
	}
	name, ok := cs.GetContextExtensions()["route"]
	if ok && name == "" {
		return "", errors.New("context_extensions route is empty")
	}
	return name, nil
}

func isCatchAll(m *routev3.RouteMatch) bool {
	return m.GetPrefix() == "/" && len(m.GetHeaders()) == 0 && len(m.GetQueryParameters()) == 0 &&
		m.GetRuntimeFraction() == nil && m.GetGrpc() == nil && len(m.GetDynamicMetadata()) == 0
}

// TestLoad loads both front-proxy files strictly, with every typed
// extension resolved and validated.
func TestLoad(t *testing.T) {
	t.Parallel()
	for _, m := range typedExtensions {
		name := m.ProtoReflect().Descriptor().FullName()
		if _, err := protoregistry.GlobalTypes.FindMessageByName(name); err != nil {
			t.Fatalf("%s is not registered: %v", name, err)
		}
	}
	for _, name := range []string{frontProxyFile, composeFile} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := mustLoad(t, name, readFile(t, name))
			if n := len(b.GetStaticResources().GetListeners()); n != 1 {
				t.Errorf("%d listeners, want 1", n)
			}
		})
	}
}

// TestSecurityContract checks both files against the contract with the
// sidecar and policies.yaml.
func TestSecurityContract(t *testing.T) {
	t.Parallel()
	pol := loadPolicy(t)
	for _, name := range []string{frontProxyFile, composeFile} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if err := checkFrontProxy(mustLoad(t, name, readFile(t, name)), pol); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestComposeVariantMatches fails when envoy-compose.yaml differs from
// envoy.yaml in anything but its clusters' addresses and discovery type.
func TestComposeVariantMatches(t *testing.T) {
	t.Parallel()
	decode := func(name string) map[string]any {
		var tree map[string]any
		if err := yaml.Unmarshal(readFile(t, name), &tree); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return tree
	}
	local, compose := decode(frontProxyFile), decode(composeFile)
	// What compose changes: service names resolved by Docker's DNS.
	hosts := map[string]string{"authz-sidecar": "127.0.0.1", "upstream": "127.0.0.1"}
	replaced := 0
	var fix func(v any)
	fix = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["type"] == "STRICT_DNS" {
				v["type"] = "STATIC"
			}
			if a, ok := v["address"].(string); ok && hosts[a] != "" {
				v["address"] = hosts[a]
				replaced++
			}
			for _, x := range v {
				fix(x)
			}
		case []any:
			for _, x := range v {
				fix(x)
			}
		}
	}
	fix(compose)
	if replaced != len(hosts) {
		t.Errorf("replaced %d compose addresses, want %d (one per service)", replaced, len(hosts))
	}
	if !reflect.DeepEqual(local, compose) {
		lj, _ := json.MarshalIndent(local, "", " ")
		cj, _ := json.MarshalIndent(compose, "", " ")
		t.Errorf("%s differs from %s beyond cluster addresses (>>> %s, <<< %s):\n%s", composeFile, frontProxyFile, frontProxyFile, composeFile, firstDiff(string(lj), string(cj)))
	}
}

// firstDiff shows the first differing line of two texts with its context.
func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) && i < len(bl); i++ {
		if al[i] != bl[i] {
			lo := max(0, i-3)
			return fmt.Sprintf("line %d:\n%s\n>>> %s\n<<< %s", i+1, strings.Join(al[lo:i], "\n"), al[i], bl[i])
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(al), len(bl))
}

// mutate replaces the only occurrence of old in src; the test fails if old
// does not occur exactly once, so a mutation can never silently do nothing.
func mutate(t *testing.T, src, old, new string) []byte {
	t.Helper()
	if n := strings.Count(src, old); n != 1 {
		t.Fatalf("%q occurs %d times in %s, want 1", old, n, frontProxyFile)
	}
	return []byte(strings.Replace(src, old, new, 1))
}

// TestLoadRejects proves the loader is strict: each broken copy of
// envoy.yaml must fail to load.
func TestLoadRejects(t *testing.T) {
	t.Parallel()
	src := string(readFile(t, frontProxyFile))
	tests := []struct {
		name     string
		old, new string
		want     string
	}{
		{name: "typo in a bootstrap field", old: "per_connection_buffer_limit_bytes: 32768\n      filter_chains:",
			new: "per_conection_buffer_limit_bytes: 32768\n      filter_chains:", want: "unknown field"},
		{name: "typo in a typed extension field", old: "failure_mode_allow: false", new: "failure_mode_alow: false", want: "unknown field"},
		{name: "unknown @type", old: "envoy.extensions.filters.http.router.v3.Router", new: "envoy.extensions.filters.http.router.v3.Routr", want: "Routr"},
		{name: "unknown enum value", old: "path_with_escaped_slashes_action: REJECT_REQUEST", new: "path_with_escaped_slashes_action: REJECT", want: "REJECT"},
		{name: "validation rule in the bootstrap", old: "connect_timeout: 0.25s", new: "connect_timeout: 0s", want: "ConnectTimeout"},
		{name: "validation rule inside a typed extension", old: "stat_prefix: ingress_http", new: `stat_prefix: ""`, want: "StatPrefix"},
		{name: "deprecated field", old: `path: /healthz
                            headers:
                              - { name: ":method", string_match: { exact: GET } }`, new: `path: /healthz
                            headers:
                              - { name: ":method", exact_match: GET }`, want: "deprecated field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := loadBootstrap(mutate(t, src, tt.old, tt.new))
			if err == nil {
				t.Fatal("loaded without error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// TestSecurityContractCatchesRegressions proves each check can fail: every
// copy of envoy.yaml below loads, but breaks the contract.
func TestSecurityContractCatchesRegressions(t *testing.T) {
	t.Parallel()
	pol := loadPolicy(t)
	src := string(readFile(t, frontProxyFile))
	const perRouteMe = "check_settings:\n                                context_extensions: { route: me }"
	const authzFilterHead = "- name: envoy.filters.http.ext_authz\n                    typed_config:"
	tests := []struct {
		name     string
		old, new string
		want     string
	}{
		{name: "fail open", old: "failure_mode_allow: false", new: "failure_mode_allow: true", want: "failure_mode_allow"},
		{name: "403 on error", old: "code: ServiceUnavailable", new: "code: Forbidden", want: "status_on_error"},
		{name: "long timeout", old: "timeout: 0.2s", new: "timeout: 1s", want: "timeout"},
		{name: "no path normalisation", old: "normalize_path: true", new: "normalize_path: false", want: "normalize_path"},
		{name: "no slash merging", old: "merge_slashes: true", new: "merge_slashes: false", want: "merge_slashes"},
		{name: "escaped slashes kept", old: "path_with_escaped_slashes_action: REJECT_REQUEST", new: "path_with_escaped_slashes_action: KEEP_UNCHANGED", want: "path_with_escaped_slashes_action"},
		{name: "underscore headers allowed", old: "headers_with_underscores_action: REJECT_REQUEST", new: "headers_with_underscores_action: ALLOW", want: "headers_with_underscores_action"},
		{name: "peer certificate sent", old: "include_peer_certificate: false", new: "include_peer_certificate: true", want: "include_peer_certificate"},
		{name: "request body buffered", old: "transport_api_version: V3", new: "transport_api_version: V3\n                      with_request_body: { max_request_bytes: 1024 }", want: "with_request_body"},
		{name: "shadow mode", old: "transport_api_version: V3", new: "transport_api_version: V3\n                      shadow_mode: true", want: "shadow_mode"},
		{name: "filter enabled for a fraction", old: "transport_api_version: V3",
			new:  "transport_api_version: V3\n                      filter_enabled: { default_value: { numerator: 50 }, runtime_key: authz.enabled }",
			want: "filter_enabled"},
		{name: "ext_authz filter disabled", old: authzFilterHead, new: "- name: envoy.filters.http.ext_authz\n                    disabled: true\n                    typed_config:", want: "disabled"},
		{name: "ext_authz disabled on a route", old: perRouteMe, new: "disabled: true", want: "disabled on this route"},
		{name: "route names an unknown policy route", old: "{ route: me }", new: "{ route: mee }", want: `"mee"`},
		{name: "policy route without a mirror", old: "{ route: delete-org }", new: "{ route: health }", want: `policy route "delete-org"`},
		{name: "extra context extension", old: "{ route: me }", new: "{ route: me, org: acme }", want: `key "org"`},
		{name: "no catch-all", old: "match: { prefix: / }", new: "match: { prefix: /api }", want: "catch-all"},
		{name: "admin on every interface", old: "address: 127.0.0.1, port_value: 9901", new: "address: 0.0.0.0, port_value: 9901", want: "admin"},
		{name: "sidecar cluster without HTTP/2", old: "http2_protocol_options: {}", new: "http_protocol_options: {}", want: "HTTP/2"},
		{name: "route to an undefined cluster", old: "match: { path: /api/me }\n                          route: { cluster: app }", new: "match: { path: /api/me }\n                          route: { cluster: ap }", want: "defined cluster"},
		{name: "no ext_authz stat_prefix", old: "                      stat_prefix: authz_sidecar\n", new: "", want: "ext_authz has no stat_prefix"},
		{name: "no listener stat_prefix", old: "      stat_prefix: ingress\n", new: "", want: "listener ingress has no stat_prefix"},
		{name: "metadata ingestion off", old: "stat_prefix: authz_sidecar\n", new: "stat_prefix: authz_sidecar\n                      enable_dynamic_metadata_ingestion: false\n", want: "enable_dynamic_metadata_ingestion"},
		{name: "a header the policy reads is not forwarded", old: "                          - { exact: x-team-id }\n", new: "", want: "lacks x-team-id"},
		{name: "a header no decision reads is forwarded", old: "- { exact: x-request-id }", new: "- { exact: x-request-id }\n                          - { exact: x-forwarded-for }", want: "forwards x-forwarded-for"},
		{name: "access log misses a key", old: "                          authz_team: \"%DYNAMIC_METADATA(envoy.filters.http.ext_authz:team)%\"\n", new: "", want: "decision's team"},
		{name: "access log reads another namespace", old: "ext_authz:user)%", new: "extauthz:user)%", want: `namespace "envoy.filters.http.extauthz"`},
		{name: "access log reads a key never set", old: "ext_authz:org)%", new: "ext_authz:organization)%", want: `key "organization"`},
		{name: "access log records the query", old: "%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%", new: "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", want: "query string"},
		{name: "access log records a credential", old: "%REQ(X-REQUEST-ID)%", new: "%REQ(AUTHORIZATION)%", want: "AUTHORIZATION"},
		{name: "rate limit reads another namespace", old: "key: envoy.filters.http.ext_authz\n", new: "key: envoy.filters.http.rbac\n", want: "rate limit action reads namespace"},
		{name: "rate limit reads a key never set", old: "path: [{ key: org }]", new: "path: [{ key: organization }]", want: "not one key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := loadBootstrap(mutate(t, src, tt.old, tt.new))
			if err != nil {
				t.Fatalf("mutated file does not load: %v", err)
			}
			err = checkFrontProxy(b, pol)
			if err == nil {
				t.Fatal("contract check passed")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	t.Run("every header forwarded", func(t *testing.T) {
		t.Parallel()
		const first, last = "                      allowed_headers:\n", "- { exact: x-request-id }\n"
		i, j := strings.Index(src, first), strings.Index(src, last)
		if i < 0 || j < i {
			t.Fatal("allowed_headers block not found")
		}
		b, err := loadBootstrap([]byte(src[:i] + src[j+len(last):]))
		if err != nil {
			t.Fatalf("mutated file does not load: %v", err)
		}
		if err := checkFrontProxy(b, pol); err == nil || !strings.Contains(err.Error(), "allowed_headers is not set") {
			t.Errorf("error %v does not mention allowed_headers", err)
		}
	})
}

// envoyRoute is one Envoy route as the agreement test emulates it.
type envoyRoute struct {
	name    string           // Envoy's route name
	policy  string           // context_extensions route, "" for none
	methods []*regexp.Regexp // all must match
	match   func(path string) bool
}

// envoyRoutes emulates Envoy's route matching for the matchers envoy.yaml
// uses (path, prefix, safe_regex, exact :method headers) and fails on any
// other, so a new kind of matcher cannot slip past the agreement test.
func envoyRoutes(b *bootstrapv3.Bootstrap) ([]envoyRoute, error) {
	routes, err := shippedRoutes(b)
	if err != nil {
		return nil, err
	}
	return emulateAll(routes)
}

// shippedRoutes returns the routes of every virtual host of b, in order.
func shippedRoutes(b *bootstrapv3.Bootstrap) ([]*routev3.Route, error) {
	fp, err := parseFrontProxy(b)
	if err != nil {
		return nil, err
	}
	var out []*routev3.Route
	for _, h := range fp.hcms {
		for _, vh := range h.GetRouteConfig().GetVirtualHosts() {
			out = append(out, vh.GetRoutes()...)
		}
	}
	return out, nil
}

func emulateAll(routes []*routev3.Route) ([]envoyRoute, error) {
	var out []envoyRoute
	for _, r := range routes {
		er, err := emulate(r)
		if err != nil {
			return nil, fmt.Errorf("route %s: %w", r.GetName(), err)
		}
		out = append(out, er)
	}
	return out, nil
}

func emulate(r *routev3.Route) (envoyRoute, error) {
	m := r.GetMatch()
	name, err := routePolicyName(r)
	if err != nil {
		return envoyRoute{}, err
	}
	er := envoyRoute{name: r.GetName(), policy: name}
	if cs := m.GetCaseSensitive(); cs != nil && !cs.GetValue() {
		return er, errors.New("case-insensitive matching is not emulated")
	}
	if len(m.GetQueryParameters()) > 0 || m.GetRuntimeFraction() != nil || m.GetGrpc() != nil ||
		len(m.GetDynamicMetadata()) > 0 || m.GetTlsContext() != nil || len(m.GetFilterState()) > 0 {
		return er, errors.New("matcher not emulated; teach envoy_test.go")
	}
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Path:
		er.match = func(p string) bool { return policy.SplitQuery(p) == ps.Path }
	case *routev3.RouteMatch_Prefix:
		// Envoy compares a prefix with the whole :path, query included.
		er.match = func(p string) bool { return strings.HasPrefix(p, ps.Prefix) }
	case *routev3.RouteMatch_SafeRegex:
		// Envoy's safe_regex must match the whole path (RE2 full match).
		src := ps.SafeRegex.GetRegex()
		re, err := regexp.Compile(`^(?:` + src + `)$`)
		if err != nil {
			return er, err
		}
		if n := envoyconf.RE2ProgramSize(src); n > envoyconf.MaxRE2ProgramSize {
			return er, fmt.Errorf("regex's RE2 program is about %d, over %d: Envoy refuses it as too large", n, envoyconf.MaxRE2ProgramSize)
		}
		// Like path, the regex sees the path without its query string.
		er.match = func(p string) bool { return re.MatchString(policy.SplitQuery(p)) }
	default:
		return er, fmt.Errorf("path matcher %T not emulated; teach envoy_test.go", ps)
	}
	for _, hm := range m.GetHeaders() {
		sm := hm.GetStringMatch()
		if hm.GetName() != ":method" || hm.GetInvertMatch() || sm.GetIgnoreCase() {
			return er, fmt.Errorf("header matcher %s not emulated; only :method is", hm.GetName())
		}
		switch {
		case sm.GetExact() != "":
			er.methods = append(er.methods, regexp.MustCompile("^"+regexp.QuoteMeta(sm.GetExact())+"$"))
		case sm.GetSafeRegex() != nil:
			// RE2 full match, as for the path.
			re, err := regexp.Compile(`^(?:` + sm.GetSafeRegex().GetRegex() + `)$`)
			if err != nil {
				return er, err
			}
			er.methods = append(er.methods, re)
		default:
			return er, fmt.Errorf(":method matcher %v not emulated; only exact and safe_regex are", sm)
		}
	}
	return er, nil
}

// matches reports whether a request matches r: its path matcher and every
// one of its :method matchers.
func (r envoyRoute) matches(method, path string) bool {
	for _, m := range r.methods {
		if !m.MatchString(method) {
			return false
		}
	}
	return r.match(path)
}

// checkAgreement sends every method and path through the emulated Envoy
// routes. Whenever the first route that matches names a policy route, the
// sidecar will use that route without matching the path itself; so the
// path must pass policy.CheckPath and the sidecar's own matching must pick
// the same route. hits counts the requests each policy route got by name.
func checkAgreement(routes []envoyRoute, pol *policy.Policy, methods, paths []string) (hits map[string]int, err error) {
	hits = map[string]int{}
	var errs []error
	for _, method := range methods {
		for _, path := range paths {
			i := slices.IndexFunc(routes, func(r envoyRoute) bool { return r.matches(method, path) })
			if i < 0 || routes[i].policy == "" {
				continue // no route (404) or the catch-all: the sidecar matches the path itself
			}
			r := routes[i]
			hits[r.policy]++
			// The sidecar splits the query off first, as here.
			path := policy.SplitQuery(path)
			if err := policy.CheckPath(path, 0); err != nil {
				errs = append(errs, fmt.Errorf("%s %s: Envoy route %s names %q, but the sidecar refuses the path: %v", method, path, r.name, r.policy, err))
				continue
			}
			m, ok := pol.Match(method, path)
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("%s %s: Envoy route %s names %q, but no policy route matches", method, path, r.name, r.policy))
			case m.Route.Name != r.policy:
				errs = append(errs, fmt.Errorf("%s %s: Envoy route %s names %q, but the policy matches %q", method, path, r.name, r.policy, m.Route.Name))
			}
		}
	}
	if len(errs) > 20 {
		errs = append(errs[:20], fmt.Errorf("... and %d more", len(errs)-20))
	}
	return hits, errors.Join(errs...)
}

var agreementMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "get", "PURGE"}

// agreementPaths instantiates every policy template with ordinary, unusual
// and hostile segments, then adds near misses of each.
func agreementPaths(pol *policy.Policy) []string {
	segs := []string{
		"o1", "acme-corp", "A_b~c.d", "x.y", "-", "~", "_", "leave", "approve", "members", "API",
		".hidden", ".", "..", "...", "", "a;b", ";", "a%2Fb", "a%2fb", "a%5C", "a%41", "%7E", "a%20b", "a%25",
		"a:b", "a@b", "a+b", "a=b", "a,b", "a!b", "a$b", "a'b", "a(b)", "a*b", "a&b", "é", `a\b`, "a#b", "a b",
	}
	rests := []string{"", "/", "/x", "/x/", "/x/y", "/x/y/", "/x;y", "/..", "/.", "/x//y", "//", "/%2F", "/x%41", "/a:b", "/x/approve"}
	var out []string
	for _, r := range pol.Routes {
		parts := strings.Split(r.Path, "/")[1:]
		paths := []string{""}
		for _, p := range parts {
			var next []string
			for _, prefix := range paths {
				switch {
				case p == "**":
					for _, rest := range rests {
						next = append(next, prefix+rest)
					}
				case p == "*" || strings.HasPrefix(p, "{"):
					for _, s := range segs {
						next = append(next, prefix+"/"+s)
					}
				default:
					next = append(next, prefix+"/"+p)
				}
			}
			paths = next
		}
		for _, p := range paths {
			if p == "" {
				p = "/"
			}
			out = append(out, p, p+"/", p+"/x", p+"x", strings.ToUpper(p), "/x"+p, p+"?q=1")
			if i := strings.LastIndex(p, "/"); i > 0 {
				out = append(out, p[:i])
			}
		}
	}
	out = append(out, "/", "/api", "/api/", "/api/orgs", "/api/orgs/", "//api/me", "/api//me", "/api/./me", "/api/x/../me")
	slices.Sort(out)
	return slices.Compact(out)
}

// TestNamedRoutesAgreeWithPolicy is the routing half of the contract: a
// route that names a policy route must never send the sidecar a request its
// own matching would decide by another route, or a path it would refuse.
func TestNamedRoutesAgreeWithPolicy(t *testing.T) {
	t.Parallel()
	pol := loadPolicy(t)
	paths := agreementPaths(pol)
	for _, name := range []string{frontProxyFile, composeFile} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			routes, err := envoyRoutes(mustLoad(t, name, readFile(t, name)))
			if err != nil {
				t.Fatal(err)
			}
			hits, err := checkAgreement(routes, pol, agreementMethods, paths)
			if err != nil {
				t.Error(err)
			}
			// Not vacuous: every policy route was selected by name.
			for _, r := range pol.Routes {
				if hits[r.Name] == 0 {
					t.Errorf("no generated request reached policy route %q by name", r.Name)
				}
			}
			t.Logf("%d methods x %d paths; requests routed by name: %v", len(agreementMethods), len(paths), hits)
		})
	}
}

// TestAgreementCatchesLooseRoutes proves the agreement check fails for the
// mistakes it exists to catch.
func TestAgreementCatchesLooseRoutes(t *testing.T) {
	t.Parallel()
	pol := loadPolicy(t)
	paths := agreementPaths(pol)
	src := string(readFile(t, frontProxyFile))
	const seg = "[A-Za-z0-9_~-][A-Za-z0-9_.~-]*"
	tests := []struct {
		name     string
		old, new string
		want     string
	}{
		{name: "segment accepts anything", old: `regex: "/api/orgs/` + seg + `/members"`, new: `regex: "/api/orgs/[^/]+/members"`, want: "refuses the path"},
		{name: "wrong method", old: "{ exact: DELETE }", new: "{ exact: POST }", want: `names "delete-org", but no policy route matches`},
		{name: "names another policy route", old: "{ route: request-leave }", new: "{ route: approve-leave }", want: `but the policy matches "request-leave"`},
		{name: "prefix instead of exact path", old: "path: /api/me", new: "prefix: /api/me", want: `names "me"`},
		{name: "regex spans segments", old: `regex: "/api/orgs/` + seg + `"`, new: `regex: "/api/orgs/.+"`, want: `names "delete-org"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := loadBootstrap(mutate(t, src, tt.old, tt.new))
			if err != nil {
				t.Fatalf("mutated file does not load: %v", err)
			}
			routes, err := envoyRoutes(b)
			if err != nil {
				t.Fatal(err)
			}
			_, err = checkAgreement(routes, pol, agreementMethods, paths)
			if err == nil {
				t.Fatal("agreement check passed")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error does not mention %q:\n%v", tt.want, err)
			}
		})
	}
}

// generatedDiff compares the routes of b with those "authz-sidecar
// envoy-routes" derives from pol, as protos; "" when they are the same.
func generatedDiff(t *testing.T, b *bootstrapv3.Bootstrap, pol *policy.Policy) string {
	t.Helper()
	want, warnings, err := envoyconf.Routes(pol, appCluster)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) > 0 {
		t.Errorf("generating the routes warns: %v", warnings)
	}
	got, err := shippedRoutes(b)
	if err != nil {
		t.Fatal(err)
	}
	return cmp.Diff(want, got, protocmp.Transform())
}

// TestRoutesAreGenerated is the policy half of the contract: the routes
// of both shipped files are exactly those "authz-sidecar envoy-routes"
// derives from policies.yaml, compared as protos.
func TestRoutesAreGenerated(t *testing.T) {
	t.Parallel()
	pol := loadPolicy(t)
	for _, name := range []string{frontProxyFile, composeFile} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if diff := generatedDiff(t, mustLoad(t, name, readFile(t, name)), pol); diff != "" {
				t.Errorf("%s's routes are not those of %s; run `make envoy-routes` (-generated +shipped):\n%s", name, policiesFile, diff)
			}
		})
	}
}

// TestRoutesAreGeneratedCatchesDrift proves the comparison fails for
// hand edits the agreement check alone would let pass.
func TestRoutesAreGeneratedCatchesDrift(t *testing.T) {
	t.Parallel()
	pol := loadPolicy(t)
	src := string(readFile(t, frontProxyFile))
	tests := []struct{ name, old, new string }{
		{"a route renamed", "- name: me\n", "- name: my-profile\n"},
		{"a method matcher dropped", "path: /api/admin/users/ban\n                            headers:\n                              - { name: \":method\", string_match: { exact: POST } }\n", "path: /api/admin/users/ban\n"},
		{"another cluster", "match: { path: /api/me }\n                          route: { cluster: app }", "match: { path: /api/me }\n                          route: { cluster: app2 }"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := loadBootstrap(mutate(t, src, tt.old, tt.new))
			if err != nil {
				t.Fatalf("mutated file does not load: %v", err)
			}
			if generatedDiff(t, b, pol) == "" {
				t.Error("no difference found")
			}
		})
	}
}

// tangledPolicy has routes whose templates overlap in every way the
// policy's precedence rules tell apart, listed against that order.
const tangledPolicy = `
routes:
  - { name: rest, path: "/a/**", public: true }
  - { name: any, path: "/a/{x}", public: true }
  - { name: exact, path: /a/b, public: true }
  - { name: exact-get, methods: [GET, HEAD], path: /a/b, public: true }
  - { name: var-rest, path: "/a/{x}/**", public: true }
  - { name: star, path: "/a/*/c", public: true }
  - { name: lit-rest, methods: [POST], path: "/a/b/**", public: true }
  - { name: end, path: /a, public: true }
  - { name: dotted, methods: [PUT], path: "/v1.2/{id}/x.json", public: true }
  - { name: root, path: /, public: true }
  - { name: root-rest, path: "/**", public: true }
`

// TestGeneratedRoutesAgreeWithPolicy runs the agreement check on routes
// generated for a tangled policy: the order envoy-routes chooses must make
// Envoy's first match the policy's most specific route.
func TestGeneratedRoutesAgreeWithPolicy(t *testing.T) {
	t.Parallel()
	pol, err := policy.Parse("tangled.yaml", []byte(tangledPolicy))
	if err != nil {
		t.Fatal(err)
	}
	generated, _, err := envoyconf.Routes(pol, appCluster)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := emulateAll(generated)
	if err != nil {
		t.Fatal(err)
	}
	hits, err := checkAgreement(routes, pol, agreementMethods, agreementPaths(pol))
	if err != nil {
		t.Error(err)
	}
	for _, r := range pol.Routes {
		if hits[r.Name] == 0 {
			t.Errorf("no generated request reached policy route %q by name", r.Name)
		}
	}
	// Not vacuous: file order instead of precedence order disagrees.
	fileOrder := slices.Clone(generated)
	slices.SortStableFunc(fileOrder, func(a, b *routev3.Route) int {
		ia := slices.IndexFunc(pol.Routes, func(r *policy.Route) bool { return r.Name == a.GetName() })
		ib := slices.IndexFunc(pol.Routes, func(r *policy.Route) bool { return r.Name == b.GetName() })
		if ia < 0 {
			ia = len(pol.Routes) // the catch-all stays last
		}
		if ib < 0 {
			ib = len(pol.Routes)
		}
		return ia - ib
	})
	wrong, err := emulateAll(fileOrder)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := checkAgreement(wrong, pol, agreementMethods, agreementPaths(pol)); err == nil {
		t.Error("routes in file order agree too: the check proves nothing")
	}
}
