// Command httpprobe is the container healthcheck of the authz-sidecar
// image: it exits 0 when an HTTP GET of its URL answers 2xx within the
// timeout, and 1 otherwise. The image is distroless (no shell, no curl),
// so docker-compose's healthcheck needs a binary of its own to run:
//
//	httpprobe [--timeout 2s] http://127.0.0.1:9192/readyz
//
// Kubernetes does not need it: kubelet probes the port itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "httpprobe:", err)
		os.Exit(1)
	}
}

// run probes the URL in args once.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("httpprobe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 2*time.Second, "deadline of the whole request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: httpprobe [--timeout 2s] URL")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fs.Arg(0), nil)
	if err != nil {
		return err
	}
	// No proxy from the environment: the probe is about this container.
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s: %s", fs.Arg(0), resp.Status)
	}
	return nil
}
