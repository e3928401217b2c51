package envoy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/authz-sidecar/authz-sidecar/internal/policy"
)

// The types below mirror the fields of Istio's API that the files in
// istio/ use, with Istio's JSON (camelCase) names, and nothing else, so
// strict decoding finds a misspelt or misplaced field. Sources:
// istio/api mesh/v1alpha1/config.proto (MeshConfig.ExtensionProvider,
// EnvoyExternalAuthorizationGrpcProvider, ProxyPathNormalization),
// networking/v1/service_entry.proto, security/v1/authorization_policy.proto;
// and the Kubernetes core/v1 PodSpec fields the container patch uses.

type istioMeshValues struct {
	MeshConfig struct {
		ExtensionProviders []struct {
			Name              string `yaml:"name"`
			EnvoyExtAuthzGrpc *struct {
				Service                   string         `yaml:"service"`
				Port                      uint32         `yaml:"port"`
				Timeout                   string         `yaml:"timeout"`
				FailOpen                  bool           `yaml:"failOpen"`
				StatusOnError             string         `yaml:"statusOnError"`
				IncludeRequestBodyInCheck map[string]any `yaml:"includeRequestBodyInCheck"`
			} `yaml:"envoyExtAuthzGrpc"`
		} `yaml:"extensionProviders"`
		PathNormalization *struct {
			Normalization string `yaml:"normalization"`
		} `yaml:"pathNormalization"`
	} `yaml:"meshConfig"`
}

type k8sMeta struct {
	Name      string `yaml:"name"`
	Namespace string `yaml:"namespace"`
}

type istioServiceEntry struct {
	APIVersion string  `yaml:"apiVersion"`
	Kind       string  `yaml:"kind"`
	Metadata   k8sMeta `yaml:"metadata"`
	Spec       struct {
		Hosts     []string `yaml:"hosts"`
		ExportTo  []string `yaml:"exportTo"`
		Endpoints []struct {
			Address string `yaml:"address"`
		} `yaml:"endpoints"`
		Ports []struct {
			Name     string `yaml:"name"`
			Number   uint32 `yaml:"number"`
			Protocol string `yaml:"protocol"`
		} `yaml:"ports"`
		Resolution string `yaml:"resolution"`
	} `yaml:"spec"`
}

type istioAuthorizationPolicy struct {
	APIVersion string  `yaml:"apiVersion"`
	Kind       string  `yaml:"kind"`
	Metadata   k8sMeta `yaml:"metadata"`
	Spec       struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Action   string `yaml:"action"`
		Provider struct {
			Name string `yaml:"name"`
		} `yaml:"provider"`
		// A rule's fields (from, to, when) narrow it; the file must have
		// none, so any key in a rule is reported by the checks below.
		Rules []map[string]any `yaml:"rules"`
	} `yaml:"spec"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port int    `yaml:"port"`
	} `yaml:"httpGet"`
	InitialDelaySeconds int `yaml:"initialDelaySeconds"`
	PeriodSeconds       int `yaml:"periodSeconds"`
	FailureThreshold    int `yaml:"failureThreshold"`
}

type k8sEnvVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		SecretKeyRef *struct {
			Name string `yaml:"name"`
			Key  string `yaml:"key"`
		} `yaml:"secretKeyRef"`
	} `yaml:"valueFrom"`
}

type k8sVolume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
}

type k8sContainer struct {
	Name  string      `yaml:"name"`
	Image string      `yaml:"image"`
	Args  []string    `yaml:"args"`
	Env   []k8sEnvVar `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		Protocol      string `yaml:"protocol"`
	} `yaml:"ports"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext *struct {
		RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
		RunAsUser                *int64 `yaml:"runAsUser"`
		RunAsGroup               *int64 `yaml:"runAsGroup"`
		ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type k8sDeploymentPatch struct {
	Spec struct {
		Template struct {
			Metadata struct {
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec struct {
				Containers []k8sContainer `yaml:"containers"`
				Volumes    []k8sVolume    `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// decodeStrict decodes exactly one YAML document into v, refusing fields v
// does not have.
func decodeStrict(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return err
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document")
	}
	return nil
}

// istioFiles are the files in istio/, decoded.
type istioFiles struct {
	mesh  istioMeshValues
	se    istioServiceEntry
	ap    istioAuthorizationPolicy
	patch k8sDeploymentPatch
}

