// Package e2e drives the built authz-sidecar binary against a real Better
// Auth server on Bun, real PostgreSQL and real Redis, over HTTP and gRPC as
// production would.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// sidecarBin is the binary built once for the package.
var sidecarBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "authz-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sidecarBin = filepath.Join(dir, "authz-sidecar")
	build := exec.Command("go", "build", "-race", "-o", sidecarBin, "../../cmd/authz-sidecar")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build authz-sidecar:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
