package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/unready", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/"
	l.Close()

	// Cases not about the deadline get one far above an answer on a loaded
	// machine (the 2 s default could turn a slow answer into "deadline");
	// /slow never answers, so 50 ms is enough to reach that one.
	const patient = "30s"
	tests := []struct {
		name string
		args []string
		want string // "" for success, else a substring of the error
	}{
		{name: "2xx", args: []string{"--timeout", patient, srv.URL + "/ok"}},
		{name: "redirect to 2xx", args: []string{"--timeout", patient, srv.URL + "/moved"}},
		{name: "503", args: []string{"--timeout", patient, srv.URL + "/unready"}, want: "503"},
		{name: "404", args: []string{"--timeout", patient, srv.URL + "/nope"}, want: "404"},
		{name: "refused", args: []string{"--timeout", patient, closed}, want: "refused"},
		{name: "timeout", args: []string{"--timeout", "50ms", srv.URL + "/slow"}, want: "deadline"},
		{name: "no URL", args: nil, want: "usage"},
		{name: "two URLs", args: []string{srv.URL, srv.URL}, want: "usage"},
		{name: "bad flag", args: []string{"--nope", srv.URL}, want: "not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // bounds a hang only
			defer cancel()
			err := run(ctx, tt.args, io.Discard)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("run: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("run succeeded, want an error mentioning %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}