// loadIstio decodes the files in istio/, with replace applied to each
// file's text first (tests use it to break them).
func loadIstio(replace func(name, src string) string) (*istioFiles, error) {
	var f istioFiles
	for name, v := range map[string]any{
		"mesh-config.yaml":          &f.mesh,
		"service-entry.yaml":        &f.se,
		"authorization-policy.yaml": &f.ap,
		"sidecar-container.yaml":    &f.patch,
	} {
		data, err := os.ReadFile(filepath.Join("istio", name))
		if err != nil {
			return nil, err
		}
		if replace != nil {
			data = []byte(replace(name, string(data)))
		}
		if err := decodeStrict(data, v); err != nil {
			return nil, fmt.Errorf("istio/%s: %w", name, err)
		}
	}
	return &f, nil
}

// flagValue returns the value after flag in args.
func flagValue(args []string, flag string) string {
	i := slices.Index(args, flag)
	if i < 0 || i+1 >= len(args) {
		return ""
	}
	return args[i+1]
}

// checkIstio returns every way the Istio files fail the contract, joined:
// they must fail closed, agree with each other, send every request to the
// sidecar, and run it with least privilege.
func checkIstio(f *istioFiles) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	// The extension provider: fail closed, answer 503, bounded wait, no body.
	if n := len(f.mesh.MeshConfig.ExtensionProviders); n != 1 {
		return fmt.Errorf("%d extension providers, want 1", n)
	}
	prov := f.mesh.MeshConfig.ExtensionProviders[0]
	g := prov.EnvoyExtAuthzGrpc
	if g == nil {
		return fmt.Errorf("provider %q is not envoyExtAuthzGrpc", prov.Name)
	}
	if g.FailOpen {
		bad("failOpen is true: requests would pass when the sidecar is down")
	}
	if g.StatusOnError != "503" {
		bad("statusOnError is %q, want \"503\"", g.StatusOnError)
	}
	if d, err := time.ParseDuration(g.Timeout); err != nil || d <= 0 || d > maxExtAuthzTimeout {
		bad("provider timeout %q: want 0 < timeout <= %v", g.Timeout, maxExtAuthzTimeout)
	}
	if g.IncludeRequestBodyInCheck != nil {
		bad("includeRequestBodyInCheck is set: decisions never need the body")
	}
	switch n := f.mesh.MeshConfig.PathNormalization; {
	case n == nil:
		bad("no pathNormalization: Istio's default does not merge slashes")
	case n.Normalization != "MERGE_SLASHES" && n.Normalization != "DECODE_AND_MERGE_SLASHES":
		bad("pathNormalization %q, want MERGE_SLASHES or DECODE_AND_MERGE_SLASHES", n.Normalization)
	}

	// The service entry makes the provider's host this pod's loopback.
	se := f.se
	if se.APIVersion != "networking.istio.io/v1" || se.Kind != "ServiceEntry" {
		bad("service entry is %s %s", se.APIVersion, se.Kind)
	}
	if !slices.Equal(se.Spec.Hosts, []string{g.Service}) {
		bad("service entry hosts %v, want [%s] (the provider's service)", se.Spec.Hosts, g.Service)
	}
	if len(se.Spec.Endpoints) != 1 || se.Spec.Endpoints[0].Address != "127.0.0.1" || se.Spec.Resolution != "STATIC" {
		bad("service entry must resolve STATIC to the one endpoint 127.0.0.1, got %+v %s", se.Spec.Endpoints, se.Spec.Resolution)
	}
	if len(se.Spec.Ports) != 1 || se.Spec.Ports[0].Number != g.Port || se.Spec.Ports[0].Protocol != "GRPC" {
		bad("service entry ports %+v, want one GRPC port %d (the provider's)", se.Spec.Ports, g.Port)
	}
	if !slices.Equal(se.Spec.ExportTo, []string{"."}) {
		bad("service entry exportTo %v, want [.]", se.Spec.ExportTo)
	}

	// The policy sends every request of the workload to the provider.
	ap := f.ap
	if ap.APIVersion != "security.istio.io/v1" || ap.Kind != "AuthorizationPolicy" {
		bad("authorization policy is %s %s", ap.APIVersion, ap.Kind)
	}
	if ap.Spec.Action != "CUSTOM" || ap.Spec.Provider.Name != prov.Name {
		bad("authorization policy action %s provider %q, want CUSTOM %q", ap.Spec.Action, ap.Spec.Provider.Name, prov.Name)
	}
	if len(ap.Spec.Selector.MatchLabels) == 0 {
		bad("authorization policy has no selector: it would apply to the whole namespace")
	}
	if !slices.ContainsFunc(ap.Spec.Rules, func(r map[string]any) bool { return len(r) == 0 }) {
		bad("authorization policy rules %v: want an empty rule, which matches every request", ap.Spec.Rules)
	}
	if se.Metadata.Namespace != ap.Metadata.Namespace {
		bad("service entry in namespace %q, policy in %q", se.Metadata.Namespace, ap.Metadata.Namespace)
	}
	return errors.Join(append(errs, checkSidecarPatch(f.patch, g.Port)...)...)
}

