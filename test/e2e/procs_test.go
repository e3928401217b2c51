package e2e

import (
	"testing"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// startBetterAuth starts the fixture Better Auth app on Bun, migrating
// dbURL; extraEnv are more of its variables (they win over the defaults).
func startBetterAuth(t testing.TB, dbURL string, extraEnv ...string) *testproc.BetterAuth {
	t.Helper()
	return testproc.StartBetterAuth(t, testproc.BetterAuthOptions{DatabaseURL: dbURL, Env: extraEnv})
}

// startSidecar runs the built binary against policyPath and dbURL and
// waits until it is SERVING (keys loaded).
func startSidecar(t testing.TB, policyPath, dbURL string, args ...string) *testproc.Sidecar {
	t.Helper()
	// Generous check and load deadlines unless args say otherwise: with the
	// default 100ms, a cold lookup on a machine running four suites at
	// once answered 503 deadline_exceeded (TestSecretRotation).
	s := testproc.StartSidecarT(t, sidecarBin, testproc.RepoRootT(t),
		append([]string{"--policies", policyPath, "--database-url", dbURL, "--check-timeout", "30s", "--load-timeout", "30s"}, args...)...)
	if err := s.WaitReady(testproc.Serving, time.Minute); err != nil {
		t.Fatal(err)
	}
	return s
}

// fixtureSecret is the fixture app's development secret.
const fixtureSecret = testproc.BetterAuthSecret

// secretFile writes fixtureSecret to a file for --better-auth-secret-file.
func secretFile(t testing.TB) string {
	t.Helper()
	p, err := testproc.WriteSecretFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return p
}
