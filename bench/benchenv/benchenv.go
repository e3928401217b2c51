// Package benchenv is what the benchmark drivers (bench/authzbench,
// bench/fleet) share: reading their tuning knobs from the environment,
// with every bad value reported at once, and their main.
package benchenv

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// Reader reads knobs through getenv and collects what is wrong with them.
// An unset knob leaves its default in place.
type Reader struct {
	getenv func(string) string
	errs   []error
}

// NewReader returns a Reader over getenv (os.Getenv, or a test's map).
func NewReader(getenv func(string) string) *Reader { return &Reader{getenv: getenv} }

// Get returns env's value ("" when unset).
func (r *Reader) Get(env string) string { return r.getenv(env) }

// Duration sets *p from env, which must be a duration of at least least.
func (r *Reader) Duration(p *time.Duration, env string, least time.Duration) {
	if v := r.getenv(env); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < least {
			r.Fail(fmt.Errorf("$%s=%q: want a duration >= %v", env, v, least))
			return
		}
		*p = d
	}
}

// Int sets *p from env, which must be an integer of at least least.
func (r *Reader) Int(p *int, env string, least int) {
	if v := r.getenv(env); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < least {
			r.Fail(fmt.Errorf("$%s=%q: want an integer >= %d", env, v, least))
			return
		}
		*p = n
	}
}

// Fail records a problem found by the caller's own parsing.
func (r *Reader) Fail(err error) { r.errs = append(r.errs, err) }

// Err is every problem found, joined; nil if none.
func (r *Reader) Err() error { return errors.Join(r.errs...) }

// Run is a driver's whole program: its args, environment and output.
type Run func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error

// Main runs run until it returns or SIGINT / SIGTERM cancels it, and exits
// 1 with "name: error" if it failed (not for -h).
func Main(name string, run Run) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
