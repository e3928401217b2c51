package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/authz-sidecar/authz-sidecar/internal/policy"
)

// validate checks a policy file, printing every problem as file:line:col.
func validate(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: authz-sidecar validate [FILE]\n\nChecks a policy file and prints every problem with its file, line and column.\nFILE defaults to $AUTHZ_POLICIES, else ./policies.yaml. Exits 0 when the file is valid, 1 otherwise.\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	path := "./policies.yaml"
	if v := getenv("AUTHZ_POLICIES"); v != "" {
		path = v
	}
	switch fs.NArg() {
	case 0:
	case 1:
		path = fs.Arg(0)
	default:
		fs.Usage()
		return errUsage
	}
	pol, err := policy.Load(path)
	if err != nil {
		var perr *policy.Error
		if errors.As(err, &perr) {
			for _, p := range perr.Problems {
				fmt.Fprintln(stdout, p.String())
			}
			return fmt.Errorf("%s: %d problem(s)", path, len(perr.Problems))
		}
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (version %s, %d roles, %d routes)\n", path, pol.Version, len(pol.RoleNames()), len(pol.Routes))
	return nil
}
