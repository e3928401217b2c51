package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
)

func TestEnvoyRoutesCommand(t *testing.T) {
	t.Parallel()
	noEnv := func(string) string { return "" }
	tests := []struct {
		name    string
		args    []string
		wantErr error
		wantOut []string // substrings of stdout
	}{
		{name: "help goes to stdout", args: []string{"--help"}, wantErr: flag.ErrHelp, wantOut: []string{"Usage: authz-sidecar envoy-routes"}},
		{name: "routes", args: []string{"--policies", "../../policies.yaml", "--cluster", "backend", "--indent", "4"},
			wantOut: []string{"    - name: team-board\n", "      route: { cluster: backend }\n", "context_extensions: { route: ban-user }", "    - name: catch-all\n"}},
		{name: "allowed headers", args: []string{"--policies", "../../policies.yaml", "--allowed-headers"},
			wantOut: []string{"allowed_headers:\n  patterns:\n", "- { exact: x-api-key }\n", "- { exact: x-request-id }\n"}},
		{name: "stray argument", args: []string{"policies.yaml"}, wantErr: errUsage},
		{name: "negative indent", args: []string{"--indent", "-1"}, wantErr: errUsage},
		{name: "missing policy", args: []string{"--policies", "nope.yaml"}, wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), append([]string{"envoy-routes"}, tt.args...), noEnv, &stdout, &stderr)
			switch {
			case tt.wantErr == errAny && err == nil, tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			for _, s := range tt.wantOut {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout.String())
				}
			}
			if tt.wantErr == nil && stderr.Len() > 0 {
				t.Errorf("stderr: %s", stderr.String())
			}
		})
	}
}

// errAny stands for "some error" in tests.
var errAny = errors.New("any error")
