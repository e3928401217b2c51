// Package e2e drives the built authz-sidecar binary against a real Better
// Auth server on Bun, real PostgreSQL and real Redis, over HTTP and gRPC as
// production would.
package e2e

import (
	"os"
	"testing"

	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// sidecarBin is the race-built binary, built once for the package.
var sidecarBin string

func TestMain(m *testing.M) { os.Exit(testproc.RunWithSidecar(m, &sidecarBin)) }
