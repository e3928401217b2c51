package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/authz-sidecar/authz-sidecar/internal/jwttest"
	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
)

// A sidecar whose database cannot serve it is not ready, and says why: on
// /readyz, in gRPC health, and in the log of every 503 it answers.
func TestReadinessNamesTheDatabaseCause(t *testing.T) {
	tests := []struct {
		name      string
		dbURL     func(t *testing.T) string
		wantReady []string // in /readyz's body
		wantLog   []string // in the log, after an authenticated check
	}{
		{
			name: "closed port",
			dbURL: func(t *testing.T) string {
				return "postgres://postgres@" + freeAddr(t) + "/x?sslmode=disable&connect_timeout=5"
			},
			wantReady: []string{"not ready:", "database: pg:", "connection refused"},
			wantLog:   []string{`"cause":"connection"`, `"reason":"source_unavailable"`},
		},
		{
			name:      "no Better Auth tables",
			dbURL:     func(t *testing.T) string { return pgtest.NewEmptyDatabase(t) },
			wantReady: []string{"not ready:", "database: pg:", "(users, organizations, members)", "found: none", "run Better Auth's migrator"},
			wantLog:   []string{`"cause":"schema"`, `"reason":"source_unavailable"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			keys := jwttest.NewKeys(t)
			p := filepath.Join(t.TempDir(), "p.yaml")
			if err := os.WriteFile(p, []byte(strings.Replace(basePolicy, "JWKS", keys.URL, 1)), 0o600); err != nil {
				t.Fatal(err)
			}
			logs := &lockedBuffer{}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- run(ctx, []string{"serve", "--policies", p, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
					"--database-url", tt.dbURL(t), "--check-timeout", patience.String()},
					func(string) string { return "" }, io.Discard, logs)
			}()
			t.Cleanup(func() {
				cancel()
				<-done
				if t.Failed() {
					t.Logf("sidecar log:\n%s", logs.String())
				}
			})

			grpcAddr, httpAddr, _ := listenAddrs(t, logs, done)

			var body string
			eventually(t, "/readyz to name the database's failure", func() bool {
				resp, err := http.Get("http://" + httpAddr + "/readyz")
				if err != nil {
					return false
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				body = string(b)
				return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(body, "database:")
			})
			for _, w := range tt.wantReady {
				if !strings.Contains(body, w) {
					t.Errorf("/readyz lacks %q:\n%s", w, body)
				}
			}

			conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			h, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
			if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
				t.Errorf("gRPC health = %v, %v; want NOT_SERVING", h, err)
			}

			// An authenticated request fails closed, and the log says why.
			resp, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Method: "GET", Path: "/api/orgs/acme/leave/1", Headers: map[string]string{"authorization": "Bearer " + keys.User("bob")}}},
			}})
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.GetDeniedResponse().GetStatus().GetCode(); got != 503 {
				t.Errorf("check: status %v, want 503 (%v)", got, resp)
			}
			eventually(t, "the log to name the cause of the 503", func() bool {
				l := logs.String()
				for _, w := range tt.wantLog {
					if !strings.Contains(l, w) {
						return false
					}
				}
				return true
			})
		})
	}
}

// A database that lacks an optional part the policy needs (the team tables
// here) makes the sidecar not ready, and /readyz says that creating the
// part is not enough: the sidecar finds the optional parts once, at start
// (pg.DB.Check), so it must be restarted after the migration.
func TestReadinessAsksForARestartAfterAMissingPart(t *testing.T) {
	t.Parallel()
	keys := jwttest.NewKeys(t)
	db := pgtest.NewDatabaseWith(t, pgtest.Options{Without: []pgtest.Part{pgtest.Teams}})
	p := filepath.Join(t.TempDir(), "p.yaml")
	pol := strings.Replace(basePolicy, "JWKS", keys.URL, 1) +
		`  - { name: team-board, methods: [GET], path: "/api/orgs/{org}/teams/{team}/board", team: true, require: [leave:read] }` + "\n" +
		"team:\n  from: [path:team]\n"
	if err := os.WriteFile(p, []byte(pol), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr := freeAddr(t)
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--policies", p, "--grpc-addr", freeAddr(t), "--http-addr", httpAddr, "--database-url", db.URL},
			func(string) string { return "" }, io.Discard, logs)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("sidecar log:\n%s", logs.String())
		}
	})

	var body string
	eventually(t, "/readyz to name the missing part", func() bool {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(body, "team tables are missing")
	})
	for _, w := range []string{`routes "team-board" need team membership`, "run Better Auth's migrator", "restart the sidecar"} {
		if !strings.Contains(body, w) {
			t.Errorf("/readyz lacks %q:\n%s", w, body)
		}
	}
}
