package testproc

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ShippedBetterAuthURL is Better Auth's address in the shipped
// policies.yaml: its issuer, audience, JWKS host and session base_url.
const ShippedBetterAuthURL = "http://127.0.0.1:3000"

// WritePolicy copies the repository's policies.yaml (root, or RepoRoot()
// when empty) into dir with Better Auth's address replaced by baseURL
// everywhere (issuer, audiences, jwks_url, session.base_url), and any
// further old, new pairs replaced once each, and returns the copy's path.
// Every driver and suite that runs the shipped policy against its own
// Better Auth or issuer goes through it, so a change to the shipped file
// breaks them all loudly instead of one silently.
func WritePolicy(root, dir, baseURL string, replace ...string) (string, error) {
	if root == "" {
		var err error
		if root, err = RepoRoot(); err != nil {
			return "", err
		}
	}
	b, err := os.ReadFile(filepath.Join(root, "policies.yaml"))
	if err != nil {
		return "", fmt.Errorf("shipped policy: %w", err)
	}
	s := string(b)
	for _, key := range []string{"issuer: ", "jwks_url: ", "base_url: "} {
		if !strings.Contains(s, key+ShippedBetterAuthURL) {
			return "", fmt.Errorf("policies.yaml no longer has %q: update testproc.WritePolicy", key+ShippedBetterAuthURL)
		}
	}
	s = strings.ReplaceAll(s, ShippedBetterAuthURL, baseURL)
	if len(replace)%2 != 0 {
		return "", fmt.Errorf("WritePolicy: replacements come in old, new pairs: %q", replace)
	}
	for i := 0; i < len(replace); i += 2 {
		if !strings.Contains(s, replace[i]) {
			return "", fmt.Errorf("policies.yaml no longer has %q", replace[i])
		}
		s = strings.Replace(s, replace[i], replace[i+1], 1)
	}
	p := filepath.Join(dir, "policies.yaml")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		return "", err
	}
	return p, nil
}

// WritePolicyT is WritePolicy for a test, into t.TempDir().
func WritePolicyT(t testing.TB, baseURL string, replace ...string) string {
	t.Helper()
	p, err := WritePolicy("", t.TempDir(), baseURL, replace...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
