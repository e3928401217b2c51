package main

import (
	"flag"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// buildVersion overrides the module version the Go toolchain records, for
// builds that have neither a module version nor a VCS checkout (the
// Dockerfile's: -ldflags "-X main.buildVersion=$VERSION").
var buildVersion string

// buildInfo is what the binary knows about how it was built.
type buildInfo struct {
	Version   string // v1.2.3 from go install, v0.0.0-<time>-<commit>[+dirty] from a checkout, else (devel)
	Revision  string // VCS commit; empty when built outside a checkout
	Time      string // commit time, RFC 3339
	Modified  bool   // the checkout had uncommitted changes
	GoVersion string
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: "(devel)"}
	if info, ok := debug.ReadBuildInfo(); ok {
		b.GoVersion = info.GoVersion
		if info.Main.Version != "" {
			b.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.time":
				b.Time = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if buildVersion != "" {
		b.Version = buildVersion
	}
	return b
}

// collector exposes the build as authz_build_info{version,revision,go_version} 1,
// so a fleet's dashboards can tell which sidecars run which build.
func (b buildInfo) collector() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "authz_build_info",
		Help: "Always 1; the labels name the build: module version, VCS revision, Go version.",
		ConstLabels: prometheus.Labels{
			"version": b.Version, "revision": b.Revision, "go_version": b.GoVersion,
		},
	})
	g.Set(1)
	return g
}

const versionUsage = `Usage: authz-sidecar version

Prints the version, the VCS commit and time, and the Go version the binary
was built with (also the labels of the authz_build_info metric).
`

// version prints the build information.
func version(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if err := parseFlags(fs, args, versionUsage, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fs, versionUsage, stderr)
	}
	b := readBuildInfo()
	fmt.Fprintf(stdout, "authz-sidecar %s\n", b.Version)
	if b.Revision != "" {
		modified := ""
		if b.Modified {
			modified = " (modified)"
		}
		fmt.Fprintf(stdout, "commit:  %s%s\n", b.Revision, modified)
	}
	if b.Time != "" {
		fmt.Fprintf(stdout, "time:    %s\n", b.Time)
	}
	fmt.Fprintf(stdout, "go:      %s\n", b.GoVersion)
	return nil
}
