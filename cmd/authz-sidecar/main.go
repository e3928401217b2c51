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
//	authz-sidecar version            print the build information
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

// parseFlags parses a subcommand's args. --help (-h) prints the usage to
// stdout and returns flag.ErrHelp, so it can be paged or grepped; a bad
// flag prints the error and the usage to stderr and returns errUsage. One
// function, so every subcommand behaves alike.
func parseFlags(fs *flag.FlagSet, args []string, header string, stdout, stderr io.Writer) error {
	fs.SetOutput(stderr) // flag writes its own error message here
	fs.Usage = func() {} // printed below, to the stream that fits
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		printUsage(fs, header, stdout)
		return err
	default:
		printUsage(fs, header, stderr)
		return errUsage
	}
}

// usageError prints the usage to stderr for a command line that parsed but
// makes no sense (wrong arguments), and returns errUsage.
func usageError(fs *flag.FlagSet, header string, stderr io.Writer) error {
	printUsage(fs, header, stderr)
	return errUsage
}

func printUsage(fs *flag.FlagSet, header string, w io.Writer) {
	fmt.Fprint(w, header)
	out := fs.Output()
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(out)
}

const usage = `authz-sidecar: an Envoy ext_authz decision point for Better Auth applications.

Usage:
  authz-sidecar serve    [flags]   run the ext_authz gRPC server (and health/metrics HTTP)
  authz-sidecar validate [FILE]    check a policies.yaml (default $AUTHZ_POLICIES or ./policies.yaml)
  authz-sidecar test     FILE      run policy test cases (method, path, roles -> expected decision)
  authz-sidecar explain  [flags]   explain one decision: route, organization, roles, permissions, reason
  authz-sidecar envoy-routes [flags]  print the Envoy routes (YAML) that mirror the policy's routes
  authz-sidecar version            print the version, the commit and the Go version it was built with

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
		cfg, err := parseServeConfig(args[1:], getenv, stdout, stderr)
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
	case "version", "--version":
		return version(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
		return errUsage
	}
}
