package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
)

// TestFleetTiny runs the whole driver small (3 sidecars, about a second
// per phase), so that it keeps working between `make fleet` runs: every
// phase, every answer checked, the report and the estimate printed.
func TestFleetTiny(t *testing.T) {
	if testing.Short() {
		testproc.RequireOrSkip(t, "builds the sidecar and starts three (make fleet runs it in full)")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		testproc.RequireOrSkip(t, "redis-server not installed: %v", err)
	}
	adminURL := os.Getenv(pgtest.EnvURL)
	if adminURL == "" {
		adminURL = pgtest.DefaultURL
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	conn, err := pgx.Connect(ctx, adminURL)
	cancel()
	if err != nil {
		testproc.RequireOrSkip(t, "PostgreSQL unreachable: %v", err)
	}
	conn.Close(context.Background())

	env := map[string]string{
		"FLEET_SIDECARS": "3", "FLEET_RATE": "150", "FLEET_DURATION": "1s", "FLEET_IDLE": "1s",
		"FLEET_SAMPLE": "250ms", "FLEET_USERS": "300", "FLEET_ORGS": "20", "FLEET_PG_RESERVE": "5",
		"FLEET_PG_MAX_CONNS": "2", "FLEET_TIMEOUT": "8m",
	}
	getenv := func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return os.Getenv(k)
	}
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), nil, getenv, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
	}
	out := stdout.String()
	for _, want := range []string{"Over time:", "Per phase:", "start", "cold", "steady", "rolling", "full restart",
		"after restart", "idle", " 0 wrong,", "1000 sidecars at", "3 sidecars replaced one by one"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("report:\n%s", out)
	}
}
