package main

import (
	"io"
	"testing"
)

func TestDecisionIDResponseHeaderFlag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  string
		want bool
	}{
		{"default off", nil, "", false},
		{"environment", nil, "true", true},
		{"flag", []string{"--decision-id-response-header"}, "", true},
		{"flag beats environment", []string{"--decision-id-response-header=false"}, "true", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseServeConfig(tt.args, func(k string) string {
				return map[string]string{"DATABASE_URL": "postgres://db", "AUTHZ_DECISION_ID_RESPONSE_HEADER": tt.env}[k]
			}, io.Discard, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if c.DecisionIDResponseHeader != tt.want {
				t.Errorf("DecisionIDResponseHeader = %v, want %v", c.DecisionIDResponseHeader, tt.want)
			}
		})
	}
}