func checkSidecarPatch(patch k8sDeploymentPatch, grpcPort uint32) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	pod := patch.Spec.Template.Spec
	i := slices.IndexFunc(pod.Containers, func(c k8sContainer) bool { return c.Name == "authz-sidecar" })
	if i < 0 {
		return []error{errors.New("no authz-sidecar container")}
	}
	c := pod.Containers[i]

	if len(c.Args) == 0 || c.Args[0] != "serve" {
		bad("args %v do not start with serve", c.Args)
	}
	grpcAddr := flagValue(c.Args, "--grpc-addr")
	if host, port, err := net.SplitHostPort(grpcAddr); err != nil || host != "127.0.0.1" || port != strconv.Itoa(int(grpcPort)) {
		bad("--grpc-addr %q: want 127.0.0.1:%d, reachable only from inside the pod", grpcAddr, grpcPort)
	}
	_, opsPort, err := net.SplitHostPort(flagValue(c.Args, "--http-addr"))
	if err != nil {
		bad("--http-addr: %v", err)
	}

	// The policy comes from the ConfigMap volume, mounted read-only.
	pols := flagValue(c.Args, "--policies")
	mounted := false
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix(pols, m.MountPath+"/") {
			mounted = m.ReadOnly && slices.ContainsFunc(pod.Volumes, func(v k8sVolume) bool {
				return v.Name == m.Name && v.ConfigMap != nil
			})
		}
	}
	if !mounted {
		bad("--policies %q is not in a read-only ConfigMap volume", pols)
	}

	// The database URL holds a password: it comes from a Secret, never
	// from the manifest.
	i = slices.IndexFunc(c.Env, func(e k8sEnvVar) bool { return e.Name == "DATABASE_URL" })
	if i < 0 || c.Env[i].Value != "" || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.SecretKeyRef == nil {
		bad("DATABASE_URL must come from a secretKeyRef")
	}

	// The shipped policy accepts Better Auth sessions, whose signatures
	// need Better Auth's secret (else serve refuses to start): from a
	// Secret too, by environment or file.
	secret := slices.ContainsFunc(c.Env, func(e k8sEnvVar) bool {
		return (e.Name == "BETTER_AUTH_SECRET" || e.Name == "BETTER_AUTH_SECRETS") &&
			e.Value == "" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
	})
	if !secret && flagValue(c.Args, "--better-auth-secret-file") == "" {
		bad("no Better Auth secret: set BETTER_AUTH_SECRET from a secretKeyRef, or --better-auth-secret-file")
	}

	// Probes on the ops port; that port bypasses the Istio proxy.
	for _, p := range []struct {
		name  string
		probe *k8sProbe
		path  string
	}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet.Path != p.path || strconv.Itoa(p.probe.HTTPGet.Port) != opsPort {
			bad("%s probe %+v, want GET %s on port %s", p.name, p.probe, p.path, opsPort)
		}
	}
	if got := patch.Spec.Template.Metadata.Annotations["traffic.sidecar.istio.io/excludeInboundPorts"]; got != opsPort {
		bad("excludeInboundPorts %q, want the ops port %q", got, opsPort)
	}

	if c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" || c.Resources.Requests["cpu"] == "" {
		bad("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
	sc := c.SecurityContext
	if sc == nil {
		return append(errs, errors.New("no securityContext"))
	}
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		bad("runAsNonRoot is not true")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		bad("runAsUser is not a non-root uid")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		bad("readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		bad("allowPrivilegeEscalation is not false")
	}
	if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
		bad("capabilities drop %v, want [ALL]", sc.Capabilities.Drop)
	}
	return errs
}

