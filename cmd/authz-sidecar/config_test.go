package main

import (
	"io"
	"strings"
	"testing"
)

// Each bad setting stops the start with an error naming the flag; each
// good one is taken as given.
func TestServeConfigValidation(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string // empty: accepted
	}{
		{[]string{"--redis-mode", "cluster"}, ""},
		{[]string{"--redis-mode", "sentinel", "--redis-master-name", "mymaster"}, ""},
		{[]string{"--redis-mode", "replicas"}, `--redis-mode "replicas"`},
		{[]string{"--session-redis-mode", "Cluster"}, `--session-redis-mode "Cluster"`},
		{[]string{"--pg-query-mode", "describe"}, ""},
		{[]string{"--pg-query-mode", "simple"}, ""},
		{[]string{"--pg-query-mode", "fast"}, "--pg-query-mode"},
		{[]string{"--pg-max-conns", "0"}, "--pg-max-conns"},
		{[]string{"--grpc-codec", "proto"}, ""},
		{[]string{"--grpc-workers", "0"}, ""},
		{[]string{"--grpc-workers", "-2"}, "--grpc-workers"},
		{[]string{"--grpc-codec", "lean"}, ""},
		{[]string{"--grpc-codec", "vtproto"}, `--grpc-codec "vtproto"`},
		{[]string{"--trace-sample-ratio", "1.5"}, "--trace-sample-ratio"},
		{[]string{"--trace-sample-ratio", "-0.1"}, "--trace-sample-ratio"},
		{[]string{"--check-timeout", "0s"}, "--check-timeout"},
		{[]string{"--load-timeout", "-1s"}, "--load-timeout"},
		{[]string{"--invalidation-skew", "-1ms"}, "--invalidation-skew"},
		{[]string{"unexpected-argument"}, "usage"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			args := append([]string{"--database-url", "postgres://db"}, tt.args...)
			_, err := parseServeConfig(args, func(string) string { return "" }, io.Discard, io.Discard)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("rejected: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("err = %v, want one naming %q", err, tt.wantErr)
			}
		})
	}
}
