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
	"os"
	"testing"

	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// sidecarBin is the race-built binary, built once for the package.
var sidecarBin string

func TestMain(m *testing.M) { os.Exit(testproc.RunWithSidecar(m, &sidecarBin)) }