func TestIstio(t *testing.T) {
	t.Parallel()
	f, err := loadIstio(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkIstio(f); err != nil {
		t.Error(err)
	}
}

// TestIstioCatchesRegressions proves each check can fail: every broken
// copy below decodes, but breaks the contract.
func TestIstioCatchesRegressions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file, old, new string
		want           string
	}{
		{"mesh-config.yaml", "failOpen: false", "failOpen: true", "failOpen"},
		{"mesh-config.yaml", `statusOnError: "503"`, `statusOnError: "403"`, "statusOnError"},
		{"mesh-config.yaml", "timeout: 0.2s", "timeout: 10s", "timeout"},
		{"mesh-config.yaml", "normalization: MERGE_SLASHES", "normalization: BASE", "pathNormalization"},
		{"mesh-config.yaml", "        # No includeRequestBodyInCheck", "        includeRequestBodyInCheck: { maxRequestBytes: 1024 }\n        #", "includeRequestBodyInCheck"},
		{"mesh-config.yaml", "port: 9191", "port: 9192", "GRPC port 9192"},
		{"service-entry.yaml", "address: 127.0.0.1", "address: 10.0.0.1", "127.0.0.1"},
		{"service-entry.yaml", "- authz-sidecar.local", "- authz-sidecar.example", "provider's service"},
		{"service-entry.yaml", `- "."`, `- "*"`, "exportTo"},
		{"authorization-policy.yaml", "- {}", "- to: [{ operation: { paths: [/api/*] } }]", "empty rule"},
		{"authorization-policy.yaml", "action: CUSTOM", "action: ALLOW", "CUSTOM"},
		{"authorization-policy.yaml", "name: authz-sidecar\n  rules:", "name: other\n  rules:", "provider"},
		{"sidecar-container.yaml", "- 127.0.0.1:9191", "- 0.0.0.0:9191", "--grpc-addr"},
		{"sidecar-container.yaml", "runAsNonRoot: true", "runAsNonRoot: false", "runAsNonRoot"},
		{"sidecar-container.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem"},
		{"sidecar-container.yaml", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", "allowPrivilegeEscalation"},
		{"sidecar-container.yaml", "- name: DATABASE_URL\n              valueFrom:\n                secretKeyRef:\n                  name: authz-sidecar\n                  key: database-url",
			"- name: DATABASE_URL\n              value: postgres://u:secret@db/x", "secretKeyRef"},
		{"sidecar-container.yaml", "- name: BETTER_AUTH_SECRET\n", "- name: BETTER_AUTH_SECRET_UNUSED\n", "no Better Auth secret"},
		{"sidecar-container.yaml", "path: /readyz", "path: /healthz", "readiness probe"},
		{"sidecar-container.yaml", `excludeInboundPorts: "9192"`, `excludeInboundPorts: "9191"`, "excludeInboundPorts"},
		{"sidecar-container.yaml", "readOnly: true", "readOnly: false", "ConfigMap volume"},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.new, func(t *testing.T) {
			t.Parallel()
			f, err := loadIstio(func(name, src string) string {
				if name != tt.file {
					return src
				}
				if n := strings.Count(src, tt.old); n != 1 {
					t.Fatalf("%q occurs %d times in %s, want 1", tt.old, n, name)
				}
				return strings.Replace(src, tt.old, tt.new, 1)
			})
			if err != nil {
				t.Fatalf("broken copy does not decode: %v", err)
			}
			err = checkIstio(f)
			if err == nil {
				t.Fatal("contract check passed")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error does not mention %q:\n%v", tt.want, err)
			}
		})
	}
}

// TestIstioStrict proves decodeStrict refuses a misspelt field in each
// kind of file.
func TestIstioStrict(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file     string
		v        any
		old, new string
	}{
		{"mesh-config.yaml", &istioMeshValues{}, "failOpen: false", "failopen: false"},
		{"mesh-config.yaml", &istioMeshValues{}, "envoyExtAuthzGrpc:", "envoyExtAuthzGRPC:"},
		{"service-entry.yaml", &istioServiceEntry{}, "resolution: STATIC", "resolve: STATIC"},
		{"authorization-policy.yaml", &istioAuthorizationPolicy{}, "provider:", "providers:"},
		{"sidecar-container.yaml", &k8sDeploymentPatch{}, "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true"},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.new, func(t *testing.T) {
			t.Parallel()
			src := string(readFile(t, filepath.Join("istio", tt.file)))
			if strings.Count(src, tt.old) != 1 {
				t.Fatalf("%q does not occur exactly once", tt.old)
			}
			if err := decodeStrict([]byte(strings.Replace(src, tt.old, tt.new, 1)), tt.v); err == nil {
				t.Error("decoded without error")
			}
		})
	}
}

// TestIstioPathNormalisationSuffices spells out why MERGE_SLASHES is enough
// without a "reject escaped slashes" setting, which Istio does not have:
// the sidecar refuses what normalisation leaves ambiguous.
func TestIstioPathNormalisationSuffices(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"/api/orgs/o1%2F..%2Fo2/leave", "/api/orgs/o1%5Cx/leave", "/api/me%2f"} {
		if err := policy.CheckPath(p, 0); err == nil {
			t.Errorf("CheckPath(%q) accepted a path with an escaped separator", p)
		}
	}
}
