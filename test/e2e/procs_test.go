package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// betterAuth starts the fixture Better Auth app on Bun.
type betterAuth struct {
	URL string
}

func startBetterAuth(t testing.TB, dbURL string, extraEnv ...string) *betterAuth {
	t.Helper()
	dir := filepath.Join(testproc.RepoRootT(t), "test", "betterauth")
	bun := filepath.Join(dir, "node_modules", ".bin", "bun")
	if _, err := os.Stat(bun); err != nil {
		testproc.RequireOrSkip(t, "Better Auth fixture not installed (run scripts/betterauth.sh install): %v", err)
	}
	port := testproc.FreePortT(t)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	env := append([]string{
		"PORT=" + fmt.Sprint(port), "DATABASE_URL=" + dbURL, "MIGRATE=1", "BETTER_AUTH_URL=" + url,
	}, extraEnv...)
	testproc.StartT(t, testproc.Spec{Name: fmt.Sprintf("betterauth-%d", port), Dir: dir, Env: env, Bin: bun, Args: []string{"server.ts"}})
	if err := testproc.WaitHTTP(url+"/healthz", time.Minute); err != nil { // Bun starts and migrates
		t.Fatal(err)
	}
	return &betterAuth{URL: url}
}

// startSidecar runs the built binary against policyPath and dbURL and
// waits until it is SERVING (keys loaded).
func startSidecar(t testing.TB, policyPath, dbURL string, args ...string) *testproc.Sidecar {
	t.Helper()
	s := testproc.StartSidecarT(t, sidecarBin, testproc.RepoRootT(t),
		append([]string{"--policies", policyPath, "--database-url", dbURL}, args...)...)
	if err := s.WaitReady(testproc.Serving, time.Minute); err != nil {
		t.Fatal(err)
	}
	return s
}
