// Command authz-sidecar is an Envoy ext_authz (v3, gRPC) decision point for
// applications that use Better Auth: it validates Better Auth JWTs, maps
// routes to permissions from policies.yaml and resolves the caller's
// organization roles through memory, Redis and Postgres.
//
// Usage:
//
//	authz-sidecar serve    [flags]   run the ext_authz server
//	authz-sidecar validate [FILE]    check a policies.yaml and exit
//	authz-sidecar test     FILE      run a policy test file (policies_test.yaml)
//	authz-sidecar explain  [flags]   explain one decision
//	authz-sidecar envoy-routes [flags]  print the Envoy routes that mirror the policy
//
// Run "authz-sidecar COMMAND --help" for each command's flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "authz-sidecar:", err)
		os.Exit(1)
	}
}

// errUsage means the command line was wrong; the message is already printed.
var errUsage = errors.New("usage")

const usage = `authz-sidecar: an Envoy ext_authz decision point for Better Auth applications.

Usage:
  authz-sidecar serve    [flags]   run the ext_authz gRPC server (and health/metrics HTTP)
  authz-sidecar validate [FILE]    check a policies.yaml (default $AUTHZ_POLICIES or ./policies.yaml)
  authz-sidecar test     FILE      run policy test cases (method, path, roles -> expected decision)
  authz-sidecar explain  [flags]   explain one decision: route, organization, roles, permissions, reason
  authz-sidecar envoy-routes [flags]  print the Envoy routes (YAML) that mirror the policy's routes

Run "authz-sidecar COMMAND --help" for the flags of a command.
`

// run is the whole program, callable from tests.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "serve":
		cfg, err := parseServeConfig(args[1:], getenv, stderr)
		if err != nil {
			return err
		}
		return serve(ctx, cfg, getenv, stderr)
	case "validate":
		return validate(args[1:], getenv, stdout, stderr)
	case "test":
		return policyTest(ctx, args[1:], stdout, stderr)
	case "explain":
		return explain(ctx, args[1:], getenv, stdout, stderr)
	case "envoy-routes":
		return envoyRoutes(args[1:], getenv, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
		return errUsage
	}
}
