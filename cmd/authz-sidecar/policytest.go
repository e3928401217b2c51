package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/policytest"
)

const policyTestUsage = `Usage: authz-sidecar test FILE

Runs the policy test cases in FILE (e.g. policies_test.yaml) through the real
decision engine with in-memory users and roles: no database, Redis or JWKS.
Prints PASS/FAIL per case, a diff for each failure, and "N passed, M failed".
Exits 0 when every case passes, 1 otherwise.
`

// policyTest runs a policy test file: "authz-sidecar test policies_test.yaml".
func policyTest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	if err := parseFlags(fs, args, policyTestUsage, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError(fs, policyTestUsage, stderr)
	}
	_, failed, err := policytest.Run(ctx, fs.Arg(0), stdout)
	if err != nil {
		var perr *policy.Error
		if errors.As(err, &perr) {
			for _, p := range perr.Problems {
				fmt.Fprintln(stdout, p.String())
			}
			return fmt.Errorf("%s: %d problem(s)", fs.Arg(0), len(perr.Problems))
		}
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d policy test case(s) failed", failed)
	}
	return nil
}
