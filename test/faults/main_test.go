// Package faults breaks the authz-sidecar's dependencies under the real,
// race-built binary and checks that it keeps answering correctly or fails
// closed, and recovers on its own: a Redis server the test starts, kills,
// restarts and pauses; a TCP proxy in front of PostgreSQL that stalls and
// cuts connections; a JWKS endpoint that goes away or is not there yet; and
// SIGTERM with a check in flight.
//
// Every case asserts the decisions (allow for members, deny for others,
// 503 only where the answer cannot be known) and that Check never returns a
// gRPC error, and reads /metrics where a counter proves which tier answered.
package faults

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
	dir, err := os.MkdirTemp("", "authz-faults-")
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
