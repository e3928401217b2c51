package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/authz-sidecar/authz-sidecar/internal/envoyconf"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
)

const envoyRoutesUsage = `Usage: authz-sidecar envoy-routes [--policies FILE] [--cluster NAME] [--indent N] [--allowed-headers]

Prints, as YAML, the routes of an Envoy virtual host ("routes:") that mirror the
policy: one per policy route, naming it to the sidecar with ext_authz
context_extensions {route: NAME}, matching its methods and its path template
(a strict per-segment regex), in the order that makes Envoy's first match the
policy's most specific route; then the catch-all. Warnings go to stderr.

With --allowed-headers it prints the ext_authz allowed_headers block instead:
the request headers a decision under the policy may read, plus x-request-id.

Flags:
`

// envoyRoutes prints the Envoy routes that mirror the policy's routes (or,
// with --allowed-headers, the ext_authz allowed_headers the policy needs).
func envoyRoutes(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("envoy-routes", flag.ContinueOnError)
	path := "./policies.yaml"
	if v := getenv("AUTHZ_POLICIES"); v != "" {
		path = v
	}
	fs.StringVar(&path, "policies", path, "policy file ($AUTHZ_POLICIES)")
	cluster := fs.String("cluster", "app", "the Envoy cluster every route forwards to")
	indent := fs.Int("indent", 0, "spaces before every line, to paste the list into a configuration")
	headers := fs.Bool("allowed-headers", false, "print the ext_authz allowed_headers the policy needs instead of the routes")
	if err := parseFlags(fs, args, envoyRoutesUsage, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 || *indent < 0 {
		return usageError(fs, envoyRoutesUsage, stderr)
	}
	pol, err := policy.Load(path)
	if err != nil {
		return err
	}
	if *headers {
		pad := strings.Repeat(" ", *indent)
		var b strings.Builder
		b.WriteString(pad + "allowed_headers:\n" + pad + "  patterns:\n")
		for _, h := range append(envoyconf.RequestHeaders(pol), "x-request-id") {
			fmt.Fprintf(&b, "%s    - { exact: %s }\n", pad, h)
		}
		_, err := io.WriteString(stdout, b.String())
		return err
	}
	routes, warnings, err := envoyconf.Routes(pol, *cluster)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	return envoyconf.WriteRoutes(stdout, routes, *indent)
}
