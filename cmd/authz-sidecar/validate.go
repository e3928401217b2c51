package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/authz-sidecar/authz-sidecar/internal/policy"
)

const validateUsage = `Usage: authz-sidecar validate [--app-roles roles.json] [FILE]

Checks a policy file and prints every problem with its file, line and column,
and every warning (a route that path matching can never select), which does
not make the file invalid. FILE defaults to $AUTHZ_POLICIES, else
./policies.yaml. Exits 0 when the file is valid, 1 otherwise.

Flags:
`

// validate checks a policy file, printing every problem as file:line:col.
func validate(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	appRoles := fs.String("app-roles", "", "the app's roles as JSON (print-roles.ts): report every difference from the policy's roles")
	if err := parseFlags(fs, args, validateUsage, stdout, stderr); err != nil {
		return err
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
		return usageError(fs, validateUsage, stderr)
	}
	pol, err := policy.LoadWith(path, policy.LoadOptions{AppRoles: *appRoles})
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
	// Warnings (a route path matching can never select) do not make the
	// file invalid, but the author must see them: serve only logs them.
	for _, w := range pol.Warnings {
		w.Message = "warning: " + w.Message
		fmt.Fprintln(stdout, w.String())
	}
	fmt.Fprintf(stdout, "%s: ok (version %s, %d roles, %d platform roles, %d routes; credentials: %s)\n",
		path, pol.Version, len(pol.RoleNames()), len(pol.PlatformRoleNames()), len(pol.Routes), pol.Enabled())
	if *appRoles != "" || pol.AppRoles != "" {
		fmt.Fprintf(stdout, "%s: the roles are exactly the app's (%s)\n", path, cmp.Or(*appRoles, pol.AppRoles))
	}
	return nil
}
